"""Metrics: hand-made label images with known TP/FP/FN, brute-force references, pycocotools COCOeval."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from conftest import pycocotools_eval, pycocotools_results
from livecell_seg.evaluation import metrics as M


def square(lab: np.ndarray, y: int, x: int, size: int, value: int, w: int | None = None) -> None:
    lab[y : y + size, x : x + (w or size)] = value


def disks(h: int, w: int, n: int, rng: np.random.Generator, rmin: int = 3, rmax: int = 25) -> np.ndarray:
    """Random (possibly touching/overwriting) disks with radii spanning small/medium/large areas."""
    lab = np.zeros((h, w), np.int32)
    yy, xx = np.mgrid[:h, :w]
    for i in range(1, n + 1):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(rmin, rmax)
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = i
    return lab


def brute_iou(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    gi = [v for v in np.unique(gt) if v]
    pi = [v for v in np.unique(pred) if v]
    out = np.zeros((len(gi), len(pi)))
    for a, g in enumerate(gi):
        for b, p in enumerate(pi):
            mg, mp = gt == g, pred == p
            out[a, b] = (mg & mp).sum() / (mg | mp).sum()
    return out


def stardist_tp(iou: np.ndarray, thr: float) -> int:
    """StarDist's dense formulation (reference)."""
    n = min(iou.shape)
    if n == 0:
        return 0
    cost = -(iou >= thr).astype(float) - iou / (2 * n)
    r, c = linear_sum_assignment(cost)
    return int(np.count_nonzero(iou[r, c] >= thr))


# ---------------------------------------------------------------------------------------------
@pytest.fixture
def known() -> tuple[np.ndarray, np.ndarray]:
    """4 gt squares of 10x10; 4 predictions: an exact copy, a 2-px shift (IoU 80/120), a 5-px shift
    (IoU 50/150), and a false positive far away; the 4th gt square is missed."""
    gt = np.zeros((64, 64), np.uint16)
    pred = np.zeros_like(gt)
    square(gt, 2, 2, 10, 1)
    square(pred, 2, 2, 10, 7)  # exact
    square(gt, 2, 30, 10, 2)
    square(pred, 2, 32, 10, 3)  # IoU 2/3
    square(gt, 30, 2, 10, 5)
    square(pred, 30, 7, 10, 9)  # IoU 1/3
    square(gt, 30, 30, 10, 6)  # missed
    square(pred, 50, 50, 8, 4)  # false positive
    return gt, pred


def test_iou_matrix_hand_made(known) -> None:
    gt, pred = known
    m = M.iou_matrix(gt, pred)
    assert m.shape == (4, 4)  # gt ids 1,2,5,6 ; pred ids 3,4,7,9
    # rows/cols in sorted label order
    assert m[0, 2] == pytest.approx(1.0)
    assert m[1, 0] == pytest.approx(80 / 120)
    assert m[2, 3] == pytest.approx(50 / 150)
    assert np.count_nonzero(m) == 3 and not m[:, 1].any()  # pred 4 = false positive
    np.testing.assert_allclose(m, brute_iou(gt, pred))


def test_match_known_counts(known) -> None:
    gt, pred = known
    r = M.match_instances(gt, pred, 0.5)
    assert (r.tp, r.fp, r.fn) == (2, 2, 2)
    assert r.precision == pytest.approx(2 / 4)
    assert r.recall == pytest.approx(2 / 4)
    assert r.f1 == pytest.approx(2 * 2 / (4 + 4))
    assert r.accuracy == pytest.approx(2 / 6)
    assert r.mean_matched_iou == pytest.approx((1 + 2 / 3) / 2)
    assert r.panoptic_quality == pytest.approx((1 + 2 / 3) / (2 + 1 + 1))
    r3 = M.match_instances(gt, pred, 0.3)
    assert (r3.tp, r3.fp, r3.fn) == (3, 1, 1)
    r_hi = M.match_instances(gt, pred, 0.95)
    assert (r_hi.tp, r_hi.fp, r_hi.fn) == (1, 3, 3)


def test_msa_and_sa(known) -> None:
    gt, pred = known
    acc = M.segmentation_accuracies(gt, pred)
    # thresholds 0.50..0.65 -> 2 TP (IoU 2/3 >= t), 0.70..0.95 -> 1 TP
    exp = np.array([2 / 6 if t <= 2 / 3 else 1 / 7 for t in M.DEFAULT_THRESHOLDS])
    np.testing.assert_allclose(acc, exp)
    assert M.mean_segmentation_accuracy(gt, pred) == pytest.approx(exp.mean())
    im = M.instance_metrics(gt, pred)
    assert im["mSA"] == pytest.approx(exp.mean())
    assert im["SA50"] == pytest.approx(2 / 6)
    assert im["F1_50"] == pytest.approx(1 / 2)
    assert (im["tp_50"], im["fp_50"], im["fn_50"], im["n_gt"], im["n_pred"]) == (2, 2, 2, 4, 4)
    assert M.panoptic_quality(gt, pred) == pytest.approx(im["PQ"])


def test_exact_half_tie_is_one_to_one() -> None:
    gt = np.zeros((20, 20), np.int32)
    pred = np.zeros_like(gt)
    square(gt, 0, 0, 10, 1)
    square(pred, 0, 0, 10, 1, w=5)
    square(pred, 0, 5, 10, 2, w=5)  # both halves have IoU exactly 0.5 with the gt square
    r = M.match_instances(gt, pred, 0.5)
    assert (r.tp, r.fp, r.fn) == (1, 1, 0)


def test_optimal_beats_greedy() -> None:
    """Greedy (best IoU first) matches A-P only; the optimal matching is A-Q, B-P."""
    ov = M.Overlap(
        gt_ids=np.array([1, 2]),
        pred_ids=np.array([1, 2]),
        gt_areas=np.array([10, 10]),
        pred_areas=np.array([10, 10]),
        pair_gt=np.array([0, 0, 1]),
        pair_pred=np.array([0, 1, 0]),
        pair_inter=np.array([1, 1, 1]),
        pair_iou=np.array([0.45, 0.40, 0.42]),
    )
    (r,) = M.match_overlap(ov, [0.3])
    assert r.tp == 2 and r.fp == 0 and r.fn == 0
    assert r.mean_matched_iou == pytest.approx(0.41)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matching_equals_stardist_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = disks(48, 56, 14, rng, 3, 9)
    pred = disks(48, 56, 12, rng, 3, 9)
    pred[:24, :] = np.roll(gt, 1, axis=1)[:24, :] * (gt[:24, :] > 0)  # some good matches
    ref = brute_iou(gt, pred)
    np.testing.assert_allclose(M.iou_matrix(gt, pred), ref)
    for thr in (0.1, 0.2, 0.3, 0.5, 0.7, 0.9):
        r = M.match_instances(gt, pred, thr)
        assert r.tp == stardist_tp(ref, thr), thr
        assert r.tp + r.fn == ref.shape[0] and r.tp + r.fp == ref.shape[1]


def test_empty_and_degenerate() -> None:
    z = np.zeros((8, 8), np.uint8)
    one = z.copy()
    one[2:4, 2:4] = 1
    r = M.match_instances(z, z)
    assert (r.tp, r.fp, r.fn, r.accuracy, r.f1) == (0, 0, 0, 1.0, 1.0)
    r = M.match_instances(one, z)
    assert (r.tp, r.fn, r.precision, r.recall, r.accuracy) == (0, 1, 0.0, 0.0, 0.0)
    assert M.semantic_scores(z, z) == {"dice": 1.0, "iou": 1.0, "inter": 0, "gt_fg": 0, "pred_fg": 0}
    with pytest.raises(ValueError, match="shapes differ"):
        M.match_instances(one, np.zeros((8, 9), int))
    with pytest.raises(ValueError, match="negative"):
        M.iou_matrix(one, -one.astype(int))
    with pytest.raises(ValueError, match="threshold"):
        M.match_instances(one, one, 0.0)
    # zero-sized images (an empty crop): no instances, perfect agreement, no crash
    e = np.zeros((0, 5), np.int32)
    r = M.match_instances(e, e)
    assert (r.tp, r.fp, r.fn, r.f1) == (0, 0, 0, 1.0)
    assert M.instance_metrics(e, e)["n_gt"] == 0 and M.iou_matrix(e, e).shape == (0, 0)


def test_large_sparse_label_values() -> None:
    gt = np.zeros((10, 10), np.int64)
    gt[:5] = 10**9
    gt[5:] = 7
    pred = gt.copy()
    pred[:, :2] = 0
    m = M.iou_matrix(gt, pred)
    np.testing.assert_allclose(m, np.eye(2) * 0.8)


def test_semantic_scores() -> None:
    gt = np.zeros((10, 10), np.int32)
    pred = np.zeros_like(gt)
    gt[:, :5] = 1
    pred[:, 3:8] = 2
    s = M.semantic_scores(gt, pred)
    assert s["dice"] == pytest.approx(2 * 20 / 100)
    assert s["iou"] == pytest.approx(20 / 80)


def test_pooling() -> None:
    a = {"mSA": 0.2, "SA50": 0.5, "tp_50": 3, "fp_50": 1, "fn_50": 0, "sum_iou_50": 2.4}
    b = {"mSA": 0.4, "SA50": 0.1, "tp_50": 1, "fp_50": 0, "fn_50": 4, "sum_iou_50": 0.6}
    for d, (i, g, p) in zip((a, b), ((5, 10, 10), (0, 0, 4))):
        d.update(fg_inter=i, fg_gt=g, fg_pred=p)
    s = M.pool_instance_metrics([a, b])
    assert s["mSA"] == pytest.approx(0.3)
    assert s["SA50"] == pytest.approx(0.3)
    assert s["precision_50"] == pytest.approx(4 / 5)
    assert s["recall_50"] == pytest.approx(4 / 8)
    assert s["F1_50"] == pytest.approx(8 / 13)
    assert s["PQ"] == pytest.approx(3.0 / (4 + 0.5 + 2))
    assert s["dice"] == pytest.approx(10 / 24)


def test_result_keys_are_the_documented_api(known) -> None:
    """Callers (evaluate, the report, the app, metrics.json) read these exact keys."""
    gt, pred = known
    m = M.instance_metrics(gt, pred)
    assert set(m) == {
        "mSA", "SA50", "F1_50", "precision_50", "recall_50", "PQ", "dice", "iou", "tp_50", "fp_50",
        "fn_50", "sum_iou_50", "n_gt", "n_pred", "fg_inter", "fg_gt", "fg_pred",
    }  # fmt: skip
    assert (m["tp_50"], m["fp_50"], m["fn_50"], m["n_gt"], m["n_pred"]) == (2, 2, 2, 4, 4)
    assert m["recall_50"] == pytest.approx(2 / 4) and m["precision_50"] == pytest.approx(2 / 4)
    pooled = M.pool_instance_metrics([m])
    assert set(pooled) == {"mSA", "SA50", "F1_50", "precision_50", "recall_50", "PQ", "dice", "iou"}
    assert pooled["recall_50"] == pytest.approx(m["recall_50"]) and pooled["mSA"] == pytest.approx(m["mSA"])
    empty = M.pool_instance_metrics([])
    assert set(empty) == set(pooled) and all(np.isnan(v) for v in empty.values())
    d = M.match_instances(gt, pred).as_dict()
    assert d["panoptic_quality"] == pytest.approx(M.panoptic_quality(gt, pred))
    assert {"iou_threshold", "tp", "fp", "fn", "precision", "recall", "f1", "accuracy"} <= set(d)
    with pytest.raises(ValueError, match="thresholds must include 0.5"):
        M.instance_metrics(gt, pred, thresholds=[0.6, 0.7])


# ---------------------------------------------------------------------------------------------
# RLE + COCO AP
# ---------------------------------------------------------------------------------------------
def test_labels_to_rles_matches_pycocotools() -> None:
    from pycocotools import mask as mu

    rng = np.random.default_rng(3)
    lab = disks(37, 53, 25, rng, 2, 12) * 3  # non-consecutive labels, touching borders
    lab[0, :] = 999
    lab[:, -1] = 1000
    ids, rles, areas = M.labels_to_rles(lab)
    assert list(ids) == [v for v in np.unique(lab) if v]
    for i, rle, a in zip(ids, rles, areas):
        ref = mu.encode(np.asfortranarray((lab == i).astype(np.uint8)))
        assert rle["counts"] == ref["counts"].decode()
        assert rle["size"] == [37, 53]
        assert a == (lab == i).sum()
        np.testing.assert_array_equal(mu.decode(rle), lab == i)
    assert M.labels_to_rles(np.zeros((4, 4), int))[1] == []


def _pycocotools_reference(gts, preds, scores):
    """Independent reference: pycocotools encode + loadRes + COCOeval with LIVECell params."""
    from pycocotools import mask as mu

    images, anns, res = [], [], []
    k = 1
    for iid, (g, p, s) in enumerate(zip(gts, preds, scores), start=1):
        images.append({"id": iid, "height": g.shape[0], "width": g.shape[1]})
        for v in np.unique(g)[1:]:
            rle = mu.encode(np.asfortranarray((g == v).astype(np.uint8)))
            anns.append(
                {
                    "id": k,
                    "image_id": iid,
                    "category_id": 1,
                    "segmentation": rle,
                    "area": float(mu.area(rle)),
                    "bbox": list(mu.toBbox(rle)),
                    "iscrowd": 0,
                }
            )
            k += 1
        res += pycocotools_results([iid], [p], [s])
    ev = pycocotools_eval({"images": images, "annotations": anns, "categories": [{"id": 1}]}, res)
    st0 = float(ev.stats[0])
    # NB: pycocotools' summarize() computes stats[0] (AP) at maxDets=100 whatever params.maxDets
    # says; the LIVECell AP is at 2000 detections, so it is read from eval["precision"] directly
    prec = ev.eval["precision"]  # [T, R, K, A, M]; M index 2 = 2000 detections

    def ap(a: int, t: int | None = None) -> float:
        x = prec[:, :, :, a, 2] if t is None else prec[t, :, :, a, 2]
        x = x[x > -1]
        return 100 * float(x.mean()) if x.size else float("nan")

    return {
        "AP": ap(0),
        "AP50": ap(0, 0),
        "AP75": ap(0, 5),
        "APs": ap(1),
        "APm": ap(2),
        "APl": ap(3),
        "AP_at_100": 100 * st0,
        "AFNR": float(np.mean(1 - ev.eval["recall"][:, 0, 0, 2])),
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_coco_ap_equals_pycocotools(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gts, preds, scores = [], [], []
    for _ in range(3):
        g = disks(90, 120, 30, rng)
        shift = rng.integers(-3, 4, size=2)
        p = np.roll(g, tuple(shift), axis=(0, 1))
        extra = disks(90, 120, 6, rng)
        p = np.where((p == 0) & (extra > 0), extra + 1000, p)
        p[p == int(rng.integers(1, 30))] = 0  # drop one
        gts.append(g)
        preds.append(p)
        scores.append({int(v): float(rng.random()) for v in np.unique(p)[1:]})
    ref = _pycocotools_reference(gts, preds, scores)
    for backend in ("faster", "pycocotools"):
        got = M.coco_mask_ap(gts, preds, scores, backend=backend)
        for k in M.AP_KEYS:
            assert got[k] == pytest.approx(ref[k], abs=1e-9, nan_ok=True), (backend, k)
    assert 0 < ref["AP"] < 100 and 0 < ref["AFNR"] < 1
    # the inputs are left untouched (the COCO classes add keys to the dicts they get)
    gd, res = M.labels_to_coco(gts, preds, scores)
    before = (json.dumps(gd), json.dumps(res))
    M.coco_eval_livecell(gd, res)
    M.coco_eval_livecell(gd, res, backend="pycocotools")
    assert (json.dumps(gd), json.dumps(res)) == before
    # the score ranking matters: all-equal scores give a different AP
    flat = M.coco_mask_ap(gts, preds)
    ref_flat = _pycocotools_reference(gts, preds, [dict.fromkeys(s, 1.0) for s in scores])
    assert flat["AP"] == pytest.approx(ref_flat["AP"])


def test_coco_ap_perfect_and_empty() -> None:
    rng = np.random.default_rng(5)
    g = disks(80, 80, 20, rng)
    perfect = M.coco_mask_ap([g], [g.copy()])
    assert perfect["AP"] == pytest.approx(100.0) and perfect["AFNR"] == pytest.approx(0.0)
    empty = M.coco_mask_ap([g], [np.zeros_like(g)])
    assert empty["AP"] == pytest.approx(0.0) and empty["AFNR"] == pytest.approx(1.0)
    # no large cells in the ground truth -> APl undefined (NaN), not 0
    small = np.zeros((40, 40), np.int32)
    small[2:6, 2:6] = 1
    assert np.isnan(M.coco_mask_ap([small], [small])["APl"])
    with pytest.raises(ValueError):
        M.coco_mask_ap([g], [g, g])


def test_maxdets_2000_limit() -> None:
    """Detections ranked 1501-1520 of 2,500 count at maxDets=2000 (LIVECell AP), not at 100."""
    pred = np.zeros((150, 150), np.int32)
    k = 1
    for y in range(0, 150, 3):
        for x in range(0, 150, 3):
            pred[y : y + 2, x : x + 2] = k
            k += 1
    n = k - 1  # 2,500 predicted squares
    rng = np.random.default_rng(0)
    hits = rng.choice(np.arange(1, n + 1), size=20, replace=False)
    gt = np.where(np.isin(pred, hits), pred, 0)  # 20 ground-truth cells
    rank = {int(h): 1500 + i for i, h in enumerate(hits)}  # 0-based rank by decreasing score
    others = iter(v for v in range(n) if not 1500 <= v < 1520)
    order = {v: rank.get(v, None) for v in range(1, n + 1)}
    scores = {v: 1.0 - (r if r is not None else next(others)) / n for v, r in order.items()}
    r = M.coco_mask_ap([gt], [pred], [scores])
    assert r["AFNR"] == pytest.approx(0.0)
    exp_ap = np.mean(
        [
            max((i + 1) / (1501 + i) for i in range(j, 20))
            for j in np.ceil(np.linspace(0, 1, 101) * 20 - 1e-9).astype(int).clip(0, 19)
        ]
    )
    assert r["AP"] == pytest.approx(100 * exp_ap, rel=1e-6)
    ref = _pycocotools_reference([gt], [pred], [scores])
    assert r["AP"] == pytest.approx(ref["AP"])
    # pycocotools' summarize() AP is at 100 detections: 0 here, not the LIVECell number
    assert ref["AP_at_100"] == 0.0


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_evaluate_subsets_equals_fresh_runs(backend: str) -> None:
    rng = np.random.default_rng(11)
    gts = [disks(60, 60, 12, rng) for _ in range(4)]
    preds = [np.roll(g, (1, 2), axis=(0, 1)) for g in gts]
    preds[2] = disks(60, 60, 10, rng)
    scores = [{int(v): float(rng.random()) for v in np.unique(p)[1:]} for p in preds]
    gd, res = M.labels_to_coco(gts, preds, scores)
    ev = M.coco_eval_livecell(gd, res, backend=backend)
    full = M.summarize_coco_eval(ev.eval)
    sub = M.evaluate_subsets(ev, {"a": [1, 2], "b": [3, 4]})
    for name, idx in (("a", [0, 1]), ("b", [2, 3])):
        fresh = M.coco_mask_ap([gts[i] for i in idx], [preds[i] for i in idx], [scores[i] for i in idx])
        for k in M.AP_KEYS:
            assert sub[name]["summary"][k] == pytest.approx(fresh[k], nan_ok=True), (name, k)
    assert sub["a"]["summary"]["AP"] != pytest.approx(sub["b"]["summary"]["AP"])
    assert full["AP"] == pytest.approx(M.coco_mask_ap(gts, preds, scores)["AP"])
