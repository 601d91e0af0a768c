"""Plant the deliberate bugs of issue 15 one at a time in a copy of the package; the suite must fail.

Each mutation is a one-line change that once passed the whole suite (or was caught only
indirectly). For each, the package is copied to a temporary folder, the change is applied there
(the working tree is never touched) and the test files that should catch it run against the copy.

    python benchmarks/named_mutations.py            # all, prints caught/MISSED, exit 1 if one is missed
    python benchmarks/named_mutations.py --list

Mutation testing at large (every operator, every constant) is ``make mutants`` (mutmut); this script
keeps the reviewer's five named bugs as a fast, explicit check.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  #: path under src/livecell_seg
    old: str  #: exact text replaced (must occur once)
    new: str
    tests: tuple[str, ...]  #: test files (or node ids) that must fail


MUTATIONS = (
    Mutation(
        "postprocess.watershed_dist floods the centre-distance map",
        "inference/postprocess.py",
        "ws = watershed(bd.astype(np.float32, copy=False), markers, mask=mask)\n    else:\n        ws = markers\n",
        "ws = watershed(cd.astype(np.float32, copy=False), markers, mask=mask)\n    else:\n        ws = markers\n",
        ("tests/test_postprocess.py",),
    ),
    Mutation(
        "convert._options_key without the json's size and mtime",
        "data/convert.py",
        '"json_size": st.st_size,\n        "json_mtime_ns": st.st_mtime_ns,\n',
        "",
        ("tests/test_convert.py",),
    ),
    Mutation(
        "inference.predict_maps pads tiles with zeros instead of a reflection",
        "inference/tiling.py",
        "xp = _pad_reflect(x, hp - h, wp - w)  # the same stride padding",
        "xp = np.pad(x, ((0, hp - h), (0, wp - w)))  # the same stride padding",
        ("tests/test_inference.py",),
    ),
    Mutation(
        "metrics.summarize_coco_eval reads AP at maxDets 100",
        "evaluation/metrics.py",
        "m = len(LIVECELL_MAX_DETS) - 1",
        "m = 0",
        ("tests/test_metrics.py",),
    ),
    Mutation(
        "splits.group_of groups by well and field of view (leaks)",
        "data/splits.py",
        'return f"{n.cell_type}_{n.well}" if n is not None else None',
        'return f"{n.cell_type}_{n.well}_{n.location}" if n is not None else None',
        ("tests/test_splits.py",),
    ),
)


def run_one(m: Mutation, workdir: Path, tests_root: Path = ROOT) -> tuple[bool, float, str]:
    """Apply ``m`` to a fresh copy of the package; return (caught, seconds, last output line)."""
    pkg = workdir / "src" / "livecell_seg"
    if pkg.parent.exists():
        shutil.rmtree(pkg.parent)
    shutil.copytree(ROOT / "src" / "livecell_seg", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    target = pkg / m.file
    text = target.read_text()
    if text.count(m.old) != 1:
        raise SystemExit(f"{m.name}: the text to mutate occurs {text.count(m.old)} times in {m.file}")
    target.write_text(text.replace(m.old, m.new))
    env = {**os.environ, "PYTHONPATH": str(pkg.parent)}
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *m.tests]
    r = subprocess.run(cmd, cwd=tests_root, env=env, capture_output=True, text=True)
    last = (r.stdout.strip().splitlines() or [""])[-1]
    return r.returncode != 0, time.perf_counter() - t0, last


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true")
    ap.add_argument(
        "--tests-root",
        default=str(ROOT),
        help="folder holding the tests/ to run (e.g. an older checkout: `git archive main tests | tar -x -C DIR`)",
    )
    args = ap.parse_args(argv)
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name}: {m.file}; {' '.join(m.tests)}")
        return 0
    missed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for m in MUTATIONS:
            caught, sec, last = run_one(m, Path(tmp), Path(args.tests_root))
            missed += not caught
            print(f"{'caught' if caught else 'MISSED'}  {m.name}  ({sec:.0f} s: {last})", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
