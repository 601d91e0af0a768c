"""``livecell-seg evaluate``: LIVECell-protocol evaluation of predicted instances, tables and HTML report.

Two kinds of predictions:

* a **folder of label images** ``PRED/<image file stem>.tif`` (what ``livecell-seg predict`` writes).
  A missing file counts as an empty prediction (with a warning). Scores for AP: when
  ``PRED/maps/<stem>.npy`` exists (``predict --save-maps``), the mean foreground probability of each
  instance (``postprocess.instance_scores``); otherwise every instance scores 1.0 (COCOeval then
  keeps the label order, so AP is that of an unranked detector - stated in ``metrics.json``).
* a **COCO results json** (list of ``{image_id, category_id, segmentation, score}``, RLE or polygons;
  the detectron2 / LIVECell format).

Which ground truth is used where (also written into ``metrics.json``):

* **COCO AP / AFNR** use the raw annotations of the json, polygons overlapping as they are and
  their ``area`` field for the area ranges, exactly as the LIVECell paper (pycocotools on the json).
  Only parts that pycocotools cannot rasterize (< 3 points) are dropped.
* **Matching and semantic metrics** (mSA, SA50, F1/precision/recall at IoU 0.5, PQ, Dice, IoU) need
  non-overlapping instances: the annotations rasterized by ``data.coco.annotations_to_labels``
  (overlaps go to the smaller cell, exact duplicate contours dropped). For a results json the
  predictions are rasterized too (detections with score >= ``score_threshold``, higher score on top).

Aggregation: AP over all images at once (COCO); mSA and SA50 averaged over images (micro-sam);
precision, recall, F1 and PQ from the TP/FP/FN pooled over images (StarDist); Dice and IoU from the
pooled foreground pixels. Per cell type (from the file names), every metric is recomputed on that
type's images.
"""

from __future__ import annotations

import html
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.coco import (
    annotations_to_labels,
    cell_type_of,
    checked_rle,
    find_image,
    load_coco,
    parse_id,
    polygon_parts,
    short_repr,
)
from ..errors import InputFileError, LivecellError
from ..io import atomic_path, normalize_image, read_image, read_json, read_labels, write_json_atomic
from ..options import check_finite
from ..progress import Progress, progress_bar
from ..reports import figure_png, format_metric, html_table, img_tag
from . import metrics as M

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# published numbers
# ----------------------------------------------------------------------------------------------
PAPER_CITATION = (
    "Edlund, C. et al. LIVECell - A large-scale dataset for label-free live cell segmentation. "
    "Nature Methods 18, 1038-1045 (2021); per-cell-type AP: models trained and tested on one cell "
    "type (LIVECell paper); mSA/SA50: micro-sam (Archit et al., Nature Methods 2025) benchmark."
)

#: mask AP (%) of the paper's models on the LIVECell test set (trained on all of LIVECell)
PAPER_OVERALL: dict[str, dict[str, float]] = {
    "LIVECell anchor-free (CenterMask)": {"AP": 47.78, "AP50": 81.63, "AP75": 50.90},
    "LIVECell anchor-based (Cascade Mask R-CNN, ResNeSt-200)": {"AP": 47.89},
    "Cellpose 'livecell' model (micro-sam benchmark)": {"mSA": 0.418, "SA50": 0.687},
    "micro-sam LIVECell specialist ViT-B (decoder instances)": {"mSA": 0.430, "SA50": 0.706},
    "micro-sam LIVECell specialist ViT-H (decoder instances)": {"mSA": 0.436, "SA50": 0.710},
}

#: mask AP (%) per cell type, (anchor-free, anchor-based), models trained AND tested on that type
PAPER_AP_PER_CELL_TYPE: dict[str, tuple[float, float]] = {
    "A172": (34.57, 38.02),
    "BT474": (42.60, 43.00),
    "BV2": (45.69, 52.60),
    "Huh7": (45.85, 51.83),
    "MCF7": (37.30, 37.94),
    "SHSY5Y": (23.91, 24.92),
    "SkBr3": (65.85, 65.39),
    "SKOV3": (49.39, 54.12),
}

#: metrics.json keys: COCO AP values in percent, the rest fractions in [0, 1]
AP_PERCENT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
FRACTION_KEYS = ("AFNR", "mSA", "SA50", "F1_50", "precision_50", "recall_50", "PQ", "dice", "iou")
METRIC_KEYS = AP_PERCENT_KEYS + FRACTION_KEYS

SCORE_RULE_MAPS = "mean foreground probability of the instance (PRED/maps)"
SCORE_RULE_CONSTANT = f"constant {M.DEFAULT_SCORE} (no maps saved: unranked detections, label order)"
SCORE_RULE_RESULTS = "scores of the results json"


# ----------------------------------------------------------------------------------------------
# result container
# ----------------------------------------------------------------------------------------------
@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured. ``metrics`` is the content of ``metrics.json``."""

    metrics: dict[str, Any]
    per_image: list[dict[str, Any]]
    pr_curves: dict[str, dict[str, list[float]]]
    warnings: list[str] = field(default_factory=list)
    #: file_name -> (gt labels, pred labels); reloads one image pair (used by the report)
    load_pair: Callable[[str], tuple[np.ndarray, np.ndarray]] | None = field(default=None, repr=False)
    images_dir: Path | None = None


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------
def _segmentation_rle(seg: Any, h: int, w: int) -> dict[str, Any] | None | str:
    """A polygon or RLE segmentation as a checked compressed RLE ``{"size", "counts": str}``.

    Returns None when nothing rasterizable is left (fewer than 3 points) and a short reason
    (a str) when the segmentation is malformed (non-finite coordinates, a broken RLE).
    """
    from pycocotools import mask as mask_utils

    if isinstance(seg, dict):
        rle = checked_rle(seg, h, w)
        if rle is None:
            return "malformed RLE (its runs must be valid and add up to the image size)"
        return {"size": [h, w], "counts": rle["counts"].decode("ascii")}
    if isinstance(seg, (list, tuple)):
        parts = polygon_parts(seg, h, w)
        if parts is None:
            return "polygon coordinates are not all finite numbers"
        if not parts:
            return None
        rles = mask_utils.frPyObjects([p.tolist() for p in parts], h, w)
        rle = mask_utils.merge(rles) if len(rles) > 1 else rles[0]
        return {"size": [h, w], "counts": rle["counts"].decode("ascii")}
    return "segmentation is neither RLE nor polygons"


def gt_coco_dict(ds: Any, image_ids: list[int]) -> tuple[dict[str, Any], int]:
    """COCO ground-truth dict of the given images, raw polygons kept (LIVECell protocol).

    Segmentations pycocotools cannot rasterize (polygon parts with < 3 points, non-finite
    coordinates, malformed RLE) are dropped; polygons reaching far outside the image are clipped
    (``data.coco.polygon_parts``); a missing or invalid ``area`` is computed from the mask;
    ``iscrowd`` defaults to 0; one category.
    Returns (dict, number of annotations dropped).
    """
    from pycocotools import mask as mask_utils

    d = ds.to_coco_dict(image_ids)
    sizes = {int(im["id"]): (int(im["height"]), int(im["width"])) for im in d["images"]}
    anns, dropped = [], 0
    for k, a in enumerate(d["annotations"], start=1):
        h, w = sizes[int(a["image_id"])]
        seg = a.get("segmentation")
        if isinstance(seg, list):
            parts = polygon_parts(seg, h, w)
            if not parts:  # non-finite coordinates or < 3 points
                dropped += 1
                continue
            seg = [p.tolist() for p in parts]
        elif isinstance(seg, dict):
            rle = checked_rle(seg, h, w)
            if rle is None:
                dropped += 1
                continue
            seg = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
        else:
            dropped += 1
            continue
        b = dict(a)
        b["segmentation"] = seg
        try:
            b["id"] = int(a.get("id", k))
        except (TypeError, ValueError, OverflowError):
            b["id"] = -k  # renumbered below
        b["category_id"] = 1
        b["iscrowd"] = 1 if a.get("iscrowd") in (1, True) else 0
        area = b.get("area")
        if isinstance(area, bool) or not isinstance(area, (int, float)) or not 0 <= area < 1e12:
            if isinstance(seg, list):
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            b["area"] = float(mask_utils.area(rle))
        anns.append(b)
    ids = [a["id"] for a in anns]
    if len(set(ids)) != len(ids) or any(i <= 0 for i in ids):  # renumber if ids collide
        for k, a in enumerate(anns, start=1):
            a["id"] = k
    d["annotations"] = anns
    d["categories"] = [{"id": 1, "name": "cell", "supercategory": "cell"}]
    return d, dropped


def load_results(path: str | Path, ds: Any) -> dict[int, list[dict[str, Any]]]:
    """Read a COCO results json -> {image id: detections}. Raises InputFileError for bad files.

    Detections of image ids that are not in the ground truth are an error (a wrong json pairing).
    """

    p = Path(path)
    data = read_json(p)
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        data = data["annotations"]
    if not isinstance(data, list):
        raise InputFileError(p, "not a COCO results file (expected a list of detections)")
    out: dict[int, list[dict[str, Any]]] = {}
    unknown: set[int] = set()
    for i, det in enumerate(data):
        if not isinstance(det, dict) or not {"image_id", "segmentation"} <= set(det):
            raise InputFileError(p, f"detection {i} lacks image_id/segmentation")
        iid = parse_id(det["image_id"], p, f"detection {i}")
        raw_score = det.get("score", M.DEFAULT_SCORE)
        try:
            if isinstance(raw_score, bool):  # true is not a score of 1
                raise TypeError
            score = float(raw_score)
        except (TypeError, ValueError, OverflowError):
            raise InputFileError(p, f"detection {i} has a bad score {short_repr(raw_score)}") from None
        if not math.isfinite(score):
            raise InputFileError(p, f"detection {i} has a non-finite score")
        im = ds.image_by_id(iid)
        if im is None:
            unknown.add(iid)
            continue
        seg = det["segmentation"]
        h, w = int(im["height"]), int(im["width"])
        if isinstance(seg, dict) and seg.get("size", [h, w]) != [h, w]:
            raise InputFileError(p, f"detection {i}: RLE size {seg.get('size')} != image size {[h, w]}")
        rle = _segmentation_rle(seg, h, w)
        if isinstance(rle, str):
            raise InputFileError(p, f"detection {i}: {rle}")
        if rle is None:  # fewer than 3 points: nothing to rasterize
            continue
        out.setdefault(iid, []).append(
            {"image_id": iid, "category_id": 1, "segmentation": rle, "score": score}
        )
    if unknown:
        raise InputFileError(
            p, f"{len(unknown)} image ids are not in the ground-truth json (e.g. {sorted(unknown)[:3]})"
        )
    return out


def detections_to_labels(
    dets: list[dict[str, Any]], height: int, width: int, score_threshold: float = 0.5
) -> np.ndarray:
    """Paint detections with ``score >= score_threshold`` into int32 labels, higher scores on top."""
    from pycocotools import mask as mask_utils

    lab = np.zeros((height, width), np.int32)
    kept = sorted((d for d in dets if d["score"] >= score_threshold), key=lambda d: d["score"])
    for k, d in enumerate(kept, start=1):
        rle = d["segmentation"]  # a checked compressed RLE (load_results)
        x, y, bw, bh = (int(math.floor(v)) for v in mask_utils.toBbox(rle))
        if bw <= 0 or bh <= 0:
            continue
        m = mask_utils.decode(rle)[y : y + bh + 1, x : x + bw + 1].astype(bool)
        lab[y : y + bh + 1, x : x + bw + 1][m] = k
    return lab


def _pred_label_path(pred_dir: Path, stem: str) -> Path | None:
    for ext in (".tif", ".tiff", ".png"):
        q = pred_dir / f"{stem}{ext}"
        if q.is_file():
            return q
    return None


def _maps_path(pred_dir: Path, stem: str) -> Path | None:
    for ext in (".npy", ".tif", ".tiff"):
        q = pred_dir / "maps" / f"{stem}{ext}"
        if q.is_file():
            return q
    return None


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------
def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x


def _round(d: dict[str, Any], nd: int = 4) -> dict[str, Any]:
    return {k: (round(v, nd) if isinstance(v, float) and math.isfinite(v) else v) for k, v in d.items()}


@dataclass
class _Predictions:
    """The predictions being evaluated: a folder of label images or a COCO results json."""

    ds: Any
    path: Path
    #: ``"labels"`` (a folder of ``<stem>.tif``) or ``"results"`` (a COCO results json)
    mode: str
    score_threshold: float
    results_by_image: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def load_pair(self, file_name: str) -> tuple[np.ndarray, np.ndarray, dict[int, float] | None, str]:
        """``(gt labels, predicted labels, instance scores or None, source)`` of one image.

        ``source``: ``results``, ``missing`` (no prediction file: empty), ``constant`` (labels, no
        maps) or ``maps`` (labels scored by the mean foreground probability of the saved maps).
        """

        im = self.ds.image_by_file(file_name)
        h, w = int(im["height"]), int(im["width"])
        gt = annotations_to_labels(self.ds.anns_by_image.get(int(im["id"]), []), h, w)
        stem = Path(file_name).stem
        if self.mode == "results":
            dets = self.results_by_image.get(int(im["id"]), [])
            return gt, detections_to_labels(dets, h, w, self.score_threshold), None, "results"
        q = _pred_label_path(self.path, stem)
        if q is None:
            return gt, np.zeros((h, w), np.int32), None, "missing"
        lab = read_labels(q)
        if lab.shape != (h, w):
            raise InputFileError(q, f"label image is {lab.shape[1]}x{lab.shape[0]}, the image is {w}x{h}")
        mp = _maps_path(self.path, stem)
        if mp is None:
            return gt, lab, None, "constant"
        from ..inference.postprocess import instance_scores, load_maps

        maps, _head = load_maps(mp)
        if maps.shape[1:] != (h, w):
            raise InputFileError(mp, f"maps are {maps.shape[2]}x{maps.shape[1]}, the image is {w}x{h}")
        return gt, lab, instance_scores(lab, maps[0]), "maps"


def _open_predictions(
    ds: Any,
    gt_json: str | Path,
    pred: Path,
    *,
    score_threshold: float,
    only_predicted: bool,
    max_images: int | None,
    warn: Callable[[str], None],
) -> tuple[_Predictions, list[dict[str, Any]]]:
    """Input discovery: what ``pred`` is, and the images of ``ds`` to evaluate."""
    if pred.is_dir():
        mode = "labels"
    elif pred.is_file() and pred.suffix.lower() == ".json":
        mode = "results"
    elif not pred.exists():
        raise InputFileError(pred, "no such file or folder")
    else:
        raise InputFileError(pred, "expected a folder of label images or a COCO results .json")
    if ds.duplicates:
        warn(f"{gt_json}: {len(ds.duplicates)} duplicate image entries merged (same file_name)")

    images = list(ds.images)
    preds = _Predictions(ds, pred, mode, score_threshold)
    if mode == "labels":
        stems = {Path(im["file_name"]).stem for im in images}
        have = {
            q.stem for q in pred.iterdir() if q.is_file() and q.suffix.lower() in (".tif", ".tiff", ".png")
        }
        if not have & stems:
            raise InputFileError(
                pred, f"no prediction named after an image of {Path(gt_json).name} (<file stem>.tif)"
            )
        if only_predicted:
            images = [im for im in images if Path(im["file_name"]).stem in have]
        missing = [im["file_name"] for im in images if Path(im["file_name"]).stem not in have]
        if missing:
            warn(
                f"{len(missing)} of {len(images)} images have no prediction in {pred} and count as "
                f"empty predictions (e.g. {', '.join(missing[:3])}); --only-predicted skips them"
            )
    else:
        preds.results_by_image = load_results(pred, ds)
    if max_images is not None:
        images = images[:max_images]
    if not images:
        raise LivecellError(f"{gt_json}: no images to evaluate")
    return preds, images


def _match_images(
    preds: _Predictions, images: list[dict[str, Any]], progress: Progress
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str], float]:
    """Matching metrics per image, and the detections for COCO AP.

    Returns ``(per_image rows, COCO results, score sources seen, seconds spent matching)``.
    """

    per_image: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    score_sources: set[str] = set()
    t_match = 0.0
    for im in progress_bar(images, progress, "evaluate"):
        iid = int(im["id"])
        gt, lab, scores, source = preds.load_pair(im["file_name"])
        t0 = time.perf_counter()
        m = M.instance_metrics(gt, lab)
        t_match += time.perf_counter() - t0
        if preds.mode == "labels":
            ids, rles, _areas = M.labels_to_rles(lab)
            for lb, rle in zip(ids.tolist(), rles):
                s = M.DEFAULT_SCORE if scores is None else float(scores.get(lb, M.DEFAULT_SCORE))
                results.append({"image_id": iid, "category_id": 1, "segmentation": rle, "score": s})
            if source != "missing":
                score_sources.add("maps" if source == "maps" else "constant")
        else:
            results.extend(preds.results_by_image.get(iid, []))
        per_image.append(
            {
                "file_name": im["file_name"],
                "image_id": iid,
                "cell_type": cell_type_of(im["file_name"]),
                "prediction": source,
                **_round(m),
            }
        )
    return per_image, results, score_sources, t_match


def _coco_ap(
    ds: Any,
    gt_json: str | Path,
    per_image: list[dict[str, Any]],
    results: list[dict[str, Any]],
    backend: str,
    warn: Callable[[str], None],
) -> tuple[dict[str, float], np.ndarray, dict[str, dict[str, Any]]]:
    """COCO mask AP over all images and per cell type: ``(summary, precision array, subsets)``."""
    gt_dict, dropped = gt_coco_dict(ds, [r["image_id"] for r in per_image])
    if dropped:
        warn(f"{gt_json}: {dropped} annotations without a valid polygon were left out of the AP ground truth")
    ev = M.coco_eval_livecell(gt_dict, results, backend=backend)
    overall_ap = M.summarize_coco_eval(ev.eval)
    overall_prec = np.asarray(ev.eval["precision"])
    types = _images_by_type(per_image)
    subsets = M.evaluate_subsets(ev, types) if len(types) > 1 else {}
    if len(types) == 1:
        subsets = {next(iter(types)): {"summary": overall_ap, "precision": overall_prec}}
    return overall_ap, overall_prec, subsets


def _images_by_type(per_image: list[dict[str, Any]]) -> dict[str, list[int]]:
    types: dict[str, list[int]] = {}
    for r in per_image:
        types.setdefault(r["cell_type"], []).append(r["image_id"])
    return types


def _block(rows: list[dict[str, Any]], ap: dict[str, float]) -> dict[str, Any]:
    """One metrics block (overall or one cell type): AP values and pooled matching metrics."""
    out = {k: ap[k] for k in AP_PERCENT_KEYS}
    out["AFNR"] = ap["AFNR"]
    out.update(M.pool_instance_metrics(rows))
    out["n_images"] = len(rows)
    out["n_gt"] = int(sum(r["n_gt"] for r in rows))
    out["n_pred"] = int(sum(r["n_pred"] for r in rows))
    return _round({k: out[k] for k in (*METRIC_KEYS, "n_images", "n_gt", "n_pred")})


def _aggregate(
    per_image: list[dict[str, Any]], overall_ap: dict[str, float], subsets: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Aggregation: the overall block and one block per cell type."""
    overall = _block(per_image, overall_ap)
    types = _images_by_type(per_image)
    per_type = {
        t: _block([r for r in per_image if r["cell_type"] == t], subsets[t]["summary"]) for t in sorted(types)
    }
    return overall, per_type


def _score_rule(mode: str, score_sources: set[str], warn: Callable[[str], None]) -> str:
    """How detections were ranked for AP (recorded in the protocol)."""
    if mode == "results":
        return SCORE_RULE_RESULTS
    if score_sources == {"maps"}:
        return SCORE_RULE_MAPS
    if score_sources <= {"constant"}:
        return SCORE_RULE_CONSTANT
    warn("maps were found for some images only: AP mixes ranked and unranked detections")
    return f"mixed: {SCORE_RULE_MAPS} where maps exist, else {SCORE_RULE_CONSTANT}"


def paper_comparison(overall: dict[str, Any], per_type: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Our figures next to the LIVECell paper's (overall and per cell type)."""
    return {
        "citation": PAPER_CITATION,
        "note": (
            "Paper per-cell-type AP comes from models trained and tested on that single cell type; "
            "ours from one model evaluated per cell type. Paper values are on the official LIVECell "
            "test set; ours on the images given here."
        ),
        "overall": {"ours": {k: overall[k] for k in ("AP", "AP50", "AP75", "mSA", "SA50")}, **PAPER_OVERALL},
        "per_cell_type": {
            t: {
                "ours_AP": per_type[t]["AP"] if t in per_type else None,
                "paper_anchor_free_AP": af,
                "paper_anchor_based_AP": ab,
            }
            for t, (af, ab) in PAPER_AP_PER_CELL_TYPE.items()
        },
    }


def _protocol(preds: _Predictions, score_rule: str, backend: str) -> dict[str, Any]:
    """How every figure was computed (the ``protocol`` entry of metrics.json)."""
    return {
        "AP": "COCO mask AP (segm), useCats=0, maxDets=[100,500,2000] (AP at 2000), IoU 0.50:0.05:0.95, "
        "areas all [0,1e10] small [0,324] medium [324,961] large [961,1e10]; percent",
        "AFNR": "mean over the 10 IoU thresholds of (1 - recall), 2000 detections, area all",
        "matching": "optimal one-to-one matching, IoU >= threshold (StarDist); mSA over IoU 0.50:0.05:0.95 "
        "per image then averaged; precision/recall/F1/PQ at IoU 0.5 pooled over images",
        "semantic": "foreground Dice and IoU, pooled pixels",
        "gt_for_AP": "raw json annotations (overlapping polygons, json 'area' field), as the LIVECell paper",
        "gt_for_matching": "annotations rasterized by data.coco.annotations_to_labels (non-overlapping)",
        "scores": score_rule,
        "prediction_source": str(preds.path),
        "results_score_threshold_for_matching": preds.score_threshold if preds.mode == "results" else None,
        "backend": backend,
    }


def _pr_curves(
    overall_prec: np.ndarray, subsets: dict[str, dict[str, Any]]
) -> dict[str, dict[str, list[float]]]:
    """Precision-recall curves (2000 detections, area all): overall at three IoUs, per cell type at 0.5."""
    thr = np.linspace(0.5, 0.95, 10)
    m_all = len(M.LIVECELL_MAX_DETS) - 1
    return {
        "overall": {
            "IoU 0.50": overall_prec[0, :, 0, 0, m_all].tolist(),
            "IoU 0.75": overall_prec[int(np.argmin(abs(thr - 0.75))), :, 0, 0, m_all].tolist(),
            "IoU 0.50:0.95": overall_prec[:, :, 0, 0, m_all].mean(axis=0).tolist(),
        },
        "per_cell_type_IoU50": {
            t: np.asarray(s["precision"])[0, :, 0, 0, m_all].tolist() for t, s in subsets.items()
        },
    }


def evaluate(
    gt_json: str | Path,
    pred: str | Path,
    *,
    images_dir: str | Path | None = None,
    score_threshold: float = 0.5,
    only_predicted: bool = False,
    max_images: int | None = None,
    backend: str = "faster",
    progress: Progress = False,
) -> EvaluationResult:
    """Evaluate predictions (label folder or COCO results json) against a COCO annotation json.

    ``only_predicted`` restricts a label-folder evaluation to the images that have a prediction
    file (otherwise a missing file is an empty prediction, with a warning). Warnings are logged
    (``log.warning``) and listed in the result's ``warnings``. ``score_threshold``
    only applies to rasterizing a results json for the matching metrics; AP uses every detection.
    ``images_dir`` is only needed for the report's image backgrounds.

    Steps: input discovery (:func:`_open_predictions`), matching per image (:func:`_match_images`),
    COCO AP (:func:`_coco_ap`), aggregation (:func:`_aggregate`), the paper comparison
    (:func:`paper_comparison`) and the precision-recall curves (:func:`_pr_curves`).
    """

    if max_images is not None and (
        isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1
    ):  # a negative slice would score all but the last images (exit 0, a wrong answer)
        raise LivecellError(f"max_images must be a positive integer, got {max_images!r}")

    check_finite(score_threshold, "score_threshold", 0, 1)
    t_start = time.perf_counter()
    warn_list: list[str] = []

    def warn(msg: str) -> None:
        warn_list.append(msg)
        log.warning(msg)

    ds = load_coco(gt_json)
    preds, images = _open_predictions(
        ds,
        gt_json,
        Path(pred),
        score_threshold=score_threshold,
        only_predicted=only_predicted,
        max_images=max_images,
        warn=warn,
    )
    per_image, results, score_sources, t_match = _match_images(preds, images, progress)
    t0 = time.perf_counter()
    overall_ap, overall_prec, subsets = _coco_ap(ds, gt_json, per_image, results, backend, warn)
    t_coco = time.perf_counter() - t0
    overall, per_type = _aggregate(per_image, overall_ap, subsets)
    score_rule = _score_rule(preds.mode, score_sources, warn)
    metrics_out: dict[str, Any] = {
        **{k: overall[k] for k in METRIC_KEYS},
        "n_images": len(per_image),
        "n_gt_instances": overall["n_gt"],
        "n_pred_instances": overall["n_pred"],
        "per_cell_type": per_type,
        "paper_comparison": paper_comparison(overall, per_type),
        "protocol": _protocol(preds, score_rule, backend),
        "gt_json": str(gt_json),
        "warnings": warn_list,
        "timing_s": {
            "total": round(time.perf_counter() - t_start, 3),
            "matching_metrics": round(t_match, 3),
            "coco_eval": round(t_coco, 3),
        },
        "per_image": per_image,
    }

    def reload(file_name: str) -> tuple[np.ndarray, np.ndarray]:
        g, p_, _s, _src = preds.load_pair(file_name)
        return g, p_

    return EvaluationResult(
        metrics=_nan_to_none(metrics_out),
        per_image=per_image,
        pr_curves=_pr_curves(overall_prec, subsets),
        warnings=warn_list,
        load_pair=reload,
        images_dir=Path(images_dir) if images_dir is not None else None,
    )


def write_metrics_json(result: EvaluationResult, path: str | Path) -> None:
    """Write ``metrics.json`` atomically (NaN written as null)."""

    write_json_atomic(path, result.metrics)


# ----------------------------------------------------------------------------------------------
# console tables
# ----------------------------------------------------------------------------------------------
TABLE_COLUMNS = ("AP", "AP50", "AP75", "AFNR", "mSA", "SA50", "F1_50", "PQ", "dice")


def print_summary(result: EvaluationResult, file: Any = None) -> None:
    """Print the overall and per-cell-type tables with the paper's numbers (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout, width=140)
    m = result.metrics
    t = Table(title=f"LIVECell-protocol evaluation ({m['n_images']} images, {m['n_gt_instances']} cells)")
    t.add_column("")
    for c in (*TABLE_COLUMNS, "images", "paper AP (AF/AB)"):
        t.add_column(c, justify="right")
    pct = set(AP_PERCENT_KEYS)
    t.add_row(
        "all", *(format_metric(m[c], c in pct) for c in TABLE_COLUMNS), str(m["n_images"]), "47.78/47.89"
    )
    for ct, row in m["per_cell_type"].items():
        paper = PAPER_AP_PER_CELL_TYPE.get(ct)
        t.add_row(
            ct,
            *(format_metric(row[c], c in pct) for c in TABLE_COLUMNS),
            str(row["n_images"]),
            f"{paper[0]:.2f}/{paper[1]:.2f}" if paper else "-",
        )
    console.print(t)
    console.print(
        "AP in %, others fractions. Paper: AF = anchor-free CenterMask, AB = anchor-based Cascade Mask R-CNN; "
        "per-cell-type paper AP from single-cell-type models. Scores: " + m["protocol"]["scores"] + "."
    )


# ----------------------------------------------------------------------------------------------
# HTML report
# ----------------------------------------------------------------------------------------------
def plot_pr_curves(result: EvaluationResult) -> Any:
    """Figure: precision-recall curves (COCOeval, 2000 detections, area all)."""
    import matplotlib
    from matplotlib.figure import Figure

    rec = np.linspace(0, 1, 101)
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    for name, prec in result.pr_curves["overall"].items():
        p = np.asarray(prec, dtype=float)
        p[p < 0] = np.nan
        axes[0].plot(rec, p, label=name)
    axes[0].set_title("all images")
    cmap = matplotlib.colormaps["tab10"]
    for i, (name, prec) in enumerate(sorted(result.pr_curves["per_cell_type_IoU50"].items())):
        p = np.asarray(prec, dtype=float)
        p[p < 0] = np.nan
        axes[1].plot(rec, p, label=name, color=cmap(i % 10))
    axes[1].set_title("per cell type, IoU 0.50")
    for ax in axes:
        ax.set_xlabel("recall")
        ax.set_ylabel("precision (interpolated)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_ap_per_cell_type(result: EvaluationResult) -> Any:
    """Figure: our mask AP per cell type next to the paper's two models."""
    from matplotlib.figure import Figure

    types = list(PAPER_AP_PER_CELL_TYPE)
    extra = [t for t in result.metrics["per_cell_type"] if t not in PAPER_AP_PER_CELL_TYPE]
    types += extra
    ours = [result.metrics["per_cell_type"].get(t, {}).get("AP") for t in types]
    ours = [np.nan if v is None else v for v in ours]
    af = [PAPER_AP_PER_CELL_TYPE.get(t, (np.nan, np.nan))[0] for t in types]
    ab = [PAPER_AP_PER_CELL_TYPE.get(t, (np.nan, np.nan))[1] for t in types]
    x = np.arange(len(types))
    fig = Figure(figsize=(11, 4))
    ax = fig.subplots()
    ax.bar(x - 0.27, ours, 0.27, label="ours (one model, this evaluation)", color="#1f77b4")
    ax.bar(x, af, 0.27, label="paper anchor-free (per-type model)", color="#bbbbbb")
    ax.bar(x + 0.27, ab, 0.27, label="paper anchor-based (per-type model)", color="#777777")
    for xi, v in zip(x, ours):
        if np.isfinite(v):
            ax.text(xi - 0.27, v + 0.8, f"{v:.1f}", ha="center", fontsize=7)
        else:
            ax.text(xi - 0.27, 1, "n/a", ha="center", fontsize=7, rotation=90)
    ax.set_xticks(x, types)
    ax.set_ylabel("mask AP (%)")
    ax.set_title("mask AP per cell type (LIVECell protocol)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def error_overlay(
    image: np.ndarray | None, gt: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5
) -> tuple[np.ndarray, dict[str, int]]:
    """RGB uint8 picture of the errors at ``iou_threshold``: outlines of matched predictions (green),
    missed ground-truth cells (FN, red) and false-positive predictions (yellow)."""
    from skimage.segmentation import find_boundaries

    ov = M.instance_overlap(gt, pred)
    mg, mp, _ = M._optimal_pairs(ov, iou_threshold)
    fn_ids = np.setdiff1d(ov.gt_ids, ov.gt_ids[mg])
    fp_ids = np.setdiff1d(ov.pred_ids, ov.pred_ids[mp])
    tp_ids = ov.pred_ids[mp]
    if image is None or image.shape != gt.shape:
        base = np.full(gt.shape, 0.25, np.float32)
        base[gt > 0] = 0.4
    else:
        base = np.clip(normalize_image(image), 0, 1)
    rgb = np.repeat((base * 255).astype(np.uint8)[..., None], 3, axis=2)

    def outline(labels: np.ndarray, ids: np.ndarray, color: tuple[int, int, int]) -> None:
        if ids.size == 0:
            return
        sel = np.where(np.isin(labels, ids), labels, 0)
        rgb[find_boundaries(sel, mode="inner")] = color

    outline(pred, tp_ids, (40, 200, 60))
    outline(gt, fn_ids, (230, 30, 30))
    outline(pred, fp_ids, (250, 220, 0))
    return rgb, {"TP": int(tp_ids.size), "FN": int(fn_ids.size), "FP": int(fp_ids.size)}


#: the style sheet of report.html
REPORT_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
th { background: #f0f0f0; }
img { max-width: 100%; }
.note { color: #555; font-size: 13px; }
"""


def _write_png(path: Path, fig: Any) -> bytes:
    """The figure as PNG (110 dpi, cropped), written to ``path``; returns the bytes."""
    png = figure_png(fig, 110, tight=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)
    return png


def _worst_images_html(result: EvaluationResult, out: Path, n_worst: int) -> list[str]:
    """The ``n_worst`` images with the lowest mSA, outlines of misses and false positives drawn,
    written as ``worst_K.png``; their ``<figure>`` elements."""
    from matplotlib.figure import Figure

    worst_html = []
    candidates = [r for r in result.per_image if r["n_gt"] > 0 or r["n_pred"] > 0]
    worst = sorted(candidates, key=lambda r: (r["mSA"], -r["n_gt"]))[:n_worst]
    for k, r in enumerate(worst):
        gt, pred = result.load_pair(r["file_name"]) if result.load_pair else (None, None)
        if gt is None:
            break
        image = None
        if result.images_dir is not None:
            try:
                image = read_image(find_image(result.images_dir, r["file_name"]))
            except LivecellError:
                image = None
        rgb, counts = error_overlay(image, gt, pred)
        fig = Figure(figsize=(8, 8 * rgb.shape[0] / rgb.shape[1] + 0.5))
        ax = fig.subplots()
        ax.imshow(rgb, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(
            f"{r['file_name']}  mSA {r['mSA']:.3f}  F1@0.5 {r['F1_50']:.3f}\n"
            f"green: matched ({counts['TP']})   red: missed GT ({counts['FN']})   yellow: false positive ({counts['FP']})",
            fontsize=9,
        )
        png = _write_png(out / f"worst_{k + 1}.png", fig)
        worst_html.append(f"<figure>{img_tag(png, self_closing=True)}</figure>")
    return worst_html


def _metric_rows(m: dict[str, Any]) -> tuple[list[list[Any]], list[list[Any]]]:
    """The rows of the overall table (ours, then the paper's) and of the per-cell-type table."""
    pct = set(AP_PERCENT_KEYS)
    overall_rows = [["ours", *(format_metric(m[c], c in pct) for c in METRIC_KEYS)]]
    for name, vals in PAPER_OVERALL.items():
        overall_rows.append([name, *(format_metric(vals.get(c), c in pct) for c in METRIC_KEYS)])
    type_rows = []
    for ct in sorted(set(m["per_cell_type"]) | set(PAPER_AP_PER_CELL_TYPE)):
        row = m["per_cell_type"].get(ct, {})
        paper = PAPER_AP_PER_CELL_TYPE.get(ct, (None, None))
        type_rows.append(
            [
                ct,
                row.get("n_images", 0),
                *(format_metric(row.get(c), c in pct) for c in TABLE_COLUMNS),
                format_metric(paper[0], True),
                format_metric(paper[1], True),
            ]
        )
    return overall_rows, type_rows


def _report_page(m: dict[str, Any], pngs: dict[str, bytes], worst_html: list[str]) -> str:
    """report.html from the metrics, the two plots and the worst images' figures."""
    overall_rows, type_rows = _metric_rows(m)
    prot = m["protocol"]
    warn_html = "".join(f"<li>{html.escape(w)}</li>" for w in m.get("warnings", []))
    type_header = ["cell type", "images", *TABLE_COLUMNS, "paper AP anchor-free", "paper AP anchor-based"]
    protocol_rows = [[k, "" if v is None else v] for k, v in prot.items()]
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>livecell-seg evaluation</title>
<style>{REPORT_CSS}</style></head><body>
<h1>LIVECell-protocol evaluation</h1>
<p>{m["n_images"]} images, {m["n_gt_instances"]} ground-truth cells, {m["n_pred_instances"]} predicted instances.
Ground truth <code>{html.escape(str(m["gt_json"]))}</code>, predictions <code>{html.escape(str(prot["prediction_source"]))}</code>.</p>
<h2>Overall</h2>
<p class="note">AP values in percent, all others fractions in [0, 1]. The paper's rows are on the official
LIVECell test set; this evaluation is on the images above.</p>
{html_table(["", *METRIC_KEYS], overall_rows, escape_cells=True)}
<h2>Per cell type</h2>
<p class="note">{html.escape(m["paper_comparison"]["note"])}</p>
{html_table(type_header, type_rows, escape_cells=True)}
{img_tag(pngs["ap_per_cell_type"], self_closing=True)}
<h2>Precision-recall curves</h2>
{img_tag(pngs["pr_curves"], self_closing=True)}
<h2>Worst images (lowest mSA)</h2>
<p class="note">Matching at IoU 0.5 on the rasterized ground truth: green = matched prediction,
red = missed ground-truth cell (FN), yellow = false-positive prediction.</p>
{"".join(worst_html) or "<p>none</p>"}
<h2>Protocol</h2>
{html_table(["item", "definition"], protocol_rows, escape_cells=True)}
<p class="note">{html.escape(PAPER_CITATION)}</p>
{"<h2>Warnings</h2><ul>" + warn_html + "</ul>" if warn_html else ""}
</body></html>
"""


def write_report(result: EvaluationResult, out_dir: str | Path, n_worst: int = 6) -> Path:
    """Write ``OUT/report.html`` (self-contained, PNGs embedded) and the PNGs next to it.

    Tables (overall, per cell type with the paper's numbers), precision-recall curves, AP per cell
    type next to the paper's bars, and the ``n_worst`` images with the lowest mSA with outlines of
    the misses (red) and false positives (yellow).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs = {
        "pr_curves": _write_png(out / "pr_curves.png", plot_pr_curves(result)),
        "ap_per_cell_type": _write_png(out / "ap_per_cell_type.png", plot_ap_per_cell_type(result)),
    }
    worst_html = _worst_images_html(result, out, n_worst)
    report = out / "report.html"
    with atomic_path(report) as tmp:
        tmp.write_text(_report_page(result.metrics, pngs, worst_html))
    return report
