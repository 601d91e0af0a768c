"""EDA report: numbers checked against independent computations; the sample report renders."""

from __future__ import annotations

import base64
import io
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tifffile

from livecell_seg.cli import main
from livecell_seg.data import sample_paths
from livecell_seg.data.coco import cell_type_of
from livecell_seg.data.eda import (
    SIZE_LIMITS,
    IntensityAccumulator,
    compute_stats,
    make_report,
    split_label,
)


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory):
    ann, images = sample_paths()
    out = tmp_path_factory.mktemp("eda")
    page = make_report([ann], out, images_dir=images, progress=False, save_pngs=True)
    return page, out


def test_sample_report_renders_with_every_section(sample_report):
    page, out = sample_report
    text = page.read_text(encoding="utf-8")
    for heading in (
        "Images, wells and cells per cell type and split",
        "Cells per image",
        "Cell area",
        "Overlap between annotations",
        "Duplicate images",
        "Image intensities",
        "Example images with their annotations",
    ):
        assert f"<h2>{heading}</h2>" in text
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(pngs) == 6  # counts, cells/image, areas, overlap, intensity, examples
    from PIL import Image

    for b64 in pngs:
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            assert im.format == "PNG" and im.width >= 600 and im.height >= 250
    assert sorted(p.name for p in out.glob("*.png")) == [
        "areas.png",
        "cells_per_image.png",
        "counts.png",
        "examples.png",
        "intensity.png",
        "overlap.png",
    ]
    assert not re.search(r'(src|href)="(?!data:)', text)  # self-contained: nothing fetched from elsewhere


def test_sample_numbers_match_the_json(sample_report):
    _page, out = sample_report
    stats = json.loads((out / "stats.json").read_text())
    d = json.loads(sample_paths()[0].read_text())
    by_img = Counter(a["image_id"] for a in d["annotations"])
    names = {im["id"]: im["file_name"] for im in d["images"]}
    per_type = Counter()
    for iid, n in by_img.items():
        per_type[cell_type_of(names[iid])] += n
    assert stats["images"] == 5 and stats["cells"] == 1243
    assert {r["cell_type"]: r["cells"] for r in stats["table"]} == dict(per_type)
    assert {r["cell_type"]: r["images"] for r in stats["table"]} == {"BT474": 2, "Huh7": 1, "MCF7": 2}
    areas = np.array([a["area"] for a in d["annotations"]])
    all_row = next(a for a in stats["areas"] if a["cell_type"] == "all")
    assert all_row["cells"] == len(areas)
    assert all_row["small"] == pytest.approx((areas < SIZE_LIMITS[0]).mean())
    assert all_row["large"] == pytest.approx((areas >= SIZE_LIMITS[1]).mean())
    assert all_row["median"] == pytest.approx(np.median(areas), rel=1e-5)
    assert stats["cells_per_image"]["max"] == max(by_img.values())
    # intensities: exact against numpy on the real LZW TIFFs
    from livecell_seg.data.coco import find_image
    from livecell_seg.io import read_image

    mcf = [read_image(find_image(sample_paths()[1], n)) for n in names.values() if n.startswith("MCF7")]
    allpx = np.concatenate([m.ravel() for m in mcf]).astype(np.float64)
    s = stats["intensity"]["MCF7"]
    assert s["mean"] == pytest.approx(allpx.mean()) and s["std"] == pytest.approx(allpx.std())
    assert s["p50"] == np.percentile(allpx, 50, method="inverted_cdf")
    assert stats["duplicates"] == [] and stats["missing_images"] == []


def _sq(x, y, s):
    return [[x, y, x + s, y, x + s, y + s, x, y + s]]


def _coco(images, anns):
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cell"}]}


def test_overlap_and_duplicate_contours_against_pycocotools(tmp_path):
    from pycocotools import mask as mu

    segs = [_sq(2, 2, 10), _sq(8, 2, 10), _sq(30, 30, 5), _sq(30, 30, 5), _sq(40, 5, 6)]
    anns = [
        {"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": s, "area": 100.0 if i < 2 else 25.0}
        for i, s in enumerate(segs)
    ]
    anns[-1].pop("area")  # no area field: the rasterized pixel count is used
    p = tmp_path / "one.json"
    p.write_text(
        json.dumps(
            _coco(
                [{"id": 1, "file_name": "A172_Phase_C7_1_00d00h00m_1.tif", "width": 64, "height": 48}], anns
            )
        )
    )
    stats = compute_stats([p], progress=False)
    rec = stats.records["A172_Phase_C7_1_00d00h00m_1.tif"]
    masks = [mu.decode(mu.frPyObjects(s, 48, 64)).max(axis=2).astype(bool) for s in segs]
    cover = np.sum(masks, axis=0)
    expected_overlap = [int((m & (cover >= 2)).sum()) for m in masks]
    assert rec.overlap_px.tolist() == expected_overlap
    assert rec.mask_px.tolist() == [int(m.sum()) for m in masks]
    assert expected_overlap[0] > 0 and expected_overlap[4] == 0
    assert rec.duplicate_contours == 1
    assert rec.multi_px == int((cover >= 2).sum()) and rec.foreground_px == int((cover >= 1).sum())
    assert rec.areas.tolist() == [100.0, 100.0, 25.0, 25.0, float(masks[4].sum())]
    ov = next(o for o in stats.overlap_summary() if o["cell_type"] == "A172")
    assert ov["overlapping"] == pytest.approx(4 / 5)
    assert ov["mostly_covered"] == 2  # the two identical squares cover each other entirely


def test_several_jsons_duplicates_and_shared_wells(tmp_path):
    names = [
        "BV2_Phase_B4_1_00d00h00m_1.tif",
        "BV2_Phase_B4_1_00d04h00m_1.tif",
        "SKOV3_Phase_E4_1_00d00h00m_2.tif",
    ]
    imgs = [{"id": i + 1, "file_name": n, "width": 40, "height": 30} for i, n in enumerate(names)]

    def anns(iid, n, start):
        return [
            {
                "id": start + k,
                "image_id": iid,
                "category_id": 1,
                "segmentation": _sq(2 + 6 * k, 2, 4),
                "area": 16.0,
            }
            for k in range(n)
        ]

    train = _coco(imgs[:2], anns(1, 3, 1) + anns(2, 2, 10))
    # val: one image of well B4 (shared well) again, with one more cell; and the SKOV3 image
    val = _coco([{**imgs[1], "id": 7}, {**imgs[2], "id": 8}], anns(7, 3, 1) + anns(8, 4, 20))
    tp, vp = tmp_path / "livecell_coco_train.json", tmp_path / "livecell_coco_val.json"
    tp.write_text(json.dumps(train))
    vp.write_text(json.dumps(val))
    stats = compute_stats([tp, vp], progress=False)
    assert stats.splits == ["train", "val"]
    assert len(stats.records) == 3
    dup = stats.duplicates
    assert len(dup) == 1 and dup[0].file_name == names[1] and dup[0].kept.source == str(vp)
    assert stats.records[names[1]].n_annotations == 3 and stats.records[names[1]].split == "val"
    assert stats.shared_groups() == {"BV2_B4": ["train", "val"]}
    tab = {(r["cell_type"], r["split"]): r for r in stats.table()}
    assert tab[("BV2", "train")]["images"] == 1 and tab[("BV2", "val")]["cells"] == 3
    assert tab[("SKOV3", "train")]["images"] == 0 and tab[("SKOV3", "val")]["wells"] == 1
    out = tmp_path / "rep"
    make_report([tp, vp], out, progress=False)
    text = (out / "index.html").read_text()
    assert "Leakage" in text and "BV2_B4" in text and names[1] in text
    assert "No image folder given" in text


def test_intensity_accumulator_is_exact():
    rng = np.random.default_rng(1)
    for dtype, hi in ((np.uint8, 255), (np.uint16, 4000)):
        imgs = [rng.integers(0, hi, size=(17, 23)).astype(dtype) for _ in range(4)]
        acc = IntensityAccumulator()
        for im in imgs:
            acc.add(im, im > hi // 2)
        s = acc.summary()
        allpx = np.concatenate([m.ravel() for m in imgs]).astype(np.float64)
        assert s["mean"] == pytest.approx(allpx.mean()) and s["std"] == pytest.approx(allpx.std())
        for q in (1, 5, 50, 95, 99):
            assert s[f"p{q}"] == np.percentile(allpx, q, method="inverted_cdf")
        assert s["mean_in_cells"] == pytest.approx(allpx[allpx > hi // 2].mean())
        assert s["mean_background"] == pytest.approx(allpx[allpx <= hi // 2].mean())


def test_split_label():
    assert split_label("livecell_coco_train.json") == "train"
    assert split_label("out/val.json") == "val"
    assert split_label("a/livecell_coco_test.json", ["test"]) == "livecell_coco_test"
    assert split_label("0_train2percent.json") == "train"
    assert split_label("mine.json") == "mine"
    assert split_label("x/mine.json", ["mine"]) == "mine-2"


def test_cli_eda_and_bad_input(tmp_path, capsys):
    ann, images = sample_paths()
    out = tmp_path / "r"
    assert main(["eda", "--json", str(ann), "--out", str(out), "--no-progress", "--examples", "1"]) == 0
    assert (out / "index.html").is_file() and (out / "stats.json").is_file()
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    assert main(["eda", "--json", str(bad), "--out", str(tmp_path / "r2"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.json" in err[0] and "truncated" in err[0]
    empty = tmp_path / "noimages"
    empty.mkdir()
    assert (
        main(
            [
                "eda",
                "--json",
                str(ann),
                "--images",
                str(empty),
                "--out",
                str(tmp_path / "r3"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "none of the 5" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()


def test_missing_and_odd_images_are_reported(tmp_path):
    ann, images = sample_paths()
    d = json.loads(ann.read_text())
    folder = tmp_path / "imgs"
    folder.mkdir()
    keep = d["images"][0]["file_name"]
    src = next(Path(images).rglob(keep))
    (folder / keep).write_bytes(src.read_bytes())
    odd = d["images"][1]["file_name"]
    tifffile.imwrite(folder / odd, np.zeros((10, 12), dtype=np.uint8))  # wrong size
    (folder / d["images"][2]["file_name"]).write_bytes(b"not an image")
    stats = compute_stats([ann], images_dir=folder, progress=False)
    assert len(stats.missing_images) == 2 and len(stats.unreadable_images) == 1
    assert len(stats.size_mismatch) == 1 and odd in stats.size_mismatch[0]
    assert sum(len(a.image_means) for a in stats.intensity.values()) == 2


def test_within_file_duplicate_keeps_the_bigger_copy_dict_form(tmp_path):
    name = "MCF7_Phase_D3_2_01d00h00m_3.tif"
    imgs = [
        {"id": 5, "file_name": name, "width": 40, "height": 30},
        {"id": 9, "file_name": name, "width": 40, "height": 30},
        {"id": 6, "file_name": "MCF7_Phase_D4_1_00d00h00m_1.tif", "width": 40, "height": 30},
    ]
    anns = [
        {"id": 100 + k, "image_id": iid, "category_id": 1, "segmentation": _sq(2 + 6 * k, 2, 4), "area": 16.0}
        for iid, n in ((5, 2), (9, 4), (6, 1))
        for k in range(n)
    ]
    for i, a in enumerate(anns):
        a["id"] = i + 1
    d = _coco(imgs, [])
    d["annotations"] = {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in anns}  # Kaggle form
    p = tmp_path / "dups.json"
    p.write_text(json.dumps(d))
    stats = compute_stats([p], progress=False)
    assert len(stats.records) == 2
    assert stats.records[name].n_annotations == 4  # not 2, not the pooled 6
    (dup,) = stats.duplicates
    assert (dup.kept.image_id, dup.kept.n_annotations) == (9, 4)
    assert [(c.image_id, c.n_annotations) for c in dup.dropped] == [(5, 2)] and dup.annotations_differ
