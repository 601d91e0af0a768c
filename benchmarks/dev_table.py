"""The dev table (issue 23): a model on the 5 official LIVECell *test* images of ``livecell-dev``.

Per dev image, with the project's own ``segment_image`` (the code path of ``predict``):

- every fixed zoom of ``--zooms`` (default 0.5, 0.7, 1, 1.4) and the model's own choice (its
  ``predict_scale``: a number, ``auto`` or ``size``) and any other rule given with ``--rules``;
- F1@0.5, mask AP (LIVECell protocol, this image alone), mSA, count ratio (predicted / true cells)
  and confluence error (predicted minus true percentage of the image covered by cells);
- the *best* zoom by F1@0.5 (an upper bound: it looks at the truth) against the zoom each rule chose.

Then the same rules over all 5 images (mask AP of the 5 together, mean confluence error) and, with
``--kaggle``, over the 12 Kaggle SH-SY5Y images that no model here trains on (the held-out column).

The dev images are for *choosing* (zoom rules, parameters, checkpoints, recipes) and for the
"dev" table of docs/results.md; they are never trained or tuned on (../shared/livecell-dev/README.md). ::

    python benchmarks/dev_table.py                                   # the bundled model
    python benchmarks/dev_table.py --model runs/x/model --rules auto,size --json-out dev.json
    python benchmarks/dev_table.py --write                           # docs/results.md's dev section

Runs on 1–2 CPU cores in a few minutes (4 fixed zooms + the rules, 5 + 12 images).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
DEV = SHARED / "livecell-dev"
KAGGLE = SHARED / "kaggle-sartorius"
SHSY5Y_HELDOUT = [
    "042c17cd9143", "1974fbb27dcf", "25fc36476862", "42d8ecbc95a1", "5b8e5ee1ec61", "68780361eded",
    "815de003cb5b", "8f6d3deadc55", "ad12c1357f63", "bb3520da4cce", "de35454a3346", "f653c5eec0f8",
]  # fmt: skip


def dev_set(root: Path = DEV) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(stem, raw image, ground-truth labels) of the dev images, sorted by name."""
    from livecell_seg.data.coco import annotations_to_labels, find_image, load_coco
    from livecell_seg.io import read_image

    ds = load_coco(root / "livecell_coco_dev.json")
    out = []
    for im in sorted(ds.images, key=lambda m: m["file_name"]):
        img = read_image(find_image(root / "images", im["file_name"]))
        gt = annotations_to_labels(ds.anns_by_image.get(int(im["id"]), []), *img.shape)
        out.append((Path(im["file_name"]).stem, img, gt))
    return out


def kaggle_set() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The 12 held-out Kaggle SH-SY5Y images (empty when the shared data is absent)."""
    from livecell_seg.io import read_image, read_labels

    if not KAGGLE.is_dir():
        return []
    return [
        (i, read_image(KAGGLE / "images" / f"{i}.png"), read_labels(KAGGLE / "labels" / f"{i}.tif"))
        for i in SHSY5Y_HELDOUT
    ]


def score_image(gt: np.ndarray, labels: np.ndarray, scores: dict[int, float]) -> dict:
    """F1@0.5, AP, mSA, count ratio and confluence error of one segmentation."""
    from livecell_seg.evaluation.metrics import coco_mask_ap, match_instances, mean_segmentation_accuracy

    m = match_instances(gt, labels, 0.5)
    n_true = int(len(np.unique(gt)) - (0 in gt))
    n_pred = int(len(np.unique(labels)) - (0 in labels))
    return {
        "F1": float(m.f1),
        "AP": float(coco_mask_ap([gt], [labels], [scores])["AP"]),  # percent
        "mSA": float(mean_segmentation_accuracy(gt, labels)),
        "count_ratio": n_pred / max(1, n_true),
        "confluence_err": 100.0 * (float((labels > 0).mean()) - float((gt > 0).mean())),
        "n_pred": n_pred,
        "n_true": n_true,
    }


def run_rule(model, img: np.ndarray, rule: str) -> tuple[object, float]:
    """Segment ``img`` with a zoom rule (a number, ``auto``, ``size`` or ``default``); (result, seconds)."""
    from livecell_seg.inference.predict import segment_image

    scale = None if rule == "default" else (rule if not _is_number(rule) else float(rule))
    t = time.perf_counter()
    res = segment_image(model, img, scale=scale)
    return res, time.perf_counter() - t


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def evaluate_model(model, items, zooms: list[str], rules: list[str]) -> dict:
    """Per image and per zoom/rule: scores; plus the pooled figures per zoom/rule."""
    from livecell_seg.evaluation.metrics import coco_mask_ap

    per_image: dict[str, dict[str, dict]] = {}
    kept: dict[str, list] = {}
    for stem, img, gt in items:
        row: dict[str, dict] = {}
        for rule in [*zooms, *rules]:
            res, secs = run_rule(model, img, rule)
            r = score_image(gt, res.labels, res.scores)
            r.update(zoom=round(float(res.scale), 3), seconds=round(secs, 3))
            row[rule] = r
            kept.setdefault(rule, []).append((gt, res.labels, res.scores))
            print(
                f"  {stem[:34]:34s} {rule:>7s}: zoom {r['zoom']:<5g} F1 {r['F1']:.3f} AP {r['AP']:5.1f} "
                f"mSA {r['mSA']:.3f} count {r['count_ratio']:.2f} conf {r['confluence_err']:+5.1f} "
                f"{secs:.2f}s",
                file=sys.stderr,
                flush=True,
            )
        best = max(zooms or rules, key=lambda z: row[z]["F1"])
        row["best"] = {**row[best], "rule": best}
        per_image[stem] = row
    pooled = {}
    for rule, triples in kept.items():
        gts, labs, scs = zip(*triples)
        ap = coco_mask_ap(list(gts), list(labs), list(scs))
        rows = [per_image[s][rule] for s in per_image]
        pooled[rule] = {
            "AP": float(ap["AP"]),
            "AP50": float(ap["AP50"]),
            "mSA": float(np.mean([r["mSA"] for r in rows])),
            "F1": float(np.mean([r["F1"] for r in rows])),
            "median_count_ratio": float(np.median([r["count_ratio"] for r in rows])),
            "confluence_mae": float(np.mean([abs(r["confluence_err"]) for r in rows])),
            "confluence_max": float(np.max([abs(r["confluence_err"]) for r in rows])),
            "s_per_image": float(np.median([r["seconds"] for r in rows])),
        }
    return {"per_image": per_image, "pooled": pooled}


def dev_markdown(name: str, res: dict, zooms: list[str], rules: list[str]) -> str:
    """Per-image table (each rule's zoom and F1 against the best zoom) and the pooled rows."""
    lines = [
        "| dev image | cells | best zoom (F1) | "
        + " | ".join(f"`{r}`: zoom / F1 / AP / count / confluence ± " for r in rules)
        + " |",
        "|---|---|---|" + "---|" * len(rules),
    ]
    for stem, row in res["per_image"].items():
        b = row["best"]
        cells = []
        for r in rules:
            x = row[r]
            flag = "" if b["F1"] - x["F1"] <= 0.05 else " ✗"
            cells.append(
                f"{x['zoom']:g} / {x['F1']:.2f}{flag} / {x['AP']:.1f} / {x['count_ratio']:.2f} / "
                f"{x['confluence_err']:+.1f}"
            )
        lines.append(
            f"| {stem} | {b['n_true']} | {b['zoom']:g} ({b['F1']:.2f}) | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        f"| {name}, all 5 dev images | mask AP | AP50 | mSA | F1@0.5 | median count ratio | confluence error, mean (max) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in [*zooms, *rules]:
        p = res["pooled"][r]
        label = f"zoom {r}" if _is_number(r) else f"`{r}`"
        lines.append(
            f"| {label} | {p['AP']:.1f} | {p['AP50']:.1f} | {p['mSA']:.3f} | {p['F1']:.3f} | "
            f"{p['median_count_ratio']:.2f} | {p['confluence_mae']:.1f} ({p['confluence_max']:.1f}) |"
        )
    return "\n".join(lines)


def kaggle_markdown(pooled: dict) -> str:
    """One line per rule: the 12 held-out Kaggle SH-SY5Y images."""
    return "\n".join(
        f"Held-out Kaggle SH-SY5Y (12 images), `{r}`: mask AP {p['AP']:.1f}, mSA {p['mSA']:.3f}, "
        f"F1@0.5 {p['F1']:.3f}, median count ratio {p['median_count_ratio']:.2f}, confluence error "
        f"{p['confluence_mae']:.1f} ({p['confluence_max']:.1f}) points."
        for r, p in pooled.items()
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    ap.add_argument("--name", default="model")
    ap.add_argument("--zooms", default="0.5,0.7,1,1.4", help="fixed zooms tried on every image")
    ap.add_argument(
        "--rules", default="default", help="zoom rules: default (the model's), auto, size, or numbers"
    )
    ap.add_argument("--kaggle", action="store_true", help="also score the 12 held-out Kaggle SH-SY5Y images")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--write", action="store_true", help="rewrite the dev section of docs/results.md")
    args = ap.parse_args(argv)

    import torch

    from livecell_seg.model.folder import load_model_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    if not DEV.is_dir():
        print(f"dev_table: {DEV} not found (the dev images live beside the repository)", file=sys.stderr)
        return 2
    model = load_model_dir(args.model)
    zooms = [z.strip() for z in args.zooms.split(",") if z.strip()]
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    out = {"model": str(model.path), "predict_scale": model.model_config.predict_scale}
    out["dev"] = evaluate_model(model, dev_set(), zooms, rules)
    if args.kaggle:
        items = kaggle_set()
        if items:
            out["kaggle_shsy5y"] = evaluate_model(model, items, [], rules)["pooled"]
    text = dev_markdown(args.name, out["dev"], zooms, rules)
    if "kaggle_shsy5y" in out:
        text += "\n\n" + kaggle_markdown(out["kaggle_shsy5y"])
    text += f"\n\nCommand: `python benchmarks/dev_table.py {shlex.join(argv if argv is not None else sys.argv[1:])}`"
    print(text)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(out, indent=1) + "\n")
    if args.write:
        from _sections import replace_section

        replace_section("dev", text, ROOT / "docs" / "results.md", marker="accuracy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
