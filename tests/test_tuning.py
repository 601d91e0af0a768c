"""Parameter search on synthetic maps with a simple scorer; the model-folder flow with a fake network."""

from __future__ import annotations

import json

import numpy as np
import pytest

from livecell_seg.inference.postprocess import PostprocessParams
from livecell_seg.inference.tuning import default_grid, tune_params
from livecell_seg.training.targets import make_targets


def f1_at_half(gt_list, pred_list, scores_list) -> float:
    """F1 of instances matched at IoU > 0.5 (a simple stand-in for mask AP)."""
    tp = fp = fn = 0
    for gt, pred in zip(gt_list, pred_list):
        n_gt, n_pred = int(gt.max()), int(pred.max())
        inter = np.bincount(gt.ravel() * (n_pred + 1) + pred.ravel(), minlength=(n_gt + 1) * (n_pred + 1))
        inter = inter.reshape(n_gt + 1, n_pred + 1)[1:, 1:]
        a_gt = np.bincount(gt.ravel(), minlength=n_gt + 1)[1:]
        a_pr = np.bincount(pred.ravel(), minlength=n_pred + 1)[1:]
        iou = inter / np.maximum(a_gt[:, None] + a_pr[None, :] - inter, 1)
        m = int((iou > 0.5).sum())
        tp += m
        fp += n_pred - m
        fn += n_gt - m
    return 2 * tp / max(2 * tp + fp + fn, 1)


def synthetic_set(n: int = 3, seed: int = 0):
    """Label images of touching squares and blurred, noisy fg+boundary maps of them."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    gts, maps = [], []
    for _ in range(n):
        gt = np.zeros((64, 64), np.int32)
        k = 0
        for y in range(4, 56, 16):
            for x in range(4, 56, 14):
                k += 1
                gt[y : y + 14 + rng.integers(0, 3), x : x + 14] = k
        m = make_targets(gt, "fg+boundary")
        m = np.stack([ndi.gaussian_filter(c, 1.0) for c in m])
        m[0] = 0.2 + 0.5 * m[0]  # a weak network: cells at ~0.7, background at ~0.2
        m = np.clip(m + rng.normal(0, 0.03, m.shape), 0, 1).astype(np.float32)
        gts.append(gt)
        maps.append(m)
    return maps, gts


@pytest.mark.parametrize("method", ["coordinate", "grid"])
def test_tuning_beats_a_bad_start(method: str) -> None:
    maps, gts = synthetic_set()
    bad = PostprocessParams(fg_threshold=0.75, boundary_threshold=0.05)
    grid = {"fg_threshold": [0.3, 0.45, 0.75], "boundary_threshold": [0.05, 0.3, 0.5], "min_size": [0, 20]}
    best, score, history = tune_params(maps, gts, "fg+boundary", f1_at_half, grid, method=method, start=bad)
    start_score = history[0]["score"]
    assert history[0]["params"] == bad.to_dict()
    assert start_score < 0.5
    assert score > 0.9 and score > start_score
    assert best.fg_threshold in (0.3, 0.45)
    assert max(h["score"] for h in history) == score
    if method == "grid":
        assert len(history) == 1 + 3 * 3 * 2 - 1  # the start point is one of the combinations


def test_coordinate_search_reuses_evaluations() -> None:
    maps, gts = synthetic_set(2)
    calls = []

    def scorer(g, p, s):
        calls.append(1)
        return f1_at_half(g, p, s)

    _, _, history = tune_params(maps, gts, "fg+boundary", scorer, "small")
    keys = [json.dumps(h["params"], sort_keys=True) for h in history]
    assert len(keys) == len(set(keys)) == len(calls)


def test_grids_and_errors() -> None:
    for head in ("fg", "fg+boundary", "fg+dist"):
        for size in ("small", "full"):
            g = default_grid(head, size)
            assert g and all(k in PostprocessParams().to_dict() for k in g)
    from livecell_seg.errors import LivecellError

    maps, gts = synthetic_set(1)
    with pytest.raises(LivecellError):
        tune_params(maps, gts, "fg+boundary", f1_at_half, {"no_such_param": [1]})
    with pytest.raises(ValueError):
        tune_params(maps, gts[:0], "fg+boundary", f1_at_half)


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A tiny model folder, a 2-image COCO set and a fake network returning noisy GT maps."""
    torch = pytest.importorskip("torch")
    import tifffile

    from livecell_seg.model.folder import ModelConfig, build_model, model_to_dict, save_model_dir

    torch.set_num_threads(1)
    cfg = ModelConfig(head="fg+boundary", base_features=2, depth=1)
    model_dir = save_model_dir(tmp_path / "model", build_model(cfg), {"model": model_to_dict(cfg)})
    maps, gts = synthetic_set(2)
    images, anns = [], []
    (tmp_path / "imgs").mkdir()
    for i, gt in enumerate(gts, 1):
        name = f"A172_Phase_C7_1_00d00h00m_{i}.tif"
        tifffile.imwrite(tmp_path / "imgs" / name, (gt > 0).astype(np.uint8) * 100 + 50)
        images.append({"id": i, "file_name": name, "width": 64, "height": 64})
        for k in range(1, int(gt.max()) + 1):
            ys, xs = np.nonzero(gt == k)
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            poly = [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "segmentation": [poly],
                    "area": float((y1 - y0) * (x1 - x0)),
                    "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    "iscrowd": 0,
                }
            )
    js = tmp_path / "val.json"
    js.write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cell"}]})
    )
    seen: list[tuple[int, int]] = []

    def fake_predict_maps(loaded, image, **kw):  # the "network": noisy maps of the ground truth
        seen.append(image.shape)
        return maps[(len(seen) - 1) % len(maps)]  # images are visited in json order

    from livecell_seg.inference import tuning as tuning_mod

    monkeypatch.setattr(tuning_mod, "predict_maps", fake_predict_maps)
    # a deliberately bad tuned file to start from
    (model_dir / "postprocess.json").write_text(
        json.dumps({"fg_threshold": 0.75, "boundary_threshold": 0.05})
    )
    return model_dir, js, tmp_path / "imgs", seen


def test_tune_model_dir_with_fake_network(fake_model) -> None:
    from livecell_seg.inference.tuning import tune_model_dir

    model_dir, js, imgs, seen = fake_model
    grid = {"fg_threshold": [0.45, 0.75], "boundary_threshold": [0.05, 0.3]}
    res = tune_model_dir(model_dir, js, imgs, grid=grid, score_fn=f1_at_half)
    assert len(seen) == 2  # maps computed once per image
    written = json.loads((model_dir / "postprocess.json").read_text())
    assert written == json.loads(json.dumps(res))
    assert written["head"] == "fg+boundary"
    t = written["tuning"]
    assert t["n_images"] == 2 and t["score"] > 0.9 and t["evaluations"] >= 3
    assert PostprocessParams.from_dict(written).fg_threshold == 0.45


def test_tune_cli_mask_ap(fake_model, capsys) -> None:
    from livecell_seg.cli import main

    model_dir, js, imgs, _seen = fake_model
    before = (model_dir / "postprocess.json").read_text()
    args = ["tune", "--model", str(model_dir), "--json", str(js), "--images", str(imgs)]
    assert main([*args, "--dry-run"]) == 0
    assert (model_dir / "postprocess.json").read_text() == before
    assert main(args) == 0
    captured = capsys.readouterr()
    out, err = captured.out.splitlines(), captured.err.splitlines()
    assert out[-2].startswith("mask AP ") and json.loads(out[-1])["fg_threshold"] < 0.75  # stdout: the result
    # progress lines (logged) on stderr, one line each
    assert err[0].startswith("maps 2/2 (") and any(line.startswith("round 1, ") for line in err)
    assert err[-1] == f"wrote {model_dir / 'postprocess.json'}"
    written = json.loads((model_dir / "postprocess.json").read_text())
    t = written["tuning"]
    assert t["metric"] == "mask AP" and t["grid"] == "small" and t["n_images"] == 2
    assert t["score"] > 50.0 and t["score"] >= t["default_score"]
    assert written["fg_threshold"] < 0.75  # moved away from the bad start
    bad = js.parent / "bad.json"
    bad.write_text("<html>502 Bad Gateway</html>")
    assert main(["tune", "--model", str(model_dir), "--json", str(bad), "--images", str(imgs)]) == 2
    assert "bad.json" in capsys.readouterr().err
