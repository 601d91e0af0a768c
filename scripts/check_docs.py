"""Check the documentation's links: README.md and docs/*.md (issue 24).

- every relative link and image (``[text](path)``, ``![alt](path)``, ``<img src="path">``,
  ``<a href="path">``) points to a file or folder that exists, relative to the Markdown file;
- every ``#anchor`` (``(#anchor)`` in the same file, ``(other.md#anchor)`` in another) names a
  heading of the target file, by GitHub's slug rules (lower case; punctuation but ``-`` and ``_``
  dropped; spaces to ``-``; a repeated heading gets ``-1``, ``-2``, ...);
- README.md has at most 300 lines.

Code blocks, inline code and HTML comments are skipped; ``http(s):``, ``mailto:`` and other
absolute URLs are not checked; an absolute file path is a problem. ::

    python scripts/check_docs.py            # exit 0 when all is well, else 1 with one line per problem
    python scripts/check_docs.py FILE.md    # check only these files (the line limit still applies to README.md)
"""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 300

_FENCE = re.compile(r"^ {0,3}(```+|~~~+)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target "title") and ![alt](target); the target has no spaces (or is in <...>)
_MD_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
_HTML_LINK = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.I)
_EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files(root: Path = ROOT) -> list[Path]:
    """README.md and docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with HTML comments blanked."""
    text = _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    out, fence = [], None
    for i, line in enumerate(text.split("\n"), 1):
        m = _FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        out.append((i, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (before de-duplication)."""
    text = _INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.strip().lower()
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "-_" or cat[0] in "LN" or cat == "Mn":
            kept.append(ch)
        elif ch == " ":
            kept.append("-")
    return "".join(kept)


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 suffixes for repeats."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8")):
        m = _HEADING.match(line)
        if not m:
            continue
        s = slug(m.group(2))
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image of a Markdown file, outside code."""
    found = []
    for i, line in _prose_lines(path.read_text(encoding="utf-8")):
        line = _INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)
        for rx in (_MD_LINK, _HTML_LINK):
            for m in rx.finditer(line):
                found.append((i, m.group(1).strip("<>")))
    return found


def check_file(path: Path, cache: dict[Path, set[str]]) -> list[str]:
    problems = []
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    for line, target in links(path):
        if _EXTERNAL.match(target) or target.startswith("//"):
            continue
        if target.startswith("/"):
            problems.append(f"{rel}:{line}: {target}: an absolute path (works on one machine only)")
            continue
        where, _, anchor = target.partition("#")
        dest = (path.parent / unquote(where)).resolve() if where else path.resolve()
        if where and not dest.exists():
            problems.append(
                f"{rel}:{line}: {target}: no such file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}"
            )
            continue
        if anchor and dest.suffix.lower() == ".md" and dest.is_file():
            if dest not in cache:
                cache[dest] = anchors(dest)
            if unquote(anchor).lower() not in cache[dest]:
                problems.append(f"{rel}:{line}: {target}: no heading with anchor #{anchor} in {dest.name}")
    return problems


def check(files: list[Path] | None = None, root: Path = ROOT) -> list[str]:
    """All problems found (empty when the documentation is consistent)."""
    cache: dict[Path, set[str]] = {}
    problems = []
    for f in files or markdown_files(root):
        problems += check_file(f.resolve(), cache)
    readme = root / "README.md"
    n = len(readme.read_text(encoding="utf-8").splitlines())
    if n > README_MAX_LINES:
        problems.append(f"README.md: {n} lines, more than {README_MAX_LINES}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    files = [Path(a) for a in args] or None
    problems = check(files)
    for p in problems:
        print(p)
    checked = files or markdown_files()
    print(f"check_docs: {len(checked)} file(s), {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
