"""Tests of the synthetic LIVECell-format generator (livecell_seg.data.synth + `synth` command)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile

from livecell_seg.cli import main
from livecell_seg.data.coco import find_image, load_coco, parse_livecell_name
from livecell_seg.data.synth import CELL_TYPES, make_synthetic_dataset, synthetic_coco


def test_make_synthetic_dataset_layout_and_format(tmp_path: Path) -> None:
    js, images = make_synthetic_dataset(tmp_path / "s", n_images=8, seed=3, size=(96, 128))
    assert js.is_file() and images == tmp_path / "s" / "images"
    ds = load_coco(js)
    assert len(ds.images) == 8 and ds.duplicates == []
    assert {parse_livecell_name(im["file_name"]).cell_type for im in ds.images} == set(CELL_TYPES)
    for im in ds.images:
        name = parse_livecell_name(im["file_name"])
        assert name is not None
        p = find_image(images, im["file_name"])
        # official layout: images/livecell_train_val_images/<CellType>/<file>
        assert p == images / "livecell_train_val_images" / name.cell_type / im["file_name"]
        with tifffile.TiffFile(p) as tf:
            assert tf.pages[0].compression == 5  # LZW, like LIVECell
            arr = tf.asarray()
        assert arr.dtype == np.uint8 and arr.shape == (96, 128) == (im["height"], im["width"])
        anns = ds.anns_by_image[im["id"]]
        assert len(anns) >= 2
        for a in anns:
            assert a["category_id"] == 1 and a["iscrowd"] == 0 and a["area"] > 0
            poly = a["segmentation"][0]
            assert len(poly) >= 6 and len(poly) % 2 == 0
            xs, ys = np.array(poly[0::2]), np.array(poly[1::2])
            assert xs.min() >= 0 and xs.max() <= 128 and ys.min() >= 0 and ys.max() <= 96


def test_synthetic_images_look_like_phase_contrast(tmp_path: Path) -> None:
    from livecell_seg.data.coco import annotations_to_labels

    js, images = make_synthetic_dataset(tmp_path, n_images=2, seed=0, size=(160, 200))
    ds = load_coco(js)
    im = ds.images[0]
    arr = tifffile.imread(find_image(images, im["file_name"])).astype(float)
    lab = annotations_to_labels(ds.anns_by_image[im["id"]], im["height"], im["width"])
    assert 110 < np.median(arr[lab == 0]) < 145  # background near 128 like LIVECell
    assert arr[lab > 0].mean() < arr[lab == 0].mean() - 3  # cells darker than background
    # bright halo: a ring just outside the cells is brighter than the far background
    from scipy import ndimage

    ring = ndimage.binary_dilation(lab > 0, iterations=1) & (lab == 0)
    far = ~ndimage.binary_dilation(lab > 0, iterations=6)
    assert arr[ring].mean() > arr[far].mean() + 5


def test_deterministic_and_styles_differ(tmp_path: Path) -> None:
    a = synthetic_coco(16, seed=7)
    b = synthetic_coco(16, seed=7)
    c = synthetic_coco(16, seed=8)
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(c)
    ds = load_coco_dict(a)
    area_by_type: dict[str, list[float]] = {}
    count_by_type: dict[str, list[int]] = {}
    for im in ds.images:
        ct = parse_livecell_name(im["file_name"]).cell_type
        anns = ds.anns_by_image[im["id"]]
        area_by_type.setdefault(ct, []).extend(x["area"] for x in anns)
        count_by_type.setdefault(ct, []).append(len(anns))
    med = {ct: float(np.median(v)) for ct, v in area_by_type.items()}
    assert med["Huh7"] > 3 * med["BV2"]  # large vs small cells
    assert np.mean(count_by_type["BV2"]) > 2 * np.mean(count_by_type["A172"])  # density


def load_coco_dict(d: dict):  # noqa: ANN201
    from livecell_seg.data.coco import coco_from_dict

    return coco_from_dict(d)


def test_synth_cli(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    rc = main(["synth", "--out", str(tmp_path / "o"), "--n-images", "3", "--seed", "1", "--size", "64x80"])
    assert rc == 0
    out = capsys.readouterr().out
    js = tmp_path / "o" / "annotations" / "livecell_coco_synth.json"
    assert str(js) in out
    ds = load_coco(js)
    assert len(ds.images) == 3 and ds.images[0]["width"] == 80 and ds.images[0]["height"] == 64
    assert len(list((tmp_path / "o" / "images").rglob("*.tif"))) == 3
