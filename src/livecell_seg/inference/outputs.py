"""Useful outputs of a segmentation: overlay PNG, per-cell measurements CSV, ImageJ/Fiji ROI zip,
QuPath GeoJSON.

Pure numpy/scikit-image/Pillow/roifile (no torch). Every writer is atomic.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..io import atomic_path, normalize_image

#: measurement columns, in CSV order (``score`` is appended when scores are given)
MEASUREMENT_COLUMNS = (
    "label",
    "area",
    "perimeter",
    "centroid_y",
    "centroid_x",
    "bbox_y0",
    "bbox_x0",
    "bbox_y1",
    "bbox_x1",
    "eccentricity",
    "solidity",
    "mean_intensity",
)


def _label_colors(n: int, seed: int = 0) -> np.ndarray:
    """``(n + 1, 3)`` uint8 palette: row 0 unused, then bright, well-separated hues (golden ratio)."""
    i = np.arange(n + 1, dtype=np.float64)
    hue = (i * 0.618033988749895 + 0.1 + 0.13 * seed) % 1.0
    sat = 0.75 + 0.25 * ((i * 7) % 3) / 2
    # HSV -> RGB with value 1 (vectorized colorsys.hsv_to_rgb)
    h6 = hue * 6.0
    k = np.floor(h6).astype(int) % 6
    f = h6 - np.floor(h6)
    p, q, t = 1.0 - sat, 1.0 - sat * f, 1.0 - sat * (1.0 - f)
    one = np.ones_like(hue)
    r = np.choose(k, [one, q, p, p, t, one])
    g = np.choose(k, [t, one, one, q, p, p])
    b = np.choose(k, [p, p, t, one, one, q])
    return (np.stack([r, g, b], axis=1) * 255).round().astype(np.uint8)


def overlay_image(
    image: np.ndarray,
    labels: np.ndarray,
    color_by: str = "label",
    scores: Mapping[int, float] | None = None,
) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8: the normalized grey image with each cell's outline in colour.

    ``color_by``: ``"label"`` (a distinct hue per cell), ``"score"`` (red = low to green = high
    mean foreground probability; needs ``scores``) or ``"uniform"`` (yellow).
    """
    from skimage.segmentation import find_boundaries

    img = np.asarray(image)
    labels = np.asarray(labels)
    if img.ndim != 2 or labels.shape != img.shape:
        raise ValueError(f"image {img.shape} and labels {labels.shape} must be 2-D and equal in shape")
    grey = (np.clip(normalize_image(img), 0.0, 1.0) * 255).round().astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if labels.size == 0 or int(labels.max()) == 0:
        return rgb
    edges = find_boundaries(labels, mode="inner")
    ids = labels[edges].astype(np.int64)
    n = int(labels.max())
    if color_by == "label":
        palette = _label_colors(n)
    elif color_by == "uniform":
        palette = np.tile(np.array([[255, 230, 0]], np.uint8), (n + 1, 1))
    elif color_by == "score":
        if scores is None:
            raise ValueError("color_by='score' needs scores")
        s = np.zeros(n + 1)
        for k, v in scores.items():
            if 0 < int(k) <= n:
                s[int(k)] = v
        s = np.clip(s, 0.0, 1.0)
        palette = np.stack([255 * (1 - s), 255 * s, np.zeros_like(s)], axis=1).round().astype(np.uint8)
    else:
        raise ValueError(f"color_by must be 'label', 'score' or 'uniform', got {color_by!r}")
    rgb[edges] = palette[ids]
    return rgb


def save_overlay_png(
    path: str | os.PathLike[str],
    image: np.ndarray,
    labels: np.ndarray,
    color_by: str = "label",
    scores: Mapping[int, float] | None = None,
) -> None:
    """Write :func:`overlay_image` as a PNG, atomically."""
    from PIL import Image

    rgb = overlay_image(image, labels, color_by=color_by, scores=scores)
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")


def measurements_table(
    labels: np.ndarray, image: np.ndarray, scores: Mapping[int, float] | None = None
) -> dict[str, np.ndarray]:
    """Per-cell measurements (``regionprops_table``) as a dict of equal-length columns.

    Columns: :data:`MEASUREMENT_COLUMNS` (pixels; centroid and bbox in (y, x) = (row, col);
    ``mean_intensity`` in the raw image's units), plus ``score`` when ``scores`` are given.
    """
    from skimage.measure import regionprops_table

    labels = np.asarray(labels)
    img = np.asarray(image)
    if labels.shape != img.shape or labels.ndim != 2:
        raise ValueError(f"labels {labels.shape} and image {img.shape} must be 2-D and equal in shape")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    props = (
        "label",
        "area",
        "perimeter",
        "centroid",
        "bbox",
        "eccentricity",
        "solidity",
        "intensity_mean",
    )
    t = regionprops_table(labels.astype(np.int32, copy=False), intensity_image=img, properties=props)
    cols: dict[str, np.ndarray] = {
        "label": np.asarray(t["label"], dtype=np.int64),
        "area": np.asarray(t["area"], dtype=np.int64),
        "perimeter": np.asarray(t["perimeter"], dtype=np.float64),
        "centroid_y": np.asarray(t["centroid-0"], dtype=np.float64),
        "centroid_x": np.asarray(t["centroid-1"], dtype=np.float64),
        "bbox_y0": np.asarray(t["bbox-0"], dtype=np.int64),
        "bbox_x0": np.asarray(t["bbox-1"], dtype=np.int64),
        "bbox_y1": np.asarray(t["bbox-2"], dtype=np.int64),
        "bbox_x1": np.asarray(t["bbox-3"], dtype=np.int64),
        "eccentricity": np.asarray(t["eccentricity"], dtype=np.float64),
        "solidity": np.asarray(t["solidity"], dtype=np.float64),
        "mean_intensity": np.asarray(t["intensity_mean"], dtype=np.float64),
    }
    if scores is not None:
        cols["score"] = np.array([float(scores.get(int(k), np.nan)) for k in cols["label"]])
    return cols


def write_measurements_csv(
    path: str | os.PathLike[str],
    labels: np.ndarray,
    image: np.ndarray,
    scores: Mapping[int, float] | None = None,
) -> None:
    """Write :func:`measurements_table` as CSV (header row, one row per cell), atomically."""
    cols = measurements_table(labels, image, scores)
    names = list(cols)
    n = len(cols["label"])
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        for i in range(n):
            row = []
            for k in names:
                v = cols[k][i]
                row.append(int(v) if np.issubdtype(cols[k].dtype, np.integer) else f"{float(v):.6g}")
            w.writerow(row)


#: one cell's outline: its pieces, largest first, each ``(exterior, [holes])`` as ``(n, 2)`` x/y rings
CellOutline = list[tuple[np.ndarray, list[np.ndarray]]]


def _ring_area(ring: np.ndarray) -> float:
    """Signed (shoelace) area of an open ``(n, 2)`` x/y ring: > 0 counter-clockwise in (x, y)."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _drop_collinear(ring: np.ndarray) -> np.ndarray:
    """Remove vertices on a straight line between their neighbours (lossless: runs along pixel rows)."""
    if len(ring) <= 3:
        return ring
    prev, nxt = np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0)
    a, b = ring - prev, nxt - ring
    keep = (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]) != 0  # exact: vertices lie on a half-pixel grid
    return ring[keep] if keep.sum() >= 3 else ring


def cell_outlines(labels: np.ndarray) -> list[tuple[int, CellOutline]]:
    """``(label, pieces)`` per cell: every piece with its holes, in pixel coordinates.

    Each 4-connected piece of a cell is traced with ``skimage.measure.find_contours`` at the 0.5
    iso-line of its mask, which passes between inside and outside pixel centres, so filling the
    exterior and emptying the holes reproduces the mask exactly. Coordinates are ``(x, y)`` with
    pixel ``(row i, col j)`` covering ``[j, j + 1) x [i, i + 1)`` (ImageJ's and QuPath's
    convention: pixel centres at ``+ 0.5``); vertices lie on pixel edges, collinear ones dropped.
    Rings are open (last vertex != first); exteriors run counter-clockwise in (x, y) (positive
    shoelace area), holes clockwise. Pieces are sorted by area, largest first; a hole is an
    8-connected background (or other-cell) region enclosed by the piece.
    """
    from scipy import ndimage as ndi
    from skimage.measure import find_contours

    labels = np.asarray(labels)
    out: list[tuple[int, CellOutline]] = []
    if labels.size == 0:
        return out
    for idx, sl in enumerate(ndi.find_objects(labels.astype(np.int64, copy=False)), start=1):
        if sl is None:
            continue
        pieces, n = ndi.label(labels[sl] == idx)  # 4-connected, as find_contours' foreground
        parts: list[tuple[float, np.ndarray, list[np.ndarray]]] = []
        for j, psl in enumerate(ndi.find_objects(pieces), start=1):
            crop = np.pad(pieces[psl] == j, 1).astype(np.float32)
            oy = sl[0].start + psl[0].start - 1
            ox = sl[1].start + psl[1].start - 1
            rings = []
            for c in find_contours(crop, 0.5):
                if len(c) > 1 and np.array_equal(c[0], c[-1]):
                    c = c[:-1]  # find_contours closes loops by repeating the first vertex
                ring = np.stack([c[:, 1] + ox + 0.5, c[:, 0] + oy + 0.5], axis=1)
                rings.append((_ring_area(ring), _drop_collinear(ring)))
            if not rings:
                continue
            ext_i = max(range(len(rings)), key=lambda i: abs(rings[i][0]))  # the outer ring encloses the rest
            area, ext = rings[ext_i]
            ext = ext if area > 0 else ext[::-1]
            holes = [r if a < 0 else r[::-1] for i, (a, r) in enumerate(rings) if i != ext_i]
            parts.append((abs(area), np.ascontiguousarray(ext), [np.ascontiguousarray(h) for h in holes]))
        if parts:
            parts.sort(key=lambda t: -t[0])
            out.append((idx, [(e, h) for _, e, h in parts]))
    return out


def cell_polygons(labels: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(label, (n, 2) float32 x/y polygon)`` per cell, in ImageJ pixel coordinates.

    The exterior ring of the cell's largest piece from :func:`cell_outlines` (an ImageJ polygon
    ROI has no holes and one piece; :func:`geojson_feature_collection` keeps them all). Filling
    it reproduces a one-piece cell without holes exactly.
    """
    return [(k, parts[0][0].astype(np.float32)) for k, parts in cell_outlines(labels)]


def rois_zip_bytes(labels: np.ndarray) -> bytes:
    """An ImageJ/Fiji ROI set (zip of ``.roi`` files): one polygon ROI per cell, named ``0001-cell``."""
    import roifile

    polys = cell_polygons(labels)
    width = max(4, len(str(max((k for k, _ in polys), default=0))))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for k, pts in polys:
            name = f"{k:0{width}d}-cell"
            roi = roifile.ImagejRoi.frompoints(pts, name=name)
            roi.roitype = roifile.ROI_TYPE.POLYGON
            # a fixed time stamp: the same labels give the same bytes (resumed runs, checksums)
            info = zipfile.ZipInfo(f"{name}.roi", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, roi.tobytes(), compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def write_rois_zip(path: str | os.PathLike[str], labels: np.ndarray) -> None:
    """Write :func:`rois_zip_bytes` to ``path`` (opens in Fiji's ROI Manager), atomically."""
    data = rois_zip_bytes(labels)
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)


def _closed(ring: np.ndarray) -> list[list[float]]:
    pts = [[float(x), float(y)] for x, y in ring]
    return [*pts, pts[0]]


def geojson_feature_collection(
    labels: np.ndarray, image: np.ndarray, scores: Mapping[int, float] | None = None
) -> dict:
    """The cells as a GeoJSON ``FeatureCollection`` that QuPath imports as detections.

    One feature per cell: geometry a ``Polygon`` (exterior + holes) or, for a cell in several
    pieces, a ``MultiPolygon`` (one polygon per piece, largest first), from :func:`cell_outlines`
    (pixel coordinates, origin at the top-left image corner, closed rings, exteriors
    counter-clockwise in (x, y)). ``properties``: ``objectType: "detection"``, ``name``
    (``"cell <label>"``), ``label``, and ``measurements`` ({name: number}, QuPath's form) with
    the columns of :func:`measurements_table` (``score`` too when ``scores`` are given; a value
    that is not finite is left out, JSON has no NaN).
    """
    cols = measurements_table(labels, image, scores)
    row_of = {int(k): i for i, k in enumerate(cols["label"])}
    features = []
    for k, parts in cell_outlines(labels):
        polys = [[_closed(ext), *(_closed(h) for h in holes)] for ext, holes in parts]
        geometry = (
            {"type": "Polygon", "coordinates": polys[0]}
            if len(polys) == 1
            else {"type": "MultiPolygon", "coordinates": polys}
        )
        i = row_of[k]
        meas: dict[str, float | int] = {}
        for name, col in cols.items():
            v = col[i]
            if np.issubdtype(col.dtype, np.integer):
                meas[name] = int(v)
            elif np.isfinite(v):
                meas[name] = float(v)
        features.append(
            {
                "type": "Feature",
                "geometry": geometry,
                "properties": {
                    "objectType": "detection",
                    "name": f"cell {k}",
                    "label": k,
                    "measurements": meas,
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def geojson_bytes(labels: np.ndarray, image: np.ndarray, scores: Mapping[int, float] | None = None) -> bytes:
    """:func:`geojson_feature_collection` as compact UTF-8 JSON."""
    fc = geojson_feature_collection(labels, image, scores)
    return json.dumps(fc, separators=(",", ":"), allow_nan=False).encode()


def write_geojson(
    path: str | os.PathLike[str],
    labels: np.ndarray,
    image: np.ndarray,
    scores: Mapping[int, float] | None = None,
) -> None:
    """Write :func:`geojson_bytes` to ``path`` (QuPath: File > Import objects from file), atomically."""
    data = geojson_bytes(labels, image, scores)
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)
