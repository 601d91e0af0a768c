"""Mutation score of the pure core with mutmut (``make mutants``; not in CI).

mutmut (configured in pyproject.toml, ``[tool.mutmut]``) copies ``src/`` to ``mutants/``, writes
every mutant of the six core modules there (an operator, a constant, a comparison, an argument
changed: about 5,000 in all) and maps each function to the tests that call it, so a mutant runs
only those tests. Running all 5,000 takes about three hours on a shared 2-core CPU, so by default
this script runs a **fixed random sample** per module (the same names every time for the same
source, seed 0) and reports the share killed, with its 95 % interval:

    python benchmarks/mutation_score.py run --sample 40     # ~30 min on a shared 2-core CPU
    python benchmarks/mutation_score.py report              # per-module table + surviving mutants
    python benchmarks/mutation_score.py run --sample 0      # every mutant (hours)

Only the tiling functions of ``inference.py`` are sampled (``TILING``); its network plumbing is
not pure. Inspect one survivor with ``mutmut show NAME``; try it with ``mutmut run NAME``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

MODULES = {
    "metrics": "src/livecell_seg/evaluation/metrics.py",
    "postprocess": "src/livecell_seg/inference/postprocess.py",
    "targets": "src/livecell_seg/training/targets.py",
    "data/convert": "src/livecell_seg/data/convert.py",
    "data/splits": "src/livecell_seg/data/splits.py",
    "inference (tiling)": "src/livecell_seg/inference/tiling.py",
}
#: the functions of inference.py that make up tiled inference
TILING = (
    "_tile_shape",
    "_ceil_to",
    "_axis_tiles",
    "_axis_weight",
    "_pad_reflect",
    "predict_maps",
)
#: mutmut exit codes -> outcome (mutmut.stats.status_by_exit_code)
KILLED = {1, 3}  # a failing test or a pytest error
#: CPU-time limit hit: on a loaded machine mostly slow fixtures, not hung mutants, so not counted
TIMEOUT = {36, -24, 24, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}
#: cheap mutant whose run makes mutmut generate every mutant and collect the test stats
BOOTSTRAP = "livecell_seg.inference.tiling.x__ceil_to__mutmut_1"


def meta_path(module: str) -> Path:
    return Path("mutants") / (MODULES[module] + ".meta")


def mutants_of(module: str) -> dict[str, int | None]:
    """{mutant name: exit code or None (not run)} of one module, from mutmut's meta file."""
    p = meta_path(module)
    if not p.is_file():
        return {}
    codes = json.loads(p.read_text())["exit_code_by_key"]
    if module.startswith("inference"):
        keep = tuple(f"livecell_seg.inference.tiling.x_{f}__mutmut_" for f in TILING)
        codes = {k: v for k, v in codes.items() if k.startswith(keep)}
    return codes


def sample(module: str, n: int, seed: int = 0) -> list[str]:
    """A fixed random sample of ``n`` mutant names of ``module`` (all when ``n`` is 0 or more)."""
    names = sorted(mutants_of(module))
    if n <= 0 or n >= len(names):
        return names
    return sorted(random.Random(f"{seed}:{module}").sample(names, n))


def mutmut(*args: str) -> int:
    exe = Path(sys.executable).with_name("mutmut")
    return subprocess.call([str(exe), *args])


def run(n: int, seed: int, max_children: int, rerun: bool) -> int:
    if not all(meta_path(m).is_file() for m in MODULES):
        mutmut("run", "--max-children", str(max_children), BOOTSTRAP)  # generate + stats
    names = [name for m in MODULES for name in sample(m, n, seed)]
    Path("mutants").mkdir(exist_ok=True)
    (Path("mutants") / "sample.json").write_text(json.dumps({"n": n, "seed": seed, "names": names}))
    if not rerun:  # keep the results of an interrupted run (mutmut keeps them per mutant)
        done = {k for m in MODULES for k, v in mutants_of(m).items() if v is not None}
        names = [k for k in names if k not in done]
    if not names:
        return 0
    return mutmut("run", "--max-children", str(max_children), *names)


def mutant_diffs(names: list[str]) -> dict[str, str]:
    """{name: the changed line(s), '-old // +new'} read from mutmut's generated files (no mutmut call)."""
    import ast
    import difflib

    out: dict[str, str] = {}
    by_file: dict[Path, list[str]] = defaultdict(list)
    for name in names:
        module = name.split(".x", 1)[0] if ".xǁ" not in name else name.split(".xǁ", 1)[0]
        by_file[Path("mutants/src") / (module.replace(".", "/") + ".py")].append(name)
    for path, group in by_file.items():
        lines = path.read_text().splitlines()
        funcs = {
            node.name: lines[node.lineno - 1 : node.end_lineno]
            for node in ast.walk(ast.parse("\n".join(lines)))
            if isinstance(node, ast.FunctionDef)
        }
        for name in group:
            fname = "x" + name.split(".x", 1)[1] if ".xǁ" not in name else "xǁ" + name.split(".xǁ", 1)[1]
            orig = funcs.get(fname.split("__mutmut_")[0] + "__mutmut_orig")
            mut = funcs.get(fname)
            if orig is None or mut is None:
                out[name] = "?"
                continue
            diff = [
                ("-" if d[0] == "-" else "+") + d[1:].strip()
                for d in difflib.unified_diff(orig[1:], mut[1:], lineterm="", n=0)
                if d[:1] in "+-" and not d.startswith(("---", "+++"))
            ]
            out[name] = " // ".join(diff)
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a proportion k/n."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def report(show_survivors: bool) -> int:
    sample_file = Path("mutants") / "sample.json"
    chosen = set(json.loads(sample_file.read_text())["names"]) if sample_file.is_file() else None
    rows, survivors = [], defaultdict(list)
    for m in MODULES:
        codes = mutants_of(m)
        total = len(codes)
        picked = {k: v for k, v in codes.items() if chosen is None or k in chosen}
        c = Counter()
        for name, code in picked.items():
            if code is None:
                c["not run"] += 1
            elif code in KILLED:
                c["killed"] += 1
            elif code in SURVIVED:
                c["survived"] += 1
                survivors[m].append(name)
            elif code in NO_TESTS:
                c["no tests"] += 1
                survivors[m].append(name)
            elif code in TIMEOUT:
                c["timeout"] += 1
            else:
                c["other"] += 1
        done = c["killed"] + c["survived"] + c["no tests"]
        lo, hi = wilson(c["killed"], done)
        score = 100.0 * c["killed"] / done if done else math.nan
        rows.append(
            f"| `{m}` | {total} | {len(picked)} | {c['killed']} | {c['survived']} | {c['no tests']} | "
            f"{c['timeout'] + c['other']} | {c['not run']} | {score:.0f} % ({100 * lo:.0f}–{100 * hi:.0f}) |"
        )
    print(
        "| module | mutants | sampled | killed | survived | no test | timeout/other | not run | "
        "score (95 % interval) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if show_survivors:
        diffs = mutant_diffs([n for names in survivors.values() for n in names])
        for m, names in survivors.items():
            print(f"\n{m}: {len(names)} not killed")
            for name in sorted(names):
                print(f"   {name.rsplit('.', 1)[1]}: {diffs.get(name, '?')[:200]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="generate the mutants (once) and run the sample")
    r.add_argument("--sample", type=int, default=40, help="mutants per module (0 = all)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--max-children", type=int, default=2)
    r.add_argument("--rerun", action="store_true", help="run mutants that already have a result again")
    p = sub.add_parser("report", help="per-module mutation score of the last run")
    p.add_argument("--survivors", action="store_true", help="list the mutants not killed")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        return run(args.sample, args.seed, args.max_children, args.rerun)
    return report(args.survivors)


if __name__ == "__main__":
    sys.exit(main())
