"""The front door and the docs it links to stay consistent (scripts/check_docs.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _check_docs():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("check_docs", ROOT / "scripts" / "check_docs.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_docs"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_every_link_resolves_and_the_readme_is_short():
    assert _check_docs().check() == []


def test_the_checker_finds_a_missing_file_a_missing_anchor_and_an_absolute_path(tmp_path):
    cd = _check_docs()
    (tmp_path / "README.md").write_text("# Title\n\n## Real section\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\nSee [a](missing.md), [b](README.md#no-such-heading), [c](README.md#real-section),\n"
        "[d](/work/shared/x.tif) and [e](https://example.org/x).\n"
    )
    problems = cd.check([page], root=tmp_path)
    assert len(problems) == 3, problems
    assert any("missing.md" in p for p in problems)
    assert any("#no-such-heading" in p for p in problems)
    assert any("absolute path" in p for p in problems)
    (tmp_path / "README.md").write_text("line\n" * (cd.README_MAX_LINES + 1))
    assert any("more than" in p for p in cd.check([], root=tmp_path))
