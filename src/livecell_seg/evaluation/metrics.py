"""Instance and semantic segmentation metrics (pure numpy/scipy; pycocotools/faster-coco-eval for AP).

Three families, each defined the way its community does:

* **Matching metrics** (StarDist / micro-sam): optimal one-to-one matching of ground-truth and
  predicted instances whose IoU is ``>= threshold`` (StarDist's rule; maximum number of matches, ties
  broken by the sum of matched IoUs), then TP/FP/FN, precision, recall, F1, accuracy
  ``TP/(TP+FP+FN)``, panoptic quality; mSA = accuracy averaged over IoU 0.50:0.05:0.95 per image.
  Label images are compared through a sparse joint histogram of label pairs (one ``np.bincount``),
  never with per-object loops, so an image with 2,000 cells costs a few milliseconds.
* **COCO mask AP, LIVECell protocol** (Edlund et al., Nature Methods 2021): ``useCats=0``,
  ``maxDets=[100, 500, 2000]`` (AP at 2000), IoU 0.50:0.05:0.95, areas all [0, 1e10],
  small [0, 324], medium [324, 961], large [961, 1e10]; AFNR = mean over the 10 IoU thresholds
  of (1 - recall) at 2000 detections, area "all". Computed with faster-coco-eval's C++ COCOeval
  (identical numbers to pycocotools, checked by the tests) or pycocotools itself.
* **Semantic metrics**: Dice and IoU of the foreground (``labels > 0``).

Conventions for degenerate cases: when an image has neither ground-truth nor predicted instances,
precision, recall, F1, accuracy and PQ are 1.0 (perfect agreement); otherwise a zero denominator
gives 0.0 (StarDist's convention). Foreground Dice/IoU of two empty masks are 1.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: IoU thresholds of mSA and COCO AP: 0.50, 0.55, ..., 0.95
DEFAULT_THRESHOLDS: np.ndarray = np.linspace(0.5, 0.95, 10)

#: LIVECell protocol (paper + LIVECell code/coco_evaluation.py)
LIVECELL_MAX_DETS: tuple[int, int, int] = (100, 500, 2000)
LIVECELL_AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e10),
    "small": (0.0, 324.0),
    "medium": (324.0, 961.0),
    "large": (961.0, 1e10),
}

#: keys of :func:`coco_mask_ap`'s result
AP_KEYS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AFNR")

#: score given to every instance of a label image when the caller supplies none
DEFAULT_SCORE = 1.0


# ----------------------------------------------------------------------------------------------
# label-pair overlaps
# ----------------------------------------------------------------------------------------------
@dataclass
class Overlap:
    """Sparse overlap of two label images.

    ``gt_ids``/``pred_ids`` are the sorted non-zero labels; ``pair_gt``/``pair_pred`` index into
    them for every pair of instances that share at least one pixel, with ``pair_inter`` pixels in
    common and ``pair_iou`` their IoU.
    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    gt_areas: np.ndarray
    pred_areas: np.ndarray
    pair_gt: np.ndarray
    pair_pred: np.ndarray
    pair_inter: np.ndarray
    pair_iou: np.ndarray

    @property
    def n_gt(self) -> int:
        return int(self.gt_ids.size)

    @property
    def n_pred(self) -> int:
        return int(self.pred_ids.size)


def _check_labels(labels: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(labels)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        if a.size and not np.all(np.equal(np.mod(a, 1), 0)):
            raise ValueError(f"{name}: label image must hold integers, got dtype {a.dtype}")
        a = a.astype(np.int64)
    if a.size and int(a.min()) < 0:
        raise ValueError(f"{name}: label image has negative labels")
    return a


def _compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map labels to 0..n (0 = background). Returns (index image (flat), ids, areas)."""
    flat = labels.ravel()
    if flat.size == 0:
        return flat.astype(np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    top = int(flat.max())
    if top <= 4 * flat.size + 65536:
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=top + 1)
        ids = np.flatnonzero(counts)
        ids = ids[ids != 0]
        areas = counts[ids]
        if ids.size == top:  # already 1..n without gaps
            return flat.astype(np.int64, copy=False), ids.astype(np.int64), areas.astype(np.int64)
        lut = np.zeros(top + 1, dtype=np.int64)
        lut[ids] = np.arange(1, ids.size + 1)
        return lut[flat], ids.astype(np.int64), areas.astype(np.int64)
    uniq, inv, counts = np.unique(flat, return_inverse=True, return_counts=True)
    if uniq[0] != 0:
        return inv.astype(np.int64) + 1, uniq.astype(np.int64), counts.astype(np.int64)
    return inv.astype(np.int64), uniq[1:].astype(np.int64), counts[1:].astype(np.int64)


def instance_overlap(gt: np.ndarray, pred: np.ndarray) -> Overlap:
    """Sparse IoU of every overlapping (ground truth, prediction) instance pair.

    One joint histogram of the label pairs of the foreground pixels (``np.bincount``), so the cost
    is linear in the number of pixels whatever the number of instances.
    """
    g = _check_labels(gt, "gt")
    p = _check_labels(pred, "pred")
    if g.shape != p.shape:
        raise ValueError(f"gt and pred shapes differ: {g.shape} vs {p.shape}")
    gi, gt_ids, gt_areas = _compact(g)
    pi, pred_ids, pred_areas = _compact(p)
    ng, npr = gt_ids.size, pred_ids.size
    both = (gi > 0) & (pi > 0)
    code = (gi[both] - 1) * npr + (pi[both] - 1)
    if ng * npr <= (1 << 25):
        hist = np.bincount(code, minlength=ng * npr)
        pairs = np.flatnonzero(hist)
        inter = hist[pairs]
    else:
        pairs, inter = np.unique(code, return_counts=True)
    pg = (pairs // max(npr, 1)).astype(np.int64)
    pp = (pairs % max(npr, 1)).astype(np.int64)
    inter = inter.astype(np.int64)
    union = gt_areas[pg] + pred_areas[pp] - inter
    iou = inter / np.maximum(union, 1)
    return Overlap(gt_ids, pred_ids, gt_areas, pred_areas, pg, pp, inter, iou.astype(np.float64))


def iou_matrix(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Dense IoU matrix (n_gt, n_pred) between the instances of two label images.

    Rows follow the sorted non-zero labels of ``gt``, columns those of ``pred``; background is
    excluded. Computed from the sparse joint histogram (:func:`instance_overlap`).
    """
    ov = instance_overlap(gt, pred)
    out = np.zeros((ov.n_gt, ov.n_pred), dtype=np.float64)
    out[ov.pair_gt, ov.pair_pred] = ov.pair_iou
    return out


# ----------------------------------------------------------------------------------------------
# matching
# ----------------------------------------------------------------------------------------------
@dataclass
class MatchResult:
    """Matching statistics at one IoU threshold (StarDist definitions)."""

    iou_threshold: float
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    accuracy: float  # TP / (TP + FP + FN)
    mean_matched_iou: float

    @property
    def n_true(self) -> int:
        return self.tp + self.fn

    @property
    def n_pred(self) -> int:
        return self.tp + self.fp

    @property
    def panoptic_quality(self) -> float:
        """PQ = sum of matched IoUs / (TP + FP/2 + FN/2) (= SQ x RQ)."""
        denom = self.tp + 0.5 * self.fp + 0.5 * self.fn
        if denom == 0:
            return 1.0
        return self.mean_matched_iou * self.tp / denom

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["panoptic_quality"] = self.panoptic_quality
        return d


def _optimal_pairs(ov: Overlap, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal one-to-one matching among pairs with IoU >= threshold.

    Maximizes the number of matches, ties broken by the sum of IoUs (StarDist's cost). Pairs whose
    gt and prediction are both matched by nothing else are taken directly; only the conflicting
    connected components (possible below IoU 0.5, or exactly at 0.5) go to
    ``scipy.optimize.linear_sum_assignment``. Returns (gt index, pred index, iou) of the matches.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"IoU threshold must be in (0, 1], got {threshold}")
    cand = ov.pair_iou >= threshold - 1e-12
    cg, cp, ci = ov.pair_gt[cand], ov.pair_pred[cand], ov.pair_iou[cand]
    if cg.size == 0:
        return cg, cp, ci
    deg_g = np.bincount(cg, minlength=ov.n_gt)
    deg_p = np.bincount(cp, minlength=ov.n_pred)
    simple = (deg_g[cg] == 1) & (deg_p[cp] == 1)
    if simple.all():
        return cg, cp, ci
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    out_g, out_p, out_i = [cg[simple]], [cp[simple]], [ci[simple]]
    hg, hp, hi = cg[~simple], cp[~simple], ci[~simple]
    # bipartite graph: gt nodes 0..ng-1, pred nodes ng..ng+np-1
    n = ov.n_gt + ov.n_pred
    graph = coo_matrix((np.ones(hg.size), (hg, hp + ov.n_gt)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[hg]
    order = np.argsort(edge_comp, kind="stable")
    bounds = np.flatnonzero(np.diff(edge_comp[order])) + 1
    for idx in np.split(order, bounds):
        eg, ep, ei = hg[idx], hp[idx], hi[idx]
        ug, rg = np.unique(eg, return_inverse=True)
        up, rp = np.unique(ep, return_inverse=True)
        k = min(ug.size, up.size)
        cost = np.zeros((ug.size, up.size))
        cost[rg, rp] = -1.0 - ei / (2.0 * k)
        ri, ci_ = linear_sum_assignment(cost)
        ok = cost[ri, ci_] < 0
        iou_sub = np.zeros((ug.size, up.size))
        iou_sub[rg, rp] = ei
        out_g.append(ug[ri[ok]])
        out_p.append(up[ci_[ok]])
        out_i.append(iou_sub[ri[ok], ci_[ok]])
    return np.concatenate(out_g), np.concatenate(out_p), np.concatenate(out_i)


def _result(threshold: float, tp: int, n_true: int, n_pred: int, sum_iou: float) -> MatchResult:
    fp, fn = n_pred - tp, n_true - tp
    if n_true == 0 and n_pred == 0:
        precision = recall = f1 = accuracy = 1.0
    else:
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * tp / (n_pred + n_true)
        accuracy = tp / (tp + fp + fn)
    return MatchResult(
        iou_threshold=float(threshold),
        tp=int(tp),
        fp=int(fp),
        fn=int(fn),
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        accuracy=float(accuracy),
        mean_matched_iou=float(sum_iou / tp) if tp else 0.0,
    )


def match_overlap(ov: Overlap, thresholds: Sequence[float] | np.ndarray) -> list[MatchResult]:
    """Matching statistics at several thresholds from one precomputed :class:`Overlap`."""
    out = []
    for t in np.atleast_1d(np.asarray(thresholds, dtype=np.float64)):
        _, _, mi = _optimal_pairs(ov, float(t))
        out.append(_result(float(t), int(mi.size), ov.n_gt, ov.n_pred, float(mi.sum())))
    return out


def match_instances(gt: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5) -> MatchResult:
    """Optimal one-to-one matching of two label images at ``iou_threshold`` (StarDist's ``matching``).

    A pair counts as a true positive when IoU >= ``iou_threshold``; the matching maximizes the
    number of true positives (ties: sum of IoUs), as ``linear_sum_assignment`` does in StarDist.
    """
    return match_overlap(instance_overlap(gt, pred), [iou_threshold])[0]


def match_at_thresholds(
    gt: np.ndarray, pred: np.ndarray, thresholds: Sequence[float] | np.ndarray = DEFAULT_THRESHOLDS
) -> list[MatchResult]:
    """:func:`match_instances` at several thresholds, sharing one overlap computation."""
    return match_overlap(instance_overlap(gt, pred), thresholds)


def segmentation_accuracies(
    gt: np.ndarray, pred: np.ndarray, thresholds: Sequence[float] | np.ndarray = DEFAULT_THRESHOLDS
) -> np.ndarray:
    """Segmentation accuracy TP/(TP+FP+FN) at each threshold (``SA50`` = the value at 0.5)."""
    return np.array([r.accuracy for r in match_at_thresholds(gt, pred, thresholds)])


def mean_segmentation_accuracy(
    gt: np.ndarray, pred: np.ndarray, thresholds: Sequence[float] | np.ndarray = DEFAULT_THRESHOLDS
) -> float:
    """mSA of one image (micro-sam): mean over IoU thresholds 0.50:0.05:0.95 of TP/(TP+FP+FN)."""
    return float(segmentation_accuracies(gt, pred, thresholds).mean())


def panoptic_quality(gt: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5) -> float:
    """Panoptic quality at IoU 0.5: sum of matched IoUs / (TP + FP/2 + FN/2)."""
    return match_instances(gt, pred, iou_threshold).panoptic_quality


def semantic_scores(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Foreground Dice and IoU of ``gt > 0`` vs ``pred > 0`` (1.0 when both are empty).

    Also returns the raw pixel counts (``inter``, ``gt_fg``, ``pred_fg``) for pooling over images.
    """
    g = np.asarray(gt) > 0
    p = np.asarray(pred) > 0
    if g.shape != p.shape:
        raise ValueError(f"gt and pred shapes differ: {g.shape} vs {p.shape}")
    inter = int(np.count_nonzero(g & p))
    ng, npx = int(np.count_nonzero(g)), int(np.count_nonzero(p))
    return {**_dice_iou(inter, ng, npx), "inter": inter, "gt_fg": ng, "pred_fg": npx}


def _dice_iou(inter: int, ng: int, npx: int) -> dict[str, float]:
    if ng + npx == 0:
        return {"dice": 1.0, "iou": 1.0}
    return {"dice": 2.0 * inter / (ng + npx), "iou": inter / (ng + npx - inter)}


def instance_metrics(
    gt: np.ndarray, pred: np.ndarray, thresholds: Sequence[float] | np.ndarray = DEFAULT_THRESHOLDS
) -> dict[str, Any]:
    """All per-image matching and semantic metrics from one overlap computation.

    Keys: ``mSA SA50 F1_50 precision_50 recall_50 PQ dice iou`` (fractions), the counts
    ``tp_50 fp_50 fn_50 n_gt n_pred``, ``sum_iou_50`` and the foreground pixel counts (for pooling).
    ``thresholds`` must contain 0.5.
    """
    thr = np.asarray(thresholds, dtype=np.float64)
    i50 = np.flatnonzero(np.isclose(thr, 0.5))
    if i50.size == 0:
        raise ValueError("thresholds must include 0.5")
    ov = instance_overlap(gt, pred)
    res = match_overlap(ov, thr)
    r50 = res[int(i50[0])]
    sem = semantic_scores(gt, pred)
    return {
        "mSA": float(np.mean([r.accuracy for r in res])),
        "SA50": r50.accuracy,
        "F1_50": r50.f1,
        "precision_50": r50.precision,
        "recall_50": r50.recall,
        "PQ": r50.panoptic_quality,
        "dice": sem["dice"],
        "iou": sem["iou"],
        "tp_50": r50.tp,
        "fp_50": r50.fp,
        "fn_50": r50.fn,
        "sum_iou_50": r50.mean_matched_iou * r50.tp,
        "n_gt": ov.n_gt,
        "n_pred": ov.n_pred,
        "fg_inter": sem["inter"],
        "fg_gt": sem["gt_fg"],
        "fg_pred": sem["pred_fg"],
    }


def pool_instance_metrics(per_image: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Dataset-level summary of :func:`instance_metrics` results.

    ``mSA`` and ``SA50`` are averaged over images (micro-sam); precision, recall, F1 and PQ at 0.5
    pool the TP/FP/FN counts of all images (StarDist's ``matching_dataset(by_image=False)``);
    Dice and IoU pool the foreground pixels.
    """
    if not per_image:
        return {
            k: float("nan")
            for k in ("mSA", "SA50", "F1_50", "precision_50", "recall_50", "PQ", "dice", "iou")
        }
    tp = sum(int(m["tp_50"]) for m in per_image)
    fp = sum(int(m["fp_50"]) for m in per_image)
    fn = sum(int(m["fn_50"]) for m in per_image)
    s_iou = sum(float(m["sum_iou_50"]) for m in per_image)
    r = _result(0.5, tp, tp + fn, tp + fp, s_iou)
    sem = _dice_iou(
        sum(int(m["fg_inter"]) for m in per_image),
        sum(int(m["fg_gt"]) for m in per_image),
        sum(int(m["fg_pred"]) for m in per_image),
    )
    return {
        "mSA": float(np.mean([m["mSA"] for m in per_image])),
        "SA50": float(np.mean([m["SA50"] for m in per_image])),
        "F1_50": r.f1,
        "precision_50": r.precision,
        "recall_50": r.recall,
        "PQ": r.panoptic_quality,
        "dice": sem["dice"],
        "iou": sem["iou"],
    }


# ----------------------------------------------------------------------------------------------
# label image -> COCO RLE
# ----------------------------------------------------------------------------------------------
def labels_to_rles(labels: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]], np.ndarray]:
    """Encode every instance of a label image as a compressed COCO RLE, in one vectorized pass.

    Returns ``(ids, rles, areas)``: sorted non-zero labels, one ``{"size": [h, w], "counts": str}``
    per label (identical to ``pycocotools.mask.encode`` of the instance's binary mask) and the pixel
    counts. The runs are found for all instances at once on the column-major foreground pixels,
    so no full-size mask is ever built per instance.
    """
    from pycocotools import mask as mask_utils

    lab = _check_labels(labels, "labels")
    if lab.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {lab.shape}")
    h, w = lab.shape
    flat_f = lab.T.ravel()  # column-major (Fortran) order, as COCO RLE
    pos = np.flatnonzero(flat_f)
    if pos.size == 0:
        return np.zeros(0, np.int64), [], np.zeros(0, np.int64)
    vals = flat_f[pos]
    order = np.argsort(vals, kind="stable")  # group by label, positions stay increasing
    pos, vals = pos[order], vals[order]
    new_lab = np.ones(pos.size, dtype=bool)
    new_lab[1:] = vals[1:] != vals[:-1]
    run_start = new_lab.copy()
    run_start[1:] |= pos[1:] != pos[:-1] + 1
    starts = np.flatnonzero(run_start)
    run_pos = pos[starts]
    run_len = np.diff(np.append(starts, pos.size))
    run_lab_first = new_lab[starts]
    run_end = run_pos + run_len
    prev_end = np.empty_like(run_end)
    prev_end[0] = 0
    prev_end[1:] = run_end[:-1]
    prev_end[run_lab_first] = 0
    gaps = run_pos - prev_end
    lab_start_runs = np.flatnonzero(run_lab_first)
    ids = vals[starts[lab_start_runs]].astype(np.int64)
    areas = np.add.reduceat(run_len, lab_start_runs).astype(np.int64)
    # interleave gap, length per run; append trailing zeros per label
    last_run = np.append(lab_start_runs[1:], run_len.size) - 1
    tail = h * w - run_end[last_run]
    inter = np.empty(2 * run_len.size, dtype=np.int64)
    inter[0::2] = gaps
    inter[1::2] = run_len
    splits = np.split(inter, 2 * lab_start_runs[1:])
    objs = []
    for seg, t in zip(splits, tail.tolist()):
        counts = seg.tolist()
        if t:
            counts.append(t)
        objs.append({"size": [h, w], "counts": counts})
    rles = mask_utils.frPyObjects(objs, h, w)
    for r in rles:
        if isinstance(r["counts"], bytes):
            r["counts"] = r["counts"].decode("ascii")
    return ids, rles, areas


# ----------------------------------------------------------------------------------------------
# COCO mask AP (LIVECell protocol)
# ----------------------------------------------------------------------------------------------
def _set_livecell_params(ev: Any, img_ids: Sequence[int] | None) -> None:
    p = ev.params
    p.useCats = 0
    p.iouType = "segm"
    p.maxDets = list(LIVECELL_MAX_DETS)
    p.areaRng = [list(v) for v in LIVECELL_AREA_RANGES.values()]
    p.areaRngLbl = list(LIVECELL_AREA_RANGES)
    p.iouThrs = np.linspace(0.5, 0.95, 10)
    p.recThrs = np.linspace(0.0, 1.0, 101)
    if img_ids is not None:
        p.imgIds = sorted(int(i) for i in img_ids)


def summarize_coco_eval(eval_: dict[str, Any], iou_thrs: np.ndarray | None = None) -> dict[str, float]:
    """LIVECell summary from a COCOeval ``eval`` dict (``precision`` [T,R,K,A,M], ``recall`` [T,K,A,M]).

    AP values in percent over the valid (> -1) entries at maxDets=2000, AFNR as a fraction;
    NaN where there is nothing to average (e.g. no ground truth in an area range).
    Beware: pycocotools' own ``summarize()`` reports its first AP at maxDets=100 whatever
    ``params.maxDets`` holds; with up to 2,000 cells per image that is a different number.
    """
    prec = np.asarray(eval_["precision"], dtype=np.float64)
    rec = np.asarray(eval_["recall"], dtype=np.float64)
    thr = np.linspace(0.5, 0.95, 10) if iou_thrs is None else np.asarray(iou_thrs)
    m = len(LIVECELL_MAX_DETS) - 1

    def ap(a: int, t: float | None = None) -> float:
        s = prec[:, :, :, a, m]
        if t is not None:
            s = s[np.flatnonzero(np.isclose(thr, t))]
        s = s[s > -1]
        return float(100.0 * s.mean()) if s.size else float("nan")

    r = rec[:, :, 0, m]
    r = r[r > -1]
    return {
        "AP": ap(0),
        "AP50": ap(0, 0.5),
        "AP75": ap(0, 0.75),
        "APs": ap(1),
        "APm": ap(2),
        "APl": ap(3),
        "AFNR": float(np.mean(1.0 - r)) if r.size else float("nan"),
    }


def coco_eval_livecell(
    gt_dataset: dict[str, Any],
    results: list[dict[str, Any]],
    *,
    img_ids: Sequence[int] | None = None,
    backend: str = "faster",
) -> Any:
    """Run COCOeval (segm) with the LIVECell parameters; return the evaluated+accumulated object.

    ``gt_dataset`` is a COCO dict (``images``, ``annotations`` as a list, ``categories``);
    ``results`` a COCO results list (``image_id``, ``category_id``, ``segmentation`` RLE or
    polygons, ``score``). ``backend``: ``"faster"`` (faster-coco-eval, C++) or ``"pycocotools"``.
    """
    import contextlib
    import io

    # the COCO classes add keys (rle, area, bbox, id, ...) to the annotation dicts they are given:
    # work on copies so that the caller's dicts stay as they were
    gt_dataset = {**gt_dataset, "annotations": [dict(a) for a in gt_dataset["annotations"]]}
    results = [
        {
            **r,
            "segmentation": dict(r["segmentation"])
            if isinstance(r["segmentation"], dict)
            else r["segmentation"],
        }
        for r in results
    ]
    if backend == "faster":
        from faster_coco_eval import COCO, COCOeval_faster

        gt = COCO(gt_dataset)
        dt = gt.loadRes(results) if results else COCO(_empty_like(gt_dataset))
        ev = COCOeval_faster(gt, dt, iouType="segm", print_function=lambda *a, **k: None)
    elif backend == "pycocotools":
        from pycocotools.coco import COCO as PCOCO
        from pycocotools.cocoeval import COCOeval

        with contextlib.redirect_stdout(io.StringIO()):
            gt = PCOCO()
            gt.dataset = gt_dataset
            gt.createIndex()
            dt = gt.loadRes(results) if results else _pyco_empty(gt_dataset)
        ev = COCOeval(gt, dt, iouType="segm")
    else:
        raise ValueError(f"unknown COCOeval backend {backend!r} (use 'faster' or 'pycocotools')")
    _set_livecell_params(ev, img_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    return ev


def _empty_like(gt_dataset: dict[str, Any]) -> dict[str, Any]:
    return {"images": gt_dataset["images"], "annotations": [], "categories": gt_dataset.get("categories", [])}


def _pyco_empty(gt_dataset: dict[str, Any]) -> Any:
    from pycocotools.coco import COCO as PCOCO

    dt = PCOCO()
    dt.dataset = _empty_like(gt_dataset)
    dt.createIndex()
    return dt


def labels_to_coco(
    gts: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    scores: Sequence[dict[int, float] | None] | None = None,
    image_ids: Sequence[int] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ground-truth COCO dict and results list from label images (one category, ``iscrowd`` 0).

    A prediction's score is ``scores[i][label]`` when given, else :data:`DEFAULT_SCORE` (1.0).
    With equal scores COCOeval keeps the input order (stable sort), i.e. increasing label, so the
    precision-recall curve then has no meaningful ranking and AP approaches precision x recall.
    """
    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} ground-truth images but {len(preds)} predictions")
    if image_ids is None:
        image_ids = list(range(1, len(gts) + 1))
    if len(image_ids) != len(gts):
        raise ValueError("image_ids must have one id per image")
    if scores is not None and len(scores) != len(gts):
        raise ValueError("scores must have one dict (or None) per image")
    images, anns, results = [], [], []
    ann_id = 1
    for i, (g, p) in enumerate(zip(gts, preds)):
        g = np.asarray(g)
        p = np.asarray(p)
        if g.shape != p.shape:
            raise ValueError(f"image {image_ids[i]}: gt and pred shapes differ: {g.shape} vs {p.shape}")
        h, w = g.shape
        iid = int(image_ids[i])
        images.append({"id": iid, "height": h, "width": w, "file_name": f"{iid}.tif"})
        ids, rles, areas = labels_to_rles(g)
        for rle, a in zip(rles, areas.tolist()):
            anns.append(
                {
                    "id": ann_id,
                    "image_id": iid,
                    "category_id": 1,
                    "segmentation": rle,
                    "area": float(a),
                    "iscrowd": 0,
                    "bbox": _bbox(rle),
                }
            )
            ann_id += 1
        ids, rles, areas = labels_to_rles(p)
        sc = scores[i] if scores is not None else None
        for lab, rle in zip(ids.tolist(), rles):
            s = DEFAULT_SCORE if sc is None else float(sc.get(lab, sc.get(str(lab), DEFAULT_SCORE)))
            results.append({"image_id": iid, "category_id": 1, "segmentation": rle, "score": s})
    gt_dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cell"}]}
    return gt_dataset, results


def _bbox(rle: dict[str, Any]) -> list[float]:
    from pycocotools import mask as mask_utils

    return [float(v) for v in mask_utils.toBbox(rle)]


def coco_mask_ap(
    gts: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    scores: Sequence[dict[int, float] | None] | None = None,
    image_ids: Sequence[int] | None = None,
    *,
    backend: str = "faster",
) -> dict[str, float]:
    """COCO mask AP of label images with the LIVECell protocol.

    Returns ``{"AP", "AP50", "AP75", "APs", "APm", "APl"}`` in percent and ``"AFNR"`` as a
    fraction (NaN when undefined, e.g. no small cells). ``scores[i]`` maps prediction labels of
    image ``i`` to confidences (e.g. mean foreground probability, ``postprocess.instance_scores``);
    without scores every instance gets 1.0 (see :func:`labels_to_coco`). Ground truth here is the
    label images; to evaluate against the raw (overlapping) LIVECell polygons use
    :func:`coco_eval_livecell` on the annotation json.
    """
    gt_dataset, results = labels_to_coco(gts, preds, scores, image_ids)
    ev = coco_eval_livecell(gt_dataset, results, backend=backend)
    return summarize_coco_eval(ev.eval)


def evaluate_subsets(ev: Any, subsets: dict[str, Sequence[int]]) -> dict[str, dict[str, Any]]:
    """Re-run an evaluated COCOeval on image subsets (e.g. one per cell type), reusing its IoUs.

    ``ev`` comes from :func:`coco_eval_livecell`; the IoUs computed for all images are looked up
    instead of recomputed. Returns ``{name: {"summary": LIVECell summary, "precision": array}}``;
    ``ev`` is left evaluated on the last subset, its ``params.imgIds`` restored afterwards.
    """
    import contextlib
    import io

    cache = dict(ev.ious)
    all_ids = list(ev.params.imgIds)
    # pycocotools' accumulate() overwrites params.catIds with [-1] when useCats=0; a second
    # evaluate() would then find no ground truth, so the category ids are restored each time
    cat_ids = sorted(ev.cocoGt.getCatIds())

    def cached(img_id: int, cat_id: int) -> Any:
        return cache.get((img_id, cat_id), [])

    out: dict[str, dict[str, Any]] = {}
    ev.computeIoU = cached
    try:
        for name, ids in subsets.items():
            ev.params.imgIds = sorted(int(i) for i in ids)
            ev.params.catIds = list(cat_ids)
            with contextlib.redirect_stdout(io.StringIO()):
                ev.evaluate()
                ev.accumulate()
            out[name] = {
                "summary": summarize_coco_eval(ev.eval),
                "precision": np.asarray(ev.eval["precision"]),
            }
    finally:
        del ev.computeIoU
        ev.params.imgIds = all_ids
        ev.params.catIds = list(cat_ids)
    return out
