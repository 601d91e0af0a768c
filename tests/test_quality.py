"""The per-image quality estimate (issue 25), its summary table and the worst-first ranking, on
hand-made arrays; predict's ``summary.csv``, ``--resume`` and ``--rank-for-correction`` on a tiny
random model."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from livecell_seg.inference.quality import (
    ImageRow,
    agreement,
    mirror_back,
    rank_for_correction,
    ranking_csv_text,
    ranking_table,
    summary_csv_text,
)


def _labels() -> np.ndarray:
    lab = np.zeros((30, 40), np.int32)
    lab[2:10, 2:10] = 1
    lab[2:10, 20:30] = 2
    lab[15:25, 5:15] = 3
    lab[15:25, 25:35] = 4
    return lab


def test_identical_label_images_agree_fully_and_disjoint_ones_not_at_all():
    lab = _labels()
    assert agreement(lab, lab) == 1.0
    renumbered = np.where(lab > 0, 10 - lab, 0)  # other numbers, same cells
    assert agreement(lab, renumbered) == 1.0
    disjoint = np.zeros_like(lab)
    disjoint[11:14, :] = 7  # no cell of the other in common
    assert agreement(lab, disjoint) == 0.0
    assert agreement(lab, np.zeros_like(lab)) == 0.0
    assert agreement(np.zeros_like(lab), np.zeros_like(lab)) == 1.0  # nothing, twice: agreed


def test_agreement_counts_the_cells_found_the_same_way_twice():
    lab = _labels()
    half = lab.copy()
    half[half >= 3] = 0  # 2 of 4 cells found again: F1 = 2 * 2 / (4 + 2)
    assert agreement(lab, half) == pytest.approx(2 / 3)
    merged = lab.copy()
    merged[2:10, 10:20] = 1
    merged[merged == 2] = 1  # cells 1 and 2 merged: neither overlaps the merge by IoU >= 0.5
    assert agreement(lab, merged) == pytest.approx(2 * 2 / (4 + 3))
    with pytest.raises(ValueError, match="shape"):
        agreement(lab, lab[:, :-1])


def test_mirror_back_undoes_a_horizontal_mirror_of_every_channel():
    maps = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    assert np.array_equal(mirror_back(maps[..., ::-1]), maps)
    assert mirror_back(maps).flags["C_CONTIGUOUS"]


def test_ranking_is_worst_first_and_leaves_out_images_without_a_quality():
    rows = [
        ImageRow("b.tif", "b.tif", n_cells=10, quality=0.9),
        ImageRow("a.tif", "a.tif", n_cells=5, quality=0.4),
        ImageRow("c.tif", "c.tif", n_cells=50, quality=0.4),  # a tie: more cells first
        ImageRow("d.tif", "d.tif", n_cells=3, quality=None),
        ImageRow("e.tif", status="failed", error="e.tif: unreadable"),
    ]
    ranked = rank_for_correction(rows)
    assert [r.image for r in ranked] == ["c.tif", "a.tif", "b.tif"]
    lines = list(csv.reader(io.StringIO(ranking_csv_text(ranked))))
    assert lines[0] == ["rank", "image", "labels", "quality", "n_cells"]
    assert lines[1] == ["1", "c.tif", "c.tif", "0.4000", "50"] and lines[3][1] == "b.tif"
    table = ranking_table(ranked, limit=2).splitlines()
    assert "c.tif" in table[1] and "0.400" in table[1] and "a.tif" in table[2]
    assert table[-1] == "... and 1 more"
    summary = list(csv.DictReader(io.StringIO(summary_csv_text(rows))))
    assert [r["image"] for r in summary] == ["b.tif", "a.tif", "c.tif", "d.tif", "e.tif"]
    assert summary[3]["quality"] == "" and summary[4]["status"] == "failed" and summary[4]["n_cells"] == ""


# ------------------------------------------------------------------------------------------------
# predict: summary.csv, the label TIFF's record, --resume, --rank-for-correction

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every test of this module runs with one torch thread (conftest)."""


@pytest.fixture(scope="module")
def model_dir(random_model_dir) -> Path:
    return random_model_dir("fg+dist", base_features=4, depth=2)


def _predict_argv(model_dir: Path, inp: Path, out: Path) -> list[str]:
    """``predict`` of the folder ``inp`` into ``out`` at zoom 1 with the test model."""
    return ["predict", "--model", str(model_dir), "-i", str(inp), "--out", str(out), "--scale", "1"]


def _images(folder: Path, n: int = 3) -> list[Path]:
    from PIL import Image
    from skimage.draw import disk

    folder.mkdir()
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        img = np.full((48, 64), 0.2)
        for _ in range(6):
            rr, cc = disk((rng.integers(0, 48), rng.integers(0, 64)), rng.integers(4, 9), shape=img.shape)
            img[rr, cc] = 0.8
        img = np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1)
        p = folder / f"img{i}.png"
        Image.fromarray((img * 255).astype(np.uint8)).save(p)
        out.append(p)
    return out


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_segment_image_quality_is_the_agreement_with_the_mirrored_pass(model_dir):
    from livecell_seg.inference.postprocess import instances_from_maps
    from livecell_seg.inference.predict import load_model_for_predict, segment_image
    from livecell_seg.inference.tiling import predict_maps

    model = load_model_for_predict(model_dir, "cpu")
    rng = np.random.default_rng(3)
    img = rng.random((40, 56)).astype(np.float32)
    plain = segment_image(model, img, scale=1)
    res = segment_image(model, img, scale=1, quality=True)
    assert plain.quality is None and "quality_s" not in plain.timings
    assert np.array_equal(res.labels, plain.labels) and "quality_s" in res.timings
    mirrored = instances_from_maps(
        mirror_back(predict_maps(model, img[:, ::-1].copy())), model.head, model.params
    )
    assert res.quality == pytest.approx(agreement(plain.labels, mirrored))
    assert 0.0 <= res.quality <= 1.0


def test_summary_csv_resume_and_the_ranking(tmp_path, model_dir, capsys):
    from livecell_seg.cli import main
    from livecell_seg.io import read_labels, read_labels_outcome

    imgs = _images(tmp_path / "in")
    out = tmp_path / "o"
    argv = _predict_argv(model_dir, tmp_path / "in", out)
    # without the estimate: summary.csv with cells and zoom, no quality, no ranking
    assert main([*argv, "-q"]) == 0
    rows = _csv(out / "summary.csv")
    assert [Path(r["image"]).name for r in rows] == [p.name for p in imgs]
    for r, p in zip(rows, imgs):
        n = len(np.unique(read_labels(out / f"{p.stem}.tif"))) - 1
        assert r["labels"] == f"{p.stem}.tif" and r["status"] == "segmented"
        assert int(r["n_cells"]) == n and float(r["zoom"]) == 1.0 and r["quality"] == ""
    assert not (out / "correction_order.csv").exists()

    # --rank-for-correction: the estimate is made (the images segmented again: their records
    # lack it), recorded in each label TIFF, in summary.csv, and ranked worst first
    assert main([*argv, "--resume", "--rank-for-correction"]) == 0
    printed = capsys.readouterr().out
    rows = _csv(out / "summary.csv")
    q = {Path(r["image"]).name: float(r["quality"]) for r in rows}
    assert all(r["status"] == "segmented" for r in rows) and all(0 <= v <= 1 for v in q.values())
    for p in imgs:
        assert read_labels_outcome(out / f"{p.stem}.tif")["quality"] == pytest.approx(q[p.name], abs=1e-4)
    ranking = _csv(out / "correction_order.csv")
    assert [float(r["quality"]) for r in ranking] == sorted(float(r["quality"]) for r in ranking)
    assert [r["rank"] for r in ranking] == ["1", "2", "3"]
    table = printed.split("images to correct first")[1].splitlines()[2:]
    assert [line.split()[-1] for line in table] == [r["image"] for r in ranking]
    assert "quality " in printed.split("images to correct first")[0]

    # --resume keeps them all: summary.csv rebuilt from the label TIFFs' records, nothing rewritten
    mtimes = {p: (out / f"{p.stem}.tif").stat().st_mtime_ns for p in imgs}
    before = {r["image"]: r for r in rows}
    (out / "summary.csv").unlink()
    assert main([*argv, "--resume", "--rank-for-correction", "-q"]) == 0
    again = _csv(out / "summary.csv")
    assert all(r["status"] == "resumed" for r in again)
    assert [{k: v for k, v in r.items() if k != "status"} for r in again] == [
        {k: v for k, v in before[r["image"]].items() if k != "status"} for r in again
    ]
    assert all((out / f"{p.stem}.tif").stat().st_mtime_ns == mtimes[p] for p in imgs)
    # a run without the estimate keeps images that have one (they serve it too)
    assert main([*argv, "--resume", "-q"]) == 0
    assert all((out / f"{p.stem}.tif").stat().st_mtime_ns == mtimes[p] for p in imgs)


def test_a_failed_image_is_a_row_and_no_quality_contradicts_the_ranking(tmp_path, model_dir, capsys):
    from livecell_seg.cli import main

    _images(tmp_path / "in", 1)
    (tmp_path / "in" / "broken.tif").write_bytes(b"<html>404</html>")
    out = tmp_path / "o"
    argv = _predict_argv(model_dir, tmp_path / "in", out)
    assert main([*argv, "--quality", "-q"]) == 1
    rows = {Path(r["image"]).name: r for r in _csv(out / "summary.csv")}
    assert rows["broken.tif"]["status"] == "failed" and "broken.tif" in rows["broken.tif"]["error"]
    assert rows["img0.png"]["quality"] != ""
    assert [r["image"] for r in _csv(out / "correction_order.csv")] == [rows["img0.png"]["image"]]
    capsys.readouterr()
    assert main([*argv, "--no-quality", "--rank-for-correction", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rank-for-correction" in err[0]
