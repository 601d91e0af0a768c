"""Tests of livecell_seg.data.coco: reading LIVECell jsons and rasterizing annotations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from livecell_seg.data import sample_paths
from livecell_seg.data.coco import (
    CocoDataset,
    LivecellName,
    annotations_to_labels,
    cell_type_of,
    coco_from_dict,
    find_image,
    load_coco,
    parse_livecell_name,
    rasterize_annotations,
)
from livecell_seg.errors import InputFileError


def _square(x0: float, y0: float, s: float) -> list[float]:
    return [x0, y0, x0 + s, y0, x0 + s, y0 + s, x0, y0 + s]


def _tiny_coco(ann_as_dict: bool = False) -> dict:
    images = [
        {"id": 10, "file_name": "A172_Phase_C7_1_02d16h00m_2.tif", "width": 40, "height": 30},
        {"id": 11, "file_name": "BV2_Phase_D4_2_00d08h00m_1.tif", "width": 40, "height": 30},
        {"id": 12, "file_name": "A172_Phase_C7_1_02d16h00m_2.tif", "width": 40, "height": 30},  # duplicate
    ]
    anns = [
        {"id": 1, "image_id": 10, "category_id": 1, "segmentation": [_square(2, 2, 8)], "iscrowd": 0},
        {"id": 2, "image_id": 11, "category_id": 1, "segmentation": [_square(5, 5, 6)], "iscrowd": 0},
        {"id": 3, "image_id": 12, "category_id": 1, "segmentation": [_square(20, 10, 8)], "iscrowd": 0},
        {"id": 4, "image_id": 999, "category_id": 1, "segmentation": [_square(1, 1, 4)], "iscrowd": 0},
    ]
    d = {"info": {"v": 1}, "categories": [{"id": 1, "name": "cell"}], "images": images, "annotations": anns}
    if ann_as_dict:
        d["annotations"] = {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in anns}
    return d


# ------------------------------------------------------------------------------------------ loading
def test_load_sample() -> None:
    js, _ = sample_paths()
    ds = load_coco(js)
    assert isinstance(ds, CocoDataset)
    assert len(ds.images) == 5
    assert ds.n_annotations == 1243
    assert ds.duplicates == []
    assert ds.categories[0]["name"] == "cell"
    im = ds.image_by_file("MCF7_Phase_G4_2_02d16h00m_1.tif")
    assert im is not None and (im["width"], im["height"]) == (704, 520)
    assert all(a["image_id"] == im["id"] for a in ds.anns_by_image[im["id"]])


@pytest.mark.parametrize("as_dict", [False, True])
def test_list_and_dict_annotations_duplicates_orphans(as_dict: bool) -> None:
    ds = coco_from_dict(_tiny_coco(as_dict))
    assert [im["id"] for im in ds.images] == [10, 11]
    assert ds.duplicates == [("A172_Phase_C7_1_02d16h00m_2.tif", [10, 12])]
    assert sorted(a["id"] for a in ds.anns_by_image[10]) == [1, 3]  # merged onto the kept id
    assert all(a["image_id"] == 10 for a in ds.anns_by_image[10])
    assert ds.orphan_annotations == 1
    assert ds.image_by_id(12) is None
    sub = ds.to_coco_dict([11])
    assert [im["id"] for im in sub["images"]] == [11]
    assert [a["id"] for a in sub["annotations"]] == [2]
    # the subset is a valid COCO dict for pycocotools
    from pycocotools.coco import COCO

    c = COCO()
    c.dataset = ds.to_coco_dict()
    c.createIndex()
    assert len(c.getAnnIds()) == 3
    with pytest.raises(KeyError):
        ds.to_coco_dict([12])


def test_load_dict_form_file(tmp_path: Path) -> None:
    p = tmp_path / "kaggle.json"
    p.write_text(json.dumps(_tiny_coco(ann_as_dict=True)))
    ds = load_coco(p)
    assert ds.path == p and ds.n_annotations == 3


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "file not found"),
        (b"", "file is empty"),
        (b"<!DOCTYPE html><html><body>503 Service Unavailable</body></html>", "HTML page"),
        (
            b'{"images": [{"id": 1, "file_name": "a.tif", "width": 4, "height": 4}], "annotations": [{"id": 1, "ima',
            "truncated",
        ),
        (b'{"images": [], "annotations": [] ,,}', "invalid JSON at line 1"),
        (b'{"foo": 1}', "not a COCO annotation file"),
        (b"[1, 2, 3]", "not a COCO annotation file"),
        (b'{"images": [{"id": 1, "width": 4, "height": 4}], "annotations": []}', "has no 'file_name'"),
        (b"hello", "is not JSON"),
    ],
)
def test_bad_json_files(tmp_path: Path, content: bytes | None, expected: str) -> None:
    p = tmp_path / "ann.json"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(InputFileError) as ei:
        load_coco(p)
    msg = str(ei.value)
    assert expected in msg
    assert str(p) in msg and "\n" not in msg


def test_truncated_real_json(tmp_path: Path) -> None:
    js, _ = sample_paths()
    data = js.read_bytes()
    p = tmp_path / "livecell_coco_val.json"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="truncated JSON"):
        load_coco(p)


# ------------------------------------------------------------------------------------------- names
def test_parse_livecell_name() -> None:
    n = parse_livecell_name("A172_Phase_C7_1_02d16h00m_2.tif")
    assert n == LivecellName("A172", "C7", "1", "02d16h00m", "2")
    assert parse_livecell_name("images/x/SHSY5Y_Phase_A10_2_00d04h00m_4.tif") == LivecellName(
        "SHSY5Y", "A10", "2", "00d04h00m", "4"
    )
    assert parse_livecell_name("random.tif") is None
    assert cell_type_of("SkBr3_Phase_E3_1_03d00h00m_1.tif") == "SkBr3"
    assert cell_type_of("whatever.png") == "unknown"


# ------------------------------------------------------------------------------------- find_image
def test_find_image_layouts(tmp_path: Path) -> None:
    name = "BT474_Phase_B3_2_02d12h00m_3.tif"
    official = tmp_path / "official" / "images" / "livecell_train_val_images" / "BT474"
    official.mkdir(parents=True)
    (official / name).write_bytes(b"x")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / name).write_bytes(b"x")
    test_dir = tmp_path / "official" / "images" / "livecell_test_images" / "A172"
    test_dir.mkdir(parents=True)
    (test_dir / "A172_Phase_C7_1_02d16h00m_2.tif").write_bytes(b"x")

    root = tmp_path / "official"
    assert find_image(root / "images", name) == official / name
    assert find_image(root, name) == official / name  # via the cached index
    assert find_image(root / "images" / "livecell_train_val_images", name) == official / name
    assert find_image(root, "A172_Phase_C7_1_02d16h00m_2.tif") == test_dir / "A172_Phase_C7_1_02d16h00m_2.tif"
    assert find_image(flat, name) == flat / name
    _, sample_images = sample_paths()
    assert find_image(sample_images, "MCF7_Phase_F4_2_00d00h00m_4.tif").is_file()
    # a file added after the index was built is still found
    late = official.parent / "SKOV3"
    late.mkdir()
    (late / "SKOV3_Phase_H4_1_00d00h00m_1.tif").write_bytes(b"x")
    assert find_image(root, "SKOV3_Phase_H4_1_00d00h00m_1.tif").parent == late
    with pytest.raises(InputFileError, match="image file not found"):
        find_image(root, "MCF7_Phase_A1_1_00d00h00m_1.tif")
    with pytest.raises(InputFileError, match="images folder not found"):
        find_image(tmp_path / "nope", name)


# ---------------------------------------------------------------------------------- rasterization
def test_overlap_rule_small_on_top_split_and_fragments() -> None:
    big = {"segmentation": [_square(2, 2, 20)]}  # 20x20 at (2..22)
    bar = {"segmentation": [[11, 0, 14, 0, 14, 29, 11, 29]]}  # vertical bar cutting `big` in two
    small = {"segmentation": [_square(5, 5, 4)]}
    res = rasterize_annotations([big, bar, small], 30, 40)
    lab, st = res.labels, res.stats
    assert lab.dtype == np.uint16
    assert st.cells == 3 and st.split == 1 and st.fragment_pixels > 0
    # labels are in annotation order; the bar (smaller than big) is on top of big
    assert lab[15, 12] == 2
    assert lab[6, 6] == 3  # small is visible on top of big
    # big keeps its largest piece only: the left piece (x 2..11) is larger than the right (14..22)
    assert (lab[:, 15:23] == 1).sum() == 0 and (lab[:, 2:11] == 1).sum() > 0
    assert st.overlap_pixels > 0


def test_hidden_degenerate_duplicate_counted() -> None:
    a = {"segmentation": [_square(2, 2, 10)]}
    same = {"segmentation": [_square(2, 2, 10)]}  # exact duplicate contour
    line = {"segmentation": [[1, 1, 5, 5, 9, 9]]}  # collinear: zero area
    two_points = {"segmentation": [[1, 1, 5, 5]]}
    outside = {"segmentation": [_square(100, 100, 5)]}
    empty = {"segmentation": []}
    res = rasterize_annotations([a, same, line, two_points, outside, empty], 20, 20)
    st = res.stats
    assert st.annotations == 6 and st.cells == 1 and st.duplicate == 1
    assert st.degenerate == 4
    # a 2x2 cell fully inside a bigger one stays (small on top) but a 3-pixel one is dropped
    tiny = {"segmentation": [_square(4, 4, 1.2)]}
    res2 = rasterize_annotations([a, tiny], 20, 20, min_fragment=10)
    assert res2.stats.hidden == 1 and res2.stats.cells == 1
    res3 = rasterize_annotations([a, tiny], 20, 20, min_fragment=1)
    assert res3.stats.cells == 2


def test_rle_and_multipart_match_pycocotools() -> None:
    from pycocotools import mask as mu

    h, w = 30, 40
    m = np.zeros((h, w), dtype=np.uint8, order="F")
    m[3:9, 30:37] = 1
    rle = mu.encode(m)
    rle_str = {"size": rle["size"], "counts": rle["counts"].decode()}
    # uncompressed RLE: column-major run lengths starting with zeros
    flat = m.ravel(order="F")
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    unc = {"size": [h, w], "counts": runs}
    multi = {"segmentation": [_square(1, 1, 5), _square(10, 20, 6)]}
    anns = [{"segmentation": rle_str}, {"segmentation": unc}, multi]
    res = rasterize_annotations(anns, h, w)
    assert res.stats.cells == 2 and res.stats.duplicate == 0  # RLE twice: second is a different key
    lab = annotations_to_labels(anns[:1] + anns[2:], h, w)
    assert ((lab == 1) == m.astype(bool)).all()
    ref = mu.decode(mu.merge(mu.frPyObjects(multi["segmentation"], h, w))).astype(bool)
    assert ((lab == 2) == ref).all()
    assert annotations_to_labels([{"segmentation": unc}], h, w).astype(bool).sum() == m.sum()


def test_sample_cells_match_pycocotools_annToMask() -> None:
    """Every annotated cell of the real sample is reproduced (pycocotools' rasterization)."""
    from pycocotools.coco import COCO

    js, _ = sample_paths()
    ds = load_coco(js)
    coco = COCO()
    coco.dataset = json.loads(js.read_text())
    coco.createIndex()
    n_cells = 0
    ious = []
    for im in ds.images:
        anns = ds.anns_by_image[im["id"]]
        res = rasterize_annotations(anns, im["height"], im["width"])
        lab = res.labels
        assert res.stats.degenerate == 0 and res.stats.hidden == 0
        assert int(lab.max()) == len(anns) == res.stats.cells
        n_cells += res.stats.cells
        masks = [coco.annToMask(a).astype(bool) for a in anns]
        areas = [int(m.sum()) for m in masks]
        for k, m in enumerate(masks):
            mine = lab == k + 1
            assert not (mine & ~m).any(), "label pixels outside the cell's own polygon"
            lost = m & ~mine
            # pixels lost only to smaller (or equal, later) cells painted on top, or split fragments
            other = lab[lost]
            takers = other[other > 0] - 1
            assert all(areas[t] <= areas[k] for t in np.unique(takers))
            iou = mine.sum() / m.sum()
            ious.append(iou)
            overlapped = any(
                (masks[t] & m).any() for t in range(len(masks)) if t != k and areas[t] <= areas[k]
            )
            if not overlapped:
                assert iou == 1.0
    assert n_cells == 1243
    assert np.median(ious) > 0.99
    assert np.mean(np.array(ious) >= 0.9) > 0.97


def test_find_image_on_copy_of_sample(tmp_path: Path) -> None:
    js, images = sample_paths()
    dst = tmp_path / "imgs"
    shutil.copytree(images, dst)
    ds = load_coco(js)
    for im in ds.images:
        assert find_image(dst, im["file_name"]).name == im["file_name"]
