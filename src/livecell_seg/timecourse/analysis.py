"""Time-lapse analysis: confluence, cell counts and growth curves per well.

The pipeline, one function per step (each usable on its own):

1. :func:`parse_frame_name` / :func:`parse_names`: file names -> :class:`Frame` (cell type, well,
   field, crop, elapsed hours) from LIVECell / Incucyte-style names or a user regex with named groups;
2. :func:`segment_frames`: image files -> instance label files, through ``runner.predict_paths``
   (the ``livecell-seg predict`` code path); :func:`find_label_files` reuses existing label images;
3. :func:`measure_labels`: one label image -> count, confluence, mean/median cell area, cells/mm²;
4. :func:`aggregate`: per-image rows -> mean ± SD per (cell type, well, time point);
5. :func:`fit_growth` / :func:`fit_wells`: log-linear fit over the exponential phase -> doubling
   time with a t-based 95% confidence interval, R², and why a fit is not meaningful when it is not.

:func:`run_timecourse` chains them and writes ``per_image.csv``, ``per_well_time.csv``,
``growth.csv`` and ``timecourse.json``; :mod:`livecell_seg.timecourse.report` draws the plots and
``index.html``. Pure numpy/scipy here: torch is imported only when images are segmented, matplotlib
only by the report.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import LIVECELL_PIXEL_SIZE_UM
from ..data.coco import parse_livecell_name
from ..errors import InputFileError, LivecellError
from ..inference.predict import PredictSettings, PredictSummary, _output_stems
from ..inference.runner import predict_paths
from ..io import (
    atomic_path,
    folder_lock,
    image_header_shape,
    list_images,
    read_labels,
    read_labels_outcome,
    write_json_atomic,
)
from ..options import check_finite
from ..progress import Progress
from .report import write_report

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from ..model.folder import LoadedModel

#: a growth fit with a lower R² is reported as not meaningful (see :func:`fit_growth`)
DEFAULT_MIN_R2 = 0.8
#: how the exponential phase is chosen (written into timecourse.json and index.html)
FIT_RULE = (
    "three-phase linear model of ln(value) (lag, exponential, plateau; Buchanan et al. 1997), "
    "breakpoints at observed time points, variant with/without lag and plateau chosen by BIC; "
    "OLS on the exponential-phase points, Student-t 95% CI of the rate"
)
#: the two quantities whose growth is fitted: column of ``per_well_time.csv`` -> name
GROWTH_METRICS = {"count_mean": "count", "confluence_mean": "confluence"}

#: Incucyte-style names without LIVECell's ``_Phase_`` or crop: ``<experiment>_<well>_<field>_<DDdHHhMMm>``
_INCUCYTE_RE = re.compile(
    r"^(?P<cell_type>.+?)_(?:Phase_)?(?P<well>[A-Za-z]{1,2}\d{1,2})_(?P<field>\d+)_"
    r"(?P<time>\d+d\d+h\d+m)(?:_(?P<crop>\d+))?(?:\.[A-Za-z0-9]+)?$"
)
_TIME_RE = re.compile(
    r"^(?:(?P<d>\d+(?:\.\d+)?)d)?(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m(?:in)?)?$"
)
_PATTERN_GROUPS = ("cell_type", "well", "field", "crop", "time", "days", "hours", "minutes")


# --------------------------------------------------------------------------------------------------
# 1. names
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """One image of a time course: where (cell type, well, field, crop) and when (hours)."""

    path: Path
    cell_type: str
    well: str
    field: str
    crop: str
    time_h: float

    @property
    def group(self) -> tuple[str, str]:
        """The well the frame belongs to: ``(cell_type, well)``."""
        return (self.cell_type, self.well)


#: the latest time point accepted, in hours (ten years): a later one is a misread name, and one
#: absurd time point bends every growth fit of its well (issue 22)
MAX_HOURS = 24.0 * 3653


class TimeStampError(ValueError):
    """A file name that matches but whose time stamp is impossible (``00d99h99m``, ``9999999d``)."""


def checked_time_h(
    days: float = 0.0, hours: float = 0.0, minutes: float = 0.0, text: str = "", given: str = "dhm"
) -> float:
    """Hours from days, hours and minutes, each finite and not negative, hours below 24 when days
    are given and minutes below 60 when hours or days are (``given``: which of ``d``, ``h``, ``m``
    the stamp holds), the total at most :data:`MAX_HOURS`. Raises :class:`TimeStampError` naming
    the stamp ``text`` otherwise."""
    what = f"time {text!r}" if text else "time"
    parts = {"days": days, "hours": hours, "minutes": minutes}
    for k, v in parts.items():
        if not math.isfinite(v) or v < 0:
            raise TimeStampError(f"{what}: {k} {v:g} is not a time")
    if "d" in given and "h" in given and hours >= 24:
        raise TimeStampError(f"{what}: {hours:g} hours next to days (hours must be below 24)")
    if ("d" in given or "h" in given) and "m" in given and minutes >= 60:
        raise TimeStampError(f"{what}: {minutes:g} minutes next to hours (minutes must be below 60)")
    t = 24.0 * days + hours + minutes / 60.0
    if t > MAX_HOURS:
        raise TimeStampError(f"{what}: {t:,.0f} hours, more than ten years after the start")
    return t


def parse_time_h(text: str) -> float:
    """Elapsed time in hours from ``02d04h00m`` (LIVECell/Incucyte), ``12h30m``, ``3d``, ``90m``,
    or a plain number (hours). Raises ValueError otherwise, and :class:`TimeStampError` for an
    impossible stamp (``00d99h99m``, NaN, more than ten years: :func:`checked_time_h`)."""
    s = str(text).strip()
    try:
        return checked_time_h(hours=float(s), text=s, given="h")
    except TimeStampError:
        raise
    except ValueError:
        pass
    m = _TIME_RE.match(s)
    if not s or m is None or not any(m.groupdict().values()):
        raise ValueError(f"cannot read a time from {text!r} (expected e.g. 02d04h00m, 12h30m or 36)")
    d, h, mi = (float(m.group(k) or 0.0) for k in ("d", "h", "m"))
    return checked_time_h(d, h, mi, text=s, given="".join(k for k in "dhm" if m.group(k) is not None))


#: how long one ``--pattern`` search may take on one file name before it is called runaway
PATTERN_BUDGET_S = 2.0


def _nested_quantifier(pattern: str) -> str | None:
    """The first quantified group that holds another unbounded quantifier (``(a+)+``, ``(\\d*)*``):
    such a regex takes exponential time on a name it almost matches. None when there is none."""
    try:
        import re._constants as c  # Python 3.11+
        import re._parser as sp
    except ImportError:  # pragma: no cover - older Pythons
        import sre_constants as c  # type: ignore[no-redef]
        import sre_parse as sp  # type: ignore[no-redef]

    repeats = {c.MAX_REPEAT, c.MIN_REPEAT}

    def walk(items: Any, inside: bool) -> bool:
        for op, av in items:
            if op in repeats:
                _lo, hi, sub = av
                many = hi is c.MAXREPEAT or hi > 1
                if many and inside:
                    return True
                if walk(sub, inside or many):
                    return True
            elif op is c.SUBPATTERN:
                if walk(av[-1], inside):
                    return True
            elif op is c.BRANCH:
                if any(walk(b, inside) for b in av[1]):
                    return True
            elif op in (c.ASSERT, c.ASSERT_NOT):
                if walk(av[1], inside):
                    return True
        return False

    try:
        return pattern if walk(sp.parse(pattern), False) else None
    except Exception:  # noqa: BLE001 - re.compile reports a bad pattern itself
        return None


class _RunawayPattern(Exception):
    pass


def search_name(rx: re.Pattern[str], name: str, budget_s: float = PATTERN_BUDGET_S) -> re.Match[str] | None:
    """``rx.search(name)`` with a time guard: a search running longer than ``budget_s`` (a regex
    that backtracks catastrophically) is stopped with a one-line :class:`LivecellError`. The guard
    needs the main thread (a timer signal); elsewhere (the web app's script thread) the static
    check of :func:`compile_pattern` is the only guard."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        return rx.search(name)

    def _stop(_signum: int, _frame: Any) -> None:
        raise _RunawayPattern()

    old = signal.signal(signal.SIGALRM, _stop)
    signal.setitimer(signal.ITIMER_REAL, budget_s)
    try:
        return rx.search(name)
    except _RunawayPattern:
        raise LivecellError(
            f"--pattern {rx.pattern!r} took more than {budget_s:g} s on the name {name!r} "
            "(it backtracks catastrophically); simplify it"
        ) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a ``--pattern`` regex; it needs a named group ``time`` (or ``days``/``hours``/``minutes``)
    and may have ``cell_type``, ``well``, ``field`` and ``crop``. One-line LivecellError otherwise."""
    if len(pattern) > 1000:
        raise LivecellError(f"--pattern is {len(pattern):,} characters long; a name pattern needs far fewer")
    try:
        rx = re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as e:
        raise LivecellError(f"--pattern {pattern!r} is not a valid regular expression ({e})") from None
    if _nested_quantifier(pattern):
        raise LivecellError(
            f"--pattern {pattern!r} repeats a group that itself holds a repetition (like (a+)+): such a "
            "regex can take exponential time on a name; write it without the nesting"
        )
    groups = set(rx.groupindex)
    if not groups & {"time", "days", "hours", "minutes"}:
        raise LivecellError(
            f"--pattern {pattern!r} needs a named group for the time: (?P<time>...) "
            "or (?P<days>...)/(?P<hours>...)/(?P<minutes>...)"
        )
    unknown = sorted(groups - set(_PATTERN_GROUPS))
    if unknown:
        raise LivecellError(
            f"--pattern: unknown group(s) {', '.join(unknown)} (use {', '.join(_PATTERN_GROUPS)})"
        )
    return rx


def parse_frame_name(path: str | Path, pattern: str | re.Pattern[str] | None = None) -> Frame | None:
    """The :class:`Frame` of an image file, or None when its name does not match.

    Without ``pattern``: LIVECell names (``SkBr3_Phase_H3_2_02d04h00m_3.tif``: cell type SkBr3, well
    H3, field 2, 52 h, crop 3; :func:`livecell_seg.data.coco.parse_livecell_name`) and Incucyte
    exports (``VID123_A1_1_00d04h00m.tif``; the experiment name stands in for the cell type).
    With ``pattern`` (a regex searched in the file name): named groups ``time`` (or ``days``,
    ``hours``, ``minutes``), optionally ``cell_type``, ``well``, ``field``, ``crop``; missing ones
    default to ``""`` (well ``"all"``).
    """
    p = Path(path)
    name = p.name
    if pattern is None:
        n = parse_livecell_name(name)
        if n is not None:
            return Frame(p, n.cell_type, n.well, n.location, n.crop, parse_time_h(n.timestamp))
        m = _INCUCYTE_RE.match(name)
        if m is None:
            return None
        g = m.groupdict()
        return Frame(p, g["cell_type"], g["well"], g["field"], g["crop"] or "", parse_time_h(g["time"]))
    rx = compile_pattern(pattern) if isinstance(pattern, str) else pattern
    m = search_name(rx, name)
    if m is None:
        return None
    g = {k: v for k, v in m.groupdict().items() if v is not None}
    try:
        if "time" in g:
            t = parse_time_h(g["time"])
        else:
            keys = ("days", "hours", "minutes")
            parts = {k: float(g.get(k, 0)) for k in keys}
            text = " ".join(f"{g[k]} {k}" for k in keys if k in g)
            t = checked_time_h(**parts, text=text, given="".join(k[0] for k in keys if k in g))
    except TimeStampError:
        raise
    except ValueError:
        return None
    return Frame(p, g.get("cell_type", ""), g.get("well", "all"), g.get("field", ""), g.get("crop", ""), t)


def parse_names(paths: Iterable[str | Path], pattern: str | None = None) -> tuple[list[Frame], list[Path]]:
    """Parse every file name: ``(frames sorted by well, time, field, crop, unparsed paths)``."""
    rx = compile_pattern(pattern) if pattern else None
    frames, bad = [], []
    for p in paths:
        try:
            f = parse_frame_name(p, rx)
        except TimeStampError:
            f = None  # named with its reason by unparsed_message
        if f is None:
            bad.append(Path(p))
        else:
            frames.append(f)
    frames.sort(key=lambda f: (f.cell_type, f.well, f.time_h, f.field, f.crop, str(f.path)))
    return frames, bad


# --------------------------------------------------------------------------------------------------
# 2. segmentation (the predict code path) or existing label images
# --------------------------------------------------------------------------------------------------
@dataclass
class SegmentationRun:
    """Label file per input image, the images that failed (path, one-line reason), timings (s);
    ``predict``: :func:`~livecell_seg.inference.runner.predict_paths`' summary when the network ran (on Dask:
    images per worker and the run's wall time)."""

    labels: dict[Path, Path] = field(default_factory=dict)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    network_s: float = 0.0
    total_s: float = 0.0
    predict: PredictSummary | None = None


def segment_frames(
    paths: Sequence[Path],
    out_dir: str | Path,
    model_dir: str | Path | None = None,
    settings: PredictSettings | None = None,
    *,
    model: LoadedModel | None = None,
    progress: Progress = True,
    **changes: Any,
) -> SegmentationRun:
    """Segment ``paths`` into ``out_dir/<stem>.tif`` with :func:`livecell_seg.inference.runner.predict_paths`.

    This is the only place the time course runs the network: ``settings``
    (:class:`~livecell_seg.inference.predict.PredictSettings`, ``changes`` replacing single fields) and
    ``model`` go to ``predict_paths``, so the images are segmented exactly as
    ``livecell-seg predict`` would; with ``settings.cluster``
    (:class:`livecell_seg.inference.distributed.ClusterOptions`) on Dask workers, with the same label files.
    """
    out = Path(out_dir)
    paths = list(paths)
    t0 = time.perf_counter()
    summary = predict_paths(paths, out, model_dir, settings, model=model, progress=progress, **changes)
    run = SegmentationRun(failed=list(summary.failed), predict=summary)
    run.network_s = float(sum(t["network_s"] for t in summary.timings))
    failed = {p for p, _ in summary.failed}
    # the names predict_paths gave (OUT/predict_names.json: earlier runs' names are kept)
    for p, stem in zip(paths, _output_stems(paths, out, save=False)):
        if p not in failed:
            run.labels[p] = out / f"{stem}.tif"
    run.total_s = time.perf_counter() - t0
    return run


def find_label_files(paths: Sequence[Path], labels_dir: str | Path) -> SegmentationRun:
    """Existing label images for ``paths``: ``labels_dir/<stem>.tif`` (or ``.tiff``/``.png``), as
    ``livecell-seg predict`` and ``livecell-seg convert`` write them. Missing ones are failures."""
    d = Path(labels_dir)
    if not d.is_dir():
        raise InputFileError(d, "label folder not found")
    run = SegmentationRun()
    for p in paths:
        for suffix in (".tif", ".tiff", ".png"):
            q = d / f"{Path(p).stem}{suffix}"
            if q.is_file():
                run.labels[Path(p)] = q
                break
        else:
            run.failed.append((Path(p), f"{p}: no label image {Path(p).stem}.tif in {d}"))
    return run


# --------------------------------------------------------------------------------------------------
# 3. measurement
# --------------------------------------------------------------------------------------------------
@dataclass
class FrameStats:
    """Measurements of one label image. Areas in pixels and µm²; ``confluence`` in percent of the
    image area; ``cells_per_mm2`` and the µm² areas are NaN without a pixel size."""

    height: int
    width: int
    count: int
    confluence: float
    mean_area_px: float
    median_area_px: float
    mean_area_um2: float
    median_area_um2: float
    cells_per_mm2: float


def measure_labels(labels: np.ndarray, pixel_size_um: float | None = LIVECELL_PIXEL_SIZE_UM) -> FrameStats:
    """Count, confluence and cell sizes of an instance label image (0 = background).

    ``count`` is the number of distinct labels (every cell, also those cut by the image border);
    ``confluence`` = 100 × (pixels inside any cell) / (all pixels). ``pixel_size_um`` (µm per pixel;
    default LIVECell's 1.24, :data:`livecell_seg.data.LIVECELL_PIXEL_SIZE_UM`) converts areas to µm²
    and the count to cells per mm².
    """
    lab = np.asarray(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be a 2-D integer array, got {lab.dtype} {lab.shape}")
    if lab.size and int(lab.min()) < 0:
        raise ValueError("labels must not be negative")
    h, w = lab.shape
    areas = np.bincount(lab.ravel().astype(np.int64, copy=False))[1:] if lab.size else np.zeros(0, np.int64)
    areas = areas[areas > 0]
    n = int(areas.size)
    conf = 100.0 * float(areas.sum()) / float(h * w) if h * w else 0.0
    mean_px = float(areas.mean()) if n else math.nan
    med_px = float(np.median(areas)) if n else math.nan
    if pixel_size_um is not None and pixel_size_um > 0:
        a = float(pixel_size_um) ** 2
        density = n / (h * w * a / 1e6) if h * w else math.nan
        mean_um, med_um = mean_px * a, med_px * a
    else:
        density = mean_um = med_um = math.nan
    return FrameStats(h, w, n, conf, mean_px, med_px, mean_um, med_um, density)


#: columns of ``per_image.csv``
PER_IMAGE_COLUMNS = (
    "file",
    "cell_type",
    "well",
    "field",
    "crop",
    "time_h",
    "count",
    "confluence",
    "mean_area_px",
    "median_area_px",
    "mean_area_um2",
    "median_area_um2",
    "cells_per_mm2",
    "height",
    "width",
    "labels",
    "quality",
)


def frame_row(frame: Frame, stats: FrameStats, labels_path: Path | None = None) -> dict[str, Any]:
    """One row of ``per_image.csv``."""
    row: dict[str, Any] = {
        "file": str(frame.path),
        "cell_type": frame.cell_type,
        "well": frame.well,
        "field": frame.field,
        "crop": frame.crop,
        "time_h": frame.time_h,
    }
    row.update(asdict(stats))
    row["labels"] = str(labels_path) if labels_path is not None else ""
    row["quality"] = labels_quality(labels_path) if labels_path is not None else None
    return {k: row[k] for k in PER_IMAGE_COLUMNS}


def labels_quality(labels_path: Path) -> float | None:
    """The quality estimate ``predict --quality`` recorded in a label image (None: not estimated,
    or a label image from elsewhere)."""
    rec = read_labels_outcome(labels_path)
    q = rec.get("quality") if rec is not None else None
    if isinstance(q, (int, float)) and not isinstance(q, bool) and 0.0 <= q <= 1.0:
        return float(q)
    return None


def tabulate(
    measured: Sequence[tuple[Frame, FrameStats, Path | None]],
) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """``per_image.csv`` rows of measured frames ``(frame, stats, label file)``: ``(rows, failures)``.

    Frames whose size differs from the most common size fail with a one-line reason (counts of
    differently sized images are not comparable); a tie goes to the size of the first frame in
    name order.
    """
    if not measured:
        return [], []
    first = min(measured, key=lambda x: x[0].path.name)[1]
    sizes = Counter((s.height, s.width) for _, s, _ in measured)
    common = (first.height, first.width)
    if sizes[common] < max(sizes.values()):
        common = sizes.most_common(1)[0][0]
    rows, failed = [], []
    for f, s, lp in measured:
        if (s.height, s.width) != common:
            failed.append(
                (
                    f.path,
                    f"{f.path}: image is {s.width}x{s.height} pixels, the other frames {common[1]}x{common[0]} "
                    "(counts of different image sizes are not comparable)",
                )
            )
        else:
            rows.append(frame_row(f, s, lp))
    return rows, failed


def measure_frames(
    frames: Sequence[Frame],
    label_files: dict[Path, Path],
    pixel_size_um: float | None = LIVECELL_PIXEL_SIZE_UM,
) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """Measure each frame's label image (``label_files[frame.path]``; frames without one are left
    out) and :func:`tabulate` them: ``(rows, failures)``; an unreadable label image is a failure."""
    if pixel_size_um is not None:
        check_finite(pixel_size_um, "pixel size (µm)", 0, 1000)
    measured: list[tuple[Frame, FrameStats, Path | None]] = []
    failed: list[tuple[Path, str]] = []
    for f in frames:
        lp = label_files.get(f.path)
        if lp is None:
            continue
        try:
            labels = read_labels(lp)
            frame_shape = image_header_shape(f.path)
            if frame_shape is not None and tuple(labels.shape) != frame_shape:
                # the label image is wrong, not the frame: it names the label file
                raise InputFileError(
                    lp,
                    f"label image is {labels.shape[1]}x{labels.shape[0]} pixels, its frame "
                    f"{f.path.name} {frame_shape[1]}x{frame_shape[0]} (not its label image?)",
                )
            stats = measure_labels(labels, pixel_size_um)
        except InputFileError as e:
            failed.append((f.path, str(e)))
            continue
        except ValueError as e:
            failed.append((f.path, f"{lp}: {e}"))
            continue
        measured.append((f, stats, lp))
    rows, wrong_size = tabulate(measured)
    return rows, failed + wrong_size


# --------------------------------------------------------------------------------------------------
# 4. aggregation
# --------------------------------------------------------------------------------------------------
#: per-image columns averaged per well and time point
AGGREGATED = ("count", "confluence", "cells_per_mm2", "mean_area_um2", "median_area_um2")
#: columns of ``per_well_time.csv``
PER_WELL_TIME_COLUMNS = (
    "cell_type",
    "well",
    "time_h",
    "n_images",
    "n_fields",
    *(f"{c}_{s}" for c in AGGREGATED for s in ("mean", "sd")),
    "count_rel",
    "confluence_rel",
)


def _mean_sd(values: list[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if x == x], dtype=np.float64)  # NaN-free
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and SD (n − 1; empty for one image) over fields and crops per (cell type, well, time).

    ``count_rel`` and ``confluence_rel`` are the means divided by the well's first time point
    (the curves of the plots).
    """
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["cell_type"], r["well"], float(r["time_h"]))].append(r)
    out: list[dict[str, Any]] = []
    for (ct, well, t), rs in sorted(groups.items()):
        row: dict[str, Any] = {
            "cell_type": ct,
            "well": well,
            "time_h": t,
            "n_images": len(rs),
            "n_fields": len({r["field"] for r in rs}),
        }
        for c in AGGREGATED:
            row[f"{c}_mean"], row[f"{c}_sd"] = _mean_sd([float(r[c]) for r in rs])
        out.append(row)
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for row in out:  # sorted by time within a well
        f = first.setdefault((row["cell_type"], row["well"]), row)
        for c in ("count", "confluence"):
            base = f[f"{c}_mean"]
            row[f"{c}_rel"] = row[f"{c}_mean"] / base if base and base == base else math.nan
    return out


# --------------------------------------------------------------------------------------------------
# 5. growth fits
# --------------------------------------------------------------------------------------------------
@dataclass
class LineFit:
    """Ordinary least squares ``y = intercept + slope · x`` with a t-based CI on the slope."""

    slope: float
    intercept: float
    slope_se: float
    slope_ci: tuple[float, float]
    r2: float
    n: int


def fit_line(x: Sequence[float], y: Sequence[float], confidence: float = 0.95) -> LineFit:
    """OLS line through ``(x, y)`` (n ≥ 2 distinct x); the slope's CI uses Student's t with n − 2
    degrees of freedom (NaN for n = 2). R² is NaN when y is constant."""
    from scipy.special import stdtrit  # Student's t quantile (scipy.stats takes seconds to import)

    xa, ya = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = xa.size
    if n < 2 or np.ptp(xa) == 0:
        raise ValueError("a line needs at least 2 distinct x values")
    xm, ym = xa.mean(), ya.mean()
    sxx = float(((xa - xm) ** 2).sum())
    slope = float(((xa - xm) * (ya - ym)).sum() / sxx)
    intercept = float(ym - slope * xm)
    resid = ya - (intercept + slope * xa)
    sse, sst = float((resid**2).sum()), float(((ya - ym) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else math.nan
    if n > 2:
        se = math.sqrt(sse / (n - 2) / sxx)
        q = float(stdtrit(n - 2, 0.5 + confidence / 2))
        ci = (slope - q * se, slope + q * se)
    else:
        se, ci = math.nan, (math.nan, math.nan)
    return LineFit(slope, intercept, se, ci, r2, n)


@dataclass
class GrowthFit:
    """Exponential growth of one quantity of one well.

    ``rate_per_h`` is the slope of ln(value) against hours over the exponential phase (time points
    ``t_start_h``..``t_end_h``, ``n_used`` of ``n_points``); ``doubling_time_h`` = ln 2 / rate, its CI
    from the rate's t-based 95% CI (upper bound infinite when the rate's CI reaches 0).
    ``meaningful`` is False with a ``reason`` for fewer than 3 usable time points, no growth,
    a rate whose CI includes 0, or a poor fit (R² below the threshold).
    """

    metric: str
    n_points: int
    n_used: int = 0
    t_start_h: float = math.nan
    t_end_h: float = math.nan
    rate_per_h: float = math.nan
    rate_ci_low: float = math.nan
    rate_ci_high: float = math.nan
    doubling_time_h: float = math.nan
    doubling_time_ci_low: float = math.nan
    doubling_time_ci_high: float = math.nan
    r2: float = math.nan
    intercept: float = math.nan
    meaningful: bool = False
    reason: str = ""

    def predict(self, t_h: np.ndarray) -> np.ndarray:
        """The fitted exponential at times ``t_h`` (hours)."""
        return np.exp(self.intercept + self.rate_per_h * np.asarray(t_h, np.float64))


def exponential_phase(t: Sequence[float], y: Sequence[float], min_points: int = 3) -> tuple[int, int]:
    """Indices ``(first, last)`` (inclusive) of the exponential phase of ``y`` = ln(value) at sorted
    times ``t``: the three-phase linear model (lag, exponential, stationary; Buchanan et al., Food
    Microbiol. 1997) fitted to ln(value) by least squares, with the breakpoints at observed time
    points and at least ``min_points`` points between them, a positive slope, and with or without
    a lag and a plateau (the variant with the lowest BIC, the breakpoints counting as parameters).
    ``(0, n - 1)`` when no variant has a positive slope."""
    ta, ya = np.asarray(t, np.float64), np.asarray(y, np.float64)
    n = ta.size
    best: tuple[float, int, int] | None = None
    for i in range(max(0, n - min_points + 1)):
        js = np.arange(i + min_points - 1, n)
        x = np.clip(ta[None, :], ta[i], ta[js][:, None])  # one row per candidate end point
        xm, ym = x.mean(axis=1, keepdims=True), ya.mean()
        sxx = ((x - xm) ** 2).sum(axis=1)
        slope = ((x - xm) * (ya - ym)).sum(axis=1) / np.where(sxx > 0, sxx, np.inf)
        sse = (((ya - ym) - slope[:, None] * (x - xm)) ** 2).sum(axis=1)
        k = 2 + (i > 0) + (js < n - 1)
        bic = n * np.log(np.maximum(sse, 1e-12 * n) / n) + k * np.log(n)
        bic = np.where(slope > 0, bic, np.inf)
        m = int(np.argmin(bic))
        if np.isfinite(bic[m]) and (best is None or bic[m] < best[0] - 1e-9):
            best = (float(bic[m]), i, int(js[m]))
    return (0, n - 1) if best is None else (best[1], best[2])


def fit_growth(
    times_h: Sequence[float],
    values: Sequence[float],
    metric: str = "count",
    *,
    min_r2: float = DEFAULT_MIN_R2,
    fit_range: tuple[float, float] | None = None,
    confidence: float = 0.95,
) -> GrowthFit:
    """Doubling time of ``values`` (counts, confluence, ...) over the exponential phase.

    ln(value) against hours; the exponential phase is found by :func:`exponential_phase` (lag and
    plateau left out) unless ``fit_range`` (hours, inclusive) fixes it; ordinary least squares on
    its time points gives the rate, R² and a Student-t ``confidence`` interval of the rate
    (n − 2 degrees of freedom). Values ≤ 0 or NaN (no cells) are dropped first. Never raises on
    degenerate input: ``meaningful`` is False and ``reason`` says why (fewer than 3 time points,
    no increase, a rate whose CI includes 0, R² below ``min_r2``).
    """
    check_finite(min_r2, "min_r2", 0, 1)  # NaN would flag every fit as poor (issue 22)
    if fit_range is not None:
        check_finite(fit_range[0], "fit_range start")
        check_finite(fit_range[1], "fit_range end")
    t = np.asarray(times_h, np.float64)
    v = np.asarray(values, np.float64)
    if t.shape != v.shape:
        raise ValueError(f"times ({t.shape}) and values ({v.shape}) differ in length")
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    fit = GrowthFit(metric=metric, n_points=int(t.size))
    ok = np.isfinite(t) & np.isfinite(v) & (v > 0)
    if fit_range is not None:
        ok &= (t >= fit_range[0]) & (t <= fit_range[1])
    t, y = t[ok], np.log(v[ok])
    n_t = int(np.unique(t).size)
    if n_t < 3:
        where = f" in {fit_range[0]:g}-{fit_range[1]:g} h" if fit_range is not None else ""
        fit.n_used = int(t.size)
        fit.reason = f"fewer than 3 time points with cells{where} ({n_t})"
        if n_t == 2:  # a rate can still be shown, without CI
            _fill(fit, t, fit_line(t, y))
        return fit
    i, j = (0, t.size - 1) if fit_range is not None else exponential_phase(t, y)
    line = fit_line(t[i : j + 1], y[i : j + 1], confidence)
    _fill(fit, t[i : j + 1], line)
    reasons = []
    if not line.slope > 0:
        reasons.append("no growth (the value does not increase)")
    elif not line.slope_ci[0] > 0:
        reasons.append(f"no significant growth (the rate's {confidence:.0%} CI includes 0)")
    if line.slope > 0 and not line.r2 >= min_r2:
        reasons.append(f"poor fit (R² {line.r2:.2f} < {min_r2:g})")
    fit.meaningful = not reasons
    fit.reason = "; ".join(reasons)
    return fit


def _fill(fit: GrowthFit, t: np.ndarray, line: LineFit) -> None:
    fit.n_used = int(t.size)
    fit.t_start_h, fit.t_end_h = float(t.min()), float(t.max())
    fit.rate_per_h, fit.intercept, fit.r2 = line.slope, line.intercept, line.r2
    fit.rate_ci_low, fit.rate_ci_high = line.slope_ci
    ln2 = math.log(2.0)
    fit.doubling_time_h = ln2 / line.slope if line.slope > 0 else math.nan
    lo, hi = line.slope_ci
    if lo == lo:
        fit.doubling_time_ci_low = ln2 / hi if hi > 0 else math.nan
        fit.doubling_time_ci_high = ln2 / lo if lo > 0 else math.inf


#: columns of ``growth.csv``
GROWTH_COLUMNS = (
    "cell_type",
    "well",
    "metric",
    "n_points",
    "n_used",
    "t_start_h",
    "t_end_h",
    "rate_per_h",
    "rate_ci_low",
    "rate_ci_high",
    "doubling_time_h",
    "doubling_time_ci_low",
    "doubling_time_ci_high",
    "r2",
    "meaningful",
    "reason",
)


def fit_wells(per_well_time: Sequence[dict[str, Any]], **fit_kwargs: Any) -> list[dict[str, Any]]:
    """:func:`fit_growth` of the mean count and mean confluence of every well (one row per well
    and metric, the columns of ``growth.csv`` plus ``intercept``). Each time point's mean over
    fields/crops is one observation."""
    wells: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in per_well_time:
        wells[(r["cell_type"], r["well"])].append(r)
    out = []
    for (ct, well), rs in sorted(wells.items()):
        t = [float(r["time_h"]) for r in rs]
        for col, name in GROWTH_METRICS.items():
            g = fit_growth(t, [float(r[col]) for r in rs], name, **fit_kwargs)
            row = {"cell_type": ct, "well": well, **asdict(g)}
            out.append({k: row[k] for k in (*GROWTH_COLUMNS, "intercept")})
    return out


# --------------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------------
def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if v != v:
            return ""
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{float(v):.10g}"
    return str(v)


def csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as CSV text (header first; NaN as an empty cell, floats to 10 significant digits)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c, "")) for c in columns])
    return buf.getvalue()


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Write :func:`csv_text` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(csv_text(rows, columns))


# --------------------------------------------------------------------------------------------------
# the whole run
# --------------------------------------------------------------------------------------------------
@dataclass
class TimecourseResult:
    """What :func:`run_timecourse` measured and wrote."""

    out_dir: Path
    frames: list[Frame]
    per_image: list[dict[str, Any]]
    per_well_time: list[dict[str, Any]]
    growth: list[dict[str, Any]]
    #: (path, one-line reason) of every input left out: unparsable name, unreadable, other size, ...
    skipped: list[tuple[Path, str]]
    settings: dict[str, Any]
    timings: dict[str, float]
    files: dict[str, Path] = field(default_factory=dict)
    #: the segmentation step: label file per frame and, when the network ran, predict's summary
    segmentation: SegmentationRun | None = None

    @property
    def ok(self) -> bool:
        return not self.skipped


def _model_name(model_dir: str | Path | None, model: LoadedModel | None) -> str:
    if model is not None and getattr(model, "path", None) is not None:
        return str(model.path)
    return str(model_dir) if model_dir is not None else "bundled default model"


def _jsonable_settings(settings: PredictSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(settings):
        k, v = f.name, getattr(settings, f.name)
        if k == "params" and v is not None:
            v = v.to_dict()
        if k == "cluster" and v is not None:  # ClusterOptions: the options given
            v = {name: x for name, x in asdict(v).items() if x is not None}
        out[k] = v
    return out


def name_problem(path: Path, pattern: str | None) -> str | None:
    """Why ``path``'s name gives no frame: its impossible time stamp, or None when it matches nothing."""
    try:
        parse_frame_name(path, pattern)
    except TimeStampError as e:
        return str(e)
    return None


def unparsed_message(bad: Sequence[Path], n_total: int, pattern: str | None) -> str:
    """One line naming the files whose names match nothing (the first 5, then a count), and those
    whose time stamp is impossible, with the reason."""
    problems = {p: name_problem(p, pattern) for p in bad}
    unmatched = [p for p in bad if problems[p] is None]
    timed = [p for p in bad if problems[p] is not None]
    parts = []
    if unmatched:
        names = ", ".join(p.name for p in unmatched[:5]) + (
            f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
        )
        expected = (
            f"--pattern {pattern!r}"
            if pattern
            else "<cell type>_Phase_<well>_<field>_<DD>d<HH>h<MM>m_<crop> (or give --pattern)"
        )
        parts.append(f"{len(unmatched)} of {n_total} file name(s) do not match {expected}: {names}")
    if timed:
        shown = ", ".join(f"{p.name} ({problems[p]})" for p in timed[:3]) + (
            f" and {len(timed) - 3} more" if len(timed) > 3 else ""
        )
        parts.append(f"{len(timed)} of {n_total} file name(s) have an impossible time stamp: {shown}")
    return "; ".join(parts)


def run_timecourse(
    inputs: Sequence[str | Path] | str | Path,
    out_dir: str | Path,
    model_dir: str | Path | None = None,
    *,
    pattern: str | None = None,
    labels_dir: str | Path | None = None,
    pixel_size_um: float | None = LIVECELL_PIXEL_SIZE_UM,
    min_r2: float = DEFAULT_MIN_R2,
    fit_range: tuple[float, float] | None = None,
    report: bool = True,
    progress: Progress = True,
    settings: PredictSettings | None = None,
    model: LoadedModel | None = None,
    **changes: Any,
) -> TimecourseResult:
    """Parse names → segment (or read ``labels_dir``) → measure → aggregate → fit, and write
    ``OUT/per_image.csv``, ``per_well_time.csv``, ``growth.csv``, ``timecourse.json`` and (with
    ``report``) ``plots/*.png`` and ``index.html``. Label images go to ``OUT/segmentation/``.

    Frames that cannot be used (name matches nothing, unreadable, other image size, no label image)
    are logged (``log.error``, one line each) and listed in ``skipped``;
    the rest are processed. Raises :class:`LivecellError` when there is nothing to analyse.
    ``settings``, ``model`` and ``changes`` go to :func:`segment_frames` (the settings used are
    recorded in ``timecourse.json``).
    """
    check_finite(min_r2, "min_r2", 0, 1)
    if pixel_size_um is not None:
        check_finite(pixel_size_um, "pixel size (µm)", 0, 1000)
    predict_settings = (settings or PredictSettings()).replace(**changes)
    t0 = time.perf_counter()
    out = Path(out_dir)
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    paths, frames, skipped = _named_frames(items, out, pattern)
    t_parse = time.perf_counter()
    if labels_dir is not None:
        seg = find_label_files([f.path for f in frames], labels_dir)
        for _p, m in seg.failed:
            log.error("skipped %s", m)
    else:  # predict_paths names each file it cannot segment itself
        seg = segment_frames(
            [f.path for f in frames],
            out / "segmentation",
            model_dir,
            predict_settings,
            model=model,
            progress=progress,
        )
    skipped += seg.failed
    t_seg = time.perf_counter()
    rows, failed = measure_frames(frames, seg.labels, pixel_size_um)
    for _p, m in failed:
        log.error("skipped %s", m)
    skipped += failed
    if not rows:
        raise LivecellError(f"none of the {len(paths)} image(s) could be measured (see the messages above)")
    per_well_time = aggregate(rows)
    growth = fit_wells(per_well_time, min_r2=min_r2, fit_range=fit_range)
    t_fit = time.perf_counter()
    run_settings = {
        "inputs": [str(p) for p in items],
        "pattern": pattern,
        "labels_dir": str(labels_dir) if labels_dir is not None else None,
        "model": _model_name(model_dir, model) if labels_dir is None else None,
        "pixel_size_um": pixel_size_um,
        "fit": _fit_settings(min_r2, fit_range),
        "predict": _jsonable_settings(predict_settings) if labels_dir is None else None,
    }
    measured = {r["file"] for r in rows}
    res = TimecourseResult(
        out_dir=out,
        frames=[f for f in frames if str(f.path) in measured],
        per_image=rows,
        per_well_time=per_well_time,
        growth=growth,
        skipped=skipped,
        settings=run_settings,
        timings={},
        segmentation=seg,
    )
    with folder_lock(out, "timecourse"):  # a second run writing the same tables at once is refused
        _write_outputs(res, paths, skipped, run_settings, seg, report, (t0, t_parse, t_seg, t_fit))
    return res


def _named_frames(
    items: list[str | Path], out: Path, pattern: str | None
) -> tuple[list[Path], list[Frame], list[tuple[Path, str]]]:
    """The images of ``items`` (those inside ``out`` left out), the frames whose names parse, and
    the files skipped (with their reasons: logged). Raises :class:`LivecellError` when no image is
    found or no name parses."""
    out_abs = out.resolve()
    paths = [p for p in list_images(items) if out_abs not in p.resolve().parents]
    if not paths:
        raise LivecellError(
            f"no images (.tif, .tiff, .png, .jpg, .jpeg) found in {', '.join(map(str, items))}"
        )
    frames, bad = parse_names(paths, pattern)
    skipped: list[tuple[Path, str]] = []
    if bad:
        msg = unparsed_message(bad, len(paths), pattern)
        if not frames:
            raise LivecellError(msg)
        log.error("skipped %s", msg)
        skipped += [
            (p, f"{p}: {name_problem(p, pattern) or 'file name does not match the pattern'}") for p in bad
        ]
    return paths, frames, skipped


def _fit_settings(min_r2: float, fit_range: tuple[float, float] | None) -> dict[str, Any]:
    """The growth-fit settings recorded in ``timecourse.json``."""
    return {
        "min_r2": min_r2,
        "fit_range_h": list(fit_range) if fit_range is not None else None,
        "rule": FIT_RULE if fit_range is None else "all time points in fit_range_h",
    }


def _write_outputs(
    res: TimecourseResult,
    paths: list[Path],
    skipped: list[tuple[Path, str]],
    run_settings: dict[str, Any],
    seg: SegmentationRun,
    report: bool,
    times: tuple[float, float, float, float],
) -> None:
    """The CSV tables, the report and ``timecourse.json`` of :func:`run_timecourse`."""
    t0, t_parse, t_seg, t_fit = times
    out = res.out_dir
    rows, per_well_time, growth = res.per_image, res.per_well_time, res.growth
    res.files["per_image"] = out / "per_image.csv"
    res.files["per_well_time"] = out / "per_well_time.csv"
    res.files["growth"] = out / "growth.csv"
    write_csv(res.files["per_image"], rows, PER_IMAGE_COLUMNS)
    write_csv(res.files["per_well_time"], per_well_time, PER_WELL_TIME_COLUMNS)
    write_csv(res.files["growth"], growth, GROWTH_COLUMNS)
    t_csv = time.perf_counter()
    if report:
        res.files.update(write_report(res))
    t_end = time.perf_counter()
    res.timings = {
        "parse_s": t_parse - t0,
        "segment_s": t_seg - t_parse,
        "network_s": seg.network_s,
        "measure_fit_s": t_fit - t_seg,
        "csv_s": t_csv - t_fit,
        "report_s": t_end - t_csv,
        "total_s": t_end - t0,
    }
    res.files["json"] = out / "timecourse.json"
    write_json_atomic(
        res.files["json"],
        {
            "settings": run_settings,
            "n_inputs": len(paths),
            "n_measured": len(rows),
            "skipped": [{"file": str(p), "reason": m} for p, m in skipped],
            "timings": res.timings,
            "files": {k: str(v) for k, v in res.files.items()},
            # on Dask: images segmented per worker (the worker's address)
            **({"dask_workers": seg.predict.workers} if seg.predict and seg.predict.workers else {}),
        },
    )
