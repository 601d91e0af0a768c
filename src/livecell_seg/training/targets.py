"""Training targets computed on the fly from instance label images (numpy/scipy, no torch)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from ..model.heads import CHANNELS, head_channels


def foreground(labels: np.ndarray) -> np.ndarray:
    """Binary foreground (float32)."""
    return (labels > 0).astype(np.float32)


def inner_boundary(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """Inner boundaries of every cell, ``width`` pixels thick (float32 in {0, 1}).

    A pixel is boundary when it belongs to a cell and touches background or another cell, so
    touching cells are separated by two boundary pixels (one on each side).
    """
    b = find_boundaries(labels, mode="inner")
    if width > 1:
        b = ndi.binary_dilation(b, iterations=width - 1) & (labels > 0)
    return b.astype(np.float32)


def per_object_distances(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell normalized distance maps ``(center_dist, boundary_dist)``, float32 in [0, 1].

    ``center_dist``: distance to the cell's centre (the point deepest inside the cell, which is
    inside even for concave cells) divided by the cell's largest such distance: 0 at the centre.
    ``boundary_dist``: 1 − (distance to the cell's boundary / the cell's largest such distance):
    0 deepest inside, 1 on the boundary. Background is 1 in both (its loss is masked anyway).
    """
    labels = np.asarray(labels)
    center = np.ones(labels.shape, np.float32)
    bound = np.ones(labels.shape, np.float32)
    if labels.max() == 0:
        return center, bound
    h, w = labels.shape
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        # crop padded by one pixel so the cell's edge sees "outside" even at the image border
        y0, y1 = max(sl[0].start - 1, 0), min(sl[0].stop + 1, h)
        x0, x1 = max(sl[1].start - 1, 0), min(sl[1].stop + 1, w)
        m = np.pad(labels[y0:y1, x0:x1] == i, 1)
        d = ndi.distance_transform_edt(m).astype(np.float32) - 1.0  # 0 on the cell's edge
        m, d = m[1:-1, 1:-1], d[1:-1, 1:-1]
        crop = (slice(y0, y1), slice(x0, x1))
        dmax = float(d[m].max())
        if dmax <= 0:  # a cell one or two pixels thick: all of it is "centre"
            bound[crop][m] = 0.0
            center[crop][m] = 0.0
            continue
        bound[crop][m] = 1.0 - d[m] / dmax
        cy, cx = np.unravel_index(int(np.argmax(np.where(m, d, -1.0))), d.shape)
        yy, xx = np.nonzero(m)
        cd = np.hypot(yy - cy, xx - cx).astype(np.float32)
        cmax = float(cd.max())
        center[crop][m] = cd / cmax if cmax > 0 else 0.0
    return center, bound


def fg_target(labels: np.ndarray, boundary_width: int, memo: dict) -> np.ndarray:
    """Target of the ``fg`` channel."""
    return foreground(labels)


def boundary_target(labels: np.ndarray, boundary_width: int, memo: dict) -> np.ndarray:
    """Target of the ``boundary`` channel."""
    return inner_boundary(labels, boundary_width)


def _distances(labels: np.ndarray, memo: dict) -> tuple[np.ndarray, np.ndarray]:
    if "distances" not in memo:  # both distance channels come from one pass over the cells
        memo["distances"] = per_object_distances(labels)
    return memo["distances"]


def center_dist_target(labels: np.ndarray, boundary_width: int, memo: dict) -> np.ndarray:
    """Target of the ``center_dist`` channel."""
    return _distances(labels, memo)[0]


def boundary_dist_target(labels: np.ndarray, boundary_width: int, memo: dict) -> np.ndarray:
    """Target of the ``boundary_dist`` channel."""
    return _distances(labels, memo)[1]


def make_targets(labels: np.ndarray, head: str, boundary_width: int = 1) -> np.ndarray:
    """Targets of ``head`` for one label image, shape (C, H, W) float32, channel order of HEADS.

    Each channel's target function is named in :data:`livecell_seg.model.heads.CHANNELS`.
    """
    labels = np.asarray(labels)
    memo: dict = {}
    out = [globals()[CHANNELS[ch].target](labels, boundary_width, memo) for ch in head_channels(head)]
    return np.stack(out).astype(np.float32, copy=False)
