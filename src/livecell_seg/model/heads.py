"""Output heads of the U-Net: the one registry of what each head predicts and how it is used.

A head's entry (:class:`Head` in :data:`REGISTRY`) holds everything the rest of the package needs
to know about it: its output channels (in order), the :class:`~livecell_seg.inference.postprocess.PostprocessParams` fields that post-processing
reads (with the ranges and help the app and the napari widget show, :data:`PARAM_SPECS`) and its
tuning grids. Each channel (:data:`CHANNELS`) names its training target and whether it is binary.
Targets, losses, the model, config validation, post-processing, tuning, the app, the napari widget
and the CLI read this module; adding a head means adding one entry here, its watershed to
:data:`livecell_seg.inference.postprocess.WATERSHEDS` (post-processing owns that table: this
module imports nothing of ours) and, for a new channel, its target.

Pure Python (no numpy, no torch): the CLI imports it for ``--help``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Channel:
    """One output channel: a sigmoid map in [0, 1]."""

    name: str
    #: binary target (BCE + Dice); otherwise a regression target defined inside cells only
    #: (its loss is masked by the foreground)
    binary: bool
    #: name of the target function in :mod:`livecell_seg.training.targets`: ``f(labels, boundary_width, memo)``
    target: str
    #: short human-readable name (app captions, napari layer names)
    title: str
    #: what a pixel's value means (model documentation, e.g. the bioimage.io package README)
    help: str


#: every channel a head may predict
CHANNELS: dict[str, Channel] = {
    c.name: c
    for c in (
        Channel("fg", True, "fg_target", "foreground", "probability that the pixel belongs to a cell"),
        Channel(
            "boundary",
            True,
            "boundary_target",
            "boundary",
            "probability that the pixel is on a cell's inner boundary",
        ),
        Channel(
            "center_dist",
            False,
            "center_dist_target",
            "distance to centre",
            "distance to the cell's centre, normalized per cell (0 at the centre, 1 at the farthest pixel)",
        ),
        Channel(
            "boundary_dist",
            False,
            "boundary_dist_target",
            "distance to boundary",
            "inverted distance to the cell's boundary, normalized per cell (0 deepest inside, 1 on the boundary)",
        ),
    )
}

#: channels whose targets are binary (BCE + Dice); the others are regression targets in [0, 1]
#: that are only defined inside cells (their loss is masked by the foreground).
BINARY_CHANNELS = frozenset(c.name for c in CHANNELS.values() if c.binary)


@dataclass(frozen=True)
class ParamSpec:
    """One :class:`~livecell_seg.inference.postprocess.PostprocessParams` field as the app and napari show it.

    ``lo``/``hi``/``step``: the slider's range (a checkbox for booleans); ``probability``: the value
    is a threshold on a map in [0, 1] (anything outside is refused); ``limit``: the largest value
    accepted anywhere (a parameters file, the API), bounding the work it asks for (``smooth`` is a
    filter kernel's radius: 200 asked for 58 TiB; issue 22).
    """

    name: str
    label: str
    lo: float
    hi: float
    step: float
    help: str
    probability: bool = False
    limit: float | None = None


#: every post-processing parameter, in the order the app shows them
PARAM_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("fg_threshold", "Foreground threshold", 0.05, 0.95, 0.01, "foreground probability above which a pixel belongs to a cell", True),
    ParamSpec("boundary_threshold", "Seed: boundary below", 0.05, 0.95, 0.01, "seeds are foreground pixels whose boundary probability is below this", True),
    ParamSpec("center_threshold", "Seed: centre distance below", 0.05, 0.95, 0.01, "seeds need a normalized distance to the cell centre below this", True),
    ParamSpec("boundary_dist_threshold", "Seed: boundary distance below", 0.05, 0.95, 0.01, "seeds need a normalized inverted distance to the boundary below this", True),
    ParamSpec("min_distance", "Seed spacing (px)", 1, 30, 1, "markers are distance-transform maxima at least this far apart", limit=200),
    ParamSpec("h", "h-maxima height (px, 0 = off)", 0.0, 10.0, 0.5, "when > 0, markers are h-maxima of the distance transform instead", limit=1000),
    ParamSpec("min_seed_size", "Minimum seed size (px)", 1, 200, 1, "seeds smaller than this are dropped", limit=1e9),
    ParamSpec("min_size", "Minimum cell size (px)", 0, 1000, 5, "instances smaller than this are removed", limit=1e9),
    ParamSpec("smooth", "Outline smoothing (px)", 0, 10, 1, "per-cell opening radius; 0 = off", limit=20),
    ParamSpec("keep_unseeded", "Keep unseeded regions", 0, 1, 1, "foreground blobs without a seed become cells of their own", limit=1),
)  # fmt: skip

#: parameters every head's post-processing reads
COMMON_PARAMS = ("fg_threshold", "min_seed_size", "min_size", "smooth", "keep_unseeded")

#: tuning grid names (``tune --grid``)
GRID_SIZES = ("small", "full")

_COMMON_SMALL = {"min_size": [0, 10, 20, 40]}
_COMMON_FULL = {"min_size": [0, 5, 10, 20, 30, 50, 80], "smooth": [0, 1, 2]}
_FG_T_SMALL = [0.3, 0.4, 0.5, 0.6, 0.7]
_FG_T_FULL = [0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8]
_T_SMALL = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
_T_FULL = [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8]


@dataclass(frozen=True)
class Head:
    """One head: its channels, its post-processing, the parameters it reads and its tuning grids."""

    name: str
    channels: tuple[str, ...]
    #: PostprocessParams fields only this head reads (on top of :data:`COMMON_PARAMS`)
    params: tuple[str, ...]
    #: grid name -> parameter -> candidate values, searched in this order (see :mod:`tuning`)
    grids: dict[str, dict[str, list[Any]]]
    help: str = ""

    @property
    def param_names(self) -> tuple[str, ...]:
        """Every parameter the head's post-processing reads, in :data:`PARAM_SPECS` order."""
        used = set(COMMON_PARAMS) | set(self.params)
        return tuple(s.name for s in PARAM_SPECS if s.name in used)

    def param_specs(self) -> list[ParamSpec]:
        """The :class:`ParamSpec` of each parameter the head reads (what a UI shows for it)."""
        return [s for s in PARAM_SPECS if s.name in self.param_names]


#: head name -> its entry
REGISTRY: dict[str, Head] = {
    h.name: h
    for h in (
        Head(
            "fg",
            ("fg",),
            ("min_distance", "h"),
            {
                "small": {
                    "fg_threshold": _FG_T_SMALL,
                    "min_distance": [2, 3, 5, 7, 10],
                    "h": [0.0, 1.0, 2.0],
                    **_COMMON_SMALL,
                },
                "full": {
                    "fg_threshold": _FG_T_FULL,
                    "min_distance": [1, 2, 3, 4, 5, 6, 8, 10, 12, 15],
                    "h": [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0],
                    "min_seed_size": [1, 3, 5],
                    **_COMMON_FULL,
                },
            },
            "foreground only; markers from the distance transform",
        ),
        Head(
            "fg+boundary",
            ("fg", "boundary"),
            ("boundary_threshold",),
            {
                "small": {
                    "fg_threshold": _FG_T_SMALL,
                    "boundary_threshold": _T_SMALL,
                    "min_seed_size": [1, 5, 10],
                    **_COMMON_SMALL,
                },
                "full": {
                    "fg_threshold": _FG_T_FULL,
                    "boundary_threshold": _T_FULL,
                    "min_seed_size": [1, 3, 5, 10, 20],
                    **_COMMON_FULL,
                },
            },
            "foreground + inner boundary; seeds inside the boundaries",
        ),
        Head(
            "fg+dist",
            ("fg", "center_dist", "boundary_dist"),
            ("center_threshold", "boundary_dist_threshold"),
            {
                "small": {
                    "fg_threshold": _FG_T_SMALL,
                    "center_threshold": _T_SMALL,
                    "boundary_dist_threshold": _T_SMALL,
                    "min_seed_size": [1, 5, 10],
                    **_COMMON_SMALL,
                },
                "full": {
                    "fg_threshold": _FG_T_FULL,
                    "center_threshold": _T_FULL,
                    "boundary_dist_threshold": _T_FULL,
                    "min_seed_size": [1, 3, 5, 10, 20],
                    **_COMMON_FULL,
                },
            },
            "foreground + normalized distances to the centre and to the boundary",
        ),
    )
}

#: head name -> channel names, in output order (all channels are sigmoid outputs in [0, 1])
HEADS: dict[str, tuple[str, ...]] = {name: h.channels for name, h in REGISTRY.items()}


def get_head(head: str) -> Head:
    """The registry entry of ``head``; raises ValueError for an unknown head."""
    try:
        return REGISTRY[head]
    except KeyError:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(REGISTRY)}") from None


def head_channels(head: str) -> tuple[str, ...]:
    """Channel names of ``head``; raises ValueError for an unknown head."""
    return get_head(head).channels
