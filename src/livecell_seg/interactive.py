"""The web app's page logic as plain functions (no Streamlit here), so it is testable on its own.

The page script (``streamlit_app.py``) only lays out widgets and caches: it decodes an image with
:func:`decode_image`, runs the network once per image, model, TTA and zoom with :func:`network_maps`, and
re-runs only :func:`segment` (the watershed) when a post-processing slider moves.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .app import MAX_UPLOAD_MB
from .data import sample_paths
from .data.coco import annotations_to_labels, load_coco
from .errors import InputFileError, LivecellError
from .evaluation.metrics import coco_mask_ap, match_instances
from .inference.outputs import (
    geojson_bytes,
    measurements_table,
    overlay_image,
    rois_zip_bytes,
    write_measurements_csv,
)
from .inference.quality import agreement, mirror_back
from .inference.tiling import predict_maps_scaled
from .io import (
    IMAGE_SUFFIXES,
    LABELS_SOFTWARE,
    list_images,
    max_image_pixels,
    normalize_image,
    read_image,
    read_labels,
)
from .model.folder import (
    CONFIG_FILE,
    MODEL_FILE,
    POSTPROCESS_FILE,
    default_model_dir,
    load_model_dir,
    read_model_config,
)
from .model.heads import CHANNELS, ParamSpec, get_head
from .model.heads import PARAM_SPECS as PARAM_SPECS  # re-exported: the app reads the registry
from .timecourse.analysis import (
    GROWTH_COLUMNS,
    PER_IMAGE_COLUMNS,
    PER_WELL_TIME_COLUMNS,
    aggregate,
    csv_text,
    fit_wells,
    measure_labels,
    parse_names,
    tabulate,
    unparsed_message,
)
from .timecourse.report import format_doubling_time, growth_curves_png, well_label

if TYPE_CHECKING:  # pragma: no cover
    from .inference.postprocess import PostprocessParams
    from .model.folder import LoadedModel

#: file types the uploader accepts (lower-case, no dot)
UPLOAD_TYPES: tuple[str, ...] = tuple(s.lstrip(".") for s in IMAGE_SUFFIXES)
#: images larger than this are refused in the browser app (use ``livecell-seg predict``)
MAX_PIXELS = 50_000_000
#: memory the page's caches (decoded images, maps, labels, outputs) may hold: ``$LIVECELL_APP_CACHE_MB``
CACHE_MB_ENV = "LIVECELL_APP_CACHE_MB"
DEFAULT_CACHE_MB = 1024
#: test-time augmentation choices: label -> ``predict_maps(tta=...)``
TTA_CHOICES: dict[str, bool | str] = {"none": False, "4 flips": "flips", "8 flips/rotations": True}
#: zoom choices: label -> ``network_maps(scale=...)``; "auto" needs a model that records its cell size
ZOOM_CHOICES: dict[str, float | str] = {
    "1 (as is)": 1.0,
    "auto (cell size)": "auto",
    "0.5": 0.5,
    "0.7": 0.7,
    "1.4": 1.4,
}


def zoom_choices(model: LoadedModel) -> list[str]:
    """The zoom labels offered for ``model`` (no "auto" without a training cell diameter), the
    zoom ``predict`` uses for it by default (the model folder's ``predict_scale``) first."""
    ok = model.model_config.cell_diameter is not None
    labels = [k for k, v in ZOOM_CHOICES.items() if v != "auto" or ok]
    default = model.model_config.predict_scale
    return sorted(labels, key=lambda k: ZOOM_CHOICES[k] != default)


#: human-readable channel names (from the heads registry)
CHANNEL_TITLES = {name: ch.title for name, ch in CHANNELS.items()}


# --------------------------------------------------------------------------------------------------
# a cache bounded by memory
# --------------------------------------------------------------------------------------------------
def nbytes_of(value: Any) -> int:
    """Approximate memory held by ``value``: arrays, bytes and containers of them."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, dict):
        return sum(nbytes_of(k) + nbytes_of(v) for k, v in value.items()) + sys.getsizeof(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(nbytes_of(v) for v in value) + sys.getsizeof(value)
    return sys.getsizeof(value)


def cache_budget_bytes() -> int:
    """The page caches' memory budget: ``$LIVECELL_APP_CACHE_MB`` (default 1024 MB)."""
    v = os.environ.get(CACHE_MB_ENV, "").strip()
    try:
        mb = float(v) if v else DEFAULT_CACHE_MB
    except ValueError:
        mb = DEFAULT_CACHE_MB
    return int(max(mb, 1.0) * 1_000_000)


class MemoryCache:
    """A thread-safe least-recently-used cache that holds at most ``max_bytes`` of values.

    The page keeps decoded images, probability maps, labels and download payloads here: a count
    limit alone (Streamlit's ``max_entries``) lets a few large images take all the memory. A value
    larger than the whole budget is computed and returned but not kept.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached value of ``key``, computing (outside the lock) and storing it on a miss."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit[0]
        value = compute()
        size = nbytes_of(value)
        if size > self.max_bytes:
            return value
        with self._lock:
            if key not in self._items:
                self._items[key] = (value, size)
                self.nbytes += size
            while self.nbytes > self.max_bytes and self._items:
                _k, (_v, sz) = self._items.popitem(last=False)
                self.nbytes -= sz
        return value


# --------------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------------
def digest(data: bytes) -> str:
    """A short content hash of ``data`` (the cache key of an image)."""
    return hashlib.sha1(data).hexdigest()[:16]


def sample_images() -> list[Path]:
    """The bundled LIVECell sample images (real data, CC BY-NC 4.0), sorted by file name."""

    _json, images_dir = sample_paths()
    if not images_dir.is_dir():
        return []
    return sorted(
        (p for p in images_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.name,
    )


def decode_image(name: str, data: bytes) -> np.ndarray:
    """Decode an uploaded file (TIFF incl. LZW/16-bit, PNG, JPEG) into a 2-D grey array.

    Raises :class:`InputFileError` naming ``name`` for an unsupported type, an empty or
    unreadable file, or an image too small or too large for the app.
    """

    suffix = Path(name).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InputFileError(name, f"unsupported file type {suffix or '(none)'!r}; use TIFF, PNG or JPEG")
    if not data:
        raise InputFileError(name, "file is empty")
    if len(data) > MAX_UPLOAD_MB * 1_000_000:
        raise InputFileError(name, f"file larger than {MAX_UPLOAD_MB} MB; use `livecell-seg predict`")
    with tempfile.TemporaryDirectory(prefix="livecell-app-") as d:
        tmp = Path(d) / f"upload{suffix}"
        tmp.write_bytes(data)
        try:
            # the header is checked against the app's limit before any pixel is decoded
            img = read_image(
                tmp, max_pixels=min(MAX_PIXELS, max_image_pixels()), limit_hint="use `livecell-seg predict`"
            )
        except InputFileError as e:
            raise InputFileError(name, e.problem) from None
    if min(img.shape) < 8:
        raise InputFileError(
            name, f"image too small ({img.shape[1]}x{img.shape[0]} pixels; need 8x8 or more)"
        )
    return img


def display_image(image: np.ndarray) -> np.ndarray:
    """The grey image as uint8 for display (percentile-normalized like the network input)."""

    return (np.clip(normalize_image(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def colorize(prob: np.ndarray, cmap: str = "magma") -> np.ndarray:
    """A probability map in [0, 1] as an ``(H, W, 3)`` uint8 colour image."""
    import matplotlib

    lut = (matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)
    idx = np.clip(np.asarray(prob, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return lut[idx]


# --------------------------------------------------------------------------------------------------
# model and network
# --------------------------------------------------------------------------------------------------
def resolve_model_dir(path: str | os.PathLike[str] | None) -> Path:
    """The model folder to use: ``path`` (``~`` expanded) or, when empty, the bundled default.

    Raises :class:`InputFileError` when it is not a model folder (no ``config.json`` / ``model.pt``).
    """

    if path is None or not str(path).strip():
        p = default_model_dir()
        if not (p / MODEL_FILE).is_file():
            raise InputFileError(p, "the bundled model is not installed; choose a model folder")
    else:
        p = Path(str(path).strip()).expanduser()
        if not p.is_dir():
            raise InputFileError(p, "no such model folder")
    p = p.resolve()
    read_model_config(p)
    if not (p / MODEL_FILE).is_file():
        raise InputFileError(p, f"not a model folder (no {MODEL_FILE})")
    return p


def model_key(model_dir: Path) -> str:
    """Cache key of a model folder: its path plus the modification times of its files.

    Retraining or re-tuning a model in place therefore invalidates the cached maps and defaults.
    """

    stamps = []
    for name in (MODEL_FILE, CONFIG_FILE, POSTPROCESS_FILE):
        f = model_dir / name
        stamps.append(str(f.stat().st_mtime_ns) if f.is_file() else "-")
    return f"{model_dir}|{'|'.join(stamps)}"


def load_model(model_dir: Path) -> LoadedModel:
    """Load a model folder for inference (CUDA when available, else CPU)."""
    import torch

    return load_model_dir(model_dir, device="cuda" if torch.cuda.is_available() else "cpu")


def describe_model(model: LoadedModel) -> str:
    """One line about the model: folder, architecture, head, whether post-processing is tuned."""
    cfg = model.model_config
    tuned = "tuned post-processing" if model.postprocess_file else "default post-processing (not tuned)"
    name = model.path.name if model.path is not None else "?"
    return f"`{name}`: {cfg.arch}, {cfg.base_features} base features, depth {cfg.depth}, head `{cfg.head}`, {tuned}"


def network_maps(
    model: LoadedModel, image: np.ndarray, tta: bool | str = False, scale: float | str = 1.0
) -> tuple[np.ndarray, float, float]:
    """Run the network on ``image`` (tiled when large): ``((C, H, W) float32 maps, seconds, zoom)``.

    ``scale``: the zoom the network sees the image at (maps come back at the image's size), or
    ``"auto"``: the zoom ``predict --scale auto`` picks with the model's own post-processing.
    """

    t0 = time.perf_counter()
    if scale == "auto":
        from .inference.predict import segment_image

        res = segment_image(model, image, tta=tta, scale="auto")
        maps, zoom = res.maps, res.scale
    else:
        zoom = float(scale)
        maps = predict_maps_scaled(model, image, zoom, tta=tta)
    return np.asarray(maps, dtype=np.float32), time.perf_counter() - t0, zoom


def mirrored_maps(
    model: LoadedModel, image: np.ndarray, tta: bool | str = False, zoom: float = 1.0
) -> np.ndarray:
    """The maps of the horizontally mirrored image at ``zoom``, mirrored back: the second pass of
    the quality estimate (``predict --quality``)."""

    flipped = np.ascontiguousarray(np.asarray(image)[:, ::-1])
    return np.asarray(
        mirror_back(predict_maps_scaled(model, flipped, float(zoom), tta=tta)), dtype=np.float32
    )


def quality_of(labels: np.ndarray, mirrored: np.ndarray, head: str, params: PostprocessParams) -> float:
    """The quality estimate of ``labels`` (0-1): their agreement with the watershed of the mirrored
    pass's maps (:func:`mirrored_maps`) under the same ``params``, as ``predict --quality``."""

    return agreement(labels, segment(mirrored, head, params))


# --------------------------------------------------------------------------------------------------
# post-processing parameters
# --------------------------------------------------------------------------------------------------
def param_specs(head: str) -> list[ParamSpec]:
    """The parameters that matter for ``head`` (from the heads registry)."""
    return get_head(head).param_specs()


def slider_range(spec: ParamSpec, value: float) -> tuple[float, float]:
    """The slider's (min, max), widened to include ``value`` (a tuned value may lie outside)."""
    return min(spec.lo, value), max(spec.hi, value)


def params_with(base: PostprocessParams, values: dict[str, Any]) -> PostprocessParams:
    """A copy of ``base`` with ``values`` applied (types coerced to the field types)."""
    from .inference.postprocess import PostprocessParams

    d = base.to_dict()
    d.update({k: v for k, v in values.items() if k in d})
    return PostprocessParams.from_dict(d)


def segment(maps: np.ndarray, head: str, params: PostprocessParams) -> np.ndarray:
    """Instance labels (int32, 0 = background) from the maps: the part that re-runs on every slider move."""
    from .inference.postprocess import instances_from_maps

    return instances_from_maps(maps, head, params)


# --------------------------------------------------------------------------------------------------
# ground truth and scores
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _sample_coco():  # noqa: ANN202

    return load_coco(sample_paths()[0])


def sample_ground_truth(name: str, image: np.ndarray) -> np.ndarray | None:
    """Ground-truth labels when ``image`` is one of the bundled LIVECell samples, else None.

    Matched by file name **and** pixel content, so a different image that merely shares a sample's
    name gets no (wrong) ground truth.
    """

    by_name = {p.name: p for p in sample_images()}
    path = by_name.get(Path(name).name)
    if path is None:
        return None
    sample = read_image(path)
    if sample.shape != image.shape or not np.array_equal(sample, image):
        return None
    coco = _sample_coco()
    entry = coco.image_by_file(path.name)
    if entry is None:
        return None
    h, w = int(entry["height"]), int(entry["width"])
    if (h, w) != image.shape:
        return None
    return np.asarray(annotations_to_labels(coco.anns_by_image.get(int(entry["id"]), []), h, w))


def read_ground_truth(name: str, data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Decode an uploaded ground-truth label image (integer TIFF/PNG) of the given ``shape``."""

    suffix = Path(name).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InputFileError(name, f"unsupported file type {suffix or '(none)'!r}; use a label TIFF or PNG")
    with tempfile.TemporaryDirectory(prefix="livecell-app-") as d:
        tmp = Path(d) / f"labels{suffix}"
        tmp.write_bytes(data)
        try:
            labels = read_labels(tmp)
        except InputFileError as e:
            raise InputFileError(name, e.problem) from None
    if labels.shape != tuple(shape):
        raise InputFileError(
            name, f"label image is {labels.shape[1]}x{labels.shape[0]}, the image {shape[1]}x{shape[0]}"
        )
    if int(labels.min()) < 0:
        raise InputFileError(name, "label image has negative values")
    return labels


def scores_of(labels: np.ndarray, fg_prob: np.ndarray) -> dict[int, float]:
    """Per-cell confidence: mean foreground probability (as ``predict`` and the AP use it)."""
    from .inference.postprocess import instance_scores

    return instance_scores(labels, fg_prob)


def score_against(gt: np.ndarray, labels: np.ndarray, scores: dict[int, float]) -> dict[str, float]:
    """Scores of ``labels`` against ground truth ``gt``: LIVECell-protocol mask ``AP``/``AP50``
    (percent; detections ranked by ``scores``) and ``F1``/``precision``/``recall`` at IoU 0.5."""

    m = match_instances(gt, labels, 0.5)
    ap = coco_mask_ap([gt], [labels], [scores])
    return {
        "AP": float(ap["AP"]),
        "AP50": float(ap["AP50"]),
        "F1": float(m.f1),
        "precision": float(m.precision),
        "recall": float(m.recall),
        "gt_cells": int(np.unique(gt[gt > 0]).size),
    }


# --------------------------------------------------------------------------------------------------
# measurements, plots and downloads
# --------------------------------------------------------------------------------------------------
def cell_areas(labels: np.ndarray) -> np.ndarray:
    """Area in pixels of each instance 1..n."""
    counts = np.bincount(np.asarray(labels).ravel())
    return counts[1:][counts[1:] > 0]


def count_cells(labels: np.ndarray) -> int:
    """Number of instances."""
    return int(cell_areas(labels).size)


def area_histogram_png(areas: np.ndarray, width_px: int = 520, height_px: int = 300) -> bytes:
    """A histogram of cell areas as PNG bytes (matplotlib, no pyplot state)."""
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    ax = fig.add_subplot()
    areas = np.asarray(areas)
    if areas.size:
        n_bins = min(40, max(5, int(np.sqrt(areas.size)) * 2))
        lo, hi = float(areas.min()), float(areas.max())
        if lo > 0 and hi / lo > 30:  # cell areas are heavy-tailed: log-spaced bins on a log axis
            ax.hist(areas, bins=np.geomspace(lo, hi * 1.001, n_bins + 1), color="#3b75af", edgecolor="white")
            ax.set_xscale("log")
        else:
            ax.hist(areas, bins=n_bins, color="#3b75af", edgecolor="white")
        med = float(np.median(areas))
        ax.axvline(med, color="#d62728", lw=1.5, label=f"median {med:.0f} px")
        ax.legend(frameon=False)
    else:
        ax.text(0.5, 0.5, "no cells", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("cell area (pixels)")
    ax.set_ylabel("cells")
    ax.spines[["top", "right"]].set_visible(False)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.17, top=0.95)  # (tight_layout is slow)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


#: outline colouring choices: label -> ``overlay_image(color_by=...)``
COLOR_CHOICES = {"one colour per cell": "label", "confidence (red → green)": "score", "yellow": "uniform"}


def overlay(
    image: np.ndarray, labels: np.ndarray, color_by: str = "label", scores: dict[int, float] | None = None
) -> np.ndarray:
    """The instance overlay (``(H, W, 3)`` uint8) drawn by :mod:`livecell_seg.inference.outputs`."""

    return np.asarray(overlay_image(image, labels, color_by=color_by, scores=scores), dtype=np.uint8)


def measurements(
    labels: np.ndarray, image: np.ndarray, scores: dict[int, float] | None = None
) -> dict[str, np.ndarray]:
    """The per-cell measurements of :mod:`livecell_seg.inference.outputs` as columns (one row per cell)."""

    return measurements_table(labels, image, scores)


def labels_tiff_bytes(labels: np.ndarray) -> bytes:
    """The label image as a zlib-compressed TIFF (uint16, or uint32 beyond 65,535 cells), tagged
    like ``predict``'s label images (:data:`livecell_seg.io.LABELS_SOFTWARE`)."""
    import tifffile

    labels = np.asarray(labels)
    dtype = np.uint16 if labels.size == 0 or int(labels.max()) <= np.iinfo(np.uint16).max else np.uint32
    buf = io.BytesIO()
    tifffile.imwrite(buf, labels.astype(dtype), compression="zlib", software=LABELS_SOFTWARE)
    return buf.getvalue()


def png_bytes(rgb: np.ndarray) -> bytes:
    """An ``(H, W[, 3])`` uint8 array as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def measurements_csv_bytes(
    labels: np.ndarray, image: np.ndarray, scores: dict[int, float] | None = None
) -> bytes:
    """The measurements CSV, written by the same function as ``livecell-seg predict`` uses."""

    with tempfile.TemporaryDirectory(prefix="livecell-app-") as d:
        out = Path(d) / "measurements.csv"
        write_measurements_csv(out, labels, image, scores)
        return out.read_bytes()


def rois_zip(labels: np.ndarray) -> bytes:
    """ImageJ/Fiji ROI zip of the instances."""

    return rois_zip_bytes(labels)


def geojson(labels: np.ndarray, image: np.ndarray, scores: dict[int, float] | None = None) -> bytes:
    """The cells as QuPath detections (GeoJSON), the same file as ``predict --geojson``."""

    return geojson_bytes(labels, image, scores)


def download_names(image_name: str) -> dict[str, str]:
    """Download file names derived from the image's name."""
    stem = Path(image_name).stem or "image"
    return {
        "labels": f"{stem}_labels.tif",
        "overlay": f"{stem}_overlay.png",
        "csv": f"{stem}_measurements.csv",
        "rois": f"{stem}_rois.zip",
        "geojson": f"{stem}.geojson",
    }


def error_message(exc: BaseException, name: str | None = None) -> str:
    """A one-line message for the page: our own errors as they are, others with their type."""
    if isinstance(exc, LivecellError):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    where = f"{name}: " if name else ""
    return f"{where}{type(exc).__name__}{': ' + text if text else ''}"


# --------------------------------------------------------------------------------------------------
# time course (several frames of one or more wells)
# --------------------------------------------------------------------------------------------------
#: the time-course view segments at most this many frames (use `livecell-seg timecourse` beyond)
MAX_TIMECOURSE_FRAMES = 300


@dataclass
class TimecourseView:
    """What the time-course view shows: the tables of :mod:`livecell_seg.timecourse.analysis` and the
    frames (sorted by well and time) with one-line messages for the frames left out."""

    frames: list[Any]
    per_image: list[dict[str, Any]]
    per_well_time: list[dict[str, Any]]
    growth: list[dict[str, Any]]
    skipped: list[str]


def folder_frames(folder: str) -> list[Path]:
    """The images in a folder on this computer (recursively), for the time-course view."""

    p = Path(str(folder).strip()).expanduser()
    if not str(folder).strip():
        raise LivecellError("enter a folder")
    if not p.is_dir():
        raise InputFileError(p, "no such folder")
    paths = list_images(p)
    if not paths:
        raise InputFileError(p, "no images (.tif, .tiff, .png, .jpg, .jpeg) in this folder")
    if len(paths) > MAX_TIMECOURSE_FRAMES:
        raise InputFileError(
            p,
            f"{len(paths)} images: the web app takes up to {MAX_TIMECOURSE_FRAMES}; "
            "use `livecell-seg timecourse` for more",
        )
    return paths


def parse_frames(names: list[str], pattern: str | None = None) -> tuple[list[Any], list[str]]:
    """Frames parsed from file names (sorted by well and time) and one message for names that
    match nothing (empty when all match). Raises LivecellError for a bad pattern or no match."""

    frames, bad = parse_names([Path(n) for n in names], (pattern or "").strip() or None)
    if not bad:
        return frames, []
    msg = unparsed_message(bad, len(names), (pattern or "").strip() or None)
    if not frames:
        raise LivecellError(msg)
    return frames, [msg]


def timecourse_view(
    frames: list[Any], labels: dict[str, np.ndarray], pixel_size_um: float | None, skipped: list[str]
) -> TimecourseView:
    """Measure, aggregate and fit exactly as ``livecell-seg timecourse`` does; ``labels`` maps the
    frame's file name (``str(frame.path)``) to its instance labels (missing: the frame failed)."""

    measured = [
        (f, measure_labels(labels[str(f.path)], pixel_size_um), None) for f in frames if str(f.path) in labels
    ]
    rows, wrong = tabulate(measured)
    if not rows:
        raise LivecellError("no frame could be measured")
    pwt = aggregate(rows)
    kept = {r["file"] for r in rows}
    return TimecourseView(
        frames=[f for f in frames if str(f.path) in kept],
        per_image=rows,
        per_well_time=pwt,
        growth=fit_wells(pwt),
        skipped=list(skipped) + [m for _p, m in wrong],
    )


def timecourse_curves_png(view: TimecourseView) -> bytes:
    """The growth curves of ``livecell-seg timecourse``'s report (fold change, fits dashed)."""

    return growth_curves_png(view.per_well_time, view.growth)


def timecourse_csv_bytes(view: TimecourseView, table: str) -> bytes:
    """``per_image``, ``per_well_time`` or ``growth`` as the command's CSV file."""

    rows, cols = {
        "per_image": (view.per_image, PER_IMAGE_COLUMNS),
        "per_well_time": (view.per_well_time, PER_WELL_TIME_COLUMNS),
        "growth": (view.growth, GROWTH_COLUMNS),
    }[table]
    return csv_text(rows, cols).encode()


def growth_table(view: TimecourseView) -> list[dict[str, Any]]:
    """The growth fits as display rows (doubling time with its CI, R², points used, verdict)."""

    return [
        {
            "well": well_label(g["cell_type"], g["well"]),
            "metric": g["metric"],
            "doubling time [95% CI]": format_doubling_time(g),
            "R²": None if g["r2"] != g["r2"] else round(float(g["r2"]), 3),
            "time points used": f"{g['n_used']} of {g['n_points']}",
            "meaningful": "yes" if g["meaningful"] else f"no: {g['reason']}",
        }
        for g in view.growth
    ]
