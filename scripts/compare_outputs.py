"""Compare two output folders of scripts/compare_outputs.sh: every file byte-identical, or each
difference explained (exit 1 if one is not).

    python scripts/compare_outputs.py BASE_OUT NEW_OUT

Explained differences: JSON files that differ only in run durations (stats.json ``seconds``,
metrics.json ``timing_s``, timecourse.json ``timings``); ONNX files equal but for the per-node
source locations torch's exporter records (file paths, lines, module paths) and the order in which
it writes its range constraints (a set: it changes from run to run); TorchScript files
with the same weights and outputs (the archive holds a random name, a serialization id, debug
info and module paths); an ``rdf.yaml`` that differs only in those files' sha256; the time-course
``index.html`` differing only in the run's duration. ``package.zip`` is skipped: its members are
compared unzipped (a zip holds file times).
"""

from __future__ import annotations

import filecmp
import json
import re
import sys
from pathlib import Path

TIME_KEYS = {"seconds", "timing_s", "timings"}
SKIP = {"package.zip"}


def differing_files(a: Path, b: Path) -> tuple[list[str], list[str]]:
    """(files whose bytes differ, files on one side only), relative paths."""
    diff, alone = [], []
    names_a = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file() and p.name not in SKIP}
    names_b = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file() and p.name not in SKIP}
    alone = sorted(names_a ^ names_b)
    for rel in sorted(names_a & names_b):
        if not filecmp.cmp(a / rel, b / rel, shallow=False):
            diff.append(rel)
    return diff, alone


def json_diff(a: object, b: object, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in json_diff(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in json_diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


def onnx_same(a: Path, b: Path) -> bool:
    import onnx

    def strip(m: onnx.ModelProto) -> bytes:
        g = m.graph
        for item in [*g.node, *g.value_info, *g.input, *g.output, *g.initializer]:
            del item.metadata_props[:]
        for n in g.node:
            n.doc_string = ""
        for entry in g.metadata_props:  # a set that torch writes in hash order: {s1: VR[..], s2: ..}
            if entry.key.endswith("range_constraints"):
                entry.value = ", ".join(sorted(entry.value.strip("{}").split(", ")))
        return m.SerializeToString()

    return strip(onnx.load(str(a))) == strip(onnx.load(str(b)))


def torchscript_same(a: Path, b: Path) -> bool:
    import torch

    ma, mb = torch.jit.load(str(a)), torch.jit.load(str(b))
    sa, sb = ma.state_dict(), mb.state_dict()
    x = torch.rand(2, 1, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same_out = torch.equal(ma(x), mb(x))
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa) and same_out


def changed_lines(a: Path, b: Path) -> list[tuple[str, str]] | None:
    la, lb = a.read_text().splitlines(), b.read_text().splitlines()
    return [(x, y) for x, y in zip(la, lb) if x != y] if len(la) == len(lb) else None


DURATION = re.compile(r"livecell-seg timecourse</code> in [0-9.]+ s\.")


def explain(rel: str, a: Path, b: Path) -> str | None:
    """Why ``a`` and ``b`` may differ, or None when they must not."""
    if rel.endswith(".json"):
        keys = json_diff(json.loads(a.read_text()), json.loads(b.read_text()))
        if keys and all(re.split(r"[.\[]", k)[1] in TIME_KEYS for k in keys):
            return "run durations only: " + ", ".join(keys)
    elif rel.endswith(".onnx") and onnx_same(a, b):
        return (
            "same graph, weights and model metadata; per-node source locations (file, line, module path) "
            "and the order of torch's range constraints may differ"
        )
    elif rel.endswith("_torchscript.pt") and torchscript_same(a, b):
        return "same weights and outputs; archive name, serialization id, debug info and module paths differ"
    elif rel.endswith("rdf.yaml"):
        d = changed_lines(a, b)
        if d is not None and all(
            x.strip().startswith("sha256:") and y.strip().startswith("sha256:") for x, y in d
        ):
            return f"only the sha256 of the {len(d)} weight file(s) above"
    elif rel.endswith("index.html"):
        d = changed_lines(a, b)
        if d is not None and all(DURATION.sub("", x) == DURATION.sub("", y) for x, y in d):
            return "the run's duration only"
    return None


def main(argv: list[str]) -> int:
    a, b = Path(argv[0]), Path(argv[1])
    diff, alone = differing_files(a, b)
    n = sum(1 for p in a.rglob("*") if p.is_file() and p.name not in SKIP)
    for rel in alone:
        print(f"  {rel}: on one side only")
    bad = len(alone)
    for rel in diff:
        why = explain(rel, a / rel, b / rel)
        print(f"  {rel}: {why or 'DIFFERENT'}")
        bad += why is None
    if bad:
        print(f"DIFFERENT: {bad} unexplained difference(s) above")
        return 1
    print(f"SAME: {n - len(diff)} of {n} output files byte-identical; {len(diff)} differ only as said above")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
