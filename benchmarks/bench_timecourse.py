"""`livecell-seg timecourse`: speed on a real LIVECell series and the model's confluence error.

1. **Speed** on the SkBr3 well H3 field 2 series of ``/work/shared/livecell-unlabeled`` (17 real
   704×520 frames, 44-64 h): the whole time course (``run_timecourse``: names → ``predict_paths``
   → measure → aggregate → fit → CSVs, plots, ``index.html``) side by side with ``predict_paths``
   alone on the same frames (the baseline: the network plus label files), and the time course
   from the label images it wrote (``--labels``, no network), interleaved round-robin; medians.
   The share of the time course spent outside the network = 1 − (network seconds, as timed inside
   ``segment_image``) / (total seconds).
2. **Confluence and count vs ground truth** with the model (default: the bundled one):
   the 5 annotated LIVECell sample images (the bundled model's *training* images), and, when
   ``--kaggle`` is given, the 12 densely annotated SH-SY5Y images of the Sartorius Kaggle data held
   out of the bundled model's training (a LIVECell cell type). Predicted through ``segment_frames``
   (the time course's segmentation step), measured by ``measure_labels`` on both sides.

Usage::

    python benchmarks/bench_timecourse.py --write                 # rewrites the timecourse section
    python benchmarks/bench_timecourse.py --model DIR --write     # another model folder
    python benchmarks/bench_timecourse.py --quick                 # smoke test (4 frames, 1 round)

Every model-dependent figure of the section comes from this one command, so it can be re-run
when the bundled model changes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does (see livecell_seg.cli)

ROOT = Path(__file__).resolve().parent.parent
SECTION = "timecourse"
SHARED = ROOT.parent.parent / "shared"  # /work/shared from a worktree /work/wt/<name>
SERIES = "SkBr3_Phase_H3_2_*.tif"


def _default_shared() -> Path:
    for cand in (ROOT.parent / "shared", SHARED, Path("/work/shared")):
        if (cand / "livecell-unlabeled").is_dir():
            return cand
    return Path("/work/shared")


def model_description(model_dir: Path | None) -> str:
    """Which model: folder, architecture, head, and the first 12 hex digits of model.pt's SHA-256."""
    from livecell_seg.model.folder import default_model_dir

    d = Path(model_dir) if model_dir else default_model_dir()
    cfg = json.loads((d / "config.json").read_text())
    m = cfg.get("model", {})
    sha = hashlib.sha256((d / "model.pt").read_bytes()).hexdigest()[:12]
    name = "bundled model" if model_dir is None else f"`{d}`"
    return f"{name} (`{m.get('arch', '?')}`, head `{m.get('head', '?')}`, model.pt sha256 {sha}…)"


# --------------------------------------------------------------------------------------------------
# 1. speed
# --------------------------------------------------------------------------------------------------
def speed(frames: list[Path], model_dir: Path | None, rounds: int, work: Path) -> dict:
    """Interleaved rounds of: time course (network), predict alone, time course from labels."""
    from livecell_seg.inference.runner import predict_paths
    from livecell_seg.timecourse.analysis import run_timecourse

    res: dict[str, list] = {"timecourse": [], "predict": [], "labels": [], "tc_timings": []}
    for r in range(rounds + 1):  # round 0 warms up (imports, first model load); not counted
        t = time.perf_counter()
        tc = run_timecourse(frames, work / f"tc{r}", model_dir, progress=False)
        t_tc = time.perf_counter() - t
        t = time.perf_counter()
        predict_paths(frames, work / f"pred{r}", model_dir, progress=False)
        t_pred = time.perf_counter() - t
        t = time.perf_counter()
        run_timecourse(frames, work / f"lab{r}", labels_dir=work / f"tc{r}" / "segmentation", progress=False)
        t_lab = time.perf_counter() - t
        if r:
            res["timecourse"].append(t_tc)
            res["predict"].append(t_pred)
            res["labels"].append(t_lab)
            res["tc_timings"].append(tc.timings)
        print(
            f"round {r}: timecourse {t_tc:.1f} s, predict {t_pred:.1f} s, from labels {t_lab:.1f} s",
            flush=True,
        )
    res["growth"] = tc.growth
    return res


# --------------------------------------------------------------------------------------------------
# 2. accuracy
# --------------------------------------------------------------------------------------------------
def _predicted_stats(paths: list[Path], model_dir: Path | None, work: Path) -> dict[Path, object]:
    from livecell_seg.io import read_labels
    from livecell_seg.timecourse.analysis import measure_labels, segment_frames

    seg = segment_frames(paths, work, model_dir, progress=False)
    if seg.failed:
        raise RuntimeError(f"could not segment: {seg.failed}")
    return {p: measure_labels(read_labels(seg.labels[p])) for p in paths}


def sample_accuracy(model_dir: Path | None, work: Path) -> list[dict]:
    """Per sample image: ground-truth and predicted count and confluence."""
    from livecell_seg.data import sample_paths
    from livecell_seg.data.coco import annotations_to_labels, find_image, load_coco
    from livecell_seg.timecourse.analysis import measure_labels

    js, images = sample_paths()
    ds = load_coco(js)
    paths = [find_image(images, e["file_name"]) for e in ds.images]
    pred = _predicted_stats(paths, model_dir, work / "sample")
    rows = []
    for e, p in zip(ds.images, paths):
        gt = measure_labels(
            annotations_to_labels(ds.anns_by_image[int(e["id"])], int(e["height"]), int(e["width"]))
        )
        rows.append({"image": p.name, "gt": gt, "pred": pred[p]})
    return sorted(rows, key=lambda r: r["image"])


def kaggle_accuracy(kaggle: Path, model_dir: Path | None, work: Path, n: int | None) -> list[dict]:
    """The densely annotated SH-SY5Y images of the Kaggle data: ground truth vs predicted."""
    from accuracy_levers import SHSY5Y_HELDOUT
    from livecell_seg.io import read_labels
    from livecell_seg.timecourse.analysis import measure_labels

    # the bundled model trained on the other 55 SH-SY5Y images: only the held-out ones are unseen
    types = json.loads((kaggle / "cell_types.json").read_text())
    ids = sorted(k for k in SHSY5Y_HELDOUT if types.get(k) == "shsy5y")[: n or None]
    paths = [kaggle / "images" / f"{i}.png" for i in ids]
    pred = _predicted_stats(paths, model_dir, work / "kaggle")
    return [
        {"image": p.name, "gt": measure_labels(read_labels(kaggle / "labels" / f"{i}.tif")), "pred": pred[p]}
        for i, p in zip(ids, paths)
    ]


def summary(rows: list[dict]) -> dict[str, float]:
    """Mean absolute and mean signed confluence error (percentage points), count error (%)."""
    dc = np.array([r["pred"].confluence - r["gt"].confluence for r in rows])
    dn = np.array([(r["pred"].count - r["gt"].count) / max(r["gt"].count, 1) * 100 for r in rows])
    return {
        "n": len(rows),
        "conf_mae": float(np.abs(dc).mean()),
        "conf_bias": float(dc.mean()),
        "conf_max": float(np.abs(dc).max()),
        "gt_conf_mean": float(np.mean([r["gt"].confluence for r in rows])),
        "count_mape": float(np.abs(dn).mean()),
        "count_bias": float(dn.mean()),
    }


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------
def render(
    sp: dict | None, n_frames: int, sample: list[dict], kag: list[dict] | None, args, model: str
) -> str:
    from livecell_seg.demo_pipeline import machine_info

    info = machine_info()
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python benchmarks/bench_timecourse.py" + (" --quick" if args.quick else "")
    cmd += f" --model {args.model}" if args.model else ""
    cmd += f" --kaggle-n {args.kaggle_n}" if args.kaggle_n else ""
    la = info.get("load_average") or [float("nan")] * 3
    lines = [
        "## timecourse: speed on a real series, confluence vs ground truth",
        "",
        f"{when}; CPU: {info.get('cpu')}, {info.get('cores')} cores (shared; 1-min load average {la[0]:.1f} at the start); "
        f"torch {info.get('torch')}. Model: {model}.",
        "",
    ]
    if sp is not None:
        med = {k: statistics.median(sp[k]) for k in ("timecourse", "predict", "labels")}
        tt = sp["tc_timings"]
        net = statistics.median([t["network_s"] for t in tt])
        share_out = statistics.median([1 - t["network_s"] / t["total_s"] for t in tt])
        parts = {
            k: statistics.median([t[k] for t in tt])
            for k in ("segment_s", "measure_fit_s", "csv_s", "report_s")
        }
        g = next((g for g in sp["growth"] if g["metric"] == "count"), None)
        lines += [
            f"**Speed**: the SkBr3 H3 field 2 series of `livecell-unlabeled` ({n_frames} real 704×520 frames), "
            f"{len(sp['timecourse'])} interleaved rounds after a warm-up round, medians, in one process:",
            "",
            "| run | seconds | images/s | vs predict alone |",
            "|---|---:|---:|---:|",
            f"| `predict_paths` alone (baseline: network + label files) | {med['predict']:.1f} | {n_frames / med['predict']:.2f} | 1.00× |",
            f"| whole time course (`run_timecourse`: predict + measure + fit + CSVs + plots + index.html) | {med['timecourse']:.1f} | {n_frames / med['timecourse']:.2f} | {med['timecourse'] / med['predict']:.2f}× |",
            f"| time course from the label images (`--labels`, no network) | {med['labels']:.1f} | {n_frames / med['labels']:.2f} | {med['labels'] / med['predict']:.2f}× |",
            "",
            f"Share of the whole time course spent outside the network: **{100 * share_out:.0f}%** "
            f"(network {net:.1f} s of {med['timecourse']:.1f} s; segmentation step incl. reading and writing "
            f"{parts['segment_s']:.1f} s, measure + aggregate + fit {parts['measure_fit_s']:.2f} s, "
            f"CSVs {parts['csv_s']:.3f} s, plots + index.html {parts['report_s']:.1f} s).",
        ]
        if g is not None:
            lines += [
                "",
                f"Count doubling time of this well from this run: {g['doubling_time_h']:.1f} h "
                f"[95% CI {g['doubling_time_ci_low']:.1f}, {g['doubling_time_ci_high']:.1f}], R² {g['r2']:.2f}, "
                f"{g['n_used']} of {g['n_points']} time points ({'meaningful' if g['meaningful'] else g['reason']}).",
            ]
        lines.append("")
    s = summary(sample)
    lines += [
        "**Confluence and count vs ground truth** (percentage points of the image area; ground truth = the annotations' "
        "label image, measured by the same `measure_labels`). The 5 LIVECell sample images are the bundled "
        "model's *training* images, so these are training-set figures:",
        "",
        "| image | cells (truth) | cells (model) | confluence % (truth) | confluence % (model) | error (pp) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in sample:
        gt, pr = r["gt"], r["pred"]
        lines.append(
            f"| {r['image']} | {gt.count} | {pr.count} | {gt.confluence:.1f} | {pr.confluence:.1f} | {pr.confluence - gt.confluence:+.1f} |"
        )
    lines += [
        "",
        f"Sample images: mean absolute confluence error **{s['conf_mae']:.1f} pp** (mean {s['conf_bias']:+.1f} pp, "
        f"largest {s['conf_max']:.1f} pp; true confluence {s['gt_conf_mean']:.0f}% on average); "
        f"cell count error {s['count_mape']:.0f}% on average (mean {s['count_bias']:+.0f}%).",
    ]
    if kag:
        k = summary(kag)
        lines += [
            "",
            f"Kaggle SH-SY5Y ({k['n']} densely annotated images of the shared `kaggle-sartorius/`, the ones held "
            "out of the bundled model's training data (`SHSY5Y_HELDOUT` of `benchmarks/accuracy_levers.py`)): "
            f"mean absolute confluence error **{k['conf_mae']:.1f} pp** (mean {k['conf_bias']:+.1f} pp, largest "
            f"{k['conf_max']:.1f} pp; true confluence {k['gt_conf_mean']:.0f}% on average); cell count error "
            f"{k['count_mape']:.0f}% on average (mean {k['count_bias']:+.0f}%). (Re-check that a new model was "
            "not trained on these images before calling them held out.)",
        ]
    lines += ["", f"Command: `{cmd} --write`"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 frames, 1 round, 8 Kaggle images (smoke test)")
    ap.add_argument("--write", action="store_true", help="rewrite the timecourse section of BENCHMARKS.md")
    ap.add_argument("--model", type=Path, help="model folder (default: the bundled model)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    ap.add_argument(
        "--shared", type=Path, default=None, help="folder holding livecell-unlabeled/ and kaggle-sartorius/"
    )
    ap.add_argument("--kaggle-n", type=int, default=None, help="use only the first N SH-SY5Y Kaggle images")
    ap.add_argument("--no-kaggle", action="store_true", help="skip the Kaggle images")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    shared = args.shared or _default_shared()
    frames = sorted((shared / "livecell-unlabeled").glob(SERIES))
    if args.quick:
        frames, args.rounds = frames[:4], 1
        args.kaggle_n = args.kaggle_n or 8
    model = model_description(args.model)
    with tempfile.TemporaryDirectory(prefix="bench-timecourse-") as tmp:
        work = Path(tmp)
        sp = speed(frames, args.model, args.rounds, work) if frames else None
        if not frames:
            print(f"no {SERIES} in {shared / 'livecell-unlabeled'}: speed part skipped", file=sys.stderr)
        sample = sample_accuracy(args.model, work)
        kaggle = shared / "kaggle-sartorius"
        kag = None
        if not args.no_kaggle and (kaggle / "cell_types.json").is_file():
            kag = kaggle_accuracy(kaggle, args.model, work, args.kaggle_n)
    text = render(sp, len(frames), sample, kag, args, model)
    sys.path.insert(0, str(Path(__file__).parent))
    from _sections import publish

    publish(SECTION, text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
