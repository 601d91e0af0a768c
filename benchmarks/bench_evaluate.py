"""Benchmark `livecell-seg evaluate` against plain pycocotools on LIVECell-size synthetic data.

Ground truth: LIVECell-like COCO polygons from ``data.synth.synthetic_coco`` (704x520, 8 cell types).
Predictions: the rasterized ground truth, perturbed (random 0-2 px shift, 10 % of cells dropped,
false positives added), written as label TIFFs with ``maps/<stem>.npy`` foreground maps (scores).

* **ours**: ``evaluation.evaluate`` end to end (read labels + maps, rasterize the GT, matching
  metrics, vectorized RLE, faster-coco-eval COCOeval, per-cell-type re-evaluation).
* **plain pycocotools**: read labels + maps, ``pycocotools.mask.encode`` of every instance mask,
  ``COCO.loadRes`` + pycocotools ``COCOeval`` with the LIVECell parameters (AP only).

Both AP values are checked to agree. Two scenarios: typical LIVECell density (~250 cells/image)
and dense images (1,000-2,000 cells, LIVECell's maximum). Per-image times are extrapolated to the
1,564 images of the LIVECell test set.

    python benchmarks/bench_evaluate.py [--quick] [--write]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from livecell_seg.data.coco import annotations_to_labels  # noqa: E402
from livecell_seg.data.synth import synthetic_coco  # noqa: E402
from livecell_seg.evaluation import metrics as M  # noqa: E402
from livecell_seg.evaluation.evaluate import evaluate  # noqa: E402
from livecell_seg.inference.postprocess import instance_scores, load_maps, save_maps  # noqa: E402
from livecell_seg.io import read_labels, write_labels  # noqa: E402

N_TEST = 1564


def make_predictions(d: dict, out: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    by_img: dict[int, list] = {}
    for a in d["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    for im in d["images"]:
        h, w = im["height"], im["width"]
        g = annotations_to_labels(by_img.get(im["id"], []), h, w).astype(np.int32)
        p = np.roll(g, tuple(rng.integers(0, 3, size=2)), axis=(0, 1))
        ids = np.unique(p)[1:]
        p[np.isin(p, rng.choice(ids, size=len(ids) // 10, replace=False))] = 0
        k = int(p.max()) + 1
        for _ in range(max(1, len(ids) // 20)):  # false positives
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            sl = p[y : y + 6, x : x + 6]
            sl[sl == 0] = k
            k += 1
        fg = np.where(p > 0, rng.uniform(0.3, 1.0, size=k)[p], 0.05).astype(np.float32)
        stem = Path(im["file_name"]).stem
        write_labels(out / f"{stem}.tif", p)
        save_maps(out / "maps" / f"{stem}.npy", fg[None], "fg")


def plain_pycocotools(d: dict, pred: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, AP) the usual way: per-instance mask.encode + pycocotools COCOeval
    with LIVECell's parameters (the test suite's independent reference, ``tests/conftest.py``)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import pycocotools_eval, pycocotools_results

    t0, c0 = time.perf_counter(), time.process_time()
    ids, labels, scores = [], [], []
    for im in d["images"]:
        stem = Path(im["file_name"]).stem
        lab = read_labels(pred / f"{stem}.tif")
        maps, _ = load_maps(pred / "maps" / f"{stem}.npy")
        ids.append(im["id"])
        labels.append(lab)
        scores.append(instance_scores(lab, maps[0]))
    ev = pycocotools_eval(
        json.loads(json.dumps(d)), pycocotools_results(ids, labels, scores), summarize=False
    )
    # summarize()'s first AP is at maxDets=100; the LIVECell AP (2000 detections) from eval:
    prec = ev.eval["precision"][:, :, :, 0, 2]
    return time.perf_counter() - t0, time.process_time() - c0, 100 * float(prec[prec > -1].mean())


def matching_cost(d: dict, pred: Path) -> tuple[float, float]:
    """Median ms per image: instance_metrics (sparse IoU + matching at 10 thresholds + semantic)
    and a dense per-object IoU matrix baseline (one boolean mask pair per overlapping candidate)."""
    by_img: dict[int, list] = {}
    for a in d["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    ours, naive = [], []
    for im in d["images"][:3]:
        g = annotations_to_labels(by_img.get(im["id"], []), im["height"], im["width"])
        p = read_labels(pred / (Path(im["file_name"]).stem + ".tif"))
        t0 = time.perf_counter()
        M.instance_metrics(g, p)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for v in np.unique(g)[1:]:  # the per-object loop the sparse histogram replaces
            mg = g == v
            for q in np.unique(p[mg]):
                if q:
                    mp = p == q
                    _ = (mg & mp).sum() / (mg | mp).sum()
        naive.append(time.perf_counter() - t0)
    return 1000 * statistics.median(ours), 1000 * statistics.median(naive)


def scenario(name: str, n_images: int, density: float, seed: int, min_cells: int, tmp: Path) -> dict:
    d = synthetic_coco(n_images * (4 if min_cells else 1), seed=seed, density_scale=density)
    if min_cells:  # keep the densest images
        counts: dict[int, int] = {}
        for a in d["annotations"]:
            counts[a["image_id"]] = counts.get(a["image_id"], 0) + 1
        keep = sorted(counts, key=lambda i: -counts[i])[:n_images]
        d["images"] = [im for im in d["images"] if im["id"] in keep]
        d["annotations"] = [a for a in d["annotations"] if a["image_id"] in keep]
    n_cells = len(d["annotations"])
    gt = tmp / f"{name}.json"
    gt.write_text(json.dumps(d))
    pred = tmp / f"pred_{name}"
    make_predictions(d, pred, seed)
    t0, c0 = time.perf_counter(), time.process_time()
    r = evaluate(gt, pred)
    t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0
    t_plain, c_plain, ap_plain = plain_pycocotools(d, pred)
    ap_ours = r.metrics["AP"]
    assert abs(ap_ours - ap_plain) < 1e-3, (ap_ours, ap_plain)
    m_ours, m_naive = matching_cost(d, pred)
    n = len(d["images"])
    return {
        "scenario": name,
        "images": n,
        "cells_per_image": n_cells / n,
        "ours_s": t_ours,
        "ours_coco_s": r.metrics["timing_s"]["coco_eval"],
        "ours_match_s": r.metrics["timing_s"]["matching_metrics"],
        "plain_s": t_plain,
        "ours_cpu_s": c_ours,
        "plain_cpu_s": c_plain,
        "ratio": t_plain / t_ours,
        "ap": ap_ours,
        "ap_plain": ap_plain,
        "ours_1564_min": t_ours / n * N_TEST / 60,
        "plain_1564_min": t_plain / n * N_TEST / 60,
        "match_ms": m_ours,
        "match_naive_ms": m_naive,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (< 1 min)")
    ap.add_argument("--write", action="store_true", help="update the evaluate section of BENCHMARKS.md")
    ap.add_argument("--typical", type=int, default=16, help="typical-density images (default 16)")
    ap.add_argument("--dense", type=int, default=2, help="dense images (default 2)")
    args = ap.parse_args(argv)
    if args.quick:
        specs = [("typical", 3, 0.5, 0, 0), ("dense", 1, 2.0, 1, 1)]
    else:
        specs = [("typical", args.typical, 1.0, 0, 0), ("dense", args.dense, 5.0, 1, 1)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            row = scenario(*spec, tmp=Path(tmp))
            rows.append(row)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    cmd = "python benchmarks/bench_evaluate.py" + (" --quick" if args.quick else "")
    lines = [
        "## evaluate: LIVECell-protocol evaluation vs plain pycocotools",
        "",
        f"`{cmd}` on {platform.processor() or platform.machine()}, 2-core shared CPU box "
        f"({time.strftime('%Y-%m-%d')}). Synthetic LIVECell-format test images (704x520, polygons from "
        "`data.synth.synthetic_coco`), predictions = perturbed ground truth with fg maps for scores. "
        "*ours* = `evaluation.evaluate` end to end (labels+maps I/O, GT rasterization, matching metrics, "
        "vectorized RLE, faster-coco-eval, per-cell-type re-evaluation); *plain* = per-instance "
        "`pycocotools.mask.encode` + pycocotools `COCOeval` with the same parameters (AP only). "
        "AP agrees to < 0.001 in every row. Times are wall-clock seconds (the box is shared, so the CPU "
        "seconds of this process are given too); 1,564-image times are wall per-image times x 1,564 "
        "(extrapolated, not run). *typical* is close to LIVECell's mean density (~320 cells/image); "
        "*dense* is the worst case (every image at LIVECell's maximum, ~2,000 cells): COCO matching is "
        "O(detections x cells) per image, so the real test set lands near the typical row. "
        "Note: pycocotools' `summarize()` prints its first AP at maxDets=100 whatever `params.maxDets` "
        "says; both columns read the AP at 2,000 detections from `eval['precision']`.",
        "",
        "| scenario | images | cells/image | ours (s) | of which COCOeval (s) | plain pycocotools (s) | speed-up | "
        "CPU s ours / plain | ours, 1,564 images (min) | plain, 1,564 images (min) | AP |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['images']} | {r['cells_per_image']:.0f} | {r['ours_s']:.2f} | "
            f"{r['ours_coco_s']:.2f} | {r['plain_s']:.2f} | {r['ratio']:.1f}x | "
            f"{r['ours_cpu_s']:.1f} / {r['plain_cpu_s']:.1f} | {r['ours_1564_min']:.1f} | "
            f"{r['plain_1564_min']:.1f} | {r['ap']:.2f} |"
        )
    lines += [
        "",
        "Matching metrics per image (`metrics.instance_metrics`: sparse IoU histogram, optimal matching at "
        "10 IoU thresholds, Dice/IoU) vs a per-object IoU loop (median of 3 images):",
        "",
        "| scenario | instance_metrics (ms/image) | per-object IoU loop (ms/image) |",
        "|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['match_ms']:.1f} | {r['match_naive_ms']:.0f} |")
    from _sections import publish

    publish("evaluate", "\n".join(lines), args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
