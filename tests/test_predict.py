"""The predict pipeline: input formats, broken files, outputs (labels, maps, overlay, CSV, ROIs), CLI."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import HANG_S

torch = pytest.importorskip("torch")

from livecell_seg.cli import main  # noqa: E402
from livecell_seg.inference.outputs import (  # noqa: E402
    MEASUREMENT_COLUMNS,
    cell_polygons,
    measurements_table,
    overlay_image,
    rois_zip_bytes,
    save_overlay_png,
    write_measurements_csv,
    write_rois_zip,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every test of this module runs with one torch thread (conftest)."""


@pytest.fixture(scope="module")
def model_dir(random_model_dir) -> Path:
    """A tiny random model folder (fg+boundary head)."""
    return random_model_dir("fg+boundary", base_features=4, depth=2)


def _blobs(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A grey image with bright discs on a dark background, float in [0, 1]."""
    from skimage.draw import disk

    rng = np.random.default_rng(seed)
    img = np.full((h, w), 0.2)
    for _ in range(max(1, h * w // 2000)):
        rr, cc = disk((rng.integers(0, h), rng.integers(0, w)), rng.integers(4, 10), shape=(h, w))
        img[rr, cc] = 0.8
    return np.clip(img + rng.normal(0, 0.03, (h, w)), 0, 1)


def _f1(a: np.ndarray, b: np.ndarray) -> float:
    from livecell_seg.evaluation.metrics import match_instances

    return match_instances(a, b, 0.5).f1


def test_every_input_format_and_size(tmp_path, monkeypatch):
    """The same real cells stored in every format give the same instances, and a large image tiled
    gives the instances of the whole-image pass. The bundled model: a random one predicts nothing."""
    import tifffile
    from PIL import Image

    import livecell_seg.inference.tiling as inference
    from livecell_seg.data import sample_paths
    from livecell_seg.inference.runner import predict_paths
    from livecell_seg.io import read_image
    from livecell_seg.model.folder import default_model_dir

    bundled = default_model_dir()
    if not (bundled / "model.pt").is_file():
        pytest.skip("the bundled model is not installed")
    real = read_image(sorted(sample_paths()[1].rglob("MCF7_Phase_G4*.tif"))[0])  # uint8, 520 x 704
    base = real[:192, :256]
    inp = tmp_path / "in"
    inp.mkdir()
    tifffile.imwrite(inp / "lzw8.tif", base, compression="lzw")
    tifffile.imwrite(inp / "deep16.tiff", base.astype(np.uint16) * 257)
    Image.fromarray(np.stack([base] * 3, axis=-1)).save(inp / "colour.png")
    Image.fromarray(base).save(inp / "grey.png")
    Image.fromarray(base).save(inp / "photo.jpg", quality=95)
    Image.fromarray(base[:161, :233]).save(inp / "odd.png")  # off the pooling grid
    big = np.pad(real, ((0, 41), (0, 23)), mode="symmetric")  # 561 x 727, off the pooling grid
    tifffile.imwrite(inp / "big.tif", big.astype(np.uint16) * 257, compression="zlib")

    monkeypatch.setattr(inference, "WHOLE_MAX_PIXELS", 0)  # images larger than a tile are tiled
    # zoom 1: the crops' own cell-size estimates would choose their zooms independently
    summary = predict_paths(
        [inp], tmp_path / "out", bundled, tile=256, overlap=0.25, scale=1.0, progress=False
    )
    assert summary.ok and len(summary.processed) == 7 == summary.n_inputs
    out = {q.name: tifffile.imread(q) for q in (tmp_path / "out").glob("*.tif")}
    for name, lab in out.items():
        assert lab.dtype == np.uint16, name
    ref = out["lzw8.tif"]
    assert ref.shape == base.shape and int(ref.max()) >= 5  # real cells found
    # lossless copies of the same pixels (16-bit, RGB, grey PNG): the same instances
    for name in ("deep16.tif", "colour.tif", "grey.tif"):
        assert out[name].shape == base.shape and _f1(ref, out[name]) >= 0.99, name
    # JPEG is lossy (F1 0.97 measured); an odd-sized crop lacks context at its new edges (0.93
    # for 161 x 233 with the bundled model; a 101 x 153 crop of this dense image loses more, 0.72)
    assert _f1(ref, out["photo.tif"]) >= 0.9
    assert out["odd.tif"].shape == (161, 233) and _f1(ref[:161, :233], out["odd.tif"]) >= 0.85
    # the large image went through 256-pixel tiles: the same instances as one whole-image pass
    assert out["big.tif"].shape == big.shape
    whole = predict_paths(
        [inp / "big.tif"], tmp_path / "whole", bundled, tile=2048, scale=1.0, progress=False
    )
    assert whole.ok
    assert _f1(tifffile.imread(tmp_path / "whole" / "big.tif"), out["big.tif"]) >= 0.98
    t = summary.median_timings()
    assert set(t) == {"read_s", "network_s", "postprocess_s", "write_s", "total_s"} and t["total_s"] > 0


def test_broken_file_is_named_once_and_others_processed(tmp_path, model_dir, capsys):
    from PIL import Image

    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(2):
        Image.fromarray((_blobs(40, 48, i) * 255).astype(np.uint8)).save(inp / f"good{i}.png")
    (inp / "broken.tif").write_bytes(b"<html>404 Not Found</html>")
    (inp / "empty.png").write_bytes(b"")
    rc = main(["predict", "--model", str(model_dir), "--input", str(inp), "--out", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    skip = "livecell-seg predict: skipped "  # logged, printed by the CLI's handler
    assert sum(line.startswith(skip) and "broken.tif" in line for line in err) == 1
    assert sum(line.startswith(skip) and "empty.png" in line for line in err) == 1
    assert sum("broken.tif" in line or "empty.png" in line for line in err) == 2
    assert any("2 of 4" in line for line in err)
    assert all("Traceback" not in line for line in err)
    assert sorted(p.name for p in (tmp_path / "o").glob("*.tif")) == ["good0.tif", "good1.tif"]
    # outputs written inside the input folder are not taken for inputs on the next run
    (inp / "broken.tif").unlink()
    (inp / "empty.png").unlink()
    argv = ["predict", "--model", str(model_dir), "--input", str(inp), "--out", str(inp / "pred")]
    assert main([*argv, "--overlay", "-q"]) == 0 and main([*argv, "--overlay", "-q"]) == 0
    assert sorted(p.name for p in (inp / "pred").rglob("*.*")) == sorted(
        ["good0.tif", "good1.tif", "good0.png", "good1.png", "predict_names.json", "summary.csv"]
    )


def test_cli_end_to_end_on_the_real_sample(tmp_path, model_dir, capsys):
    import tifffile

    from livecell_seg.data import sample_paths
    from livecell_seg.inference.postprocess import load_maps
    from livecell_seg.io import list_images

    _, images = sample_paths()
    first = list_images(images)[0]
    out = tmp_path / "out"
    argv = ["predict", "--model", str(model_dir), "--input", str(first), "--out", str(out)]
    argv += ["--save-maps", "--overlay", "--csv", "--rois", "--device", "cpu", "--tile", "256"]
    assert main(argv) == 0
    assert "1 image(s) segmented" in capsys.readouterr().out
    stem = first.stem
    labels = tifffile.imread(out / f"{stem}.tif")
    assert labels.dtype == np.uint16 and labels.shape == (520, 704)
    maps, head = load_maps(out / "maps" / f"{stem}.npy")
    assert head == "fg+boundary" and maps.shape == (2, 520, 704)
    from PIL import Image

    with Image.open(out / "overlays" / f"{stem}.png") as im:
        assert im.size == (704, 520) and im.mode == "RGB"
    with open(out / "measurements" / f"{stem}.csv") as fh:
        rows = list(csv.DictReader(fh))
    n = len(np.unique(labels)) - 1
    assert len(rows) == n
    with zipfile.ZipFile(out / "rois" / f"{stem}.zip") as zf:
        assert len(zf.namelist()) == n
    # --resume skips the finished image; no outputs are rewritten
    mtime = (out / f"{stem}.tif").stat().st_mtime_ns
    assert main(argv + ["--resume"]) == 0
    assert "1 already done" in capsys.readouterr().out
    assert (out / f"{stem}.tif").stat().st_mtime_ns == mtime


def test_postprocess_json_of_the_model_folder_is_used(tmp_path, model_dir):
    import shutil

    from livecell_seg.inference.postprocess import PostprocessParams
    from livecell_seg.inference.predict import segment_image
    from livecell_seg.model.folder import load_model_dir

    img = _blobs(64, 64)
    loose = tmp_path / "m"
    shutil.copytree(model_dir, loose)
    # a threshold no probability reaches: no cells, whatever the random network says
    (loose / "postprocess.json").write_text(json.dumps({"params": {"fg_threshold": 1.0}}))
    res = segment_image(load_model_dir(loose), img)
    assert res.labels.max() == 0 and res.scores == {}
    res = segment_image(load_model_dir(loose), img, PostprocessParams(fg_threshold=0.0, min_size=1))
    assert res.labels.max() >= 1 and res.labels.dtype == np.int32
    assert res.maps.shape == (2, 64, 64) and set(res.timings) == {"network_s", "postprocess_s"}
    assert set(res.scores) == set(np.unique(res.labels[res.labels > 0]).tolist())


def test_missing_default_model_is_one_clear_line(tmp_path, monkeypatch, capsys):
    from PIL import Image

    import livecell_seg.inference.predict as predict_mod

    monkeypatch.setattr(predict_mod, "default_model_dir", lambda: tmp_path / "nowhere")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    rc = main(["predict", "--input", str(tmp_path / "a.png"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no bundled model" in err[0] and "--model" in err[0]
    rc = main(["predict", "--model", str(tmp_path / "nope"), "--input", str(tmp_path / "a.png"), "-o", "x"])
    assert rc == 2 and "nope" in capsys.readouterr().err


def _cells() -> tuple[np.ndarray, np.ndarray]:
    """Labels with touching squares, a disc and a thin L shape; an image with known intensities."""
    labels = np.zeros((60, 80), np.int32)
    labels[5:20, 5:20] = 1
    labels[5:20, 20:35] = 2  # touches 1
    yy, xx = np.mgrid[:60, :80]
    labels[(yy - 40) ** 2 + (xx - 50) ** 2 <= 64] = 3
    labels[30:55, 5:8] = 7  # labels need not be consecutive
    labels[52:55, 5:25] = 7
    image = np.where(labels > 0, 100 + 10 * labels, 20).astype(np.uint16)
    return labels, image


def test_measurements_columns_and_values(tmp_path):
    labels, image = _cells()
    t = measurements_table(labels, image)
    assert tuple(t) == MEASUREMENT_COLUMNS
    assert t["label"].tolist() == [1, 2, 3, 7]
    assert t["area"].tolist() == [int((labels == k).sum()) for k in (1, 2, 3, 7)]
    np.testing.assert_allclose(t["mean_intensity"], [110, 120, 130, 170])
    assert t["centroid_y"][0] == pytest.approx(12.0) and t["centroid_x"][1] == pytest.approx(27.0)
    assert t["solidity"][0] == 1.0 and t["solidity"][3] < 0.8  # square vs L shape
    write_measurements_csv(tmp_path / "m.csv", labels, image, scores={1: 0.9, 2: 0.8, 3: 0.7, 7: 0.6})
    with open(tmp_path / "m.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == [*MEASUREMENT_COLUMNS, "score"] and len(rows) == 5
    assert [r[0] for r in rows[1:]] == ["1", "2", "3", "7"] and rows[4][-1] == "0.6"
    # no cells: header only
    write_measurements_csv(tmp_path / "e.csv", np.zeros_like(labels), image)
    assert (tmp_path / "e.csv").read_text().strip() == ",".join(MEASUREMENT_COLUMNS)


def test_roi_zip_opens_with_roifile_one_roi_per_cell(tmp_path):
    import roifile
    from skimage.draw import polygon2mask

    labels, _ = _cells()
    write_rois_zip(tmp_path / "r.zip", labels)
    rois = roifile.roiread(tmp_path / "r.zip")
    assert [r.name for r in rois] == ["0001-cell", "0002-cell", "0003-cell", "0007-cell"]
    assert all(r.roitype == roifile.ROI_TYPE.POLYGON for r in rois)
    for roi, k in zip(rois, (1, 2, 3, 7)):
        xy = roi.coordinates()
        # ImageJ pixel centres are at i + 0.5: filling the polygon gives back the cell's mask
        mask = polygon2mask(labels.shape, np.stack([xy[:, 1] - 0.5, xy[:, 0] - 0.5], axis=1))
        cell = labels == k
        assert (mask == cell).all(), k
    assert rois_zip_bytes(np.zeros((5, 5), np.int32)) == rois_zip_bytes(np.zeros((9, 9), np.int32))
    with zipfile.ZipFile(io.BytesIO(rois_zip_bytes(np.zeros((5, 5), np.int32)))) as zf:
        assert zf.namelist() == []
    assert len(cell_polygons(labels)) == 4


def test_overlay_outlines_cells_in_colour(tmp_path):
    from PIL import Image

    labels, image = _cells()
    rgb = overlay_image(image, labels)
    assert rgb.shape == (60, 80, 3) and rgb.dtype == np.uint8
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    assert not grey[5, 10] and not grey[19, 19]  # outline pixels are coloured
    assert grey[12, 12] and grey[0, 0]  # cell interior and background stay grey
    assert not np.array_equal(rgb[5, 10], rgb[5, 25])  # touching cells get different colours
    save_overlay_png(tmp_path / "o.png", image, labels)
    with Image.open(tmp_path / "o.png") as im:
        assert im.size == (80, 60) and im.mode == "RGB"
    plain = overlay_image(image, np.zeros_like(labels))  # no cells: the grey image only
    assert (plain[..., 0] == plain[..., 2]).all() and plain.max() == 255 and plain.min() == 0


@pytest.mark.slow
def test_benchmark_quick_runs():
    import subprocess
    import sys

    bench = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_predict.py"
    out = subprocess.run(
        [sys.executable, str(bench), "--quick"], capture_output=True, text=True, timeout=HANG_S
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (
        "stock MONAI BasicUNet" in out.stdout
        and "Full per-image cost / stock BasicUNet forward" in out.stdout
    )


def test_the_front_door_segments_an_image_and_a_folder_from_the_top_level_package(tmp_path):
    import subprocess
    import sys

    import livecell_seg
    from livecell_seg import PredictSettings, load_model_dir, predict_paths, segment_image
    from livecell_seg.data import sample_paths
    from livecell_seg.io import list_images, read_image, read_labels

    assert set(livecell_seg.__all__) <= set(dir(livecell_seg))
    first = list_images(sample_paths()[1])[0]
    model = load_model_dir()
    result = segment_image(model, read_image(first), scale=1.0)
    assert result.labels.shape == read_image(first).shape and result.n_cells > 10
    summary = predict_paths([first], tmp_path, settings=PredictSettings(scale=1.0), progress=False)
    assert summary.ok
    assert np.array_equal(read_labels(tmp_path / f"{first.stem}.tif"), result.labels)
    with pytest.raises(AttributeError):
        livecell_seg.no_such_name  # noqa: B018
    # importing the package alone stays lean (the CLI's --help depends on it)
    code = "import sys, livecell_seg; print(sorted(m for m in ('torch', 'numpy', 'skimage') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_front_door_lists_exactly_what_it_can_import():
    import livecell_seg

    assert sorted(livecell_seg.__all__) == sorted(["__version__", *livecell_seg._API])
