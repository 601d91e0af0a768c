"""The parameters of post-processing (one dataclass for every head), read from and written to a
model folder's ``postprocess.json``. numpy only: the model folder and the CLI read it without
loading scipy; the watersheds that use it are in :mod:`livecell_seg.inference.postprocess`."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..dataclass_dicts import check_keys
from ..errors import InputFileError, LivecellError
from ..io import read_json
from .heads import PARAM_SPECS

__all__ = ["RECORD_KEYS", "PostprocessParams"]

#: keys of a ``postprocess.json`` that are records, not parameters (allowed, ignored when reading)
RECORD_KEYS = ("head", "tuning")


@dataclass
class PostprocessParams:
    """Parameters of instance extraction, one dataclass for all heads (JSON via to/from_dict).

    Only the fields a head uses matter (``livecell_seg.model.heads.REGISTRY[head].param_names``): ``fg``
    uses min_distance and h, ``fg+boundary`` boundary_threshold, ``fg+dist`` center_threshold and
    boundary_dist_threshold; all heads use fg_threshold, min_seed_size, min_size, smooth and
    keep_unseeded. Ranges and help for each field: :data:`livecell_seg.model.heads.PARAM_SPECS`.
    """

    fg_threshold: float = 0.5
    #: fg+boundary: seeds = fg > fg_threshold & boundary < boundary_threshold
    #: low by default: a soft (blurred) boundary map rarely reaches 0.5 between touching cells, and
    #: a threshold above its crest merges them (blurred-oracle AP 26 at 0.3 vs 82 at 0.2, sigma 2)
    boundary_threshold: float = 0.2
    #: fg+dist: seeds = fg > t & center_dist < center_threshold & boundary_dist < boundary_dist_threshold
    center_threshold: float = 0.5
    boundary_dist_threshold: float = 0.5
    #: fg head: markers are maxima of the distance transform at least this far apart (pixels)
    min_distance: int = 5
    #: fg head: h-maxima height in pixels of distance; 0 = use min_distance peaks instead
    h: float = 0.0
    #: seeds (connected components) smaller than this many pixels are dropped
    min_seed_size: int = 1
    #: instances smaller than this many pixels are removed
    min_size: int = 20
    #: outline smoothing: per-object opening radius in pixels, 0 = off
    smooth: int = 0
    #: foreground components that received no seed become instances of their own
    keep_unseeded: bool = True

    #: fields that are probabilities (thresholds on maps in [0, 1]), from the heads registry
    PROBABILITY_FIELDS = tuple(s.name for s in PARAM_SPECS if s.probability)
    #: the largest value of each bounded field (the work a size or kernel asks for), from the registry
    LIMITS = {s.name: s.limit for s in PARAM_SPECS if s.limit is not None}

    def __post_init__(self) -> None:
        """Refuse values that would silently give a wrong answer (NaN, negative sizes, a boolean
        where a number belongs, ...) or ask for unbounded work (a huge smoothing kernel)."""
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(f.default, bool):
                if not isinstance(v, bool):
                    raise ValueError(f"{f.name} must be true or false, got {v!r}")
                continue
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"{f.name} must be a finite number, got {v!r}")
            if f.name in self.PROBABILITY_FIELDS and not 0.0 <= v <= 1.0:
                raise ValueError(f"{f.name} must be in [0, 1], got {v!r}")
            if v < 0:
                raise ValueError(f"{f.name} must not be negative, got {v!r}")
            limit = self.LIMITS.get(f.name)
            if limit is not None and v > limit:
                raise ValueError(f"{f.name} must be at most {limit:g}, got {v!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PostprocessParams:
        """Build from a dict (e.g. ``postprocess.json``); values coerced, unknown keys are errors.

        The strict key rule is :func:`livecell_seg.dataclass_dicts.check_keys` (one line naming the key);
        :data:`RECORD_KEYS` (the head and tuning record a tuned ``postprocess.json`` carries) are
        allowed and ignored. Values are coerced leniently (``"12"`` -> 12, ``"yes"`` -> True, 33.0
        -> 33) because the app's sliders, napari's fields and hand-written files all feed this.
        """
        if not d:
            return cls()
        if "params" in d and isinstance(d["params"], dict):  # a tuned postprocess.json
            d = d["params"]
        check_keys(cls, d, "postprocess", RECORD_KEYS)
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in d and d[f.name] is not None:
                v = d[f.name]
                if isinstance(f.default, bool):
                    if isinstance(v, str):
                        if v.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                            raise ValueError(f"{f.name}: not a boolean: {v!r}")
                        v = v.strip().lower() in ("true", "1", "yes")
                    elif not isinstance(v, (bool, np.bool_)) and v not in (0, 1):  # 0/1 only, not 0.5
                        raise ValueError(f"{f.name}: not a boolean: {v!r}")
                    kw[f.name] = bool(v)
                    continue
                if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, str)):
                    # true is not 1.0: a boolean (or a list, ...) where a number belongs is a mistake
                    raise ValueError(f"{f.name}: expected a number, got {v!r}")
                x = float(v)
                if not math.isfinite(x):
                    raise ValueError(f"{f.name} must be a finite number, got {v!r}")
                kw[f.name] = int(round(x)) if isinstance(f.default, int) else x
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)

    @classmethod
    def read(cls, path: str | Path) -> PostprocessParams:
        """Read parameters from a JSON file (a bare params dict or a tuned ``postprocess.json``)."""
        p = Path(path)
        return cls.checked(read_json(p), p)

    @classmethod
    def checked(cls, d: Any, where: object) -> PostprocessParams:
        """:meth:`from_dict` of a parsed JSON file ``where``: a one-line InputFileError if invalid."""
        if not isinstance(d, dict):
            raise InputFileError(where, "expected a JSON object of post-processing parameters")
        try:
            return cls.from_dict(d)
        except LivecellError as e:
            raise InputFileError(where, str(e)) from None
        except (TypeError, ValueError, OverflowError) as e:
            raise InputFileError(where, f"invalid parameter value ({e})") from None
