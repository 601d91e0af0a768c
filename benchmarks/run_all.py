"""Run every ``benchmarks/bench_*.py`` in turn and regenerate BENCHMARKS.md (``make bench``).

Each benchmark rewrites its own ``<!-- bench:NAME -->`` section of BENCHMARKS.md (``--write``);
this script writes the ``header`` section at the top: how to regenerate the file, when and on
which machine it was run (CPU model, cores, load average before and after, torch/numpy versions)
and how each benchmark went. Benchmarks run one at a time (they time themselves), in the order
convert, train, predict, postprocess, evaluate (any other ``bench_*.py`` after those); one that
fails is reported and the others still run (exit code 1).

``--quick`` passes ``--quick`` to each (small sizes, under a minute each) and, unless ``--write``
is given too, leaves BENCHMARKS.md alone: quick numbers are smoke tests, not results.

    python benchmarks/run_all.py                 # full run, rewrites BENCHMARKS.md (~ tens of minutes)
    python benchmarks/run_all.py --quick         # check that every benchmark runs
    python benchmarks/run_all.py --only predict evaluate
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
ORDER = ("convert", "train", "predict", "postprocess", "evaluate")
HEADER = "header"
TITLE = "# Benchmarks"


def discover(folder: Path = HERE) -> list[str]:
    """Names of the ``bench_NAME.py`` scripts in ``folder``, in :data:`ORDER`, then alphabetically."""
    names = sorted(p.stem[len("bench_") :] for p in folder.glob("bench_*.py"))
    return [n for n in ORDER if n in names] + [n for n in names if n not in ORDER]


def machine() -> dict:
    """CPU model, cores, load average, versions (``livecell_seg.demo_pipeline.machine_info``)."""
    sys.path.insert(0, str(ROOT / "src"))
    from livecell_seg.demo_pipeline import machine_info

    return machine_info()


def section_bounds(text: str, name: str) -> tuple[int, int] | None:
    """(start, end) character offsets of the ``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->``
    block, end marker included; None when absent."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    i = text.find(start)
    j = text.find(end, i + 1) if i >= 0 else -1
    if i < 0 or j < 0:
        return None
    return i, j + len(end)


def set_header(text: str, block: str) -> str:
    """``text`` with its header section replaced by ``block``, or ``block`` put right under the title."""
    b = section_bounds(text, HEADER)
    if b is not None:
        return text[: b[0]] + block + text[b[1] :]
    body = text.lstrip("\n")
    if body.startswith(TITLE):
        body = body[len(TITLE) :].lstrip("\n")
    return f"{TITLE}\n\n{block}\n\n{body}".rstrip("\n") + "\n"


def order_sections(text: str) -> str:
    """Put the benchmark sections in :data:`ORDER` (unknown ones after), contents untouched."""
    names = re.findall(r"<!-- bench:([\w.-]+) -->", text)
    names = [n for n in dict.fromkeys(names) if n != HEADER and section_bounds(text, n)]
    if not names:
        return text
    blocks = {}
    rest = text
    for n in names:
        b = section_bounds(rest, n)
        assert b is not None
        blocks[n] = rest[b[0] : b[1]]
        rest = rest[: b[0]] + rest[b[1] :]
    ordered = [n for n in ORDER if n in blocks] + [n for n in names if n not in ORDER]
    rest = re.sub(r"\n{3,}", "\n\n", rest).rstrip("\n")
    return rest + "\n\n" + "\n\n".join(blocks[n] for n in ordered) + "\n"


def machine_line(info: dict, load_end: list | None, when: str, quick: bool) -> str:
    """One sentence: when, CPU, cores, load average before/after, versions."""
    text = f"Last `run_all.py{' --quick' if quick else ''}`: {when}; CPU: {info.get('cpu')}, {info.get('cores')} cores"
    la = info.get("load_average")
    if la:
        text += f"; load average (1/5/15 min) {la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f} before"
        if load_end:
            text += f", {load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f} after"
    return text + f"; Python {info.get('python')}, torch {info.get('torch')}, numpy {info.get('numpy')}."


def header_block(info: dict, load_end: list | None, runs: list[dict], quick: bool) -> str:
    """The header section: regeneration instructions, machine, per-benchmark status."""
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"<!-- bench:{HEADER} -->",
        "Every figure below is measured by a script in `benchmarks/`, side by side with its baseline "
        "in the same run, and written here by that script (`--write` rewrites only its own "
        "`<!-- bench:NAME -->` section). Regenerate the whole file with `make bench` "
        "(= `python benchmarks/run_all.py`) or one section with `python benchmarks/bench_NAME.py --write`; "
        "`--quick` runs small sizes as a smoke test. Wall times depend on the machine and its load: "
        "compare ratios within one run, not absolute times across runs.",
        "",
    ]
    if runs:
        lines += [machine_line(info, load_end, when, quick), "", "| benchmark | status | wall time (s) |"]
        lines.append("|---|---|---|")
        lines += [f"| {r['name']} | {r['status']} | {r['seconds']:.0f} |" for r in runs]
    else:
        lines.append(
            "The sections below were written one by one by their scripts; each states its own command, "
            "date and machine. `make bench` re-runs them all and records the machine here."
        )
    lines.append(f"<!-- /bench:{HEADER} -->")
    return "\n".join(lines)


def write_markdown(path: Path, block: str) -> None:
    """Replace the header section of ``path`` and order its sections, atomically."""
    sys.path.insert(0, str(ROOT / "src"))
    from livecell_seg.io import atomic_path

    old = path.read_text() if path.exists() else f"{TITLE}\n"
    new = order_sections(set_header(old, block))
    with atomic_path(path) as tmp:
        tmp.write_text(new)


def run_one(name: str, flags: list[str], timeout: float | None) -> dict:
    """Run ``bench_NAME.py`` with ``flags`` (output passed through); returns name, status, seconds."""
    cmd = [sys.executable, str(HERE / f"bench_{name}.py"), *flags]
    print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    try:
        rc = subprocess.run(cmd, cwd=ROOT, timeout=timeout, check=False).returncode
        status = "ok" if rc == 0 else f"failed (exit {rc})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:g} s"
    secs = time.perf_counter() - t0
    print(f"=== {name}: {status} in {secs:.0f} s", flush=True)
    return {"name": name, "status": status, "seconds": secs, "command": " ".join(cmd[1:])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="small sizes; BENCHMARKS.md untouched unless --write"
    )
    ap.add_argument("--write", action="store_true", help="with --quick: write the quick numbers anyway")
    ap.add_argument("--no-write", action="store_true", help="full run without touching BENCHMARKS.md")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (e.g. predict)")
    ap.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="skip these benchmarks")
    ap.add_argument("--timeout", type=float, help="seconds allowed per benchmark (default: none)")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ap.add_argument(
        "--header-only", action="store_true", help="write the intro at the top of BENCHMARKS.md, run nothing"
    )
    ap.add_argument("--md", type=Path, default=BENCHMARKS_MD, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    names = discover()
    if args.list:
        print("\n".join(names))
        return 0
    unknown = sorted((set(args.only or []) | set(args.skip)) - set(names))
    if unknown:
        print(
            f"run_all.py: error: no benchmarks/bench_{unknown[0]}.py (have: {', '.join(names)})",
            file=sys.stderr,
        )
        return 2
    if args.header_only:
        write_markdown(args.md, header_block(machine(), None, [], quick=False))
        print(f"run_all: wrote the intro of {args.md}")
        return 0
    names = [n for n in names if (not args.only or n in args.only) and n not in args.skip]
    write = (args.write or not args.quick) and not args.no_write
    flags = (["--quick"] if args.quick else []) + (["--write"] if write else [])
    info = machine()
    print(
        f"run_all: {', '.join(names)} ({'quick' if args.quick else 'full'}, "
        f"{'writing' if write else 'not writing'} {args.md.name}); {info['cpu']}, {info['cores']} cores, "
        f"load average {info['load_average']}",
        flush=True,
    )
    env_note = os.environ.get("OMP_NUM_THREADS")
    if env_note:
        print(f"run_all: note: OMP_NUM_THREADS={env_note} is set", flush=True)
    runs = [run_one(n, flags, args.timeout) for n in names]
    load_end = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    if write:
        write_markdown(args.md, header_block(info, load_end, runs, args.quick))
        print(f"\nrun_all: wrote the header of {args.md}")
    print("\nrun_all summary:")
    for r in runs:
        print(f"  {r['name']:<12} {r['status']:<24} {r['seconds']:7.0f} s")
    return 0 if all(r["status"] == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
