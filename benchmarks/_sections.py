"""Shared by the benchmark scripts: rewrite one delimited section of a Markdown file atomically.

A section is ``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->``; each script owns its own, so
scripts never overwrite each other's figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"


def replace_section(name: str, body: str, path: Path = BENCHMARKS, marker: str = "bench") -> None:
    """Replace (or append) the ``<!-- {marker}:{name} -->`` section of ``path`` with ``body``."""
    sys.path.insert(0, str(ROOT / "src"))
    from livecell_seg.io import atomic_path

    start, end = f"<!-- {marker}:{name} -->", f"<!-- /{marker}:{name} -->"
    block = f"{start}\n{body}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    i = old.find(start)
    j = old.find(end, i + 1) if i >= 0 else -1
    if i >= 0 and j >= 0:
        new = old[:i] + block + old[j + len(end) :]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(new)


def publish(name: str, text: str, write: bool, path: Path = BENCHMARKS) -> None:
    """Print a benchmark's section and, with ``write``, put it into BENCHMARKS.md as ``name``."""
    print(text)
    if write:
        replace_section(name, text, path)
        print(f"wrote the {name} section of {path.name}")
