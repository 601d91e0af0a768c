"""The package's own import graph: cycles and arrows that climb the layers.

    python scripts/import_graph.py            # print every edge that breaks the rules
    python scripts/import_graph.py --dot g.dot

Every ``import`` of a ``livecell_seg`` module counts, at module level or inside a function
(a lazy import is still an arrow). Layers, low to high, are in ``LAYERS``; a module may import its
own layer or lower ones. Type-only imports (under ``if TYPE_CHECKING:``) are left out.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PKG = "livecell_seg"
ROOT = Path(__file__).resolve().parents[1] / "src" / PKG

# low -> high; a module's layer is the first prefix that matches its dotted name (after livecell_seg.)
LAYERS: list[tuple[str, ...]] = [
    ("errors", "options", "dataclass_dicts", "progress", "io", "reports"),  # foundations
    ("data",),  # COCO, conversion, splits, download, EDA, synthetic images
    ("evaluation.metrics",),  # matching and AP on label images (pure numpy)
    ("model",),  # what a model is: heads registry, post-processing parameters, model folders, U-Net
    ("inference",),  # maps, watershed, tiling, zoom, predict, its Dask runner, tuning, pseudo-labels
    ("training", "evaluation", "bioimageio_export"),  # training and fine-tuning, evaluate, packaging
    ("timecourse",),
    ("interactive", "app", "napari_plugin", "demo_pipeline"),
    ("commands", "cli", "__main__"),
]


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(mod: str) -> int:
    if mod == PKG:
        return 0  # the package's front door imports its names on first use (no import statements)
    short = mod[len(PKG) + 1 :] if mod.startswith(PKG + ".") else ""
    best, best_len = len(LAYERS), -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (short == p or short.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                skip.update(id(n) for n in ast.walk(sub))
    return skip


def edges(root: Path = ROOT) -> dict[str, dict[str, bool]]:
    """module -> {imported own module: imported at module level}."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, dict[str, bool]] = {m: {} for m in modules}
    for mod, path in modules.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_nodes(tree)
        top = {id(n) for n in tree.body}
        pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(tree):
            if id(node) in skip or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join([*up, base]) if base else ".".join(up)
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                # `from pkg import module` is an arrow to the module (not to the package itself)
                targets = subs if len(subs) == len(node.names) else [base, *subs]
            for t in targets:
                while t and t not in modules:
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t and t != mod and t.startswith(PKG):
                    graph[mod][t] = graph[mod].get(t, False) or id(node) in top
    return graph


def cycles(graph: dict[str, dict[str, bool]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def upward(graph: dict[str, dict[str, bool]]) -> list[tuple[str, str]]:
    """Edges from a lower layer to a higher one."""
    return sorted((a, b) for a, bs in graph.items() for b in bs if layer_of(b) > layer_of(a))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dot", type=Path, help="write the graph in Graphviz format")
    args = ap.parse_args(argv)
    g = edges()
    n_edges = sum(len(v) for v in g.values())
    lazy = sum(1 for v in g.values() for top in v.values() if not top)
    print(f"{len(g)} modules, {n_edges} own-module arrows ({lazy} only inside functions)")
    cyc = cycles(g)
    print(f"{len(cyc)} import cycle(s)")
    for c in cyc:
        print("  cycle: " + " <-> ".join(c))
    up = upward(g)
    print(f"{len(up)} arrow(s) that climb the layers")
    for a, b in up:
        print(f"  {a} -> {b}")
    if args.dot:
        lines = ["digraph livecell_seg {"]
        lines += [f'  "{a}" -> "{b}";' for a, bs in sorted(g.items()) for b in sorted(bs)]
        args.dot.write_text("\n".join(lines + ["}"]) + "\n")
    return 1 if cyc or up else 0


if __name__ == "__main__":
    raise SystemExit(main())
