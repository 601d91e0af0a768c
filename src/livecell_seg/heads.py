"""Output heads of the U-Net: which channels a model predicts, in which order.

Shared by targets, model, inference and post-processing (pure Python, no torch).
"""

from __future__ import annotations

#: head name -> channel names, in output order. All channels are sigmoid outputs in [0, 1].
#:  - ``fg``: foreground probability.
#:  - ``boundary``: inner cell boundary (pixels of a cell touching background or another cell).
#:  - ``center_dist``: per-cell distance to the cell's centre, normalized to [0, 1]
#:    (0 at the centre, 1 at the farthest pixel of the cell).
#:  - ``boundary_dist``: per-cell inverted distance to the cell's boundary, normalized to [0, 1]
#:    (0 deepest inside the cell, 1 on its boundary).
HEADS: dict[str, tuple[str, ...]] = {
    "fg": ("fg",),
    "fg+boundary": ("fg", "boundary"),
    "fg+dist": ("fg", "center_dist", "boundary_dist"),
}

#: channels whose targets are binary (BCE + Dice); the others are regression targets in [0, 1]
#: that are only defined inside cells (their loss is masked by the foreground).
BINARY_CHANNELS = frozenset({"fg", "boundary"})


def head_channels(head: str) -> tuple[str, ...]:
    """Channel names of ``head``; raises ValueError for an unknown head."""
    try:
        return HEADS[head]
    except KeyError:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}") from None
