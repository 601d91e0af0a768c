"""Training targets on hand-made label images, with values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from livecell_seg.model.heads import HEADS
from livecell_seg.training.targets import foreground, inner_boundary, make_targets, per_object_distances


def square_distances(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(center_dist, boundary_dist) of an n x n square cell (n odd), by hand.

    Ring k (0 = the outer ring) lies k pixels inside the edge: boundary_dist = 1 - k / (n // 2).
    The centre is the middle pixel: center_dist = Euclidean distance to it / distance of a corner.
    """
    c = n // 2
    yy, xx = np.mgrid[:n, :n]
    ring = np.minimum.reduce([yy, xx, n - 1 - yy, n - 1 - xx])
    bound = 1.0 - ring / c
    center = np.hypot(yy - c, xx - c) / np.hypot(c, c)
    return center.astype(np.float32), bound.astype(np.float32)


@pytest.mark.parametrize("y, x", [(5, 6), (0, 0), (13, 11)])  # inside, top-left corner, bottom-right corner
def test_square_cell_distances_by_hand_anywhere_in_the_image(y: int, x: int) -> None:
    lab = np.zeros((20, 18), np.int32)
    lab[y : y + 7, x : x + 7] = 1
    center, bound = per_object_distances(lab)
    assert center.dtype == np.float32 and bound.dtype == np.float32
    assert center.shape == bound.shape == lab.shape
    ref_c, ref_b = square_distances(7)
    # the image border counts as outside: a cell cut by it gets the same maps as one inside
    np.testing.assert_allclose(center[y : y + 7, x : x + 7], ref_c, atol=1e-6)
    np.testing.assert_allclose(bound[y : y + 7, x : x + 7], ref_b, atol=1e-6)
    assert (center[lab == 0] == 1).all() and (bound[lab == 0] == 1).all()  # background


def test_touching_cells_get_their_own_maps_and_thin_cells_are_all_centre() -> None:
    lab = np.zeros((12, 24), np.int32)
    lab[2:9, 2:9] = 1
    lab[2:9, 9:16] = 2  # shares a whole edge with cell 1
    lab[10, 3:20] = 3  # one pixel thick
    center, bound = per_object_distances(lab)
    ref_c, ref_b = square_distances(7)
    for sl in (np.s_[2:9, 2:9], np.s_[2:9, 9:16]):
        np.testing.assert_allclose(center[sl], ref_c, atol=1e-6)
        np.testing.assert_allclose(bound[sl], ref_b, atol=1e-6)
    assert (center[10, 3:20] == 0).all() and (bound[10, 3:20] == 0).all()


def test_smallest_cell_with_an_inside_a_plus_sign() -> None:
    lab = np.zeros((7, 7), np.int32)
    lab[3, 2:5] = lab[2:5, 3] = 1  # 5 pixels: the centre has no background neighbour
    center, bound = per_object_distances(lab)
    assert center[3, 3] == 0 and bound[3, 3] == 0
    arms = [(2, 3), (4, 3), (3, 2), (3, 4)]
    assert all(center[p] == 1 and bound[p] == 1 for p in arms)


def test_empty_and_single_label_images() -> None:
    center, bound = per_object_distances(np.zeros((5, 6), np.int32))
    assert center.dtype == np.float32 and (center == 1).all() and (bound == 1).all()
    lab = np.zeros((9, 9), np.int32)
    lab[1:8, 1:8] = 1
    center, bound = per_object_distances(lab)
    assert center[4, 4] == 0 and bound[4, 4] == 0  # one cell alone is still a cell


def test_foreground_and_inner_boundary_by_hand() -> None:
    lab = np.zeros((9, 14), np.int32)
    lab[1:6, 1:6] = 1
    lab[1:6, 6:11] = 2  # touching along a column
    fg = foreground(lab)
    assert fg.dtype == np.float32 and np.array_equal(fg, (lab > 0).astype(np.float32))
    b = inner_boundary(lab)
    assert b.dtype == np.float32 and set(np.unique(b)) == {0.0, 1.0}
    expected = np.zeros_like(lab, dtype=bool)
    for sl in (np.s_[1:6, 1:6], np.s_[1:6, 6:11]):
        block = np.ones((5, 5), bool)
        block[1:-1, 1:-1] = False  # the outer ring of each 5 x 5 cell, both sides of the shared edge
        expected[sl] = block
    np.testing.assert_array_equal(b.astype(bool), expected)
    b2 = inner_boundary(lab, width=2)
    assert (b2[lab == 0] == 0).all()  # never outside the cells
    assert b2[3, 3] == 0 and b2[2, 2] == 1 and b2[1:6, 1:6].sum() == 24  # 5x5 cell: all but the centre


def test_make_targets_channel_order_follows_heads() -> None:
    lab = np.zeros((10, 10), np.int32)
    lab[2:9, 2:9] = 1
    center, bound = per_object_distances(lab)
    expected = {
        "fg": foreground(lab),
        "boundary": inner_boundary(lab),
        "center_dist": center,
        "boundary_dist": bound,
    }
    for head, channels in HEADS.items():
        t = make_targets(lab, head)
        assert t.dtype == np.float32 and t.shape == (len(channels), 10, 10)
        for i, ch in enumerate(channels):
            np.testing.assert_array_equal(t[i], expected[ch], err_msg=f"{head}: {ch}")
    with pytest.raises(ValueError):
        make_targets(lab, "nope")
