"""evaluate: label folder / results json against a LIVECell-style json, metrics.json, report, CLI."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import pycocotools_eval, pycocotools_results
from livecell_seg.cli import main
from livecell_seg.errors import InputFileError
from livecell_seg.evaluation import evaluate as E
from livecell_seg.io import write_labels

H, W = 48, 64
NAMES = [
    "A172_Phase_C7_1_00d00h00m_1.tif",
    "A172_Phase_C7_1_00d04h00m_2.tif",
    "MCF7_Phase_G4_2_00d00h00m_1.tif",
]


def sq(x: int, y: int, s: int) -> list[float]:
    """Square polygon covering pixels [x, x+s) x [y, y+s) when rasterized by pycocotools."""
    return [x - 0.5, y - 0.5, x + s - 0.5, y - 0.5, x + s - 0.5, y + s - 0.5, x - 0.5, y + s - 0.5]


# per image: gt squares (x, y, size)
GT_SQUARES = [
    [(2, 2, 8), (20, 2, 10), (40, 4, 12), (2, 25, 9), (25, 25, 20)],
    [(5, 5, 6), (30, 10, 15)],
    [(1, 1, 5), (10, 10, 7), (40, 20, 19), (20, 35, 6)],
]


def make_json(path: Path, overlap: bool = False) -> dict:
    images, anns = [], []
    k = 1
    for i, (name, squares) in enumerate(zip(NAMES, GT_SQUARES), start=1):
        images.append({"id": i * 10, "file_name": name, "width": W, "height": H})
        for x, y, s in squares:
            anns.append(
                {
                    "id": k,
                    "image_id": i * 10,
                    "category_id": 1,
                    "segmentation": [sq(x, y, s)],
                    "area": float(s * s),
                    "bbox": [x, y, s, s],
                    "iscrowd": 0,
                }
            )
            k += 1
    if overlap:  # a cell half under another one (the LIVECell polygons overlap)
        anns.append(
            {
                "id": k,
                "image_id": 10,
                "category_id": 1,
                "segmentation": [sq(28, 30, 10)],
                "area": 100.0,
                "bbox": [28, 30, 10, 10],
                "iscrowd": 0,
            }
        )
    d = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cell"}]}
    path.write_text(json.dumps(d))
    return d


def square_labels(squares: list[tuple[int, int, int]], shift: int = 0) -> np.ndarray:
    lab = np.zeros((H, W), np.int32)
    for j, (x, y, s) in enumerate(squares, start=1):
        lab[y : y + s, x + shift : x + s + shift] = j
    return lab


@pytest.fixture
def setup(tmp_path: Path):
    gt_json = tmp_path / "gt.json"
    make_json(gt_json)
    pred = tmp_path / "pred"
    pred.mkdir()
    # image 1: exact except the last square missed and one false positive; image 2: shifted by 2
    p1 = square_labels(GT_SQUARES[0][:4])
    p1[40:46, 50:56] = 9
    write_labels(pred / (Path(NAMES[0]).stem + ".tif"), p1)
    write_labels(pred / (Path(NAMES[1]).stem + ".tif"), square_labels(GT_SQUARES[1], shift=2))
    # image 3 (MCF7) has no prediction -> empty
    return gt_json, pred, [p1, square_labels(GT_SQUARES[1], shift=2), np.zeros((H, W), np.int32)]


def reference_ap(gt_dict: dict, preds: list[np.ndarray], scores: list[dict] | None, ids: list[int]) -> dict:
    """pycocotools on the json's polygons + pycocotools-encoded predictions."""
    ev = pycocotools_eval(json.loads(json.dumps(gt_dict)), pycocotools_results(ids, preds, scores))
    return {
        "AP": 100 * ev.stats[0],
        "AP50": 100 * ev.stats[1],
        "AFNR": float(np.mean(1 - ev.eval["recall"][:, 0, 0, 2])),
    }


def test_label_folder(setup, caplog) -> None:
    gt_json, pred, preds = setup
    r = E.evaluate(gt_json, pred)
    m = r.metrics
    seen = [rec.getMessage() for rec in caplog.records if rec.levelname == "WARNING"]
    assert any("1 of 3 images have no prediction" in w for w in seen)
    assert seen == m["warnings"]  # logged and listed in the result
    assert m["n_images"] == 3 and m["n_gt_instances"] == 11
    for k in E.METRIC_KEYS:
        assert k in m
    for k in E.FRACTION_KEYS:
        assert 0.0 <= m[k] <= 1.0
    # matching at 0.5: image 1: 4 TP, 1 FP, 1 FN; image 2: shift 2 -> IoU 4/8, 13/17 -> both TP; image 3: 4 FN
    tp, fp, fn = 4 + 2, 1, 1 + 4
    assert m["precision_50"] == pytest.approx(tp / (tp + fp), abs=1e-4)
    assert m["recall_50"] == pytest.approx(tp / (tp + fn), abs=1e-4)
    assert m["F1_50"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-4)
    assert m["mSA"] == pytest.approx(np.mean([pi["mSA"] for pi in r.per_image]), abs=1e-4)
    # per cell type
    assert set(m["per_cell_type"]) == {"A172", "MCF7"}
    assert m["per_cell_type"]["MCF7"]["AP"] == 0.0 and m["per_cell_type"]["MCF7"]["AFNR"] == 1.0
    assert m["per_cell_type"]["A172"]["n_images"] == 2
    # AP equals pycocotools on the json's polygons
    gt_dict = json.loads(gt_json.read_text())
    ref = reference_ap(gt_dict, preds, None, [10, 20, 30])
    assert m["AP"] == pytest.approx(ref["AP"], abs=1e-3)
    assert m["AP50"] == pytest.approx(ref["AP50"], abs=1e-3)
    assert m["AFNR"] == pytest.approx(ref["AFNR"], abs=1e-4)
    ref_a172 = reference_ap(
        {
            **gt_dict,
            "images": gt_dict["images"][:2],
            "annotations": [a for a in gt_dict["annotations"] if a["image_id"] != 30],
        },
        preds[:2],
        None,
        [10, 20],
    )
    assert m["per_cell_type"]["A172"]["AP"] == pytest.approx(ref_a172["AP"], abs=1e-3)
    assert m["protocol"]["scores"] == E.SCORE_RULE_CONSTANT
    # --only-predicted drops the MCF7 image
    r2 = E.evaluate(gt_json, pred, only_predicted=True)
    assert r2.metrics["n_images"] == 2 and set(r2.metrics["per_cell_type"]) == {"A172"}


def test_scores_from_maps(setup) -> None:
    from livecell_seg.inference.postprocess import save_maps

    gt_json, pred, preds = setup
    scores = []
    for name, p in zip(NAMES[:2], preds[:2]):
        fg = np.where(p > 0, 0.3 + 0.6 * (p % 3) / 3, 0.0).astype(np.float32)
        save_maps(pred / "maps" / (Path(name).stem + ".npy"), fg[None], "fg")
        scores.append({int(v): float(np.float16(fg[p == v][0])) for v in np.unique(p)[1:]})
    r = E.evaluate(gt_json, pred)
    assert r.metrics["protocol"]["scores"] == E.SCORE_RULE_MAPS
    ref = reference_ap(json.loads(gt_json.read_text()), preds, [*scores, {}], [10, 20, 30])
    assert r.metrics["AP"] == pytest.approx(ref["AP"], abs=1e-3)
    unranked = reference_ap(json.loads(gt_json.read_text()), preds, None, [10, 20, 30])
    assert abs(unranked["AP"] - ref["AP"]) > 0.5  # the scores really changed the ranking


def test_results_json_uses_raw_overlapping_polygons(tmp_path: Path) -> None:
    """Detections equal to the raw (overlapping) polygons score AP 100 against the json."""
    from pycocotools import mask as mu

    gt_json = tmp_path / "gt.json"
    d = make_json(gt_json, overlap=True)
    res = []
    for a in d["annotations"]:
        rle = mu.frPyObjects(a["segmentation"], H, W)[0]
        res.append(
            {
                "image_id": a["image_id"],
                "category_id": 1,
                "segmentation": {"size": [H, W], "counts": rle["counts"].decode()},
                "score": 0.9,
            }
        )
    rj = tmp_path / "res.json"
    rj.write_text(json.dumps(res))
    r = E.evaluate(gt_json, rj)
    assert r.metrics["AP"] == pytest.approx(100.0) and r.metrics["AFNR"] == pytest.approx(0.0)
    assert r.metrics["protocol"]["scores"] == E.SCORE_RULE_RESULTS
    # matching: the detections are painted like the ground truth is rasterized (smaller on top)
    assert r.metrics["F1_50"] == 1.0 and r.metrics["n_gt_instances"] == 12
    # detections below the score threshold are left out of the matching metrics only
    r2 = E.evaluate(gt_json, rj, score_threshold=0.95)
    assert r2.metrics["AP"] == pytest.approx(100.0) and r2.metrics["recall_50"] == 0.0
    # unknown image id / bad files
    rj.write_text(json.dumps([{**res[0], "image_id": 999}]))
    with pytest.raises(InputFileError, match="not in the ground-truth"):
        E.evaluate(gt_json, rj)
    rj.write_text("<html>")
    with pytest.raises(InputFileError, match="res.json"):
        E.evaluate(gt_json, rj)


def test_bad_prediction_shape(setup) -> None:
    gt_json, pred, _ = setup
    write_labels(pred / (Path(NAMES[2]).stem + ".tif"), np.zeros((10, 10), np.uint16))
    with pytest.raises(InputFileError, match="MCF7.*10x10"):
        E.evaluate(gt_json, pred)


def test_cli_and_report(setup, tmp_path: Path, capsys) -> None:
    gt_json, pred, _ = setup
    out = tmp_path / "m.json"
    rep = tmp_path / "rep"
    rc = main(
        [
            "evaluate",
            "--gt",
            str(gt_json),
            "--pred",
            str(pred),
            "--json-out",
            str(out),
            "--report",
            str(rep),
            "--quiet",
            "--worst",
            "2",
        ]
    )
    assert rc == 0
    m = json.loads(out.read_text())
    assert set(E.METRIC_KEYS) <= set(m) and "per_cell_type" in m and m["n_images"] == 3
    assert m["paper_comparison"]["per_cell_type"]["A172"]["paper_anchor_free_AP"] == 34.57
    page = (rep / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # bars, PR curves, 2 worst images
    png = base64.b64decode(page.split("data:image/png;base64,")[1].split('"')[0])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (rep / "worst_1.png").is_file()
    captured = capsys.readouterr()
    assert "A172" in captured.out
    assert (
        "livecell-seg evaluate: warning: 1 of 3 images have no prediction in " in captured.err.splitlines()[0]
    )
    rc = main(["evaluate", "--gt", str(gt_json), "--pred", str(tmp_path / "nope"), "--json-out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "nope" in err[0]


@pytest.mark.slow
def test_bench_evaluate_quick(capsys) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_evaluate.py"
    spec = importlib.util.spec_from_file_location("bench_evaluate", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "| typical |" in out and "| dense |" in out
