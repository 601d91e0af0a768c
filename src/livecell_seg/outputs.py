"""Useful outputs of a segmentation: overlay PNG, per-cell measurements CSV, ImageJ/Fiji ROI zip.

Pure numpy/scikit-image/Pillow/roifile (no torch). Every writer is atomic.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .io import atomic_path, normalize_image

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


def cell_polygons(labels: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(label, (n, 2) float32 x/y polygon)`` per cell, in ImageJ pixel coordinates.

    The outline is the 0.5 iso-line of the cell mask (``skimage.measure.find_contours``), which
    passes between inside and outside pixel centres, so a polygon fill reproduces the mask. The
    longest contour is kept (the outer one; holes and stray fragments are dropped). ImageJ puts
    pixel centres at ``i + 0.5``, hence the half-pixel shift.
    """
    from scipy import ndimage as ndi
    from skimage.measure import find_contours

    labels = np.asarray(labels)
    out: list[tuple[int, np.ndarray]] = []
    if labels.size == 0:
        return out
    for idx, sl in enumerate(ndi.find_objects(labels.astype(np.int64, copy=False)), start=1):
        if sl is None:
            continue
        crop = np.pad(labels[sl] == idx, 1).astype(np.float32)
        contours = find_contours(crop, 0.5)
        if not contours:
            continue
        c = max(contours, key=len)
        if len(c) > 1 and np.allclose(c[0], c[-1]):
            c = c[:-1]  # find_contours closes loops by repeating the first vertex
        y = c[:, 0] - 1 + sl[0].start + 0.5
        x = c[:, 1] - 1 + sl[1].start + 0.5
        out.append((idx, np.stack([x, y], axis=1).astype(np.float32)))
    return out


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
