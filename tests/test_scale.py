"""Cell-size estimate, test-time rescaling (`--scale auto`, `--diameter`) and pseudo-labels (issue 16)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from livecell_seg.errors import LivecellError
from livecell_seg.inference import scale as sc


def disk_labels(h: int, w: int, radius: int, spacing: int, offset: int = 0) -> np.ndarray:
    """A grid of equal disks of ``radius``, ``spacing`` apart (labels 1..n)."""
    yy, xx = np.mgrid[:h, :w]
    labels = np.zeros((h, w), np.int32)
    n = 0
    for cy in range(offset + spacing // 2, h, spacing):
        for cx in range(offset + spacing // 2, w, spacing):
            n += 1
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius * radius] = n
    return labels


def test_cell_diameters_of_disks_and_border_cells():
    lab = disk_labels(200, 200, 10, 40)
    d = sc.cell_diameters(lab)
    assert d.size == 25 and np.allclose(d, 20.0, atol=0.6)  # area of a raster disk ~ pi r^2
    assert sc.estimate_diameter(lab) == pytest.approx(20.0, abs=0.6)
    # disks cut by the border are left out when enough whole ones remain
    cut = disk_labels(200, 200, 10, 40, offset=-20)
    assert sc.cell_diameters(cut).size < int(cut.max())
    assert sc.estimate_diameter(cut) == pytest.approx(20.0, abs=0.6)
    # tiny fragments never count; too few cells -> no estimate
    few = np.zeros((50, 50), np.int32)
    few[5:15, 5:15] = 1
    few[30, 30] = 2
    assert sc.cell_diameters(few).size == 1 and sc.estimate_diameter(few) is None
    assert sc.estimate_diameter(np.zeros((9, 9), np.int32)) is None
    with pytest.raises(ValueError):
        sc.cell_diameters(np.zeros((2, 2, 2), np.int32))


def test_choose_scale_and_training_diameter():
    assert sc.choose_scale(40.0, 20.0) == pytest.approx(0.5)
    assert sc.choose_scale(10.0, 20.0) == pytest.approx(2.0)
    assert sc.choose_scale(400.0, 20.0) == sc.SCALE_LIMITS[0]  # clipped
    assert sc.choose_scale(21.0, 20.0) == 1.0  # within tolerance: not worth a pass
    assert sc.choose_scale(None, 20.0) == 1.0 and sc.choose_scale(float("nan"), 20.0) == 1.0
    assert sc.training_diameter([10.0, 20.0, 30.0]) == 20.0
    assert sc.training_diameter([10.0, 20.0, 30.0], [0.1, 0.1, 0.8]) == 30.0
    assert sc.training_diameter([None, 12.0], [5.0, 1.0]) == 12.0
    assert sc.training_diameter([None]) is None


def test_zoom_image_and_maps_round_trip():
    img = np.random.default_rng(0).random((52, 70)).astype(np.float32)
    small = sc.zoom_image(img, 0.5)
    assert small.shape == (26, 35) and small.dtype == np.float32
    maps = np.random.default_rng(1).random((3, 26, 35)).astype(np.float32)
    back = sc.zoom_maps(maps, (52, 70))
    assert back.shape == (3, 52, 70) and back.min() >= 0 and back.max() <= 1
    assert sc.zoom_maps(maps, (26, 35)) is maps


def _Model(diameter):  # noqa: N802
    """A LoadedModel without a network (the tests replace the network step)."""
    from livecell_seg.model.folder import LoadedModel, ModelConfig

    return LoadedModel(net=None, model_config=ModelConfig(head="fg+dist", cell_diameter=diameter))


def oracle_maps(labels: np.ndarray) -> np.ndarray:
    from livecell_seg.training.targets import make_targets

    return make_targets(labels, "fg+dist")


def test_segment_image_auto_scale_zooms_large_cells_to_training_size(monkeypatch):
    """An 'over-splitting network': at zoom s it sees cells of diameter s*40; above 30 px it cuts
    each cell in two. auto runs zoom 1, measures the halves (about 28 px, far above the model's
    20), and runs once more at the zoom that brings them to 20 px, where the cells come out whole:
    two passes, not a scan."""
    from livecell_seg.inference import predict

    truth = disk_labels(240, 240, 20, 60)  # diameter 40
    calls = []

    def fake(model, image, s=1.0, **kw):
        calls.append(s)
        lab = truth.copy()
        if s * 40 > 30:  # over-split: halve every cell along its centre row
            yy, _ = np.mgrid[: lab.shape[0], : lab.shape[1]]
            top = (yy % 60) < 30
            lab = np.where((lab > 0) & top, lab + 1000, lab)
        return oracle_maps(lab)

    monkeypatch.setattr(predict, "predict_maps_scaled", fake)
    res = predict.segment_image(_Model(20.0), np.zeros_like(truth, np.float32), scale="auto")
    assert len(calls) == 2 and calls[0] == 1.0
    assert res.scale == calls[1] == pytest.approx(20 / res.diameter)
    assert 0.6 < res.scale < 0.8  # the halves measure about 28 px
    assert res.n_cells == int(truth.max())  # whole cells at the chosen zoom
    # a fixed scale runs once; diameter= sets the zoom without a first pass
    calls.clear()
    res = predict.segment_image(_Model(20.0), np.zeros_like(truth, np.float32), diameter=40.0)
    assert calls == [0.5] and res.scale == 0.5
    calls.clear()
    predict.segment_image(_Model(20.0), np.zeros_like(truth, np.float32), scale=0.7)
    assert calls == [0.7]


def test_auto_keeps_dense_small_cells_at_zoom_one_or_zooms_in(monkeypatch):
    """Dense small cells are never zoomed *out* (that merges them): cells near the model's size keep
    the single pass at zoom 1; cells much smaller get one pass zoomed in (at most AUTO_LIMITS[1])."""
    from livecell_seg.inference import predict

    truth = disk_labels(200, 200, 8, 20)  # diameter 16, touching neighbours 20 px apart
    calls = []
    monkeypatch.setattr(
        predict, "predict_maps_scaled", lambda m, im, s=1.0, **kw: calls.append(s) or oracle_maps(truth)
    )
    res = predict.segment_image(_Model(18.0), np.zeros_like(truth, np.float32), scale="auto")
    assert calls == [1.0] and res.scale == 1.0 and res.n_cells == int(truth.max())
    calls.clear()
    res = predict.segment_image(_Model(40.0), np.zeros_like(truth, np.float32), scale="auto")
    assert calls == [1.0, predict.AUTO_LIMITS[1]] and res.scale == predict.AUTO_LIMITS[1]


def test_auto_zoom_for_tolerances_and_limits():
    from livecell_seg.inference.predict import AUTO_LIMITS, AUTO_TOLERANCE, auto_zoom_for

    assert auto_zoom_for(None, 20.0) == 1.0
    assert auto_zoom_for(float("nan"), 20.0) == 1.0
    assert auto_zoom_for(0.0, 20.0) == 1.0
    assert auto_zoom_for(20.0, 20.0) == 1.0
    assert auto_zoom_for(20.0 * AUTO_TOLERANCE * 0.99, 20.0) == 1.0  # a little large: one pass
    assert auto_zoom_for(20.0 * AUTO_TOLERANCE * 1.01, 20.0) == pytest.approx(1 / (AUTO_TOLERANCE * 1.01))
    assert auto_zoom_for(20.0 / AUTO_TOLERANCE * 1.01, 20.0) == 1.0  # a little small: one pass
    assert auto_zoom_for(20.0 / AUTO_TOLERANCE / 1.01, 20.0) == pytest.approx(AUTO_TOLERANCE * 1.01)
    assert auto_zoom_for(400.0, 20.0) == AUTO_LIMITS[0]
    assert auto_zoom_for(2.0, 20.0) == AUTO_LIMITS[1]


def test_resolve_scale_errors():
    from livecell_seg.inference.predict import resolve_scale

    with pytest.raises(LivecellError, match="cell diameter"):
        resolve_scale(_Model(None), "auto")
    with pytest.raises(LivecellError, match="cell diameter"):
        resolve_scale(_Model(None), 1.0, diameter=30)
    for bad in (0, -1, float("nan"), "x"):
        with pytest.raises(LivecellError):
            resolve_scale(_Model(20.0), bad)
    with pytest.raises(LivecellError, match="diameter"):
        resolve_scale(_Model(20.0), 1.0, diameter=-3)
    assert resolve_scale(_Model(20.0), 1.0, diameter=40) == 0.5


def test_predict_maps_scaled_with_a_real_network():
    torch = pytest.importorskip("torch")
    from livecell_seg.inference.tiling import predict_maps, predict_maps_scaled
    from livecell_seg.model.folder import LoadedModel, ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(head="fg+dist", base_features=4, depth=2)
    model = LoadedModel(net=build_model(cfg).eval(), model_config=cfg)
    img = np.random.default_rng(0).integers(0, 255, (61, 83)).astype(np.uint8)
    same = predict_maps_scaled(model, img, 1.0)
    assert np.array_equal(same, predict_maps(model, img))
    half = predict_maps_scaled(model, img, 0.5)
    assert half.shape == (3, 61, 83) and np.isfinite(half).all()
    with pytest.raises(ValueError):
        predict_maps_scaled(model, img, 0.0)


def test_confident_cells_keeps_only_agreeing_confident_cells():
    from livecell_seg.inference.pseudolabel import PseudoLabelSettings, best_iou_per_cell, confident_cells

    labels = np.zeros((60, 60), np.int32)
    labels[5:15, 5:15] = 1  # confident, agreed
    labels[5:15, 30:40] = 2  # low foreground probability
    labels[35:45, 5:15] = 3  # the second view disagrees (different cell)
    fg = np.where(labels > 0, 0.95, 0.02).astype(np.float32)
    fg[5:15, 30:40] = 0.6
    fg[50:55, 50:55] = 0.5  # undecided background
    other = labels.copy()
    other[35:45, 5:15] = 0
    other[35:40, 5:15] = 7  # half of cell 3: IoU 0.5
    iou = best_iou_per_cell(labels, other)
    assert iou[1] == 1.0 and iou[3] == pytest.approx(0.5)
    out = confident_cells(labels, fg, other, PseudoLabelSettings(ring=1))
    assert out.kept == 1 and out.rejected == 2
    assert out.labels.max() == 1 and (out.labels[5:15, 5:15] == 1).all()
    assert out.ignore[5:15, 30:40].all() and out.ignore[35:45, 5:15].all()
    assert out.ignore[4, 30] and not out.ignore[0, 59]  # the ring around a rejected cell; far background
    assert out.ignore[52, 52]  # undecided pixels
    assert not out.ignore[5:15, 5:15].any()  # kept cells are never ignored
    assert math.isclose(float(out.ignore[20:30, 20:30].mean()), 0.0)


def test_default_zoom_is_the_model_folders_predict_scale(monkeypatch):
    """No scale given: the zoom the model folder records (``predict_scale``), else 1."""
    from livecell_seg.inference import predict
    from livecell_seg.model.folder import ModelConfig

    assert predict.resolve_scale(_Model(20.0)) == 1.0  # records none: as is
    auto = _Model(20.0)
    auto.model_config = ModelConfig(head="fg+dist", cell_diameter=10.0, predict_scale="auto")
    assert predict.resolve_scale(auto) == "auto"
    assert predict.resolve_scale(auto, 0.7) == 0.7  # an explicit zoom wins
    truth = disk_labels(120, 120, 10, 40)
    calls = []
    monkeypatch.setattr(
        predict, "predict_maps_scaled", lambda m, im, s=1.0, **kw: calls.append(s) or oracle_maps(truth)
    )
    predict.segment_image(auto, np.zeros_like(truth, np.float32))
    assert calls[0] == 1.0 and calls[1:] == [
        pytest.approx(0.5, rel=0.02)
    ]  # cells 2x the model's size: one more pass
    auto.model_config.cell_diameter = 21.0
    assert predict.segment_image(auto, np.zeros_like(truth, np.float32)).scale == 1.0  # as is
    no_size = _Model(None)
    no_size.model_config = ModelConfig(head="fg+dist", predict_scale="auto")
    with pytest.raises(LivecellError, match="cell diameter"):  # a folder without one: one line
        predict.resolve_scale(no_size)
    for bad in (0, -1, "big", True, 100):
        with pytest.raises(LivecellError, match="predict_scale"):
            ModelConfig(head="fg+dist", cell_diameter=20.0, predict_scale=bad)
