"""The predict pipeline: image -> network maps -> watershed instances -> files.

- :func:`segment_image`: one image (array) -> :class:`SegmentationResult` (labels, maps, scores, timings).
- :func:`segment_file`: one file -> its output files (:class:`ImageOutcome`); the per-image step that
  the serial and the Dask runs of :func:`livecell_seg.inference.runner.predict_paths` both run
  (files/folders -> ``OUT/<stem>.tif`` uint16 labels, + maps, overlay PNG, measurements CSV,
  ImageJ ROI zip, QuPath GeoJSON on request).
- the settings of a run (:class:`PredictSettings`), its record for ``--resume``, its output names.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputFileError, LivecellError, OutputFileError
from ..io import (
    LABELS_OUTCOME_KEY,
    check_image_size,
    read_image,
    read_json,
    read_labels,
    read_labels_outcome,
    read_labels_record,
    sweep_stale_parts,
    write_json_atomic,
    write_labels,
    write_text_atomic,
)
from ..model.folder import MODEL_FILE, default_model_dir, load_model_dir, model_to_dict, read_model_config
from ..options import SCALE_RANGE
from .outputs import save_overlay_png, write_geojson, write_measurements_csv, write_rois_zip
from .quality import (
    RANKING_FILE,
    SUMMARY_FILE,
    ImageRow,
    mirror_back,
    rank_for_correction,
    ranking_csv_text,
    summary_csv_text,
)
from .scale import estimate_diameter, scaled_shape
from .tiling import predict_maps_scaled, resolve_device

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from ..model.folder import LoadedModel
    from .distributed import ClusterOptions
    from .postprocess import PostprocessParams
    from .quality import ImageRow


@dataclass
class SegmentationResult:
    """Instances of one image: ``labels`` int32 (0 = background), ``maps`` (C,H,W) float32
    probabilities, ``scores`` {label: mean foreground probability}, ``timings`` in seconds,
    ``scale``: the zoom the network ran at, ``diameter``: the median cell diameter (pixels of the
    original image) that chose it (None unless ``scale="auto"``); ``quality``: how trustworthy the
    segmentation is, in [0, 1] (:mod:`livecell_seg.inference.quality`; None unless asked for)."""

    labels: np.ndarray
    maps: np.ndarray
    scores: dict[int, float]
    timings: dict[str, float] = field(default_factory=dict)
    scale: float = 1.0
    diameter: float | None = None
    quality: float | None = None

    @property
    def n_cells(self) -> int:
        return len(self.scores)


@dataclass
class PredictSummary:
    """What :func:`~livecell_seg.inference.runner.predict_paths` did. ``failed``: (path, one-line reason) per skipped file;
    ``timings``: per processed image, seconds of read / network / postprocess / write."""

    out_dir: Path
    n_inputs: int = 0
    processed: list[Path] = field(default_factory=list)
    skipped_existing: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    #: files found in the input folders that are outputs of an earlier run into ``out_dir`` (not inputs)
    ignored_outputs: list[Path] = field(default_factory=list)
    n_cells: dict[str, int] = field(default_factory=dict)
    timings: list[dict[str, float]] = field(default_factory=list)
    scales: dict[str, float] = field(default_factory=dict)
    #: per processed image: its quality estimate (``PredictSettings.quality``)
    quality: dict[str, float] = field(default_factory=dict)
    #: one row per input image (``summary.csv``), filled at the end of the run
    rows: list[ImageRow] = field(default_factory=list)
    #: Dask runs only: images segmented per worker, and the wall time of the whole run
    workers: dict[str, int] = field(default_factory=dict)
    wall_s: float | None = None

    @property
    def ok(self) -> bool:
        return not self.failed

    def add(self, outcome: ImageOutcome) -> None:
        """Record one image's outcome (processed or failed)."""
        if outcome.error is not None:
            self.failed.append((outcome.path, outcome.error))
            return
        self.processed.append(outcome.path)
        self.n_cells[str(outcome.path)] = outcome.n_cells
        if outcome.scale is not None:
            self.scales[str(outcome.path)] = outcome.scale
        if outcome.quality is not None:
            self.quality[str(outcome.path)] = outcome.quality
        if outcome.timings:
            self.timings.append(outcome.timings)
        if outcome.worker is not None:
            self.workers[outcome.worker] = self.workers.get(outcome.worker, 0) + 1

    def median_timings(self) -> dict[str, float]:
        """Median seconds per image of each stage (and ``total``)."""
        if not self.timings:
            return {}
        keys = self.timings[0].keys()
        return {k: float(np.median([t[k] for t in self.timings])) for k in keys}


@dataclass(frozen=True)
class PredictOptions:
    """Which outputs to write per image and how the network runs on it (picklable: the Dask
    runner sends it to the workers)."""

    save_maps: bool = False
    overlay: bool = False
    measurements: bool = False
    rois: bool = False
    geojson: bool = False
    tta: bool | str = False
    tile: int = 512
    overlap: float = 0.25
    batch_size: int = 4
    precision: str = "auto"
    #: None: the model folder's ``predict_scale`` (see :func:`resolve_scale`)
    scale: float | str | None = None
    diameter: float | None = None
    #: estimate each image's quality (one more network pass, on the mirrored image)
    quality: bool = False

    def targets(self, out_dir: Path, stem: str) -> list[Path]:
        """Every file written for the image with output stem ``stem`` (labels first)."""
        t = [out_dir / f"{stem}.tif"]
        if self.save_maps:
            t.append(out_dir / "maps" / f"{stem}.npy")
        if self.overlay:
            t.append(out_dir / "overlays" / f"{stem}.png")
        if self.measurements:
            t.append(out_dir / "measurements" / f"{stem}.csv")
        if self.rois:
            t.append(out_dir / "rois" / f"{stem}.zip")
        if self.geojson:
            t.append(out_dir / f"{stem}.geojson")
        return t


@dataclass(frozen=True)
class PredictSettings(PredictOptions):
    """Everything a predict run needs besides its inputs, output folder and model: the per-image
    :class:`PredictOptions` (outputs, tiling, TTA, zoom) plus how the run executes.

    ``params``: post-processing parameters (default: the model folder's ``postprocess.json``);
    ``device``/``backend`` (``"torch"`` or ``"onnxruntime"``, see :func:`load_model_for_predict`);
    ``num_threads``: CPU threads (default: all cores; per Dask worker: 1); ``resume``: skip images
    whose outputs all exist; ``cluster`` (:class:`livecell_seg.inference.distributed.ClusterOptions`): run the
    images on Dask workers. Picklable: the Dask runner sends it to the workers.
    """

    params: PostprocessParams | None = None
    device: str | None = None
    backend: str = "torch"
    num_threads: int | None = None
    resume: bool = False
    cluster: ClusterOptions | None = None

    def replace(self, **changes: Any) -> PredictSettings:
        """A copy with ``changes`` (field names) replaced; an unknown name is a TypeError naming it."""
        import dataclasses

        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown predict setting(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes) if changes else self


@dataclass
class ImageOutcome:
    """What :func:`segment_file` did with one file: ``error`` is the one-line reason it was
    skipped (None when segmented); ``worker`` names the Dask worker that ran it (None when serial);
    ``scale``: the zoom the network ran at; ``quality``: the image's quality estimate (None: not
    estimated)."""

    path: Path
    n_cells: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    worker: str | None = None
    scale: float | None = None
    quality: float | None = None


#: ``scale="auto"``: a second pass only when the median diameter of the cells found at 1x is more
#: than this factor away from the model's cell diameter. Wide enough that dense small cells a
#: little larger than the model's size (BT474 in LIVECell, 23-25 px) keep zoom 1: zooming out
#: merges them, and zooming out a little gains little on large cells
AUTO_TOLERANCE = 1.25
#: ``scale="auto"``: the zoom range of the second pass
AUTO_LIMITS = (0.25, 1.5)


def model_cell_diameter(model: LoadedModel) -> float:
    """The training cell diameter recorded in the model folder (LivecellError when missing)."""
    d = model.model_config.cell_diameter
    if d is None or not d > 0:
        where = model.path or "this model"
        raise LivecellError(
            f"{where}: the model folder records no training cell diameter (model.cell_diameter in "
            "config.json), needed for --scale auto / --diameter; retrain, or give --scale"
        )
    return float(d)


def resolve_scale(
    model: LoadedModel, scale: float | str | None = None, diameter: float | None = None
) -> float | str:
    """The zoom to run at: ``scale`` (a number or ``"auto"``; None: the model folder's
    ``predict_scale``, 1 unless it records one), or the model's training diameter divided by
    ``diameter`` (the user's cell diameter in pixels) when that is given."""
    if diameter is not None:
        if not (np.isfinite(diameter) and diameter > 0):
            raise LivecellError(f"diameter must be a positive number of pixels, got {diameter!r}")
        from .scale import choose_scale

        return choose_scale(float(diameter), model_cell_diameter(model))
    if scale is None:
        scale = model.model_config.predict_scale
    if scale == "auto":
        model_cell_diameter(model)
        return "auto"

    try:
        s = float(scale)
    except (TypeError, ValueError, OverflowError):
        raise LivecellError(f"scale must be 'auto' or a zoom in [0.05, 20], got {scale!r}") from None
    if isinstance(scale, bool) or not (np.isfinite(s) and SCALE_RANGE[0] <= s <= SCALE_RANGE[1]):
        # a zoom of 1e-9 leaves no pixel to segment (0 cells, exit 0); 1e9 no memory
        raise LivecellError(f"scale must be 'auto' or a zoom in [0.05, 20], got {scale!r}")
    return s


def auto_zoom_for(diameter: float | None, target: float) -> float:
    """The zoom ``--scale auto`` runs its second pass at, given the median diameter (pixels) of the
    cells found at zoom 1: ``target / diameter`` clipped to :data:`AUTO_LIMITS`, or 1 (no second
    pass) when that is within a factor :data:`AUTO_TOLERANCE` of 1, or when no size could be measured."""
    if diameter is None or not (math.isfinite(diameter) and diameter > 0):
        return 1.0
    z = target / diameter
    if 1 / AUTO_TOLERANCE < z < AUTO_TOLERANCE:
        return 1.0
    return float(min(max(z, AUTO_LIMITS[0]), AUTO_LIMITS[1]))


def _auto_zoom(model: LoadedModel, run: Any) -> tuple[float, np.ndarray, np.ndarray, float | None]:
    """``scale="auto"``: one pass at zoom 1, then one at :func:`auto_zoom_for` when the cells found
    are far from the model's cell diameter; (zoom, maps, labels, diameter measured at 1x)."""

    maps, labels = run(1.0)
    measured = estimate_diameter(labels)
    z = auto_zoom_for(measured, model_cell_diameter(model))
    if z != 1.0:
        maps, labels = run(z)
    return z, maps, labels, measured


def segment_image(
    model: LoadedModel,
    image: np.ndarray,
    params: PostprocessParams | None = None,
    *,
    scale: float | str | None = None,
    diameter: float | None = None,
    quality: bool = False,
    **predict_kwargs: Any,
) -> SegmentationResult:
    """Segment one raw 2-D grey image into cell instances.

    ``params`` defaults to the model folder's ``postprocess.json`` (else ``PostprocessParams()``);
    ``predict_kwargs`` go to :func:`livecell_seg.inference.tiling.predict_maps` (tile, overlap, tta, device, ...).
    ``scale``: zoom the image by this factor for the network (maps and labels stay at the image's
    size); None (default): the model folder's ``predict_scale`` (1 unless it records one).
    ``"auto"`` segments at zoom 1, measures the median diameter of the cells found, and when it is
    far from the model's ``cell_diameter`` (the size the network segments best) runs one more
    pass at the zoom that brings them there (:func:`auto_zoom_for`): 1 network pass for most
    images, 1 + zoom² when the cells are much larger or smaller. ``diameter`` (pixels): the cells'
    typical diameter when known; sets the zoom without trying any.
    ``quality``: also estimate how trustworthy the result is (``result.quality``, in [0, 1]): one
    more network pass at the chosen zoom on the horizontally mirrored image, segmented the same
    way, and the agreement of the two label images (:func:`livecell_seg.inference.quality.agreement`).
    """
    from .postprocess import instance_scores, instances_from_maps

    p = params if params is not None else model.params
    zoom = resolve_scale(model, scale, diameter)
    t_net = t_post = 0.0

    def run(s: float, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray]:
        nonlocal t_net, t_post

        # the zoomed image is held in memory too: it obeys the same size limit as a file
        check_image_size(f"zoomed by {s:g}", *scaled_shape(image.shape, s), what="the image")
        t0 = time.perf_counter()
        if mirrored:
            flipped = np.ascontiguousarray(np.asarray(image)[:, ::-1])
            maps = mirror_back(predict_maps_scaled(model, flipped, s, **predict_kwargs))
        else:
            maps = predict_maps_scaled(model, image, s, **predict_kwargs)
        t1 = time.perf_counter()
        labels = instances_from_maps(maps, model.head, p).astype(np.int32, copy=False)
        t_net += t1 - t0
        t_post += time.perf_counter() - t1
        return maps, labels

    measured: float | None = None
    if zoom == "auto":
        s, maps, labels, measured = _auto_zoom(model, run)
    else:
        s = float(zoom)
        maps, labels = run(s)
    t0 = time.perf_counter()
    scores = instance_scores(labels, maps[0])
    t_post += time.perf_counter() - t0
    timings = {"network_s": t_net, "postprocess_s": t_post}
    q: float | None = None
    if quality:
        from .quality import agreement

        t0, net0, post0 = time.perf_counter(), t_net, t_post
        q = agreement(labels, run(s, mirrored=True)[1])
        # the mirrored pass is counted apart: network_s and postprocess_s stay those of the result
        t_net, t_post = net0, post0
        timings["quality_s"] = time.perf_counter() - t0
    return SegmentationResult(
        labels=labels,
        maps=maps,
        scores=scores,
        timings=timings,
        scale=s,
        diameter=measured,
        quality=q,
    )


#: network backends of predict: PyTorch (CPU or CUDA) or ONNX Runtime (CPU)
BACKENDS = ("torch", "onnxruntime")


def check_backend(backend: str, device: str | None = None, precision: str = "auto") -> None:
    """Refuse (one-line :class:`LivecellError`) a backend that does not exist or cannot run with
    ``device`` / ``precision`` (onnxruntime: CPU, float32)."""
    if backend not in BACKENDS:
        raise LivecellError(f"unknown backend {backend!r} (choose {' or '.join(BACKENDS)})")
    if backend == "onnxruntime":
        if device not in (None, "auto", "cpu"):
            raise LivecellError(f"the onnxruntime backend runs on the CPU (got device {device!r})")
        if precision == "bf16":
            raise LivecellError("--precision bf16 needs the torch backend (onnxruntime runs float32)")


def load_model_for_predict(
    model_dir: str | Path | None,
    device: str | None = None,
    backend: str = "torch",
    num_threads: int | None = None,
) -> LoadedModel:
    """Load ``model_dir`` (default: the bundled model) with a one-line error when it is missing.

    ``backend="onnxruntime"`` runs the network with ONNX Runtime on the CPU
    (:mod:`livecell_seg.inference.onnx_backend`, the ``[onnx]`` extra) with ``num_threads``.
    """

    check_backend(backend, device)
    if model_dir is None:
        d = default_model_dir()
        if not (d / "config.json").is_file() or not (d / "model.pt").is_file():
            raise LivecellError(
                f"no bundled model at {d} (train one with 'livecell-seg train' and pass --model DIR)"
            )
    else:
        d = Path(model_dir)
        if not d.is_dir():
            raise LivecellError(f"{d}: model folder not found")
    if backend == "onnxruntime":
        from .onnx_backend import load_onnx_model

        return load_onnx_model(d, num_threads=num_threads)
    dev = resolve_device(device if device not in (None, "auto") else "auto")
    return load_model_dir(d, device=dev)


#: ``OUT/predict_names.json``: which input file wrote which output name (kept across runs)
NAMES_FILE = "predict_names.json"


#: longest output stem, in bytes: ``<stem>.geojson`` and the temporary names next to it must fit
#: the file system's 255 bytes (a 251-byte input name used to fail on them)
MAX_STEM_BYTES = 200


def _short_stem(stem: str) -> str:
    """``stem``, or for a name too long for the outputs' file names a shortened one with a hash
    of the whole (different long names stay different)."""
    import hashlib

    raw = os.fsencode(stem)
    if len(raw) <= MAX_STEM_BYTES:
        return stem
    head = raw[: MAX_STEM_BYTES - 13].decode("utf-8", "ignore")
    return f"{head}~{hashlib.sha1(raw).hexdigest()[:12]}"


def _output_stems(paths: list[Path], out: Path | None = None, save: bool = True) -> list[str]:
    """Output stem per input; a repeated stem (same name in two folders) gets ``-2``, ``-3``, ...

    With ``out``, the names given in earlier runs (``OUT/predict_names.json``) are kept, and new
    inputs never take a name already given to another file: adding ``c/x.tif`` to a run that
    wrote ``x.tif`` for ``a/x.tif`` does not shift anything (``--resume`` stays right). ``save``
    records the names in that file.
    """

    known: dict[str, str] = {}
    names_path = out / NAMES_FILE if out is not None else None
    if names_path is not None and names_path.is_file():
        try:
            d = read_json(names_path)
            known = {str(k): str(v) for k, v in d.items()} if isinstance(d, dict) else {}
        except LivecellError:
            known = {}
    keys = [str(p.resolve()) for p in paths]
    taken = set(known.values())
    stems: list[str | None] = [known.get(k) for k in keys]
    used: set[str] = set()
    for i, st in enumerate(stems):  # an earlier name taken twice (edited by hand): reassign
        if st is not None and st in used:
            stems[i] = None
        elif st is not None:
            used.add(st)
    for i, p in enumerate(paths):
        if stems[i] is None:
            s, n = _short_stem(p.stem), 1
            while (s if n == 1 else f"{s}-{n}") in taken | used:
                n += 1
            stems[i] = s if n == 1 else f"{s}-{n}"
            used.add(stems[i])
            known[keys[i]] = stems[i]
    if names_path is not None and save:
        write_json_atomic(names_path, dict(sorted(known.items())))
    return [str(s) for s in stems]


def model_fingerprint(model_dir: str | Path | None = None, model: LoadedModel | None = None) -> str:
    """A short hash of the network that segments: its weights file and its config (for a model
    that has no folder, its weights in memory). Part of :func:`run_record`."""
    import hashlib
    import json

    h = hashlib.sha256()
    folder = Path(model.path) if model is not None and model.path is not None else None
    if model is None:
        folder = Path(model_dir) if model_dir is not None else default_model_dir()
    if folder is not None and (folder / MODEL_FILE).is_file():
        with open(folder / MODEL_FILE, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        mcfg = model.model_config if model is not None else read_model_config(folder)[1]
    else:  # an in-memory network (the app, tests)
        try:
            for k, v in model.net.state_dict().items():  # type: ignore[union-attr]
                h.update(k.encode())
                h.update(v.detach().cpu().numpy().tobytes())
        except Exception:  # noqa: BLE001 - not a torch network: identified by its config alone
            h.update(b"?")
        mcfg = model.model_config  # type: ignore[union-attr]
    h.update(json.dumps(model_to_dict(mcfg), sort_keys=True).encode())
    return h.hexdigest()[:16]


def run_record(
    options: PredictOptions, params: PostprocessParams, fingerprint: str, predict_scale: Any = None
) -> dict[str, Any]:
    """What decides a label image's content, as written into it (``io.write_labels``'s record):
    the network (``fingerprint``), the post-processing parameters, the zoom and how the network
    runs, and whether the quality was estimated (only when it was: records of earlier versions stay
    valid). ``--resume`` keeps a finished image only when its record equals the run's
    (:func:`same_settings`)."""
    scale = options.scale if options.scale is not None else predict_scale
    rec = {
        "model": fingerprint,
        "params": params.to_dict(),
        "scale": scale if scale is None or isinstance(scale, str) else float(scale),
        "diameter": None if options.diameter is None else float(options.diameter),
        "tta": options.tta,
        "tile": int(options.tile),
        "overlap": float(options.overlap),
        "precision": options.precision,
    }
    if options.quality:
        rec["quality"] = True
    return rec


def same_settings(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether a label image made with record ``old`` is what a run with record ``new`` would
    make: equal records, except that an image with a quality estimate also serves a run that
    asks for none."""
    if old is None:
        return False
    if not new.get("quality"):
        old = {k: v for k, v in old.items() if k != "quality"}
    return old == new


def finished(options: PredictOptions, out: Path, stem: str, record: dict[str, Any] | None) -> str:
    """``"done"`` when every output of ``stem`` exists and its labels were made with ``record``;
    ``"missing"`` when an output is missing; ``"other"`` when they were made with other settings
    (or by a version that kept no record)."""

    targets = options.targets(out, stem)
    if not all(t.is_file() for t in targets):
        return "missing"
    if record is None:
        return "done"
    return "done" if same_settings(read_labels_record(targets[0]), record) else "other"


def settings_change(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """The settings that differ between two records, for a message (``params.fg_threshold 0.5 -> 0.4``)."""
    if old is None:
        return "no settings recorded (an older version or another program)"
    diffs = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [
                f"{k}.{q} {a.get(q)} -> {b.get(q)}" for q in sorted(set(a) | set(b)) if a.get(q) != b.get(q)
            ]
        elif a != b:
            diffs.append(f"{k} {a} -> {b}")
    return ", ".join(diffs[:4]) + (f" and {len(diffs) - 4} more" if len(diffs) > 4 else "")


def report_redone(out: Path, redone: list[str], record: dict[str, Any], options: PredictOptions) -> None:
    """One warning for the finished images that ``--resume`` segments again because their
    settings differ from this run's."""
    if not redone:
        return

    old = read_labels_record(options.targets(out, redone[0])[0])
    log.warning(
        "%d finished image(s) in %s were made with other settings (%s): segmented again",
        len(redone),
        out,
        settings_change(old, record),
    )


def _earlier_outputs(inputs: list[Path], expanded: list[Path], out: Path) -> list[Path]:
    """Files that folder expansion found among ``out``'s own outputs (``OUT/*.tif``,
    ``OUT/overlays/*.png``); files named explicitly are never excluded."""
    out_abs = out.resolve()
    explicit = {q.resolve() for q in inputs if q.is_file()}
    found = []
    for q in expanded:
        r = q.resolve()
        if r in explicit:
            continue
        if (r.parent == out_abs and r.suffix.lower() == ".tif") or (
            r.parent == out_abs / "overlays" and r.suffix.lower() == ".png"
        ):
            found.append(q)
    return found


def check_outputs(paths: list[Path], out: Path, options: PredictOptions) -> list[str]:
    """The output stem of each of ``paths`` in ``out`` (names given by earlier runs kept); writes
    nothing. Refuses the run (one-line :class:`InputFileError`) when an output would overwrite one
    of its inputs."""
    stems = _output_stems(paths, out, save=False)
    input_files = {q.resolve(): q for q in paths}
    for stem in stems:
        for t in options.targets(out, stem):
            if t.resolve() in input_files:
                raise InputFileError(
                    input_files[t.resolve()],
                    f"would be overwritten by its own output; choose another --out than {out}",
                )
    return stems


def open_outputs(paths: list[Path], out: Path) -> None:
    """The first writes of a run, once every check passed: create ``out``, delete the temporary
    files a killed earlier run left there and record the output names (``predict_names.json``)."""

    out.mkdir(parents=True, exist_ok=True)
    sweep_stale_parts(out)
    _output_stems(paths, out)


def segment_file(
    model: LoadedModel,
    path: Path,
    stem: str,
    out_dir: Path,
    params: PostprocessParams,
    options: PredictOptions,
    record: dict[str, Any] | None = None,
) -> ImageOutcome:
    """Read ``path``, segment it and write its outputs (``options.targets``), each atomically.

    A file that cannot be read or segmented (also: out of memory) gives an outcome with a one-line
    ``error`` naming it (nothing is raised for it); the caller reports it and goes on. An output
    that cannot be written (full or read-only file system) raises
    :class:`~livecell_seg.errors.OutputFileError`: the run stops. ``record`` (:func:`run_record`)
    is written into the label image.
    """

    out = Path(out_dir)
    try:
        t0 = time.perf_counter()
        image = read_image(path)
        t1 = time.perf_counter()
        res = segment_image(
            model,
            image,
            params,
            tile=options.tile,
            overlap=options.overlap,
            tta=options.tta,
            batch_size=options.batch_size,
            precision=options.precision,
            scale=options.scale,
            diameter=options.diameter,
            quality=options.quality,
        )
        t2 = time.perf_counter()
        if record is not None:  # what came out, for summary.csv on --resume (not a setting)
            record = {**record, LABELS_OUTCOME_KEY: outcome_record(res.n_cells, res.scale, res.quality)}
        write_labels(out / f"{stem}.tif", res.labels, record=record)
        if options.save_maps:
            from .postprocess import save_maps as _save_maps

            _save_maps(out / "maps" / f"{stem}.npy", res.maps, model.head)
        if options.overlay:
            save_overlay_png(out / "overlays" / f"{stem}.png", image, res.labels)
        if options.measurements:
            write_measurements_csv(out / "measurements" / f"{stem}.csv", res.labels, image, res.scores)
        if options.rois:
            write_rois_zip(out / "rois" / f"{stem}.zip", res.labels)
        if options.geojson:
            write_geojson(out / f"{stem}.geojson", res.labels, image, res.scores)
        t3 = time.perf_counter()
    except OutputFileError:
        raise
    except (LivecellError, ValueError, OSError, RuntimeError, MemoryError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if str(path) not in msg:
            msg = f"{path}: {msg}"
        return ImageOutcome(path=path, error=msg)
    timings = {
        "read_s": t1 - t0,
        "network_s": res.timings["network_s"],
        "postprocess_s": res.timings["postprocess_s"],
        "write_s": t3 - t2,
        "total_s": t3 - t0,
    }
    if "quality_s" in res.timings:
        timings["quality_s"] = res.timings["quality_s"]
    return ImageOutcome(path=path, n_cells=res.n_cells, timings=timings, scale=res.scale, quality=res.quality)


def outcome_record(n_cells: int, zoom: float | None, quality: float | None) -> dict[str, Any]:
    """What came out of one image, kept in its label TIFF (``io.read_labels_outcome``)."""
    return {
        "n_cells": int(n_cells),
        "zoom": None if zoom is None else float(zoom),
        "quality": None if quality is None else float(quality),
    }


def outcome_from_labels(path: Path, label_file: Path) -> ImageOutcome:
    """The outcome of an image segmented earlier, from its label TIFF: the recorded cells, zoom
    and quality, or (a label image without that record) its cells counted."""

    rec = read_labels_outcome(label_file)
    if rec is not None and isinstance(rec.get("n_cells"), int):
        z, q = rec.get("zoom"), rec.get("quality")
        return ImageOutcome(
            path=path,
            n_cells=int(rec["n_cells"]),
            scale=float(z) if isinstance(z, (int, float)) else None,
            quality=float(q) if isinstance(q, (int, float)) and 0.0 <= q <= 1.0 else None,
        )
    counts = np.bincount(read_labels(label_file).ravel().astype(np.int64))
    return ImageOutcome(path=path, n_cells=int(np.count_nonzero(counts[1:])))


def summary_rows(
    paths: list[Path], stems: list[str], out: Path, summary: PredictSummary, options: PredictOptions
) -> list[ImageRow]:
    """One :class:`~livecell_seg.inference.quality.ImageRow` per input image of a run: segmented
    now, kept by ``--resume`` (read from its label TIFF) or failed."""

    failed = dict(summary.failed)
    done = {str(q) for q in summary.processed}
    kept = set(summary.skipped_existing)
    rows = []
    for path, stem in zip(paths, stems):
        label_file = options.targets(out, stem)[0]
        if path in failed:
            rows.append(ImageRow(image=str(path), status="failed", error=failed[path]))
        elif str(path) in done:
            rows.append(
                ImageRow(
                    image=str(path),
                    labels=label_file.name,
                    n_cells=summary.n_cells.get(str(path)),
                    zoom=summary.scales.get(str(path)),
                    quality=summary.quality.get(str(path)),
                )
            )
        elif path in kept:
            try:
                o = outcome_from_labels(path, label_file)
            except LivecellError:  # unreadable now: the row says so, the run stands
                rows.append(ImageRow(image=str(path), labels=label_file.name, status="resumed"))
                continue
            rows.append(
                ImageRow(
                    image=str(path),
                    labels=label_file.name,
                    status="resumed",
                    n_cells=o.n_cells,
                    zoom=o.scale,
                    quality=o.quality,
                )
            )
    return rows


def write_run_summary(
    paths: list[Path], stems: list[str], out: Path, summary: PredictSummary, options: PredictOptions
) -> None:
    """Write ``OUT/summary.csv`` (one row per input image: cells, zoom, quality) and, when the
    quality was estimated, ``OUT/correction_order.csv`` (the images worst first), atomically;
    fills ``summary.rows``."""

    summary.rows = summary_rows(paths, stems, out, summary, options)
    write_text_atomic(out / SUMMARY_FILE, summary_csv_text(summary.rows))
    ranked = rank_for_correction(summary.rows)
    if ranked:
        write_text_atomic(out / RANKING_FILE, ranking_csv_text(ranked))
    else:  # an earlier run's ranking would no longer match summary.csv
        (out / RANKING_FILE).unlink(missing_ok=True)
