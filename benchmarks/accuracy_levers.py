"""Which training data and settings make the model hold up on images it never saw (issue 16).

Scores model folders (or training run folders: their last checkpoint is exported to
``RUN/last_model``) on held-out images, with the project's own ``segment_image`` (the code path of
``predict``) and the LIVECell protocol (COCO mask AP with ``useCats=0``, ``maxDets=2000``), plus mSA
and the count ratio (predicted / true cells: users count cells):

- ``livecell``: the real LIVECell sample images of wells the lever runs never saw: MCF7 F4, BT474 C3
  (cell types they saw) and Huh7 A10 (large flat cells of a type they never saw). The bundled
  models were trained on all 5 sample images, so for them these are *training* images.
- ``livecell_zoom1.6``: the same 3 images enlarged 1.6x (image linear, labels nearest): cells larger
  than anything in training, a stand-in for the large flat cells of unseen types (A172, SKOV3).
- ``shsy5y``: 12 Kaggle SH-SY5Y images (every 6th id, sorted) that no run here trained on
  (needs ``../shared/kaggle-sartorius``; skipped when absent).

Each model is scored at the zooms of ``--scales`` (default: 1 and ``auto``, the cell-size estimate);
with several fixed zooms, ``best-of`` takes the best of them per image (by mSA): an upper bound of
what any size estimate could reach. ::

    python benchmarks/accuracy_levers.py --model old=src/livecell_seg/models/default \\
        --model l0=runs/levers/l0_livecell ... [--write] [--json-out docs/accuracy_levers.json]
    # models scored in earlier runs: --merge their --json-out files (the table shows them all)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LIVECELL_HELDOUT = [
    "MCF7_Phase_F4_2_00d00h00m_4",
    "BT474_Phase_C3_1_01d04h00m_4",
    "Huh7_Phase_A10_1_02d12h00m_3",
]
SHSY5Y_HELDOUT = [
    "042c17cd9143", "1974fbb27dcf", "25fc36476862", "42d8ecbc95a1", "5b8e5ee1ec61", "68780361eded",
    "815de003cb5b", "8f6d3deadc55", "ad12c1357f63", "bb3520da4cce", "de35454a3346", "f653c5eec0f8",
]  # fmt: skip
KAGGLE = ROOT.parent / "shared" / "kaggle-sartorius"
ZOOM = 1.6


def livecell_set(zoom: float = 1.0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, raw image, ground-truth labels) of the held-out LIVECell sample images."""
    from livecell_seg.data import sample_paths
    from livecell_seg.data.coco import annotations_to_labels, find_image, load_coco
    from livecell_seg.io import read_image

    js, images = sample_paths()
    ds = load_coco(js)
    out = []
    for im in ds.images:
        stem = Path(im["file_name"]).stem
        if stem not in LIVECELL_HELDOUT:
            continue
        img = read_image(find_image(images, im["file_name"]))
        gt = annotations_to_labels(ds.anns_by_image.get(int(im["id"]), []), *img.shape)
        if zoom != 1.0:
            from skimage.transform import resize

            shape = (round(img.shape[0] * zoom), round(img.shape[1] * zoom))
            img = resize(img.astype(np.float32), shape, order=1, preserve_range=True)
            gt = resize(gt, shape, order=0, preserve_range=True, anti_aliasing=False).astype(np.int32)
        out.append((stem, img, gt))
    return out


def shsy5y_set() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The 12 held-out Kaggle SH-SY5Y images (empty when the shared data is absent)."""
    from livecell_seg.io import read_image, read_labels

    if not KAGGLE.is_dir():
        return []
    return [
        (i, read_image(KAGGLE / "images" / f"{i}.png"), read_labels(KAGGLE / "labels" / f"{i}.tif"))
        for i in SHSY5Y_HELDOUT
    ]


def resolve_model(path: Path) -> Path:
    """A model folder; a run folder's last checkpoint is exported to ``RUN/last_model`` (once)."""
    if not (path / "checkpoints" / "last.ckpt").is_file():
        return path
    from livecell_seg.training.trainer import export_last

    return export_last(path)


def segment_all(model, items, scale) -> list[dict]:
    """Per image: labels, scores, mSA and the zoom used, at ``scale`` (a number or "auto")."""
    from livecell_seg.evaluation.metrics import mean_segmentation_accuracy
    from livecell_seg.inference.predict import segment_image

    out = []
    for _, img, gt in items:
        t = time.perf_counter()
        res = segment_image(model, img, scale=scale)
        out.append(
            {
                "labels": res.labels,
                "scores": res.scores,
                "mSA": mean_segmentation_accuracy(gt, res.labels),
                "zoom": res.scale,
                "seconds": time.perf_counter() - t,
            }
        )
    return out


def aggregate(items, per_image: list[dict]) -> dict:
    """LIVECell-protocol AP, mean mSA and count ratio of per-image results."""
    from livecell_seg.evaluation.metrics import coco_mask_ap

    gts = [gt for _, _, gt in items]
    ap = coco_mask_ap(gts, [r["labels"] for r in per_image], [r["scores"] for r in per_image])
    n_true = sum(int(len(np.unique(g)) - (0 in g)) for g in gts)
    n_pred = sum(len(r["scores"]) for r in per_image)
    return {
        "AP": ap["AP"],
        "AP50": ap["AP50"],
        "mSA": float(np.mean([r["mSA"] for r in per_image])),
        "count_ratio": n_pred / max(1, n_true),
        "n_pred": n_pred,
        "n_true": n_true,
        "zoom": [round(r["zoom"], 3) for r in per_image],
        "s_per_image": float(np.mean([r["seconds"] for r in per_image])),
        "per_image_mSA": [round(r["mSA"], 4) for r in per_image],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], metavar="NAME=DIR", help="model or run folder")
    ap.add_argument("--sets", default="livecell,livecell_zoom,shsy5y")
    ap.add_argument("--scales", default="1,auto")
    ap.add_argument("--json-out", default=None, help="write every figure here (JSON)")
    ap.add_argument("--write", action="store_true", help="rewrite the lever table of docs/results.md")
    ap.add_argument(
        "--merge",
        action="append",
        default=[],
        metavar="JSON",
        help="results of earlier runs (--json-out files) to include in the table; this run's win",
    )
    args = ap.parse_args(argv)

    from livecell_seg.model.folder import load_model_dir

    sets = {
        "livecell": livecell_set,
        "livecell_zoom": lambda: livecell_set(ZOOM),
        "shsy5y": shsy5y_set,
    }
    data = {k: sets[k]() for k in args.sets.split(",")}
    results: dict[str, dict] = {}
    for spec in args.model:
        name, _, folder = spec.partition("=")
        model = load_model_dir(resolve_model(Path(folder)))
        for set_name, items in data.items():
            if not items:
                continue
            fixed: list[list[dict]] = []
            for scale in args.scales.split(","):
                s = scale if scale == "auto" else float(scale)
                if s == "auto" and model.model_config.cell_diameter is None:
                    print(f"{name}: no cell_diameter, skipping --scale auto", file=sys.stderr)
                    continue
                per_image = segment_all(model, items, s)
                if s != "auto":
                    fixed.append(per_image)
                report(results, name, set_name, scale, aggregate(items, per_image))
            if len(fixed) > 1:  # the best fixed zoom per image, chosen by its mSA (an upper bound)
                best = [max(col, key=lambda r: r["mSA"]) for col in zip(*fixed)]
                report(results, name, set_name, "best-of", aggregate(items, best))
    if args.merge:  # earlier runs first, in their order; a figure measured again here replaces them
        merged: dict[str, dict] = {}
        for f in args.merge:
            merged.update(json.loads(Path(f).read_text()))
        results = {**{k: v for k, v in merged.items() if k not in results}, **results}
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(results, indent=1) + "\n")
    if args.write:
        from _sections import replace_section

        replace_section("levers", table(results), ROOT / "docs" / "results.md", marker="accuracy")
    return 0


def report(results: dict, name: str, set_name: str, scale: str, r: dict) -> None:
    results[f"{name}|{set_name}|{scale}"] = r
    print(
        f"{name:24s} {set_name:14s} zoom={scale:7s} AP {r['AP']:5.1f} AP50 {r['AP50']:5.1f} "
        f"mSA {r['mSA']:.3f} count {r['count_ratio']:.2f} zoom {r['zoom']}",
        flush=True,
    )


#: how the table names the models that the recorded figures (docs/training/*.json) call by older names
LABELS = {"old bundled": "first release", "new bundled": "second model (issue 16)"}


def table(results: dict[str, dict]) -> str:
    """Markdown: one row per model and zoom, AP / mSA / count ratio per image set."""
    names = list(dict.fromkeys(k.split("|")[0] for k in results))
    sets = list(dict.fromkeys(k.split("|")[1] for k in results))
    head = "| model | zoom | " + " | ".join(f"{s}: AP / mSA / count" for s in sets) + " |"
    lines = [head, "|" + "---|" * (2 + len(sets))]
    for n in names:
        for scale in dict.fromkeys(k.split("|")[2] for k in results if k.startswith(n + "|")):
            cells = []
            for s in sets:
                r = results.get(f"{n}|{s}|{scale}")
                cells.append("–" if r is None else f"{r['AP']:.1f} / {r['mSA']:.3f} / {r['count_ratio']:.2f}")
            lines.append(f"| {LABELS.get(n, n)} | {scale} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
