"""The Streamlit app: page logic, the page itself (Streamlit's AppTest) and the real server."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile

import numpy as np
import pytest

from conftest import HANG_S
from livecell_seg import interactive as logic
from livecell_seg.app import MODEL_ENV, SCRIPT, free_port
from livecell_seg.errors import InputFileError
from livecell_seg.io import LABELS_SOFTWARE

HEAD = "fg+boundary"
#: post-processing the tiny test model ships with (the page must start from these values)
PP = {"fg_threshold": 0.4, "boundary_threshold": 0.4, "min_size": 10}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny U-Net fitted for 30 steps to one sample image: fast, deterministic, image-dependent maps.

    (A randomly initialised network predicts an almost constant map, so sliders would change nothing.)
    """
    import torch

    from livecell_seg.io import normalize_image, read_image
    from livecell_seg.model.folder import ModelConfig, build_model, model_to_dict, save_model_dir
    from livecell_seg.training.targets import make_targets

    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    path = logic.sample_images()[0]
    img = read_image(path)
    gt = logic.sample_ground_truth(path.name, img)
    x, y = normalize_image(img), make_targets(gt, HEAD)
    cfg = ModelConfig(head=HEAD, base_features=4, depth=2)
    net = build_model(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    s = 128
    for _ in range(30):
        ys, xs = rng.integers(0, img.shape[0] - s, 4), rng.integers(0, img.shape[1] - s, 4)
        xb = torch.from_numpy(np.stack([x[a : a + s, b : b + s] for a, b in zip(ys, xs)])[:, None])
        yb = torch.from_numpy(np.stack([y[:, a : a + s, b : b + s] for a, b in zip(ys, xs)]))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = tmp_path_factory.mktemp("model") / "tiny"
    save_model_dir(out, net.eval(), {"model": model_to_dict(cfg)}, PP)
    return out


def _expected_count(model_dir, image, **overrides) -> int:
    """Cell count computed without the page: network + watershed called directly."""
    from livecell_seg.inference.postprocess import PostprocessParams, instances_from_maps
    from livecell_seg.inference.tiling import predict_maps
    from livecell_seg.model.folder import load_model_dir

    model = load_model_dir(model_dir)
    maps = predict_maps(model, image)
    labels = instances_from_maps(maps, model.head, PostprocessParams.from_dict({**PP, **overrides}))
    return int(len(np.unique(labels[labels > 0])))


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _slider(at, label: str):
    return next(s for s in at.slider if s.label == label)


def _apptest(model_dir, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(MODEL_ENV, str(model_dir))
    return AppTest.from_file(str(SCRIPT), default_timeout=HANG_S)


# --------------------------------------------------------------------------------------------------
# pure logic
# --------------------------------------------------------------------------------------------------
def test_decode_image_formats_and_one_line_errors():
    import tifffile
    from PIL import Image

    img16 = (np.arange(40 * 50, dtype=np.uint32).reshape(40, 50) * 30).astype(np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, img16, compression="lzw")
    out = logic.decode_image("a.tif", buf.getvalue())
    assert out.dtype == np.uint16 and np.array_equal(out, img16)
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 100
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=100)
    assert logic.decode_image("b.JPG", buf.getvalue()).shape == (20, 30)

    bad = {
        "page.tif": (b"<html>404 not found</html>", "cannot read image"),
        "notes.txt": (b"hello", "unsupported file type"),
        "empty.png": (b"", "empty"),
    }
    for name, (data, problem) in bad.items():
        with pytest.raises(InputFileError, match=problem) as e:
            logic.decode_image(name, data)
        assert str(e.value).startswith(f"{name}:") and "\n" not in str(e.value)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 300), np.uint8)).save(buf, format="PNG")
    with pytest.raises(InputFileError, match="too small"):
        logic.decode_image("thin.png", buf.getvalue())


def test_sample_ground_truth_needs_name_and_content():
    path = logic.sample_images()[0]
    img = logic.decode_image(path.name, path.read_bytes())
    gt = logic.sample_ground_truth(path.name, img)
    assert gt is not None and gt.shape == img.shape and gt.max() > 50
    assert logic.sample_ground_truth(path.name, img[::-1].copy()) is None  # same name, other pixels
    assert logic.sample_ground_truth("mine.tif", img) is None


def test_download_payloads_round_trip():
    import tifffile

    labels = np.zeros((60, 80), np.int32)
    labels[5:20, 5:25] = 1
    labels[30:50, 40:70] = 2
    labels[22:28, 2:9] = 3
    image = np.random.default_rng(1).integers(0, 255, labels.shape).astype(np.uint8)
    assert np.array_equal(tifffile.imread(io.BytesIO(logic.labels_tiff_bytes(labels))), labels)
    with tifffile.TiffFile(io.BytesIO(logic.labels_tiff_bytes(labels))) as tif:  # opens as Labels in napari
        assert tif.pages[0].software == LABELS_SOFTWARE
    csv_rows = logic.measurements_csv_bytes(labels, image).decode().strip().splitlines()
    assert len(csv_rows) == 1 + 3 and csv_rows[0].startswith("label,area")
    with zipfile.ZipFile(io.BytesIO(logic.rois_zip(labels))) as zf:
        assert len(zf.namelist()) == 3
    fc = json.loads(logic.geojson(labels, image, {1: 0.9, 2: 0.8, 3: 0.7}))
    assert [f["properties"]["label"] for f in fc["features"]] == [1, 2, 3]
    assert [f["properties"]["measurements"]["score"] for f in fc["features"]] == [0.9, 0.8, 0.7]
    assert logic.download_names("dir/x.tiff")["geojson"] == "x.geojson"
    assert logic.png_bytes(logic.overlay(image, labels)).startswith(b"\x89PNG")
    assert list(logic.cell_areas(labels)) == [300, 600, 42]
    assert logic.download_names("dir/x.tiff")["labels"] == "x_labels.tif"


def test_zoom_choices_and_network_maps_at_a_zoom(tiny_model):
    from livecell_seg.model.folder import load_model_dir

    model = load_model_dir(tiny_model)
    image = np.random.default_rng(0).integers(0, 255, (70, 90)).astype(np.uint8)
    maps, seconds, zoom = logic.network_maps(model, image, scale=0.5)
    assert maps.shape[1:] == image.shape and zoom == 0.5 and seconds >= 0
    model.model_config.cell_diameter = None  # a model that records no cell size: no "auto"
    assert "auto (cell size)" not in logic.zoom_choices(model)
    model.model_config.cell_diameter = 12.0
    assert logic.zoom_choices(model)[0] == "1 (as is)"  # the model's predict default comes first
    model.model_config.predict_scale = "auto"
    assert logic.zoom_choices(model)[0] == "auto (cell size)"
    maps, _, zoom = logic.network_maps(model, image, scale="auto")
    from livecell_seg.inference.predict import AUTO_LIMITS

    assert maps.shape[1:] == image.shape and (zoom == 1.0 or AUTO_LIMITS[0] <= zoom <= AUTO_LIMITS[1])


def test_param_specs_follow_the_head():
    names = {h: {s.name for s in logic.param_specs(h)} for h in ("fg", "fg+boundary", "fg+dist")}
    assert "boundary_threshold" in names["fg+boundary"] and "boundary_threshold" not in names["fg"]
    assert "min_distance" in names["fg"] and "center_threshold" in names["fg+dist"]
    assert all({"fg_threshold", "min_size"} <= v for v in names.values())
    spec = next(s for s in logic.PARAM_SPECS if s.name == "min_size")
    assert logic.slider_range(spec, 5000) == (spec.lo, 5000)


# --------------------------------------------------------------------------------------------------
# the page (AppTest runs the script in-process)
# --------------------------------------------------------------------------------------------------
def test_page_sample_sliders_and_downloads(tiny_model, monkeypatch):
    at = _apptest(tiny_model, monkeypatch)
    at.run()
    assert not at.exception and not at.error
    # sliders start from the model's postprocess.json
    assert _slider(at, "Foreground threshold").value == pytest.approx(PP["fg_threshold"])
    assert _slider(at, "Minimum cell size (px)").value == PP["min_size"]
    sample = logic.sample_images()[0]
    image = logic.decode_image(sample.name, sample.read_bytes())
    n0 = int(_metric(at, "Cells"))
    assert n0 > 0 and n0 == _expected_count(tiny_model, image)
    # the sample has ground truth: AP/AP50 and F1 are shown
    ap, ap50 = (float(v) for v in _metric(at, "Mask AP / AP50").split(" / "))
    assert 0.0 <= ap <= ap50 <= 100.0
    assert 0.0 <= float(_metric(at, "F1 @ IoU 0.5")) <= 1.0

    _slider(at, "Foreground threshold").set_value(0.55).run()
    assert not at.exception and not at.error
    n1 = int(_metric(at, "Cells"))
    assert n1 != n0 and n1 == _expected_count(tiny_model, image, fg_threshold=0.55)
    _slider(at, "Minimum cell size (px)").set_value(300).run()
    n2 = int(_metric(at, "Cells"))
    assert n2 < n1 and n2 == _expected_count(tiny_model, image, fg_threshold=0.55, min_size=300)
    # three segmentations, one network run
    assert at.session_state["network_runs"] == 1

    buttons = {b.label: b.proto for b in at.get("download_button")}
    assert set(buttons) == {
        "Label image (TIFF)",
        "Overlay (PNG)",
        "Measurements (CSV)",
        "ImageJ ROIs (zip)",
        "QuPath detections (GeoJSON)",
    }
    assert buttons["Label image (TIFF)"].url.endswith((".tif", ".tiff"))
    assert buttons["Overlay (PNG)"].url.endswith(".png")
    # the CSV, the ROI zip and the GeoJSON are built on click (deferred); AppTest has no runtime to register them,
    # so their payloads are checked in test_download_payloads_round_trip
    assert len(at.image) == 5  # image, 2 probability maps, overlay, area histogram


def test_page_counts_and_scores_perfect_maps_like_the_ground_truth(tiny_model, monkeypatch, tmp_path):
    """Checked against the annotation json, not against the functions the page calls: with the
    network replaced by the sample's oracle maps, the page must count the annotated cells and score
    them near-perfectly, and the size slider must drop the annotated cells below it."""
    import shutil

    import streamlit as st

    from livecell_seg.data import sample_paths
    from livecell_seg.data.coco import annotations_to_labels, load_coco
    from livecell_seg.training.targets import make_targets

    sample = logic.sample_images()[0]  # the page's default image
    ds = load_coco(sample_paths()[0])
    im = ds.image_by_file(sample.name)
    gt = annotations_to_labels(ds.anns_by_image[int(im["id"])], int(im["height"]), int(im["width"]))
    areas = np.bincount(gt.ravel())[1:]
    areas = areas[areas > 0]
    assert areas.size > 50
    oracle = make_targets(gt, HEAD)
    monkeypatch.setattr(
        logic, "network_maps", lambda model, image, tta=False, scale=1.0: (oracle.copy(), 0.0, 1.0)
    )
    model = shutil.copytree(tiny_model, tmp_path / "oracle")  # its own cache keys
    st.cache_data.clear()
    at = _apptest(model, monkeypatch)
    at.run()
    assert not at.exception and not at.error
    # a cell with a narrow waist may get two seeds from the perfect maps: 1% slack
    n, expected = int(_metric(at, "Cells")), int((areas >= PP["min_size"]).sum())
    assert abs(n - expected) <= max(1, expected // 100), (n, expected)
    ap, ap50 = (float(v) for v in _metric(at, "Mask AP / AP50").split(" / "))
    assert ap >= 97.0 and ap50 >= 99.5
    assert float(_metric(at, "F1 @ IoU 0.5")) >= 0.995
    _slider(at, "Minimum cell size (px)").set_value(300).run()
    n, expected = int(_metric(at, "Cells")), int((areas >= 300).sum())
    assert expected < areas.size - 10 and abs(n - expected) <= max(1, expected // 100), (n, expected)


def test_page_uploads_16bit_lzw_and_reports_bad_files(tiny_model, monkeypatch):
    import tifffile

    sample = logic.sample_images()[0]
    image = logic.decode_image(sample.name, sample.read_bytes())
    buf = io.BytesIO()
    tifffile.imwrite(buf, image.astype(np.uint16) * 257, compression="lzw")
    at = _apptest(tiny_model, monkeypatch)
    at.run()
    at.radio(key="source").set_value("Upload").run()
    assert not at.exception and "Pick a sample image" in at.info[0].value
    at.file_uploader(key="upload").set_value(
        [("cells16.tif", buf.getvalue(), "image/tiff"), ("broken.tif", b"<html>gateway</html>", "image/tiff")]
    ).run()
    assert not at.exception
    assert len(at.error) == 1 and at.error[0].value.startswith("broken.tif: cannot read image")
    # 16-bit is normalized like 8-bit: the same cells as the 8-bit sample
    assert int(_metric(at, "Cells")) == _expected_count(tiny_model, image)
    assert "Mask AP / AP50" not in [m.label for m in at.metric]  # no ground truth for an upload
    # ... unless the user uploads a label image: first a wrong-sized one, then the right one
    gt = logic.sample_ground_truth(sample.name, image)
    gt_uploader = at.file_uploader(key=f"gt_{logic.digest(buf.getvalue())}")
    gt_uploader.set_value(("gt.tif", logic.labels_tiff_bytes(gt[:100, :100]), "image/tiff")).run()
    assert [e.value for e in at.error][1:] == ["gt.tif: label image is 100x100, the image 704x520"]
    assert "Mask AP / AP50" not in [m.label for m in at.metric]
    at.file_uploader(key=f"gt_{logic.digest(buf.getvalue())}").set_value(
        ("gt.tif", logic.labels_tiff_bytes(gt), "image/tiff")
    ).run()
    assert len(at.error) == 1
    ap, ap50 = (float(v) for v in _metric(at, "Mask AP / AP50").split(" / "))
    assert 0.0 <= ap <= ap50 <= 100.0

    # two good images: a summary table and a chooser
    png = io.BytesIO()
    from PIL import Image

    Image.fromarray(image[:256, :320]).save(png, format="PNG")
    at.file_uploader(key="upload").set_value(
        [("cells16.tif", buf.getvalue(), "image/tiff"), ("crop.png", png.getvalue(), "image/png")]
    ).run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["image"]) == ["cells16.tif", "crop.png"]
    at.selectbox(key="shown").set_value(1).run()
    assert _metric(at, "Image") == "320×256" and int(_metric(at, "Cells")) == int(table["cells"][1])


def test_page_bad_model_folder_is_a_message(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{not json")
    at = _apptest(tmp_path, monkeypatch)
    at.run()
    assert not at.exception
    assert (
        len(at.error) == 1
        and "config.json" in at.error[0].value
        and "invalid model config" in at.error[0].value
    )


# --------------------------------------------------------------------------------------------------
# the real server
# --------------------------------------------------------------------------------------------------
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "livecell_seg", "app", *args]


def test_server_answers_health_and_stops_cleanly(tiny_model):
    port = free_port()
    proc = subprocess.Popen(
        _cli("--port", str(port), "--model", str(tiny_model), "--no-browser"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if k != MODEL_ENV},
    )
    try:
        body, deadline = "", time.monotonic() + HANG_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    body = r.read().decode().strip()
                break
            except OSError:
                time.sleep(0.3)
        assert body == "ok", proc.stdout.read() if proc.poll() is not None else "no answer"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        proc.terminate()
        code = proc.wait(HANG_S)
    out = proc.stdout.read()
    assert code == 0, out
    assert f"http://127.0.0.1:{port}" in out and "Traceback" not in out
    with socket.socket() as s:  # the Streamlit child is gone too: nothing listens on the port
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_cli_busy_port_and_bad_model_are_one_line_errors(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            _cli("--port", str(port), "--no-browser"), capture_output=True, text=True, timeout=HANG_S
        )
    assert r.returncode == 2 and "already in use" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run(
        _cli("--port", "0", "--model", str(tmp_path), "--no-browser"),
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert r.returncode == 2 and "not a model folder" in r.stderr and "Traceback" not in r.stderr


def test_resolve_model_dir_default_and_errors(tiny_model, tmp_path, monkeypatch):
    import livecell_seg.interactive as interactive_mod

    monkeypatch.setattr(interactive_mod, "default_model_dir", lambda: tmp_path / "missing")
    with pytest.raises(InputFileError, match="bundled model is not installed"):
        logic.resolve_model_dir(None)
    monkeypatch.setattr(interactive_mod, "default_model_dir", lambda: tiny_model)
    assert logic.resolve_model_dir("  ") == tiny_model.resolve()
    assert logic.resolve_model_dir(str(tiny_model)) == tiny_model.resolve()
    with pytest.raises(InputFileError, match="no such model folder"):
        logic.resolve_model_dir(tmp_path / "nope")
    (tmp_path / "config.json").write_text('{"model": {"head": "fg"}}')
    with pytest.raises(InputFileError, match="no model.pt"):
        logic.resolve_model_dir(tmp_path)
    key = logic.model_key(tiny_model)
    os.utime(tiny_model / "model.pt", ns=(1, 1))  # a retrained model gets new maps and defaults
    assert logic.model_key(tiny_model) != key
