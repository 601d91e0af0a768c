"""Accuracy of trained models on the real LIVECell sample, with the project's own code paths.

Two questions, answered honestly:

1. *How well does the recipe generalize to wells it never saw?* Models trained on 3 sample images
   (``configs/heldout_sample.yaml``, one per head) are scored on the 2 images of two other wells.
2. *How does the bundled model do on the sample?* It was trained on all 5 images, so this is a
   training-set figure, labelled as such.

Every row runs ``runner.predict_paths`` (maps saved, so instances are scored by their mean
foreground probability) and ``evaluation.evaluate`` (LIVECell protocol). Optionally it tunes the
post-processing of a model folder on held-out maps (``--tune-into``), which is how the bundled
model's ``postprocess.json`` was made.

    python benchmarks/accuracy_sample.py --write            # rewrites the accuracy table of docs/results.md
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
HELDOUT = ["MCF7_Phase_F4_2_00d00h00m_4", "BT474_Phase_C3_1_01d04h00m_4"]
HEADS = ["fg", "fg+boundary", "fg+dist"]
KEYS = ["AP", "AP50", "AP75", "AFNR", "mSA", "SA50", "F1_50"]


def subset_json(stems: list[str] | None, out: Path) -> tuple[Path, list[Path]]:
    """Write a COCO json of the sample restricted to ``stems``; return it and the image paths."""
    from livecell_seg.data import sample_paths
    from livecell_seg.data.coco import find_image, load_coco

    js, images = sample_paths()
    ds = load_coco(js)
    ims = [im for im in ds.images if stems is None or Path(im["file_name"]).stem in stems]
    out.write_text(json.dumps(ds.to_coco_dict([int(im["id"]) for im in ims])))
    return out, [find_image(images, im["file_name"]) for im in ims]


def score(model_dir: Path, stems: list[str] | None, *, tta: bool, params=None, work: Path) -> dict:
    """predict + evaluate ``model_dir`` on the sample images ``stems``; LIVECell-protocol metrics."""
    from livecell_seg.evaluation.evaluate import evaluate
    from livecell_seg.inference.runner import predict_paths

    tag = f"{model_dir.name}-{len(stems or [])}-{tta}-{int(time.time() * 1e6)}"
    gt, paths = subset_json(stems, work / f"{tag}.json")
    pred = work / tag
    t = time.perf_counter()
    predict_paths(paths, pred, model_dir, params=params, save_maps=True, tta=tta, progress=False)
    sec = (time.perf_counter() - t) / len(paths)
    res = evaluate(gt, pred, only_predicted=True)
    m = {k: res.metrics.get(k) for k in KEYS}
    m["s_per_image"] = sec
    m["n_pred"], m["n_true"] = res.metrics["n_pred_instances"], res.metrics["n_gt_instances"]
    m["per_cell_type"] = {
        t: {k: v.get(k) for k in ("AP", "AP50", "mSA")} for t, v in res.metrics["per_cell_type"].items()
    }
    return m


def tune_on(model_dir: Path, stems: list[str], work: Path):
    """Tune post-processing on ``model_dir``'s maps of the sample images ``stems``."""
    from livecell_seg.data.coco import annotations_to_labels, load_coco
    from livecell_seg.inference.tiling import predict_maps
    from livecell_seg.inference.tuning import tune_params
    from livecell_seg.io import read_image
    from livecell_seg.model.folder import load_model_dir

    gt_json, paths = subset_json(stems, work / "tune.json")
    ds = load_coco(gt_json)
    model = load_model_dir(model_dir)
    maps, gts = [], []
    for im, p in zip(ds.images, paths):
        img = read_image(p)
        maps.append(predict_maps(model, img))
        gts.append(annotations_to_labels(ds.anns_by_image[int(im["id"])], *img.shape))
    best, best_score, hist = tune_params(maps, gts, model.head, grid="small")
    return best, best_score, len(hist)


def fmt(v, pct: bool) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{v:.1f}" if pct else f"{v:.3f}"


def row(name: str, m: dict) -> str:
    cells = [fmt(m[k], k in ("AP", "AP50", "AP75")) for k in KEYS]
    return f"| {name} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--heldout-runs", default=str(ROOT / "runs" / "heldout"), help="folder of <head>/model folders"
    )
    ap.add_argument("--bundled", default=None, help="bundled model folder (default: the package's)")
    ap.add_argument(
        "--bundled-name",
        default="current bundled model",
        help="how the table names the --bundled model (say which release it is)",
    )
    ap.add_argument(
        "--long-run",
        default=str(ROOT / "runs" / "heldout_long" / "fg+dist"),
        help="run folder of the shipped recipe's full step budget on the 3 training images (scored if "
        "present; its last checkpoint is exported to RUN/last_model, as the bundled model uses its last)",
    )
    ap.add_argument(
        "--tune-into",
        default=None,
        help="tune on the held-out maps of the long run (else the fg+dist run); write postprocess.json here",
    )
    ap.add_argument("--write", action="store_true", help="rewrite the accuracy table of docs/results.md")
    ap.add_argument("--json-out", default=str(ROOT / "docs" / "accuracy_sample.json"))
    args = ap.parse_args(argv)

    from livecell_seg.inference.postprocess import PostprocessParams
    from livecell_seg.model.folder import default_model_dir

    bundled = Path(args.bundled) if args.bundled else default_model_dir()
    results: dict[str, dict] = {}
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for head in HEADS:
            mdir = Path(args.heldout_runs) / head / "model"
            if not (mdir / "model.pt").is_file():
                print(f"skip {head}: no {mdir}", file=sys.stderr)
                continue
            r = score(mdir, HELDOUT, tta=False, params=PostprocessParams(), work=work)
            results[f"heldout/{head}"] = r
            lines.append(row(f"`{head}`, held-out wells, default post-processing", r))
            r = score(mdir, HELDOUT, tta=True, params=PostprocessParams(), work=work)
            results[f"heldout/{head}/tta"] = r
            lines.append(row(f"`{head}`, held-out wells, default post-processing, 8× TTA", r))
            best, s, n = tune_on(mdir, HELDOUT, work)
            r = score(mdir, HELDOUT, tta=False, params=best, work=work)
            r["tuned_params"] = best.to_dict()
            results[f"heldout/{head}/tuned"] = r
            lines.append(row(f"`{head}`, held-out wells, tuned on these 2 images (optimistic)", r))
            print(f"{head}: tuned {best.to_dict()} AP {s:.1f} ({n} evaluations)")
        long_dir = Path(args.long_run)
        if (long_dir / "checkpoints" / "last.ckpt").is_file():
            from livecell_seg.training.trainer import export_last

            long_dir = export_last(long_dir)
        tune_dir = Path(args.heldout_runs) / "fg+dist" / "model"
        if (long_dir / "model.pt").is_file():
            tune_dir = long_dir
            steps = json.loads((long_dir / "config.json").read_text())["optim"]["max_steps"]
            for tta in (False, True):
                r = score(long_dir, HELDOUT, tta=tta, params=PostprocessParams(), work=work)
                results[f"heldout_long/fg+dist{'/tta' if tta else ''}"] = r
                lines.append(
                    row(
                        f"`fg+dist`, {steps} steps (the first release's recipe), held-out wells"
                        + (", 8× TTA" if tta else ""),
                        r,
                    )
                )
        if args.tune_into and (tune_dir / "model.pt").is_file():
            from livecell_seg.io import write_json_atomic

            best, s, n = tune_on(tune_dir, HELDOUT, work)
            d = {
                **best.to_dict(),
                "head": "fg+dist",
                "tuning": {
                    "metric": "mask AP",
                    "score": s,
                    "tuned_on": f"maps of {tune_dir.resolve().relative_to(ROOT) if tune_dir.resolve().is_relative_to(ROOT) else tune_dir} "
                    "on the 2 held-out sample images "
                    + ", ".join(HELDOUT)
                    + ": images that network never saw",
                    "grid": "small",
                    "evaluations": n,
                },
            }
            write_json_atomic(Path(args.tune_into) / "postprocess.json", d)
            print(f"wrote {Path(args.tune_into) / 'postprocess.json'}: {best.to_dict()} (AP {s:.1f})")
        if (bundled / "model.pt").is_file():
            for tta in (False, True):
                r = score(bundled, None, tta=tta, work=work)
                results[f"bundled/all5{'/tta' if tta else ''}"] = r
                lines.append(
                    row(
                        f"{args.bundled_name}, all 5 sample images (**seen in training**){', 8× TTA' if tta else ''}",
                        r,
                    )
                )
    header = (
        "| model, images | AP | AP50 | AP75 | AFNR | mSA | SA50 | F1@0.5 |\n|---|---|---|---|---|---|---|---|"
    )
    table = header + "\n" + "\n".join(lines)
    print(table)
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(results, indent=2, default=float) + "\n")
    if args.write:
        from _sections import replace_section

        replace_section("table", table, ROOT / "docs" / "results.md", marker="accuracy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
