"""The napari plugin: manifest (npe2), reader, sample data and the dock widget in a Qt event loop.

The widget runs on a real ``napari.components.ViewerModel`` (layer list, layers, selection) with
real Qt widgets and napari's worker threads, under ``QT_QPA_PLATFORM=offscreen``; that platform
has no OpenGL, so the full window with its canvas is driven by ``docs/make_napari_screenshot.py``
under Xvfb (``test_full_viewer_screenshot``, skipped where Xvfb is missing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import HANG_S

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before pytest-qt creates the QApplication
# napari reads (and may write) its settings file: a throw-away one, never the user's
os.environ.setdefault("NAPARI_CONFIG", os.path.join(tempfile.mkdtemp(prefix="napari-test-"), "settings.yaml"))
napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
torch = pytest.importorskip("torch")

from napari.components import ViewerModel  # noqa: E402
from napari.layers import Image, Labels, Shapes  # noqa: E402

from livecell_seg import interactive as logic  # noqa: E402
from livecell_seg.io import write_labels  # noqa: E402
from livecell_seg.napari_plugin import _reader, _sample_data, _widget  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "livecell-seg"


@pytest.fixture(scope="module", autouse=True)
def _plugins():
    """Discover the installed plugins (ours via its ``napari.manifest`` entry point), as napari does."""
    from napari.plugins import _initialize_plugins

    _initialize_plugins()


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every test of this module runs with one torch thread (conftest)."""


def _cells() -> np.ndarray:
    labels = np.zeros((40, 50), np.int32)
    labels[3:15, 4:20] = 1
    labels[3:15, 20:30] = 2
    labels[20:35, 10:25] = 5
    labels[24:30, 15:20] = 0  # a hole
    return labels


# --------------------------------------------------------------------------------------------------
# manifest, reader, sample data
# --------------------------------------------------------------------------------------------------
def test_npe2_validate_and_napari_finds_the_plugin():
    npe2_cli = Path(sys.executable).parent / "npe2"
    out = subprocess.run(
        [str(npe2_cli), "validate", PLUGIN, "--imports"], capture_output=True, text=True, timeout=HANG_S
    )
    assert out.returncode == 0, out.stdout + out.stderr
    from napari.plugins import _npe2

    manifest = _npe2.pm.get_manifest(PLUGIN)
    contrib = manifest.contributions
    assert [w.display_name for w in contrib.widgets] == ["Segment cells"]
    # every bundled image is a sample, and nothing else
    assert {s.key for s in contrib.sample_data} == set(_sample_data.SAMPLES)
    assert sorted(_sample_data.SAMPLES.values()) == sorted(p.name for p in logic.sample_images())


def test_reader_opens_predict_outputs(tmp_path):
    import tifffile

    from livecell_seg.inference.outputs import write_geojson, write_rois_zip

    labels = _cells()
    write_labels(tmp_path / "img.tif", labels)
    tifffile.imwrite(tmp_path / "raw.tif", (labels * 40).astype(np.uint16))  # a microscopy image
    write_rois_zip(tmp_path / "img.zip", labels)
    write_geojson(tmp_path / "img.geojson", labels, labels.astype(np.uint16))
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("notes.txt", "not ROIs")
    (tmp_path / "img.png").write_bytes(b"")

    viewer = ViewerModel()
    [lab] = viewer.open(tmp_path / "img.tif", plugin=PLUGIN)
    assert isinstance(lab, Labels) and lab.name == "img cells" and np.array_equal(lab.data, labels)
    [raw] = viewer.open(tmp_path / "raw.tif", plugin=PLUGIN)  # not ours: a plain image, no error
    assert isinstance(raw, Image) and np.array_equal(raw.data, labels * 40)
    # ROI zips and GeoJSON: only this plugin claims them, so napari picks it without asking
    # (plugin=None is what File > Open does)
    [rois] = viewer.open(tmp_path / "img.zip", plugin=None)
    [dets] = viewer.open(tmp_path / "img.geojson", plugin=None)
    assert isinstance(rois, Shapes) and isinstance(dets, Shapes)
    assert list(rois.features["label"]) == [1, 2, 5]
    assert list(dets.features["label"]) == [1, 2, 5, 5]  # cell 5: its outline and its hole
    assert list(dets.features["area"]) == [int((labels == k).sum()) for k in (1, 2, 5, 5)]
    # outlines lie on the pixels: napari puts pixel centres at integers, ImageJ/QuPath at +0.5
    verts = rois.data[0]
    assert verts[:, 0].min() == pytest.approx(2.5) and verts[:, 1].max() == pytest.approx(19.5)
    from scipy import ndimage as ndi
    from skimage.draw import polygon2mask

    hole = ndi.binary_fill_holes(labels == 5) & (labels != 5)
    for poly, want in zip(dets.data, [labels == 1, labels == 2, (labels == 5) | hole, hole]):
        assert np.array_equal(polygon2mask(labels.shape, poly), want)
    assert _reader.get_reader(str(tmp_path / "other.zip")) is None
    assert _reader.get_reader(str(tmp_path / "img.png")) is None
    assert _reader.get_reader([str(tmp_path / "img.tif"), str(tmp_path / "raw.tif")]) is None


def test_sample_data_opens_image_and_hidden_annotations():
    viewer = ViewerModel()
    layers = viewer.open_sample(PLUGIN, "mcf7_f4")
    assert [type(la) for la in layers] == [Image, Labels]
    image, gt = layers
    assert image.data.shape == (520, 704) and image.name == "MCF7_Phase_F4_2_00d00h00m_4"
    assert not gt.visible and gt.data.max() > 50


# --------------------------------------------------------------------------------------------------
# the dock widget
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def viewer_and_widget(qtbot):
    viewer = ViewerModel()
    widget = _widget.SegmentWidget(viewer)
    qtbot.addWidget(widget.native)
    return viewer, widget


def _wait(qtbot, widget, timeout_ms: int = int(HANG_S * 1000)) -> None:
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout_ms)


def test_widget_segments_like_predict_and_reruns_only_the_watershed(qtbot, viewer_and_widget):
    from livecell_seg.inference.postprocess import instances_from_maps
    from livecell_seg.inference.predict import load_model_for_predict, segment_image
    from livecell_seg.inference.quality import agreement

    viewer, widget = viewer_and_widget
    image = _sample_data.load_sample("mcf7_f4")[0][0][100:356, 200:456]  # a 256 x 256 crop: fast
    viewer.add_image(image, name="crop", scale=(0.5, 0.5))
    assert widget.image.value is viewer.layers["crop"]  # the selected image layer
    widget.show_maps.value = True
    runs = widget.network_runs
    assert widget.run() is not None and widget.busy
    assert widget.run() is None and "Busy" in widget.status.value  # one run at a time
    _wait(qtbot, widget)
    assert widget.network_runs == runs + 1
    cells = viewer.layers["crop cells"]
    assert isinstance(cells, Labels) and cells.scale.tolist() == [0.5, 0.5]
    expected = segment_image(load_model_for_predict(None, "cpu"), image, quality=True)
    assert np.array_equal(cells.data, expected.labels)  # what `predict` gets
    # the quality estimate of `predict --quality` (on by default here: one image at a time)
    assert widget.quality.value and widget.qualities == [pytest.approx(expected.quality)]
    assert widget.status.value == f"{expected.n_cells} cells; quality {expected.quality:.2f}"
    assert widget.progress.value == widget.progress.max
    maps = [viewer.layers[f"crop {t}"] for t in ("foreground", "distance to centre", "distance to boundary")]
    np.testing.assert_allclose(np.stack([m.data for m in maps]), expected.maps, atol=1e-5)
    # the maps are not offered as images to segment; the labels stay on top
    assert [c for c in widget.image.choices] == [viewer.layers["crop"]]
    assert viewer.layers[-1] is cells

    # a post-processing field re-runs only the watershed, on the cached maps
    assert {w.name for w in widget.params_box} >= {"fg_threshold", "min_size", "center_threshold"}
    widget.set_param("min_size", 400)
    _wait(qtbot, widget)
    assert widget.network_runs == runs + 1
    params = widget.params()
    assert params.min_size == 400
    expected_small = instances_from_maps(expected.maps, "fg+dist", params)
    assert np.array_equal(cells.data, expected_small) and cells.data.max() < expected.labels.max()
    # ... and the quality of the new labels, from the cached mirrored maps
    mirrored = instances_from_maps(
        logic.mirrored_maps(load_model_for_predict(None, "cpu"), image), "fg+dist", params
    )
    assert widget.qualities == [pytest.approx(agreement(expected_small, mirrored))]
    assert widget.status.value.endswith(f"; quality {widget.qualities[0]:.2f}")
    widget.reset_params()
    _wait(qtbot, widget)
    assert np.array_equal(cells.data, expected.labels) and widget.network_runs == runs + 1
    # without the estimate: no quality in the status, no extra pass
    widget.quality.value = False
    widget.run()
    _wait(qtbot, widget)
    assert widget.status.value == f"{expected.n_cells} cells" and widget.qualities is None


def test_widget_zoom_defaults_to_the_models_and_is_part_of_the_maps_cache(qtbot, viewer_and_widget):
    """The zoom offered first is the model folder's ``predict_scale`` (``auto`` for the bundled
    model, as ``predict`` and the app use); another zoom runs the network again and gives
    ``network_maps`` at that zoom; going back uses the cached maps."""
    from livecell_seg import interactive as logic
    from livecell_seg.inference.postprocess import instances_from_maps
    from livecell_seg.inference.predict import load_model_for_predict

    viewer, widget = viewer_and_widget
    assert widget.zoom.value == "auto (cell size)"  # the bundled model's predict_scale
    image = _sample_data.load_sample("bt474_b3")[0][0][:192, :256]
    viewer.add_image(image, name="b")
    widget.run()
    _wait(qtbot, widget)
    auto_labels = viewer.layers["b cells"].data.copy()
    runs = widget.network_runs
    widget.zoom.value = "0.5"
    widget.run()
    _wait(qtbot, widget)
    assert widget.network_runs == runs + 1 and "(zoom 0.50); quality " in widget.status.value
    model = load_model_for_predict(None, "cpu")
    maps, _, zoom = logic.network_maps(model, image, scale=0.5)
    assert zoom == 0.5
    expected = instances_from_maps(maps, "fg+dist", widget.params())
    assert np.array_equal(viewer.layers["b cells"].data, expected)
    widget.zoom.value = "auto (cell size)"
    widget.run()
    _wait(qtbot, widget)
    assert widget.network_runs == runs + 1  # cached
    assert np.array_equal(viewer.layers["b cells"].data, auto_labels)


def test_widget_stacks_rgb_and_bad_input(qtbot, viewer_and_widget, tmp_path):
    viewer, widget = viewer_and_widget
    assert widget.run() is None and "No Image layer" in widget.status.value
    base = _sample_data.load_sample("bt474_b3")[0][0][:96, :128]
    # a time series of 3 frames: each plane segmented, progress counts the planes
    viewer.add_image(np.stack([base, base[::-1], base]), name="movie")
    widget.run()
    _wait(qtbot, widget)
    lab = viewer.layers["movie cells"].data
    assert lab.shape == (3, 96, 128) and np.array_equal(lab[0], lab[2]) and lab[0].max() > 0
    assert widget.progress.max == 3 + 2 and "in 3 planes" in widget.status.value
    # the quality of each plane; the status names the worst
    q = widget.qualities
    assert len(q) == 3 and q[0] == q[2] and f"(lowest: plane {int(np.argmin(q)) + 1})" in widget.status.value
    # RGB is converted to grey, as `predict` does
    rgb = np.repeat(base[..., None], 3, axis=2)
    viewer.add_image(rgb, name="colour", rgb=True)
    assert widget.image.value is viewer.layers["colour"]
    widget.run()
    _wait(qtbot, widget)
    assert np.array_equal(viewer.layers["colour cells"].data, lab[0])
    # a model folder that is not one: a one-line message, nothing to run
    widget.model_kind.value = _widget.FOLDER
    assert not widget.run_button.enabled and "choose a model folder" in widget.status.value
    widget.model_dir.value = tmp_path
    assert not widget.run_button.enabled and str(tmp_path) in widget.status.value
    assert len(widget.params_box) == 0
    widget.model_kind.value = _widget.BUNDLED
    assert widget.run_button.enabled and len(widget.params_box) > 0
    # an image too small for the network
    viewer.add_image(np.zeros((4, 4), np.uint8), name="tiny")
    assert widget.run() is None and "too small" in widget.status.value


def test_image_planes_shapes():
    planes, lead = _widget.image_planes(np.zeros((2, 3, 20, 30), np.uint16))
    assert planes.shape == (6, 20, 30) and lead == (2, 3)
    planes, lead = _widget.image_planes(np.zeros((20, 30, 3), np.uint8), rgb=True)
    assert planes.shape == (1, 20, 30) and lead == ()
    with pytest.raises(Exception, match="1-D"):
        _widget.image_planes(np.zeros(10))


# --------------------------------------------------------------------------------------------------
# the full viewer window (OpenGL canvas): needs an X server, so it runs under Xvfb
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow  # about 30-60 s on a 2-core CPU (napari start-up, the network on a whole image)
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs Xvfb (apt-get install xvfb)")
def test_full_viewer_screenshot(tmp_path):
    """File > Open Sample, Plugins > Segment cells, Segment, screenshot: as a user would."""
    out = tmp_path / "shot.png"
    env = {**os.environ, "NAPARI_CONFIG": str(tmp_path / "napari.yaml"), "QT_QPA_PLATFORM": "xcb"}
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable]
    cmd += [str(ROOT / "docs" / "make_napari_screenshot.py"), "--out", str(out), "--threads", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_S, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "cells" in res.stdout
    from PIL import Image as PILImage

    with PILImage.open(out) as im:
        assert im.size[0] >= 1000 and im.size[1] >= 600
        rgb = np.asarray(im.convert("RGB"))
    assert rgb.std() > 20  # not a blank window


# --------------------------------------------------------------------------------------------------
# fine-tuning on corrections (issue 25)
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_base(tmp_path, keep_torch_threads):
    """A tiny BatchNorm U-Net model folder (a fine-tuning step takes milliseconds)."""
    import json

    from livecell_seg.model.folder import ModelConfig, build_model, model_to_dict, save_model_dir

    torch.manual_seed(0)
    cfg = ModelConfig(head="fg+dist", base_features=4, depth=2, cell_diameter=12.0, predict_scale=1.0)
    d = tmp_path / "base"
    save_model_dir(
        d, build_model(cfg).eval(), {"model": model_to_dict(cfg), "loss": {"kind": "bce_dice"}}, {}
    )
    (d / "provenance.json").write_text(json.dumps({"training": {"recipe": "random"}, "scores": {}}))
    return d


def _corrected(viewer, name: str = "mine") -> np.ndarray:
    """An image layer and its corrected ``<name> cells`` layer (two planes: one corrected, one empty)."""
    rng = np.random.default_rng(0)
    labels = np.zeros((2, 48, 56), np.int32)
    for k, (y, x) in enumerate([(10, 10), (10, 30), (30, 15), (32, 40)], start=1):
        labels[0, y - 5 : y + 5, x - 5 : x + 5] = k
    img = (40 + 150 * (labels > 0) + rng.normal(0, 8, labels.shape)).clip(0, 255).astype(np.uint8)
    viewer.add_image(img, name=name)
    viewer.add_labels(labels, name=f"{name} cells")
    return labels


def test_finetune_on_corrections_trains_in_a_worker_saves_and_offers_the_model(
    qtbot, viewer_and_widget, tiny_base, tmp_path
):
    import json

    from livecell_seg.training.finetune import Recipe

    viewer, widget = viewer_and_widget
    widget.model_kind.value = _widget.FOLDER
    widget.model_dir.value = tiny_base
    labels = _corrected(viewer)
    examples = widget.corrections()
    assert [e.name for e in examples] == ["mine plane 0"]  # the empty plane is not a correction
    np.testing.assert_array_equal(examples[0].labels, labels[0])
    # nothing to do without an output folder
    assert widget.finetune() is None and "folder for the new model" in widget.status.value
    widget.ft_out.value = tmp_path / "mine_model"
    widget.ft_steps.value = 3
    widget.ft_recipe = Recipe(replay=0, crop=32, batch=2, warmup=0)
    seen = []
    worker = widget.finetune()
    assert worker is not None and widget.busy and not widget.ft_button.enabled
    assert not widget.ft_stop.native.isHidden()
    worker.yielded.connect(seen.append)
    _wait(qtbot, widget)
    out = tmp_path / "mine_model"
    assert widget.finetuned == out and (out / "model.pt").is_file()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["finetune"]["steps"] == 3 and prov["finetune"]["images"][0]["name"] == "mine plane 0"
    assert any(d == t == 3 for d, t, _ in seen)  # the progress bar reached the end from the thread
    # (the dock is not shown offscreen: isHidden says what the widget asked for)
    assert "use it for the next image" in widget.status.value and not widget.ft_use.native.isHidden()
    assert widget.ft_button.enabled and widget.ft_stop.native.isHidden()
    widget.use_finetuned()
    assert widget.model_kind.value == _widget.FOLDER and Path(widget._model_dir) == out
    widget.run()
    _wait(qtbot, widget)
    assert "cells" in widget.status.value


def test_stop_leaves_a_usable_fine_tuned_folder(qtbot, viewer_and_widget, tiny_base, tmp_path):
    from livecell_seg.model.folder import load_model_dir
    from livecell_seg.training.finetune import Recipe

    viewer, widget = viewer_and_widget
    widget.model_kind.value = _widget.FOLDER
    widget.model_dir.value = tiny_base
    _corrected(viewer)
    widget.ft_out.value = tmp_path / "stopped"
    widget.ft_steps.value = 5000
    widget.ft_recipe = Recipe(replay=0, crop=32, batch=2, warmup=0)
    worker = widget.finetune()
    worker.yielded.connect(lambda v: v[0] >= 2 and widget.stop_finetune())
    _wait(qtbot, widget)
    assert widget.finetuned == tmp_path / "stopped" and "stopped early" in widget.status.value
    load_model_dir(tmp_path / "stopped")  # a usable folder


def test_finetune_without_corrections_says_what_to_do(viewer_and_widget, tiny_base, tmp_path):
    viewer, widget = viewer_and_widget
    widget.model_kind.value = _widget.FOLDER
    widget.model_dir.value = tiny_base
    viewer.add_image(np.zeros((20, 20), np.uint8), name="plain")
    widget.ft_out.value = tmp_path / "x"
    assert widget.finetune() is None and "No corrected cells" in widget.status.value
    viewer.add_labels(np.zeros((20, 21), np.int32), name="plain cells")
    assert widget.finetune() is None and "differs from plain" in widget.status.value
