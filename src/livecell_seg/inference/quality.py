"""How trustworthy one image's segmentation is, without ground truth (pure numpy/scipy).

The estimate (issue 25): segment the image a second time from its horizontal mirror (the maps
mirrored back, the same watershed) and score how well the two instance sets agree: the F1 of
their optimal one-to-one matching at IoU 0.5 (:func:`livecell_seg.evaluation.metrics.match_instances`,
the same matching as the true F1). A network that is sure of its cells draws them the same way
from the mirrored image; where it guesses, the two label images disagree. 1: every cell found
the same way twice; 0: no cell matched. Measured against the true per-image F1@0.5 in
``benchmarks/quality_estimate.py`` (BENCHMARKS.md ``quality``).

Also here: the per-run summary table (``summary.csv``) and the worst-first ranking of
``predict --rank-for-correction``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..evaluation.metrics import match_instances

#: IoU at which a cell of one pass counts as the same cell in the other
QUALITY_IOU = 0.5


def agreement(labels: np.ndarray, other: np.ndarray, iou_threshold: float = QUALITY_IOU) -> float:
    """F1 of the one-to-one matching of two label images of the same image at ``iou_threshold``,
    in [0, 1] (1: same cells; 0: none in common; 1 when both are empty)."""

    a, b = np.asarray(labels), np.asarray(other)
    if a.shape != b.shape:
        raise ValueError(f"label images differ in shape: {a.shape} vs {b.shape}")
    return float(min(1.0, max(0.0, match_instances(a, b, iou_threshold).f1)))


def mean_score(scores: dict[int, float]) -> float | None:
    """Mean instance score (mean foreground probability per cell), None without cells."""
    if not scores:
        return None
    return float(np.mean(list(scores.values())))


def mirror_back(maps: np.ndarray) -> np.ndarray:
    """Maps predicted on the horizontally mirrored image, mirrored back onto the image (every
    channel is a scalar map, unchanged by a mirror: foreground, distance, boundary)."""
    return np.ascontiguousarray(np.asarray(maps)[..., ::-1])


# ------------------------------------------------------------------------------------------------
# the run summary and the ranking

#: ``summary.csv``'s columns
SUMMARY_COLUMNS = ("image", "labels", "status", "n_cells", "zoom", "quality", "error")
SUMMARY_FILE = "summary.csv"
RANKING_FILE = "correction_order.csv"


@dataclass
class ImageRow:
    """One image of a run: ``status`` ``segmented`` / ``resumed`` (kept from an earlier run) /
    ``failed``; ``quality`` None when not estimated."""

    image: str
    labels: str = ""
    status: str = "segmented"
    n_cells: int | None = None
    zoom: float | None = None
    quality: float | None = None
    error: str = ""


def _fmt(v: float | int | None, digits: int = 4) -> str:
    if v is None:
        return ""
    if isinstance(v, int):
        return str(v)
    return f"{v:.{digits}f}" if math.isfinite(v) else ""


def summary_csv_text(rows: Iterable[ImageRow]) -> str:
    """``summary.csv``: one row per image, in :data:`SUMMARY_COLUMNS`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUMMARY_COLUMNS)
    for r in rows:
        w.writerow([r.image, r.labels, r.status, _fmt(r.n_cells), _fmt(r.zoom), _fmt(r.quality), r.error])
    return buf.getvalue()


def rank_for_correction(rows: Sequence[ImageRow]) -> list[ImageRow]:
    """The images with a quality, worst first (ties: more cells first, then by name)."""
    rated = [r for r in rows if r.quality is not None and r.status != "failed"]
    return sorted(rated, key=lambda r: (r.quality, -(r.n_cells or 0), r.image))


def ranking_csv_text(ranked: Sequence[ImageRow]) -> str:
    """``correction_order.csv``: rank (1 = correct first), image, labels file, quality, cells."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("rank", "image", "labels", "quality", "n_cells"))
    for i, r in enumerate(ranked, 1):
        w.writerow([i, r.image, r.labels, _fmt(r.quality), _fmt(r.n_cells)])
    return buf.getvalue()


def ranking_table(ranked: Sequence[ImageRow], limit: int | None = 20) -> str:
    """A short text table of ``ranked`` (the first ``limit``; None: all) for the terminal."""
    shown = list(ranked if limit is None else ranked[:limit])
    width = max([len("image")] + [len(r.image) for r in shown])
    lines = [f"{'rank':>4}  {'quality':>7}  {'cells':>6}  {'image':<{width}}"]
    for i, r in enumerate(shown, 1):
        lines.append(f"{i:>4}  {_fmt(r.quality, 3):>7}  {_fmt(r.n_cells):>6}  {r.image:<{width}}")
    if len(shown) < len(ranked):
        lines.append(f"... and {len(ranked) - len(shown)} more")
    return "\n".join(lines)
