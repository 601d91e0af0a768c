"""QuPath GeoJSON export: label image -> polygons (holes, pieces) -> file, read back and rasterized."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import shape as shapely_shape

from livecell_seg.inference.outputs import (
    MEASUREMENT_COLUMNS,
    cell_outlines,
    geojson_feature_collection,
    measurements_table,
    write_geojson,
)


def _ring_area(ring: list[list[float]]) -> float:
    xy = np.asarray(ring, dtype=np.float64)
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def rasterize(geometry: dict, shape: tuple[int, int]) -> np.ndarray:
    """The pixels whose centres (x + 0.5, y + 0.5) lie inside a GeoJSON (Multi)Polygon."""
    from skimage.draw import polygon2mask

    polys = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    mask = np.zeros(shape, bool)
    for rings in polys:
        yx = [np.asarray(r, dtype=np.float64)[:, ::-1] - 0.5 for r in rings]
        piece = polygon2mask(shape, yx[0])
        for hole in yx[1:]:
            piece &= ~polygon2mask(shape, hole)
        mask |= piece
    return mask


def _tricky_cells() -> tuple[np.ndarray, np.ndarray]:
    """Cells with a hole (holding another cell), in two pieces, touching only at a corner, ..."""
    labels = np.zeros((64, 80), np.int32)
    labels[4:28, 4:28] = 1
    labels[10:22, 10:22] = 0  # a hole in cell 1 ...
    labels[13:19, 13:19] = 2  # ... with cell 2 inside it
    labels[4:20, 28:44] = 3  # touches cell 1
    labels[40:46, 4:12] = 5  # cell 5 in two pieces
    labels[50:60, 20:26] = 5
    labels[32, 40] = 6  # two pixels touching at a corner only: two 4-connected pieces
    labels[33, 41] = 6
    labels[36:60, 50:54] = 9  # an L shape (labels need not be consecutive)
    labels[56:60, 50:75] = 9
    labels[2, 70] = 11  # one pixel
    yy, xx = np.mgrid[:64, :80]
    ring = ((yy - 20) ** 2 + (xx - 64) ** 2 <= 100) & ((yy - 20) ** 2 + (xx - 64) ** 2 > 16)
    labels[ring] = 12  # an annulus: a round hole
    image = (20 + 7 * labels + np.arange(80)[None, :] % 5).astype(np.uint16)
    return labels, image


def test_polygons_reproduce_every_cell_exactly_holes_and_pieces_included(tmp_path: Path) -> None:
    labels, image = _tricky_cells()
    scores = {k: 0.5 + k / 100 for k in (1, 2, 3, 5, 6, 9, 11, 12)}
    write_geojson(tmp_path / "cells.geojson", labels, image, scores)
    fc = json.loads((tmp_path / "cells.geojson").read_text())
    assert fc["type"] == "FeatureCollection"
    feats = {f["properties"]["label"]: f for f in fc["features"]}
    assert sorted(feats) == [1, 2, 3, 5, 6, 9, 11, 12]
    table = measurements_table(labels, image, scores)
    for i, k in enumerate(table["label"]):
        f = feats[int(k)]
        assert f["type"] == "Feature"
        props = f["properties"]
        assert props["objectType"] == "detection" and props["name"] == f"cell {k}"
        meas = props["measurements"]
        assert list(meas) == [*MEASUREMENT_COLUMNS, "score"]
        assert meas["area"] == int((labels == k).sum()) == table["area"][i]
        assert meas["score"] == pytest.approx(scores[int(k)])
        assert meas["mean_intensity"] == pytest.approx(table["mean_intensity"][i])
        geom = f["geometry"]
        # the polygons give back the cell's pixels exactly (pixel centres at +0.5)
        assert np.array_equal(rasterize(geom, labels.shape), labels == k), k
        # valid for JTS/shapely (what QuPath builds its ROIs with), closed rings, RFC 7946 winding
        shp = shapely_shape(geom)
        assert shp.is_valid, (k, geom)
        polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
        for rings in polys:
            assert all(r[0] == r[-1] and len(r) >= 4 for r in rings)
            assert _ring_area(rings[0]) > 0 and all(_ring_area(h) < 0 for h in rings[1:])
    assert feats[1]["geometry"]["type"] == "Polygon" and len(feats[1]["geometry"]["coordinates"]) == 2
    assert feats[12]["geometry"]["type"] == "Polygon" and len(feats[12]["geometry"]["coordinates"]) == 2
    assert feats[3]["geometry"]["type"] == "Polygon" and len(feats[3]["geometry"]["coordinates"]) == 1
    for k in (5, 6):  # cells in pieces: one MultiPolygon, largest piece first
        g = feats[k]["geometry"]
        assert g["type"] == "MultiPolygon" and len(g["coordinates"]) == 2
        areas = [abs(_ring_area(p[0])) for p in g["coordinates"]]
        assert areas[0] >= areas[1]
    # outlines follow pixel edges: a square is 4 corners after collinear points are dropped
    # (marching squares cut each corner: 8 vertices)
    assert len(feats[2]["geometry"]["coordinates"][0]) == 8 + 1
    # no cells: an empty collection
    empty = geojson_feature_collection(np.zeros((5, 5), np.int32), np.zeros((5, 5), np.uint8))
    assert empty == {"type": "FeatureCollection", "features": []}


def test_cell_outlines_coordinates_are_in_pixel_corner_units() -> None:
    labels = np.zeros((10, 12), np.int32)
    labels[2:5, 3:7] = 4  # rows 2-4, cols 3-6
    [(k, [(ext, holes)])] = cell_outlines(labels)
    assert k == 4 and holes == []
    # the outline runs along the pixel edges x in [3, 7], y in [2, 5], corners cut by half a pixel
    assert ext[:, 0].min() == 3.0 and ext[:, 0].max() == 7.0
    assert ext[:, 1].min() == 2.0 and ext[:, 1].max() == 5.0


def test_predict_geojson_on_a_real_image_matches_the_label_image(tmp_path: Path) -> None:
    """The bundled model on a LIVECell sample: every cell's polygon against its label mask."""
    pytest.importorskip("torch")
    import tifffile

    from livecell_seg.cli import main
    from livecell_seg.data import sample_paths
    from livecell_seg.inference.postprocess import PostprocessParams
    from livecell_seg.io import list_images
    from livecell_seg.model.folder import default_model_dir, read_postprocess

    first = list_images(sample_paths()[1])[0]
    out = tmp_path / "seg"
    argv = ["predict", "--input", str(first), "--out", str(out), "--geojson", "--device", "cpu", "-q"]
    assert main([*argv, "--threads", "1"]) == 0
    labels = tifffile.imread(out / f"{first.stem}.tif")
    fc = json.loads((out / f"{first.stem}.geojson").read_text())
    ids = np.unique(labels[labels > 0])
    assert ids.size > 50
    feats = {f["properties"]["label"]: f for f in fc["features"]}
    assert sorted(feats) == ids.tolist()
    min_size = PostprocessParams.from_dict(read_postprocess(default_model_dir())).min_size
    ious = []
    for k in ids.tolist():
        cell = labels == k
        if cell.sum() < min_size:
            continue
        assert feats[k]["properties"]["measurements"]["area"] == int(cell.sum())
        poly = rasterize(feats[k]["geometry"], labels.shape)
        ious.append((poly & cell).sum() / (poly | cell).sum())
        assert shapely_shape(feats[k]["geometry"]).is_valid, k
    assert len(ious) > 50 and min(ious) >= 0.95, min(ious)
    # --resume counts the GeoJSON among the outputs: removing it redoes the image
    (out / f"{first.stem}.geojson").unlink()
    assert main([*argv, "--resume", "--threads", "1"]) == 0
    assert (out / f"{first.stem}.geojson").is_file()
