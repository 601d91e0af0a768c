"""Tests of `livecell-seg convert` (livecell_seg.data.convert): streaming scan, labels, bad input."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

from livecell_seg.cli import main
from livecell_seg.data import sample_paths
from livecell_seg.data.coco import annotations_to_labels, coco_from_dict, load_coco
from livecell_seg.data.convert import SUMMARY, convert, scan_coco
from livecell_seg.data.synth import synthetic_coco
from livecell_seg.errors import InputFileError


def _sq(x0: float, y0: float, s: float) -> list[float]:
    return [x0, y0, x0 + s, y0, x0 + s, y0 + s, x0, y0 + s]


def _quirky_coco() -> dict:
    """Duplicates, an orphan, an image without cells, interleaved annotations, degenerate ones."""
    ims = [
        {"id": 1, "file_name": "A172_Phase_A1_1_00d00h00m_1.tif", "width": 50, "height": 40},
        {"id": 2, "file_name": "BV2_Phase_B2_1_00d00h00m_1.tif", "width": 50, "height": 40},
        {"id": 3, "file_name": "Huh7_Phase_C3_1_00d00h00m_1.tif", "width": 50, "height": 40},  # no cells
        {"id": 4, "file_name": "A172_Phase_A1_1_00d00h00m_1.tif", "width": 50, "height": 40},  # dup of 1
    ]
    anns = [
        {"id": 10, "image_id": 1, "segmentation": [_sq(2, 2, 10)]},
        {"id": 11, "image_id": 2, "segmentation": [_sq(5, 5, 8)]},
        {"id": 12, "image_id": 1, "segmentation": [_sq(20, 20, 6)]},
        {"id": 13, "image_id": 4, "segmentation": [_sq(30, 5, 7)]},  # merged onto image 1
        {"id": 14, "image_id": 2, "segmentation": [[1, 1, 3, 3]]},  # degenerate
        {"id": 15, "image_id": 77, "segmentation": [_sq(1, 1, 5)]},  # orphan
        {"id": 16, "image_id": 2, "segmentation": [_sq(5, 5, 8)]},  # exact duplicate contour
    ]
    for a in anns:
        a.update(category_id=1, iscrowd=0)
    return {
        "info": {"description": "é ü"},
        "categories": [{"id": 1, "name": "cell"}],
        "images": ims,
        "annotations": anns,
    }


def _as_dict_form(d: dict) -> dict:
    d = json.loads(json.dumps(d))
    d["annotations"] = {str(a.pop("id")): a for a in d["annotations"]}
    return d


# ------------------------------------------------------------------------------------------- scan
@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
@pytest.mark.parametrize("dict_form", [False, True])
@pytest.mark.parametrize("indent", [None, 2])
def test_scan_matches_full_load(tmp_path: Path, chunk: int, dict_form: bool, indent: int | None) -> None:
    d = _quirky_coco()
    if dict_form:
        d = _as_dict_form(d)
    # annotations before images in the file must work too
    d = {"annotations": d["annotations"], **{k: v for k, v in d.items() if k != "annotations"}}
    p = tmp_path / "q.json"
    p.write_text(json.dumps(d, indent=indent, ensure_ascii=False), encoding="utf-8")
    sc = scan_coco(p, chunk=chunk)
    ref = load_coco(p)
    assert sc.dict_form == dict_form
    assert [im["id"] for im in sc.images] == [im["id"] for im in ref.images] == [1, 2, 3]
    assert sc.duplicates == ref.duplicates == [("A172_Phase_A1_1_00d00h00m_1.tif", [1, 4])]
    assert sc.n_annotations == 7 and sc.orphan_annotations == ref.orphan_annotations == 1
    assert sc.info == {"description": "é ü"}  # UTF-8 text decoded right
    from livecell_seg.data.convert import read_run

    for im in sc.images:
        got = [a["id"] for s, e in sc.runs[im["id"]] for a in read_run(p, s, e, dict_form)]
        assert sorted(got) == sorted(a["id"] for a in ref.anns_by_image[im["id"]])


def test_scan_memory_is_streaming(tmp_path: Path) -> None:
    """The scan holds a window of the file, not its annotations: peak << file size."""
    p = tmp_path / "big.json"
    p.write_text(json.dumps(synthetic_coco(24, seed=0)))
    size = p.stat().st_size
    assert size > 3_000_000
    tracemalloc.start()
    sc = scan_coco(p, chunk=64 * 1024)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sc.n_annotations > 5000
    assert peak < min(0.1 * size, 12 * 64 * 1024), (peak, size)  # a json.load would be > size


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"<html><head><title>404 Not Found</title></head></html>", "HTML page"),
        (b'{"images": [], "annotations": [{"image_id": 1, "segmentation": [[1, 2, 3', "truncated JSON"),
        (b'{"images": [], "annotations": [{"image_id": 1}', "truncated JSON"),
        (b'{"images": [], "annotations": [] ', "truncated JSON"),
        (b'{"images": [], "annotations": [{"image_id": 1} {"image_id": 2}]}', "invalid JSON at byte"),
        (b'{"images": [], "annotations": [{"id": 1}]}', "has no image_id"),
        (b'{"images": [], "categories": []}', "not a COCO annotation file"),
        (b'{"images": [], "annotations": []} trailing', "unexpected data"),
        (b"", "file is empty"),
    ],
)
def test_scan_bad_json(tmp_path: Path, content: bytes, expected: str) -> None:
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    with pytest.raises(InputFileError, match=expected) as ei:
        scan_coco(p, chunk=16)
    assert str(p) in str(ei.value)


# ---------------------------------------------------------------------------------------- convert
def test_convert_sample_reproduces_every_cell(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """Convert's label files reproduce every annotated cell of the real sample (vs pycocotools)."""
    from pycocotools.coco import COCO

    js, images = sample_paths()
    out = tmp_path / "labels"
    rc = main(
        [
            "convert",
            "--json",
            str(js),
            "--images",
            str(images),
            "--out",
            str(out),
            "--workers",
            "1",
            "--semantic",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "cells written: 1,243" in text and "cells dropped: none" in text
    coco = COCO()
    coco.dataset = json.loads(js.read_text())
    coco.createIndex()
    ds = load_coco(js)
    total = 0
    for im in ds.images:
        lab = tifffile.imread(out / (Path(im["file_name"]).stem + ".tif"))
        assert lab.dtype == np.uint16 and lab.shape == (im["height"], im["width"])
        anns = ds.anns_by_image[im["id"]]
        assert int(lab.max()) == len(anns) and len(np.unique(lab)) == len(anns) + 1
        masks = [coco.annToMask(a).astype(bool) for a in anns]
        areas = np.array([m.sum() for m in masks])
        for k, m in enumerate(masks):
            mine = lab == k + 1
            assert not (mine & ~m).any()
            iou = mine.sum() / m.sum()
            if iou < 0.9:  # only where smaller cells on top took the pixels
                takers = np.unique(lab[m & ~mine])
                takers = takers[takers > 0] - 1
                assert len(takers) and all(areas[t] <= areas[k] for t in takers)
        total += len(anns)
        sem = tifffile.imread(out / "semantic" / (Path(im["file_name"]).stem + ".tif"))
        assert sem.dtype == np.uint8 and set(np.unique(sem)) <= {0, 255}
        assert ((sem > 0) == np.any(masks, axis=0)).all()
    assert total == 1243
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["stats"]["cells"] == 1243 and summary["written"] == 5


def test_convert_quirks_dict_form_workers_and_resume(tmp_path: Path) -> None:
    d = _quirky_coco()
    p_list = tmp_path / "list.json"
    p_list.write_text(json.dumps(d))
    p_dict = tmp_path / "dict.json"
    p_dict.write_text(json.dumps(_as_dict_form(d), indent=1))
    s1 = convert(p_list, tmp_path / "o1", workers=1)
    steps: list[tuple[int, int | None]] = []
    s2 = convert(p_dict, tmp_path / "o2", workers=2, progress=lambda d, t: steps.append((d, t)))
    assert steps == [(1, 3), (2, 3), (3, 3)]  # the shared progress shape (livecell_seg.progress)
    assert s1.images == 3 and s1.written == 3 and s1.empty_images == 1
    assert s2.stats == s1.stats and s2.workers == 2
    assert s1.stats["cells"] == 4 and s1.stats["degenerate"] == 1 and s1.stats["duplicate"] == 1
    assert s1.orphan_annotations == 1 and len(s1.duplicate_images) == 1
    lines = "\n".join(s1.lines())
    assert (
        "1 degenerate" in lines
        and "1 exact duplicate" in lines
        and "duplicate image entries merged: 1" in lines
    )
    ds = coco_from_dict(d)
    for im in ds.images:
        name = Path(im["file_name"]).stem + ".tif"
        a = tifffile.imread(tmp_path / "o1" / name)
        b = tifffile.imread(tmp_path / "o2" / name)
        assert (a == b).all()
        ref = annotations_to_labels(ds.anns_by_image[im["id"]], 40, 50)
        assert (a == ref).all()
    assert not tifffile.imread(tmp_path / "o1" / "Huh7_Phase_C3_1_00d00h00m_1.tif").any()
    # resume: same json and options -> nothing redone; other options -> everything redone
    s3 = convert(p_list, tmp_path / "o1", workers=1)
    assert s3.resumed == 3 and s3.written == 0
    s4 = convert(p_list, tmp_path / "o1", workers=1, min_fragment=1)
    assert s4.resumed == 0 and s4.written == 3
    s5 = convert(p_list, tmp_path / "o1", workers=1, min_fragment=1, resume=False)
    assert s5.written == 3


def test_resume_is_invalidated_by_a_changed_json(tmp_path: Path) -> None:
    """A json rewritten at the same path must not leave stale label files behind, whether its size
    changed (mtime put back) or its mtime changed (same size)."""
    import os

    d = _quirky_coco()
    p = tmp_path / "a.json"
    p.write_text(json.dumps(d))
    out = tmp_path / "o"
    name = "A172_Phase_A1_1_00d00h00m_1.tif"
    assert convert(p, out, workers=1).written == 3
    n_before = int(tifffile.imread(out / name).max())
    assert convert(p, out, workers=1).resumed == 3  # unchanged: resumed

    # 1) one more cell on image 1: a larger file; its mtime is set back to the old one
    st = p.stat()
    d["annotations"].append({"id": 99, "image_id": 1, "category_id": 1, "segmentation": [_sq(35, 25, 9)]})
    p.write_text(json.dumps(d))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert p.stat().st_size != st.st_size and p.stat().st_mtime_ns == st.st_mtime_ns
    s = convert(p, out, workers=1)
    assert s.resumed == 0 and s.written == 3
    assert int(tifffile.imread(out / name).max()) == n_before + 1

    # 2) the same number of bytes (a cell moved by one digit), a new mtime
    st = p.stat()
    d["annotations"][-1]["segmentation"] = [_sq(36, 25, 9)]
    p.write_text(json.dumps(d))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert p.stat().st_size == st.st_size
    s = convert(p, out, workers=1)
    assert s.resumed == 0 and s.written == 3
    ref = annotations_to_labels(coco_from_dict(d).anns_by_image[1], 40, 50)
    np.testing.assert_array_equal(tifffile.imread(out / name), ref)


def _images_copy(tmp_path: Path) -> tuple[Path, Path]:
    js, images = sample_paths()
    dst = tmp_path / "images"
    shutil.copytree(images, dst)
    return js, dst


def _run_bad(args: list[str], capsys) -> str:  # noqa: ANN001
    rc = main(["convert", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_convert_bad_inputs_one_line_no_outputs(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    js, images = _images_copy(tmp_path)
    out = tmp_path / "out"
    # truncated json
    trunc = tmp_path / "trunc.json"
    trunc.write_bytes(js.read_bytes()[:300_000])
    err = _run_bad(["--json", str(trunc), "--out", str(out)], capsys)
    assert str(trunc) in err and "truncated JSON" in err
    # an HTML error page saved as json
    html = tmp_path / "livecell_coco_train.json"
    html.write_text("<!DOCTYPE html>\n<html><body><h1>403 Forbidden</h1></body></html>\n")
    err = _run_bad(["--json", str(html), "--out", str(out)], capsys)
    assert str(html) in err and "HTML" in err
    # missing json
    err = _run_bad(["--json", str(tmp_path / "nope.json"), "--out", str(out)], capsys)
    assert "nope.json: file not found" in err
    # missing image file
    victim = next(images.rglob("Huh7*.tif"))
    data = victim.read_bytes()
    victim.unlink()
    err = _run_bad(["--json", str(js), "--images", str(images), "--out", str(out)], capsys)
    assert victim.name in err and "not found" in err
    # unreadable image file
    victim.write_bytes(b"this is not a TIFF at all" * 10)
    err = _run_bad(["--json", str(js), "--images", str(images), "--out", str(out)], capsys)
    assert victim.name in err and "cannot read image" in err
    # image of another size than the json says
    tifffile.imwrite(victim, np.zeros((100, 120), np.uint8))
    err = _run_bad(["--json", str(js), "--images", str(images), "--out", str(out)], capsys)
    assert victim.name in err and "120x100" in err
    assert not out.exists() or not list(out.rglob("*.tif"))  # nothing written
    victim.write_bytes(data)
    assert main(["convert", "--json", str(js), "--images", str(images), "--out", str(out), "--quiet"]) == 0
    assert len(list(out.glob("*.tif"))) == 5
    assert not list(out.glob("*.part"))


@pytest.mark.slow
def test_bench_convert_quick(capsys: pytest.CaptureFixture[str]) -> None:
    """The benchmark's --quick mode runs and reports all three converters."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_convert", Path(__file__).resolve().parent.parent / "benchmarks" / "bench_convert.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "naive pycocotools loop" in out and "livecell-seg convert, 2 workers" in out
    assert "40/40 images" in out
