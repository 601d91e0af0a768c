"""`livecell-seg timecourse`: names, measurement (exact on ground truth), growth fits, bad input, report."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import HANG_S
from livecell_seg.cli import main
from livecell_seg.errors import LivecellError
from livecell_seg.io import write_labels
from livecell_seg.timecourse.analysis import (
    aggregate,
    exponential_phase,
    fit_growth,
    fit_line,
    measure_labels,
    parse_frame_name,
    parse_names,
    parse_time_h,
    run_timecourse,
)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _squares(n: int, size: int = 256, side: int = 8, pitch: int = 16) -> np.ndarray:
    """A label image with ``n`` separate ``side``×``side`` squares on a grid (n ≤ (size/pitch)²)."""
    per_row = size // pitch
    assert n <= per_row**2
    lab = np.zeros((size, size), np.uint16)
    for k in range(n):
        y, x = divmod(k, per_row)
        lab[y * pitch : y * pitch + side, x * pitch : x * pitch + side] = k + 1
    return lab


def _write_frame(images: Path, labels: Path, stem: str, lab: np.ndarray, seed: int = 0) -> None:
    """An 8-bit image (bright where the cells are) and its label image, both named ``stem``."""
    import tifffile

    rng = np.random.default_rng(seed)
    img = (60 + 120 * (lab > 0) + rng.normal(0, 5, lab.shape)).clip(0, 255).astype(np.uint8)
    images.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(images / f"{stem}.tif", img)
    write_labels(labels / f"{stem}.tif", lab)


# --------------------------------------------------------------------------------------------------
# 1. names
# --------------------------------------------------------------------------------------------------
def test_parse_livecell_incucyte_and_pattern_names():
    f = parse_frame_name("/x/SkBr3_Phase_H3_2_02d04h00m_3.tif")
    assert (f.cell_type, f.well, f.field, f.crop, f.time_h) == ("SkBr3", "H3", "2", "3", 52.0)
    g = parse_frame_name("VID1296_B12_3_01d02h30m.tif")  # Incucyte export, no crop
    assert (g.cell_type, g.well, g.field, g.crop, g.time_h) == ("VID1296", "B12", "3", "", 26.5)
    assert parse_frame_name("cells_t5.png") is None
    h = parse_frame_name("plate1-C04-f2-t036.png", r"(?P<well>[A-H]\d+)-f(?P<field>\d+)-t(?P<hours>\d+)")
    assert (h.well, h.field, h.time_h, h.cell_type) == ("C04", "2", 36.0, "")
    k = parse_frame_name("exp_D5_12h30m.tif", r"(?P<well>[A-H]\d+)_(?P<time>[\dhm]+)")
    assert (k.well, k.time_h) == ("D5", 12.5)
    assert parse_frame_name("exp_D5_later.tif", r"(?P<well>[A-H]\d+)_(?P<time>\w+)\.") is None
    assert parse_time_h("3d") == 72.0 and parse_time_h("90m") == 1.5 and parse_time_h("7.5") == 7.5
    with pytest.raises(ValueError, match="cannot read a time"):
        parse_time_h("noon")
    for bad, msg in (("(?P<well>", "not a valid regular expression"), (r"(?P<well>\w+)", "needs a named group"),
                     (r"(?P<time>\d+)(?P<plate>\w)", "unknown group")):  # fmt: skip
        with pytest.raises(LivecellError, match=msg):
            parse_names([Path("a.tif")], bad)
    frames, bad_names = parse_names(
        [Path("A_Phase_B2_1_00d08h00m_1.tif"), Path("junk.tif"), Path("A_Phase_B2_1_00d04h00m_1.tif")]
    )
    assert [f.time_h for f in frames] == [4.0, 8.0] and bad_names == [Path("junk.tif")]


# --------------------------------------------------------------------------------------------------
# 3. measurement
# --------------------------------------------------------------------------------------------------
def test_measure_labels_on_a_hand_made_image():
    lab = np.zeros((100, 200), np.int32)
    lab[0:10, 0:10] = 1  # 100 px
    lab[50:70, 50:60] = 7  # 200 px (labels need not be consecutive)
    lab[90:100, 190:200] = 3  # 100 px, touching the border: counted
    s = measure_labels(lab, pixel_size_um=0.5)  # another instrument's pixel size
    assert (s.height, s.width, s.count) == (100, 200, 3)
    assert s.confluence == pytest.approx(100 * 400 / 20000)
    assert s.mean_area_px == pytest.approx(400 / 3) and s.median_area_px == 100
    assert s.mean_area_um2 == pytest.approx(400 / 3 * 0.25) and s.median_area_um2 == 25
    # 3 cells on 100 x 200 px of 0.25 µm² = 5000 µm² = 0.005 mm²
    assert s.cells_per_mm2 == pytest.approx(600.0)
    # the default is LIVECell's 1.24 µm (Incucyte S3, 10x): 3 cells on 100 x 200 x 1.5376 µm²
    d = measure_labels(lab)
    assert d.median_area_um2 == pytest.approx(100 * 1.24**2)
    assert d.cells_per_mm2 == pytest.approx(3 / (20000 * 1.24**2 * 1e-6))
    empty = measure_labels(np.zeros((8, 8), np.uint16), None)
    assert empty.count == 0 and empty.confluence == 0 and math.isnan(empty.mean_area_px)
    assert math.isnan(empty.cells_per_mm2)
    with pytest.raises(ValueError):
        measure_labels(np.zeros((4, 4), np.float32))


def test_the_default_pixel_size_is_livecells_everywhere():
    """LIVECell: Incucyte S3, 10x objective, 1.24 µm per pixel (not 0.5; issue 22): the command's
    default, the Python API's and the one constant they read."""
    import inspect

    from livecell_seg.cli import build_parser
    from livecell_seg.data import LIVECELL_PIXEL_SIZE_UM
    from livecell_seg.timecourse import analysis

    assert LIVECELL_PIXEL_SIZE_UM == 1.24
    args = build_parser(only="timecourse").parse_args(["timecourse", "-i", "x", "-o", "y"])
    assert args.pixel_size == 1.24
    for fn in (analysis.measure_labels, analysis.measure_frames, analysis.run_timecourse):
        assert inspect.signature(fn).parameters["pixel_size_um"].default == 1.24, fn.__name__


def test_ground_truth_count_and_confluence_are_exact_on_the_bundled_sample(tmp_path):
    """Label images made from the 5 annotated LIVECell images give their exact cell counts and the
    exact annotated area (the union of the polygons, rasterized by pycocotools, less the pixels the
    converter documents dropping: the small pieces of cells cut apart by smaller cells on top)."""
    from pycocotools import mask as mask_utils

    from livecell_seg.data import sample_paths
    from livecell_seg.data.coco import load_coco, rasterize_annotations

    js, images = sample_paths()
    ds = load_coco(js)
    expected = {}
    for e in ds.images:
        anns = ds.anns_by_image[int(e["id"])]
        h, w = int(e["height"]), int(e["width"])
        r = rasterize_annotations(anns, h, w)
        write_labels(tmp_path / "gt" / f"{Path(e['file_name']).stem}.tif", r.labels)
        union = np.zeros((h, w), bool)
        for a in anns:  # independent of the converter: pycocotools' own annToMask, OR-ed
            rles = mask_utils.frPyObjects(a["segmentation"], h, w)
            union |= mask_utils.decode(mask_utils.merge(rles)).astype(bool)
        px = int(union.sum()) - r.stats.fragment_pixels
        expected[Path(e["file_name"]).name] = (len(anns), 100.0 * px / (h * w), 100.0 * union.mean())
    code = main(["timecourse", "--input", str(images), "--labels", str(tmp_path / "gt"), "--out", str(tmp_path / "o"), "-q", "--no-report"])  # fmt: skip
    assert code == 0
    rows = _read_csv(tmp_path / "o" / "per_image.csv")
    assert len(rows) == 5
    for r in rows:
        n, conf, polygon_conf = expected[Path(r["file"]).name]
        assert int(r["count"]) == n
        assert float(r["confluence"]) == pytest.approx(conf, rel=1e-9)
        assert abs(float(r["confluence"]) - polygon_conf) < 0.05  # percentage points
        # the default pixel size is LIVECell's 1.24 µm: a 704 x 520 crop covers 0.563 mm²
        assert float(r["cells_per_mm2"]) == pytest.approx(n / (704 * 520 * 1.24**2 * 1e-6), rel=1e-9)
    growth = _read_csv(tmp_path / "o" / "growth.csv")
    assert len(growth) == 10 and all(g["meaningful"] == "no" for g in growth)  # one time point per well
    assert all(g["reason"] == "fewer than 3 time points with cells (1)" for g in growth)


def test_labels_mode_never_loads_torch(tmp_path):
    _write_frame(tmp_path / "img", tmp_path / "lab", "A_Phase_B2_1_00d00h00m_1", _squares(5))
    _write_frame(tmp_path / "img", tmp_path / "lab", "A_Phase_B2_1_00d04h00m_1", _squares(9))
    code = (
        "import sys; from livecell_seg.cli import main; "
        f"rc = main(['timecourse', '--input', {str(tmp_path / 'img')!r}, '--labels', {str(tmp_path / 'lab')!r}, "
        f"'--out', {str(tmp_path / 'o')!r}, '-q']); "
        "print(rc, 'torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_S)
    assert out.stdout.split() == ["0", "False", "True"], out.stderr  # the report uses matplotlib
    assert (tmp_path / "o" / "index.html").is_file()
    probe = "import sys, livecell_seg.timecourse.analysis, livecell_seg.timecourse.report; print('matplotlib' in sys.modules, 'torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.split() == [
        "False",
        "False",
    ]


# --------------------------------------------------------------------------------------------------
# 4./5. aggregation and growth fits
# --------------------------------------------------------------------------------------------------
def test_fit_line_matches_scipy_linregress():
    from scipy import stats

    rng = np.random.default_rng(3)
    x = np.arange(8.0)
    y = 1.0 + 0.3 * x + rng.normal(0, 0.2, 8)
    ref = stats.linregress(x, y)
    f = fit_line(x, y)
    assert f.slope == pytest.approx(ref.slope) and f.intercept == pytest.approx(ref.intercept)
    assert f.slope_se == pytest.approx(ref.stderr) and f.r2 == pytest.approx(ref.rvalue**2)
    q = stats.t.ppf(0.975, 6)
    assert f.slope_ci == pytest.approx((ref.slope - q * ref.stderr, ref.slope + q * ref.stderr))


@pytest.mark.parametrize("seed", range(8))
def test_known_doubling_time_is_recovered_within_5_percent(seed):
    """Noisy (3 % per time point) exponential growth with a lag before and a plateau after: the
    fit finds the exponential phase and recovers the doubling time within 5 %, CI around it."""
    rng = np.random.default_rng(seed)
    td = 21.0
    t = np.arange(0.0, 121.0, 4.0)  # 31 time points, 4 h apart
    log2_n = np.clip(t, 24.0, 96.0) / td  # lag until 24 h, exponential to 96 h, then a plateau
    counts = 50 * 2.0**log2_n * np.exp(rng.normal(0, 0.03, t.size))
    g = fit_growth(t, counts)
    assert g.meaningful and g.reason == ""
    assert abs(g.doubling_time_h - td) / td < 0.05
    assert g.doubling_time_ci_low < td < g.doubling_time_ci_high
    assert 20.0 <= g.t_start_h <= 28.0 and 92.0 <= g.t_end_h <= 100.0  # lag and plateau left out
    # pure exponential: every point is used
    pure = fit_growth(t, 10 * 2.0 ** (t / td) * np.exp(rng.normal(0, 0.03, t.size)))
    assert pure.n_used == t.size and abs(pure.doubling_time_h - td) / td < 0.05


def test_exponential_phase_without_noise_is_exact():
    t = np.arange(10.0)
    y = np.clip(t, 2, 6) * 0.5  # lag to t=2, growth to t=6, plateau
    assert exponential_phase(t, y) == (2, 6)
    assert exponential_phase(t, 0.5 * t) == (0, 9)
    assert exponential_phase(t, -0.1 * t) == (0, 9)  # no positive slope: everything
    g = fit_growth(t, np.exp(y))
    assert g.doubling_time_h == pytest.approx(math.log(2) / 0.5) and g.n_used == 5
    fixed = fit_growth(t, np.exp(y), fit_range=(2, 4))
    assert (fixed.t_start_h, fixed.t_end_h, fixed.n_used) == (2, 4, 3)


def test_degenerate_series_do_not_crash_and_say_why():
    one = fit_growth([10.0], [100.0])
    assert not one.meaningful and one.reason == "fewer than 3 time points with cells (1)"
    two = fit_growth([0.0, 24.0], [100.0, 200.0])
    assert not two.meaningful and two.doubling_time_h == pytest.approx(24.0) and "fewer than 3" in two.reason
    flat = fit_growth(np.arange(6.0) * 4, [100.0] * 6)
    assert not flat.meaningful and flat.reason.startswith("no growth")
    shrinking = fit_growth(np.arange(6.0), 100 * 0.8 ** np.arange(6.0))
    assert not shrinking.meaningful and shrinking.reason.startswith("no growth")
    rng = np.random.default_rng(0)
    noisy = fit_growth(np.arange(8.0) * 4, 100 * np.exp(rng.normal(0, 0.3, 8)))
    assert not noisy.meaningful and ("CI includes 0" in noisy.reason or "poor fit" in noisy.reason)
    zeros = fit_growth([0, 4, 8, 12], [0, 0, 0, 5])
    assert not zeros.meaningful and zeros.reason == "fewer than 3 time points with cells (1)"
    nan = fit_growth([0, 4, 8], [float("nan"), 10, 20])
    assert not nan.meaningful and nan.n_points == 3
    empty = fit_growth([], [])
    assert not empty.meaningful and empty.n_points == 0
    with pytest.raises(ValueError):
        fit_growth([0, 1], [1])


def test_aggregate_mean_sd_and_fold_change():
    rows = [
        {"cell_type": "X", "well": "A1", "field": f, "time_h": t, "count": c, "confluence": c / 10,
         "cells_per_mm2": c * 2, "mean_area_um2": 50, "median_area_um2": 40}
        for t, f, c in ((0, "1", 10), (0, "2", 20), (24, "1", 30), (24, "2", 50), (48, "1", 80))
    ]  # fmt: skip
    agg = aggregate(rows)
    assert [(r["time_h"], r["n_images"], r["n_fields"]) for r in agg] == [(0, 2, 2), (24, 2, 2), (48, 1, 1)]
    assert agg[0]["count_mean"] == 15 and agg[0]["count_sd"] == pytest.approx(np.std([10, 20], ddof=1))
    assert math.isnan(agg[2]["count_sd"])
    assert [r["count_rel"] for r in agg] == pytest.approx([1, 40 / 15, 80 / 15])


# --------------------------------------------------------------------------------------------------
# the command on a synthetic plate with known growth
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    """Label images with exact cell counts: well A1 doubles every 24 h with a plateau after 72 h
    (4 crops per time point), B2 does not grow, C3 is imaged once."""
    root = tmp_path_factory.mktemp("plate")
    img, lab = root / "images", root / "labels"
    td = 24.0
    for t in range(0, 97, 8):
        for crop in (1, 2, 3, 4):
            n = round(12 * 2 ** (min(t, 72) / td) * (1 + 0.02 * (crop - 2.5)))
            _write_frame(
                img, lab, f"HeLa_Phase_A1_1_{t // 24:02d}d{t % 24:02d}h00m_{crop}", _squares(n), t + crop
            )
        _write_frame(img, lab, f"HeLa_Phase_B2_1_{t // 24:02d}d{t % 24:02d}h00m_1", _squares(30), t)
    _write_frame(img, lab, "HeLa_Phase_C3_1_01d00h00m_1", _squares(20))
    return root, td


def test_command_recovers_the_doubling_time_and_writes_everything(plate, tmp_path, capsys):
    root, td = plate
    out = tmp_path / "out"
    code = main(
        ["timecourse", "--input", str(root / "images"), "--labels", str(root / "labels"), "--out", str(out)]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert (
        "HeLa A1: count doubling time" in text
        and "HeLa B2: count doubling time not meaningful (no growth" in text
    )
    per_image = _read_csv(out / "per_image.csv")
    assert len(per_image) == 13 * 5 + 1
    assert {"file", "cell_type", "well", "field", "time_h", "count", "confluence"} <= set(per_image[0])
    pwt = _read_csv(out / "per_well_time.csv")
    assert len(pwt) == 13 * 2 + 1
    growth = {(g["well"], g["metric"]): g for g in _read_csv(out / "growth.csv")}
    for metric in ("count", "confluence"):  # all cells have the same area: both double every 24 h
        a1 = growth[("A1", metric)]
        assert a1["meaningful"] == "yes"
        assert abs(float(a1["doubling_time_h"]) - td) / td < 0.05
        assert float(a1["doubling_time_ci_low"]) < td < float(a1["doubling_time_ci_high"])
        assert float(a1["t_end_h"]) <= 80  # the plateau is left out
    assert growth[("B2", "count")]["meaningful"] == "no" and growth[("B2", "count")]["reason"].startswith(
        "no growth"
    )
    assert growth[("C3", "count")]["reason"] == "fewer than 3 time points with cells (1)"
    # the report: self-contained page, curves, and a plate heat map (3 wells span the plate)
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= 4 and "<script" not in page
    assert 'src="http' not in page and "src='http" not in page
    for name in ("growth_curves", "absolute", "doubling_time_plate"):
        assert (out / "plots" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    summary = json.loads((out / "timecourse.json").read_text())
    assert summary["n_measured"] == 66 and summary["skipped"] == []


def test_python_api_steps_give_what_the_run_writes(plate, tmp_path):
    from livecell_seg.io import list_images
    from livecell_seg.timecourse.analysis import find_label_files, fit_wells, measure_frames

    root, _ = plate
    res = run_timecourse(
        root / "images", tmp_path / "o", labels_dir=root / "labels", report=False, progress=False
    )
    frames, bad = parse_names(list_images(root / "images"))
    seg = find_label_files([f.path for f in frames], root / "labels")
    rows, failed = measure_frames(frames, seg.labels)
    assert not bad and not failed and not seg.failed and rows == res.per_image
    assert aggregate(rows) == res.per_well_time and fit_wells(aggregate(rows)) == res.growth
    assert not (tmp_path / "o" / "index.html").exists() and res.files["growth"].is_file()


def test_plate_heat_map_only_when_wells_span_a_plate():
    from livecell_seg.timecourse.report import plate_groups, plate_heatmap_png, plate_layout

    def fits(*wells):
        return [{"cell_type": ct, "well": w, "metric": "count", "meaningful": True, "doubling_time_h": 20.0 + i}
                for i, (ct, w) in enumerate(wells)]  # fmt: skip

    assert plate_heatmap_png(fits(("X", "A1"))) is None  # one well
    assert plate_heatmap_png(fits(("X", "well-1"), ("X", "well-2"))) is None  # not plate positions
    assert plate_layout(["A1", "H12"]) == (8, 12) and plate_layout(["B3", "P24"]) == (16, 24)
    assert list(plate_groups(fits(("X", "A1"), ("Y", "B2")))) == [""]  # LIVECell: one plate, many types
    assert sorted(plate_groups(fits(("X", "A1"), ("Y", "A1")))) == ["X", "Y"]  # same well twice: plates
    assert plate_heatmap_png(fits(("X", "A1"), ("Y", "C7"))).startswith(b"\x89PNG")


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------
def test_bad_input_is_one_line_each_and_the_rest_is_processed(plate, tmp_path, capsys):
    import shutil

    root, _ = plate
    img, lab = tmp_path / "images", tmp_path / "labels"
    shutil.copytree(root / "images", img)
    shutil.copytree(root / "labels", lab)
    (img / "notes_from_monday.tif").write_bytes((img / "HeLa_Phase_C3_1_01d00h00m_1.tif").read_bytes())
    _write_frame(img, lab, "HeLa_Phase_C3_1_01d04h00m_1", _squares(4, size=128))  # other size
    (lab / "HeLa_Phase_C3_1_01d08h00m_1.tif").write_bytes(b"<html>502 Bad Gateway</html>")  # unreadable
    (img / "HeLa_Phase_C3_1_01d08h00m_1.tif").write_bytes(
        (img / "HeLa_Phase_C3_1_01d00h00m_1.tif").read_bytes()
    )
    (img / "HeLa_Phase_C3_1_01d12h00m_1.tif").write_bytes(
        (img / "HeLa_Phase_C3_1_01d00h00m_1.tif").read_bytes()
    )  # no labels
    code = main(
        [
            "timecourse",
            "--input",
            str(img),
            "--labels",
            str(lab),
            "--out",
            str(tmp_path / "o"),
            "-q",
            "--no-report",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[0] == (
        "livecell-seg timecourse: skipped 1 of 70 file name(s) do not match "
        "<cell type>_Phase_<well>_<field>_<DD>d<HH>h<MM>m_<crop> (or give --pattern): notes_from_monday.tif"
    )
    assert any("HeLa_Phase_C3_1_01d12h00m_1" in e and "no label image" in e for e in err)
    assert any("HeLa_Phase_C3_1_01d08h00m_1.tif" in e and "cannot read label image" in e for e in err)
    assert any(
        "HeLa_Phase_C3_1_01d04h00m_1.tif: image is 128x128 pixels, the other frames 256x256" in e for e in err
    )
    assert err[-1].startswith("livecell-seg timecourse: 4 file(s) skipped")
    assert all("Traceback" not in e for e in err) and len(err) == 5
    rows = _read_csv(tmp_path / "o" / "per_image.csv")
    assert len(rows) == 66  # everything else measured
    assert len(json.loads((tmp_path / "o" / "timecourse.json").read_text())["skipped"]) == 4


def test_fatal_input_errors_exit_2_with_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    cases = {
        "empty": ["--input", str(tmp_path / "empty")],
        "missing": ["--input", str(tmp_path / "nope")],
    }
    (tmp_path / "odd").mkdir()
    for i in range(7):
        write_labels(tmp_path / "odd" / f"img_{i}.tif", _squares(1, size=32))
    cases["names"] = ["--input", str(tmp_path / "odd")]
    cases["pattern"] = ["--input", str(tmp_path / "odd"), "--pattern", "(?P<time"]
    cases["labels dir"] = [
        "--input",
        str(tmp_path / "odd"),
        "--pattern",
        r"_(?P<hours>\d)",
        "--labels",
        str(tmp_path / "x"),
    ]
    cases["fit range"] = ["--input", str(tmp_path / "odd"), "--fit-range", "5-10"]
    expected = {
        "empty": "no images (.tif, .tiff, .png, .jpg, .jpeg) found in",
        "missing": "nope: no such file or folder",
        "names": "7 of 7 file name(s) do not match <cell type>_Phase_<well>_<field>_<DD>d<HH>h<MM>m_<crop> "
        "(or give --pattern): img_0.tif, img_1.tif, img_2.tif, img_3.tif, img_4.tif and 2 more",
        "pattern": "is not a valid regular expression",
        "labels dir": "x: label folder not found",
        "fit range": "--fit-range must be START:END in hours",
    }
    for name, args in cases.items():
        code = main(["timecourse", *args, "--out", str(tmp_path / "o"), "-q"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, (name, err)
        assert err[0].startswith("livecell-seg timecourse: error: ") and expected[name] in err[0], (name, err)
    assert not (tmp_path / "o" / "per_image.csv").exists()


# --------------------------------------------------------------------------------------------------
# the network path: the same code as `predict`
# --------------------------------------------------------------------------------------------------
def test_network_path_is_predicts_code_path(tmp_path, capsys):
    """Without --labels the frames are segmented by predict_paths (the bundled model): the label
    images, counts and skipped files are exactly those of `livecell-seg predict`."""
    pytest.importorskip("torch")
    import tifffile

    from livecell_seg.inference.runner import predict_paths
    from livecell_seg.interactive import sample_images
    from livecell_seg.io import read_image, read_labels

    src = read_image(sample_images()[0])
    frames = tmp_path / "frames"
    frames.mkdir()
    for k, (y, x) in enumerate(((0, 0), (0, 200), (200, 0))):
        tifffile.imwrite(frames / f"MCF7_Phase_G4_2_00d{4 * k:02d}h00m_1.tif", src[y : y + 192, x : x + 256])
    (frames / "MCF7_Phase_G4_2_00d12h00m_1.tif").write_bytes(b"not a tiff")
    code = main(
        [
            "timecourse",
            "--input",
            str(frames),
            "--out",
            str(tmp_path / "tc"),
            "--threads",
            "1",
            "-q",
            "--no-report",
        ]
    )
    assert code == 1  # the broken frame is skipped, the others measured
    assert "MCF7_Phase_G4_2_00d12h00m_1.tif: cannot read image" in capsys.readouterr().err
    ref = predict_paths(sorted(frames.glob("*.tif"))[:3], tmp_path / "pred", progress=False, num_threads=1)
    rows = _read_csv(tmp_path / "tc" / "per_image.csv")
    assert len(rows) == 3
    for r in rows:
        stem = Path(r["file"]).stem
        mine = read_labels(tmp_path / "tc" / "segmentation" / f"{stem}.tif")
        assert np.array_equal(mine, read_labels(tmp_path / "pred" / f"{stem}.tif"))
        assert int(r["count"]) == ref.n_cells[str(frames / f"{stem}.tif")]
    skipped = json.loads((tmp_path / "tc" / "timecourse.json").read_text())["skipped"]
    assert [Path(s["file"]).name for s in skipped] == ["MCF7_Phase_G4_2_00d12h00m_1.tif"]


def test_frames_keep_the_label_names_an_earlier_run_gave(tmp_path):
    """Two frames of the same name in two folders: after a run on b/ alone, b's labels are
    ``F.tif``; a --resume run on a/ and b/ keeps that (predict_names.json), segments a into
    ``F-2.tif`` and measures each frame from its own label image."""
    pytest.importorskip("torch")
    import tifffile

    from livecell_seg.interactive import sample_images
    from livecell_seg.io import read_image, read_labels
    from livecell_seg.timecourse.analysis import run_timecourse

    src = read_image(sample_images()[0])
    name = "MCF7_Phase_G4_2_00d00h00m_1.tif"
    for d, (y, x) in (("a", (0, 0)), ("b", (200, 200))):
        (tmp_path / d).mkdir()
        tifffile.imwrite(tmp_path / d / name, src[y : y + 192, x : x + 256])
    out = tmp_path / "tc"
    kw = {"num_threads": 1, "report": False, "progress": False}
    run_timecourse([tmp_path / "b"], out, **kw)
    res = run_timecourse([tmp_path / "a", tmp_path / "b"], out, resume=True, **kw)
    seg = out / "segmentation"
    assert res.segmentation.predict.skipped_existing == [tmp_path / "b" / name]
    rows = {Path(r["file"]).parent.name: r for r in res.per_image}
    assert Path(rows["a"]["labels"]) == seg / "MCF7_Phase_G4_2_00d00h00m_1-2.tif"
    assert Path(rows["b"]["labels"]) == seg / name
    for r in rows.values():
        labels = read_labels(r["labels"])
        assert r["count"] == len(np.unique(labels[labels > 0])) > 0
    assert rows["a"]["count"] != rows["b"]["count"]


# --------------------------------------------------------------------------------------------------
# the web app's time-course view
# --------------------------------------------------------------------------------------------------
def test_app_time_course_view_uploads_and_folder(tmp_path, monkeypatch):
    """Frames uploaded to the page are grouped by well and time and measured with the same
    functions as the command; a folder works too; unusable frames are one-line warnings."""
    pytest.importorskip("torch")
    import tifffile
    from streamlit.testing.v1 import AppTest

    from livecell_seg import interactive as logic
    from livecell_seg.app import MODEL_ENV, SCRIPT
    from livecell_seg.inference.predict import load_model_for_predict, segment_image

    monkeypatch.delenv(MODEL_ENV, raising=False)  # the bundled model
    src = logic.decode_image(logic.sample_images()[0].name, logic.sample_images()[0].read_bytes())
    frames = {}
    for k, (y, x) in enumerate(((0, 0), (150, 200), (300, 400))):
        buf = __import__("io").BytesIO()
        tifffile.imwrite(buf, src[y : y + 128, x : x + 160])
        frames[f"MCF7_Phase_G4_2_00d{4 * k:02d}h00m_1.tif"] = buf.getvalue()
    model = load_model_for_predict(None, "cpu")
    expected = {
        n: int(np.unique(segment_image(model, logic.decode_image(n, b)).labels).size - 1)
        for n, b in frames.items()
    }

    at = AppTest.from_file(str(SCRIPT), default_timeout=HANG_S)
    at.session_state["view"] = "Time course"
    at.session_state["tc_source"] = "Upload"
    at.run()
    assert not at.exception and "Choose a folder or upload" in at.info[0].value
    assert at.number_input(key="tc_pixel").value == pytest.approx(1.24)  # LIVECell's, as the command
    uploads = [(n, b, "image/tiff") for n, b in frames.items()] + [
        ("holiday.tif", frames[next(iter(frames))], "image/tiff")
    ]
    at.file_uploader(key="tc_upload").set_value(uploads).run()
    assert not at.exception and not at.error
    assert [w.value for w in at.warning] == [
        "1 of 4 file name(s) do not match <cell type>_Phase_<well>_<field>_<DD>d<HH>h<MM>m_<crop> "
        "(or give --pattern): holiday.tif"
    ]
    assert at.subheader[0].value == "Time course: 3 frames, 1 well(s), 3 time point(s)"
    per_image = at.dataframe[1].value
    assert dict(zip(per_image["file"], per_image["count"])) == expected
    growth = at.dataframe[0].value
    assert list(growth["metric"]) == ["count", "confluence"] and list(growth["time points used"])[0].endswith(
        "of 3"
    )
    assert len(at.image) == 2  # the curves and the overlay of the chosen frame
    at.select_slider(key="tc_frame").set_value(at.select_slider(key="tc_frame").options[-1]).run()
    assert int(next(m.value for m in at.metric if m.label == "Cells")) == expected[list(frames)[-1]]
    assert {b.label for b in at.get("download_button")} == {
        "per_image.csv",
        "per_well_time.csv",
        "growth.csv",
    }

    folder = tmp_path / "frames"
    folder.mkdir()
    for n, b in frames.items():
        (folder / n).write_bytes(b)
    (folder / "MCF7_Phase_G4_2_00d16h00m_1.tif").write_bytes(b"<html>")  # unreadable
    at.radio(key="tc_source").set_value("Folder").run()
    at.text_input(key="tc_folder").set_value(str(folder)).run()
    assert not at.exception and not at.error
    assert len(at.warning) == 1 and at.warning[0].value.startswith(
        f"{folder / 'MCF7_Phase_G4_2_00d16h00m_1.tif'}: cannot read image"
    )
    assert at.subheader[0].value == "Time course: 3 frames, 1 well(s), 3 time point(s)"
    at.text_input(key="tc_folder").set_value(str(tmp_path / "nowhere")).run()
    assert [e.value for e in at.error] == [f"{tmp_path / 'nowhere'}: no such folder"]


def test_check_these_frames_lists_the_lowest_quality_frames(tmp_path, capsys):
    """Label images that `predict --quality` wrote carry their quality: per_image.csv has it, the
    report and the command list the worst frames under "check these frames"; label images
    without it (convert, other programs) give no such list."""
    import html

    from livecell_seg.timecourse.report import CHECK_FRAMES, frames_to_check

    img, lab = tmp_path / "img", tmp_path / "lab"
    qualities = [0.9, 0.35, 0.8, 0.6, 0.95, 0.5, 0.7]
    for t, q in enumerate(qualities):
        stem = f"A172_Phase_B2_1_00d{3 * t:02d}h00m_1"
        _write_frame(img, lab, stem, _squares(20 + 4 * t), seed=t)
        # as predict writes them: the settings record and what came out
        write_labels(
            lab / f"{stem}.tif",
            _squares(20 + 4 * t),
            record={"outcome": {"n_cells": 20 + 4 * t, "quality": q}},
        )
    argv = ["timecourse", "--input", str(img), "--labels", str(lab), "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    rows = _read_csv(tmp_path / "o" / "per_image.csv")
    assert sorted(float(r["quality"]) for r in rows) == sorted(qualities)
    worst = sorted(range(len(qualities)), key=lambda t: qualities[t])[:CHECK_FRAMES]
    names = [f"A172_Phase_B2_1_00d{3 * t:02d}h00m_1.tif" for t in worst]
    res_rows = [{**r, "quality": float(r["quality"])} for r in rows]
    assert [Path(r["file"]).name for r in frames_to_check(res_rows)] == names
    line = next(x for x in printed.splitlines() if "check these frames" in x)
    assert [part.split(" (")[0] for part in line.split(": ", 1)[1].split(", ")] == names
    page = html.unescape((tmp_path / "o" / "index.html").read_text())
    section = page.split("Check these frames")[1].split("</ol>")[0]
    assert [section.find(n) for n in names] == sorted(section.find(n) for n in names) and -1 not in [
        section.find(n) for n in names
    ]
    assert "quality 0.35" in section

    # label images without a recorded quality: no list
    plain = tmp_path / "plain"
    for t in range(4):
        _write_frame(img, plain, f"A172_Phase_B2_1_00d{3 * t:02d}h00m_1", _squares(20 + 4 * t), seed=t)
    res = run_timecourse(img, tmp_path / "o2", labels_dir=plain, progress=False)
    assert frames_to_check(res.per_image) == [] and all(r["quality"] is None for r in res.per_image)
    assert "Check these frames" not in (tmp_path / "o2" / "index.html").read_text()


def test_a_quoted_glob_is_expanded_like_the_shell_would(plate, tmp_path, capsys):
    # `livecell-seg timecourse --input 'images/*B2*.tif'`: the shell leaves a quoted pattern alone
    root, _ = plate
    out = tmp_path / "out"
    pattern = str(root / "images" / "HeLa_Phase_B2_*.tif")
    code = main(["timecourse", "--input", pattern, "--labels", str(root / "labels"), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    per_image = _read_csv(out / "per_image.csv")
    assert len(per_image) == 13 and {r["well"] for r in per_image} == {"B2"}
    code = main(["timecourse", "--input", str(root / "images" / "*.nothing"), "--out", str(tmp_path / "o2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "matches no image file" in err[0]


def test_list_images_expands_patterns_but_prefers_a_literal_name(tmp_path):
    from livecell_seg.io import list_images

    for name in ("a1.tif", "a2.tif", "b1.png", "notes.txt", "x[1].tif"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a3.tif").write_bytes(b"")
    assert list_images(str(tmp_path / "a*.tif")) == [tmp_path / "a1.tif", tmp_path / "a2.tif"]
    assert list_images(str(tmp_path / "**" / "a*.tif")) == [
        tmp_path / "a1.tif",
        tmp_path / "a2.tif",
        tmp_path / "sub" / "a3.tif",
    ]
    assert list_images(str(tmp_path / "*")) == [
        tmp_path / "a1.tif",
        tmp_path / "a2.tif",
        tmp_path / "b1.png",
        tmp_path / "sub" / "a3.tif",
        tmp_path / "x[1].tif",
    ]
    assert list_images(str(tmp_path / "x[1].tif")) == [tmp_path / "x[1].tif"]  # a real file, not a class
