"""The package's import graph follows the layers CONTRIBUTING draws (scripts/import_graph.py)."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _import_graph():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_no_import_cycles_and_no_arrow_climbs_a_layer():
    ig = _import_graph()
    graph = ig.edges()
    assert ig.cycles(graph) == []
    assert ig.upward(graph) == []


def test_the_checker_sees_a_cycle_and_a_climbing_arrow(tmp_path):
    ig = _import_graph()
    pkg = tmp_path / "src" / "livecell_seg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "inference").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "inference" / "__init__.py").write_text("")
    (pkg / "data" / "a.py").write_text("def f():\n    from ..inference import b\n")  # lazy, still an arrow
    (pkg / "inference" / "b.py").write_text("from ..data import a\n")
    (pkg / "inference" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..data import a\n"
    )
    graph = ig.edges(pkg)
    assert ig.cycles(graph) == [["livecell_seg.data.a", "livecell_seg.inference.b"]]
    assert ig.upward(graph) == [("livecell_seg.data.a", "livecell_seg.inference.b")]
    assert graph["livecell_seg.inference.c"] == {}  # type-only imports are not arrows


def test_no_function_is_longer_than_100_lines():
    long = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 100:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []
