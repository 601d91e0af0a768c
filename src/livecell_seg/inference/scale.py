"""Cell size and test-time rescaling (pure numpy/scipy; no torch).

A network trained on cells of one size over-splits much larger cells (a large flat cell's texture
looks like several small cells) and merges much smaller ones. As Cellpose does with its cell
diameter, a model folder records the typical cell diameter of its training data
(``ModelConfig.cell_diameter``, in pixels: the size the network segments best), and ``predict
--scale auto`` measures the cells of a first pass and, when they are far from that size, rescales
the image so its cells come to it and runs again (``inference.predict.auto_zoom_for``):

- :func:`cell_diameters`: equivalent diameters ``2·sqrt(area/π)`` of the cells of a label image;
- :func:`estimate_diameter`: their median (cells touching the image border left out when enough
  others remain, small fragments never counted);
- :func:`training_diameter`: the typical diameter of a training set, per-image medians weighted by
  how often each image is drawn;
- :func:`choose_scale`: the zoom that brings a known diameter to the training one, clipped
  (``predict --diameter``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: cells smaller than this (pixels) never count towards a size estimate
MIN_CELL_PIXELS = 20
#: fewest cells for an estimate (fewer: no estimate, the image keeps its scale)
MIN_CELLS = 5
#: zooms outside this range are clipped (very large factors cost time and lose detail)
SCALE_LIMITS = (0.25, 2.0)
#: a zoom within this factor of 1 is not worth a second network pass
SCALE_TOLERANCE = 1.1


def cell_diameters(labels: np.ndarray, exclude_border: bool = True) -> np.ndarray:
    """Equivalent diameters (pixels) of the cells of ``labels`` that have ``MIN_CELL_PIXELS`` or more.

    With ``exclude_border``, cells touching the image border (cut, so too small) are left out,
    unless fewer than ``MIN_CELLS`` cells would remain.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected a 2-D label image, got shape {labels.shape}")
    flat = labels.ravel().astype(np.int64, copy=False)
    if flat.size == 0 or flat.max() <= 0:
        return np.zeros(0)
    areas = np.bincount(flat)
    areas[0] = 0
    keep = areas >= MIN_CELL_PIXELS
    if exclude_border:
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        inner = keep.copy()
        inner[border[border > 0]] = False
        if inner.sum() >= MIN_CELLS:
            keep = inner
    return 2.0 * np.sqrt(areas[keep] / math.pi)


def estimate_diameter(labels: np.ndarray) -> float | None:
    """Median cell diameter (pixels) of a label image, or None with fewer than ``MIN_CELLS`` cells."""
    d = cell_diameters(labels)
    return float(np.median(d)) if d.size >= MIN_CELLS else None


def image_diameter(labels: np.ndarray) -> float | None:
    """Median diameter of an annotated image's cells (border cells included when too few others)."""
    d = cell_diameters(labels)
    return float(np.median(d)) if d.size else None


def training_diameter(
    diameters: Sequence[float | None], weights: Sequence[float] | None = None
) -> float | None:
    """Weighted median of per-image median diameters (images without cells are skipped)."""
    pairs = [
        (float(d), 1.0 if weights is None else float(weights[i]))
        for i, d in enumerate(diameters)
        if d is not None and math.isfinite(d)
    ]
    pairs = [(d, w) for d, w in pairs if w > 0]
    if not pairs:
        return None
    pairs.sort()
    total = sum(w for _, w in pairs)
    acc = 0.0
    for d, w in pairs:
        acc += w
        if acc >= total / 2:
            return d
    return pairs[-1][0]  # pragma: no cover - floating-point guard


def choose_scale(
    measured: float | None,
    target: float,
    limits: tuple[float, float] = SCALE_LIMITS,
    tolerance: float = SCALE_TOLERANCE,
) -> float:
    """Zoom that brings cells of diameter ``measured`` to ``target`` (1.0 when unknown or close)."""
    if measured is None or not math.isfinite(measured) or measured <= 0 or target <= 0:
        return 1.0
    s = target / measured
    s = min(max(s, limits[0]), limits[1])
    return 1.0 if max(s, 1 / s) < tolerance else s


def scaled_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """Shape of a ``shape`` image zoomed by ``scale`` (each side at least 1 pixel)."""
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def zoom_image(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` (2-D float) zoomed by ``scale``: linear interpolation, Gaussian anti-aliasing when shrinking."""
    from skimage.transform import resize

    if scale == 1.0:
        return image
    shape = scaled_shape(image.shape, scale)
    return resize(image, shape, order=1, mode="reflect", anti_aliasing=scale < 1, preserve_range=True).astype(
        np.float32, copy=False
    )


def zoom_maps(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(C, h, w)`` probability maps resized (linear interpolation) to ``(C, *shape)``."""
    from skimage.transform import resize

    if maps.shape[1:] == tuple(shape):
        return maps
    out = resize(
        maps, (maps.shape[0], *shape), order=1, mode="edge", anti_aliasing=False, preserve_range=True
    )
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
