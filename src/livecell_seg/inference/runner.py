"""Run predict over files and folders: serially in this process, or on Dask workers.

:func:`predict_paths` is the one entry point the CLI, the time course, the app and Python users
call; it checks the inputs and the output folder, then dispatches each image's
:func:`livecell_seg.inference.predict.segment_file` to this process or to
:func:`livecell_seg.inference.distributed.run_images` (the same files under the same names).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputFileError, LivecellError
from ..io import folder_lock, list_images
from ..progress import Progress, progress_bar
from .distributed import run_images
from .predict import (
    PredictSettings,
    PredictSummary,
    _earlier_outputs,
    check_backend,
    check_outputs,
    finished,
    load_model_for_predict,
    model_fingerprint,
    open_outputs,
    report_redone,
    resolve_scale,
    run_record,
    segment_file,
    write_run_summary,
)
from .tiling import resolve_device

if TYPE_CHECKING:  # pragma: no cover
    from ..model.folder import LoadedModel

log = logging.getLogger(__name__)

__all__ = ["predict_paths"]


def predict_paths(
    inputs: list[str | Path] | str | Path,
    out_dir: str | Path,
    model_dir: str | Path | None = None,
    settings: PredictSettings | None = None,
    *,
    model: LoadedModel | None = None,
    progress: Progress = True,
    **changes: Any,
) -> PredictSummary:
    """Segment every image in ``inputs`` (files and/or folders) into ``out_dir``.

    ``settings`` (:class:`PredictSettings`; default: its defaults) says which outputs to write and
    how the network runs; ``changes`` replace single fields of it
    (``predict_paths(imgs, out, overlay=True, num_threads=1)``; an unknown name is a TypeError).
    ``model``: an already loaded model (else the folder ``model_dir``, default the bundled one).

    Writes ``<stem>.tif`` (uint16 instance labels) and, on request, ``maps/<stem>.npy``
    (``postprocess.save_maps``), ``overlays/<stem>.png``, ``measurements/<stem>.csv``,
    ``rois/<stem>.zip`` and ``<stem>.geojson`` beside the labels (QuPath detections,
    :func:`livecell_seg.inference.outputs.write_geojson`), each atomically. A file that cannot be read or
    segmented is logged in one line (``log.error``) and skipped. With ``settings.cluster`` the images
    run on Dask workers instead (:func:`livecell_seg.inference.distributed.run_images`: the same files under
    the same names); without it nothing imports Dask.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputFileError(out, "output path exists and is not a folder")
    given = [Path(q) for q in (inputs if isinstance(inputs, list) else [inputs])]
    paths = list_images(given)
    # never treat our own outputs as inputs (``--out`` inside an ``--input`` folder, re-runs)
    earlier = _earlier_outputs(given, paths, out)
    paths = [q for q in paths if q not in set(earlier)]
    if not paths:
        raise LivecellError(
            f"no images (.tif, .tiff, .png, .jpg, .jpeg) found in {', '.join(map(str, given))}"
            + (f" ({len(earlier)} earlier outputs in {out} ignored)" if earlier else "")
        )
    st = (settings or PredictSettings()).replace(**changes)
    check_backend(st.backend, st.device, st.precision)
    check_outputs(paths, out, st)  # refused before anything is written
    with folder_lock(out, "predict"):  # a second run into the same folder at once is refused
        stems = check_outputs(paths, out, st)  # again, now that no other run can change the names
        if st.cluster is not None:
            if model is not None and model_dir is None:
                if model.path is None:
                    raise LivecellError("Dask workers load the model from its folder: pass model_dir")
                model_dir = model.path
            summary = run_images(
                paths,
                out,
                st.cluster,
                model_dir=model_dir,
                settings=st,
                progress=progress,
                stems=stems,
                lock=False,
            )
            summary.ignored_outputs = earlier
            return summary
        return _predict_serial(paths, stems, out, model_dir, st, model, progress, earlier)


def _predict_serial(
    paths: list[Path],
    stems: list[str],
    out: Path,
    model_dir: str | Path | None,
    st: PredictSettings,
    model: LoadedModel | None,
    progress: Progress,
    earlier: list[Path],
) -> PredictSummary:
    """:func:`predict_paths` in this process (the output folder locked by the caller)."""
    import torch

    summary = PredictSummary(out_dir=out, n_inputs=len(paths), ignored_outputs=earlier)
    if model is None:
        model = load_model_for_predict(model_dir, st.device, backend=st.backend, num_threads=st.num_threads)
    dev = resolve_device(None, model)
    if dev == "cpu":
        torch.set_num_threads(int(st.num_threads or os.cpu_count() or 1))
    p = st.params if st.params is not None else model.params
    resolve_scale(
        model, st.scale, st.diameter
    )  # a bad value or a model without a diameter fails before any work
    record = run_record(st, p, model_fingerprint(model_dir, model), model.model_config.predict_scale)
    open_outputs(paths, out)
    states = [finished(st, out, stem, record) if st.resume else "missing" for stem in stems]
    report_redone(out, [stem for stem, state in zip(stems, states) if state == "other"], record, st)
    for path, stem, state in progress_bar(list(zip(paths, stems, states)), progress, "predict"):
        if state == "done":
            summary.skipped_existing.append(path)
            continue
        outcome = segment_file(model, path, stem, out, p, st, record)
        if outcome.error is not None:
            log.error("skipped %s", outcome.error)
        summary.add(outcome)
    write_run_summary(paths, stems, out, summary, st)
    return summary
