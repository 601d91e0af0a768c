"""Segment many images on a Dask cluster: local worker processes, an existing scheduler, or SLURM.

Optional: ``pip install 'livecell-seg[dask]'`` (distributed, dask-jobqueue). Nothing here imports
Dask until a run starts, and commands only call in here when a cluster option is given, so the
serial path never imports it.

- :class:`ClusterOptions` says where the workers come from (the matching command-line options:
  :func:`livecell_seg.commands.predict.add_cluster_arguments`, read back by
  :func:`~livecell_seg.commands.predict.cluster_options_from_args`: None when none was given, run
  serially).
- :func:`run_images` runs :func:`livecell_seg.inference.predict.segment_file` (the per-image step of serial
  ``predict``) on the workers, so the files written are the same, bit for bit:

  * each worker process loads the model once and keeps it (one per process; reloaded only when
    the folder or the weights file changes), and runs the network with 1 torch thread by default;
  * images go to the workers in tasks of a few images (:func:`images_per_task`), so that the
    scheduler's cost per task stays small next to the work in it;
  * workers write every output atomically into the shared output folder; the client only
    collects one small record per image (cells, timings, error, worker) and shows the progress bar;
  * a worker that dies loses nothing: Dask re-runs its unfinished tasks on other workers, and an
    image whose outputs were already written in this run is not segmented again; a task that
    keeps killing workers is split into single images, and an image that still kills its worker
    is reported as failed; ``resume`` skips images whose outputs exist from any earlier run;
  * a file that cannot be read is reported in one line and skipped, exactly as in serial mode.

Another command adopts it in three lines::

    from livecell_seg.commands.predict import add_cluster_arguments, cluster_options_from_args
    add_cluster_arguments(parser)                       # in add_arguments(parser)
    cluster = cluster_options_from_args(args)           # in run(args): None without the options
    summary = predict_paths(inputs, out_dir, model_dir, ..., cluster=cluster)   # or run_images(...)
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LivecellError
from ..progress import Progress, ProgressBar

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from ..model.folder import LoadedModel
    from .predict import ImageOutcome, PredictSettings, PredictSummary

#: how users get the optional dependencies
INSTALL_HINT = "pip install 'livecell-seg[dask]'"
#: at most this many images per task (a killed worker loses at most one task's unfinished images)
MAX_IMAGES_PER_TASK = 8
#: aim for at least this many tasks per worker (load balance at the end of the run)
TASKS_PER_WORKER = 4
#: cluster kinds started through dask-jobqueue
CLUSTER_KINDS = ("slurm",)
#: the ``ImageOutcome.worker`` of images found finished in this run after their worker was lost
RECOVERED = "(written by a lost worker)"

_WALLTIME = re.compile(r"^\d+(-\d{1,2})?(:\d{1,2}){0,2}$")
_MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*([kmgtp]i?b?|b)?\s*$", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+]*://", re.IGNORECASE)


@dataclass(frozen=True)
class ClusterOptions:
    """Where the Dask workers come from: exactly one of ``scheduler`` (address of a running
    scheduler), ``local_workers`` (start that many single-threaded worker processes here) or
    ``cluster`` (``"slurm"``: start ``jobs`` batch jobs of ``cores`` cores, ``memory`` and
    ``walltime`` each through dask-jobqueue; values left None come from its config).
    ``images_per_task`` overrides :func:`images_per_task`'s choice."""

    scheduler: str | None = None
    local_workers: int | None = None
    cluster: str | None = None
    jobs: int | None = None
    cores: int | None = None
    memory: str | None = None
    walltime: str | None = None
    images_per_task: int | None = None

    def __post_init__(self) -> None:
        modes = [
            f
            for f, v in (
                ("--scheduler", self.scheduler),
                ("--local-workers", self.local_workers),
                ("--cluster", self.cluster),
            )
            if v is not None
        ]
        batch = {
            "--jobs": self.jobs,
            "--cores": self.cores,
            "--memory": self.memory,
            "--walltime": self.walltime,
        }
        if self.cluster is None and any(v is not None for v in batch.values()):
            given = ", ".join(k for k, v in batch.items() if v is not None)
            raise LivecellError(f"{given} only go with --cluster slurm")
        if len(modes) != 1:
            raise LivecellError(
                "give exactly one of --scheduler, --local-workers, --cluster"
                + (f" (got {' and '.join(modes)})" if modes else "")
            )
        if self.local_workers is not None and self.local_workers < 1:
            raise LivecellError(f"--local-workers must be at least 1, got {self.local_workers}")
        most = MAX_LOCAL_WORKERS_PER_CORE * (os.cpu_count() or 1)
        if self.local_workers is not None and self.local_workers > most:
            # each worker process loads torch and the model (~0.3-1 GB): bounded by the cores here
            raise LivecellError(
                f"--local-workers {self.local_workers}: at most {most} on this machine "
                f"({MAX_LOCAL_WORKERS_PER_CORE} per core; each worker holds its own copy of the model)"
            )
        if self.scheduler is not None and not re.match(
            r"^([a-z][a-z0-9+]*://)?[^\s/]+$", self.scheduler, re.I
        ):
            raise LivecellError(
                f"--scheduler: not a scheduler address: {self.scheduler!r} (e.g. tcp://host:8786)"
            )
        if self.cluster is not None and self.cluster not in CLUSTER_KINDS:
            raise LivecellError(f"--cluster must be one of {', '.join(CLUSTER_KINDS)}, got {self.cluster!r}")
        for flag, v in (
            ("--jobs", self.jobs),
            ("--cores", self.cores),
            ("--images-per-task", self.images_per_task),
        ):
            if v is not None and v < 1:
                raise LivecellError(f"{flag} must be at least 1, got {v}")
        if self.memory is not None and not _MEMORY.match(self.memory):
            raise LivecellError(f"--memory: not a size: {self.memory!r} (e.g. 16GB)")
        if self.walltime is not None and not _WALLTIME.match(self.walltime):
            raise LivecellError(
                f"--walltime: not a SLURM time: {self.walltime!r} (e.g. 02:00:00, 90:00 or 1-00:00:00)"
            )

    @property
    def scheduler_address(self) -> str | None:
        """``scheduler`` with ``tcp://`` added when it names no protocol."""
        if self.scheduler is None:
            return None
        return self.scheduler if _SCHEME.match(self.scheduler) else f"tcp://{self.scheduler}"


#: ``--local-workers`` at most this many per core of the machine
MAX_LOCAL_WORKERS_PER_CORE = 4


def images_per_task(n_images: int, n_workers: int, override: int | None = None) -> int:
    """Images per task: ``override``, else enough tasks for :data:`TASKS_PER_WORKER` per worker
    (so the last tasks finish together), at most :data:`MAX_IMAGES_PER_TASK` (so the scheduler's
    cost per task, a few ms, is well under 1% of a task: BENCHMARKS.md, dask section)."""
    if override is not None:
        return max(1, int(override))
    per = math.ceil(max(1, n_images) / (TASKS_PER_WORKER * max(1, n_workers)))
    return max(1, min(MAX_IMAGES_PER_TASK, per))


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise LivecellError(f"--scheduler, --local-workers and --cluster need Dask: {INSTALL_HINT}") from None
    return distributed


# ------------------------------------------------------------------------------------------------
# clusters


def _import_jobqueue() -> Any:
    """``dask_jobqueue``, imported without its side effect on this process: its ``runner`` module
    replaces the Ctrl+C handler with ``sys.exit()`` at import time, which would turn a later Ctrl+C
    into a silent exit 0 instead of the interruption every command reports."""
    import signal
    import threading

    in_main = threading.current_thread() is threading.main_thread()
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    try:
        import dask_jobqueue
    except ImportError:
        raise LivecellError(f"--cluster slurm needs dask-jobqueue: {INSTALL_HINT}") from None
    finally:
        for s, handler in saved.items():
            if handler is not None and signal.getsignal(s) is not handler:
                signal.signal(s, handler)
    return dask_jobqueue


def slurm_cluster_kwargs(options: ClusterOptions) -> dict[str, Any]:
    """Keyword arguments for ``dask_jobqueue.SLURMCluster`` from the options and the Dask config.

    One single-threaded worker process per core (``processes = cores``) unless the config sets
    ``jobqueue.slurm.processes``; ``cores`` and ``memory`` must come from the options or the config.
    """
    try:
        import dask.config
    except ImportError:
        raise LivecellError(f"--cluster slurm needs dask-jobqueue: {INSTALL_HINT}") from None
    _import_jobqueue()
    cores = options.cores or dask.config.get("jobqueue.slurm.cores", None)
    memory = options.memory or dask.config.get("jobqueue.slurm.memory", None)
    if not cores or not memory:
        raise LivecellError(
            "--cluster slurm needs --cores and --memory (or jobqueue.slurm.cores and .memory in a Dask "
            "config file such as ~/.config/dask/jobqueue.yaml)"
        )
    kw: dict[str, Any] = {"cores": int(cores), "memory": str(memory)}
    if options.walltime is not None:
        kw["walltime"] = options.walltime
    if dask.config.get("jobqueue.slurm.processes", None) is None:
        kw["processes"] = int(cores)
    if dask.config.get("jobqueue.slurm.name", None) in (None, "dask-worker"):
        kw["job_name"] = "livecell-seg"
    return kw


def make_slurm_cluster(options: ClusterOptions, **extra: Any) -> Any:
    """A ``dask_jobqueue.SLURMCluster`` for ``options`` (no job submitted yet; ``extra`` overrides)."""
    return _import_jobqueue().SLURMCluster(**{**slurm_cluster_kwargs(options), **extra})


@contextlib.contextmanager
def open_client(options: ClusterOptions) -> Iterator[tuple[Any, int]]:
    """A connected ``distributed.Client`` and the number of worker threads planned (0 = unknown);
    a local or SLURM cluster is started here and shut down on exit."""
    distributed = _import_distributed()
    if options.scheduler is not None:
        addr = options.scheduler_address
        try:
            client = distributed.Client(addr)  # waits distributed.comm.timeouts.connect (30 s)
        except (OSError, TimeoutError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise LivecellError(f"cannot reach the Dask scheduler at {addr} ({msg})") from None
        with client:
            yield client, 0
    elif options.local_workers is not None:
        n = int(options.local_workers)
        with contextlib.ExitStack() as stack:
            stack.enter_context(_one_task_per_thread())
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",  # a free port: never a clash, never public
                )
            )
            # a worker process that imported torch can take over the nanny's 4 s to exit on a busy
            # CPU; the nanny then kills it and says so: that is not news when we close the cluster
            stack.callback(_quiet_logger, "distributed.nanny")
            client = stack.enter_context(distributed.Client(cluster))
            yield client, n
    else:
        kw = slurm_cluster_kwargs(options)
        with (
            _one_task_per_thread(),
            make_slurm_cluster(options) as cluster,
            distributed.Client(cluster) as client,
        ):
            jobs = int(options.jobs or 1)
            cluster.scale(jobs=jobs)
            yield client, jobs * int(kw.get("processes") or 1)


def _one_task_per_thread() -> contextlib.AbstractContextManager[Any]:
    """Dask config for the schedulers we start: a worker holds only the task it runs. (Dask's
    default sends one more ahead; when a worker dies, every task it held counts as suspect, so an
    image queued next to one that kills workers could be blamed too. The idle gap this costs a
    worker between tasks is one round trip, a few ms against ~1 s of work.)"""
    import dask.config

    return dask.config.set({"distributed.scheduler.worker-saturation": 1.0})


def _quiet_logger(name: str) -> None:
    import logging

    logging.getLogger(name).setLevel(logging.ERROR)


# ------------------------------------------------------------------------------------------------
# worker side


@dataclass(frozen=True)
class _Job:
    """What every task of one run needs (small, picklable)."""

    out_dir: str
    model_dir: str | None
    #: the run's settings (``cluster`` dropped): outputs, network, device, backend, params
    settings: PredictSettings
    threads: int
    run_start_ns: int
    #: the settings record written into each label image (``predict.run_record``)
    record: dict[str, Any] | None = None


#: this worker process's model: {(folder, device, weights mtime, backend): LoadedModel}, one at a time
_WORKER_MODEL: dict[tuple[Any, ...], LoadedModel] = {}
#: how many times this process loaded a model (tests check it is once per worker)
_WORKER_LOADS = [0]


def worker_model(
    model_dir: str | None, device: str | None, backend: str = "torch", threads: int | None = None
) -> LoadedModel:
    """The model for this worker process, loaded once and kept (reloaded when the weights change);
    ``backend="onnxruntime"``: an ONNX Runtime session with ``threads`` threads."""
    from ..model.folder import MODEL_FILE, default_model_dir
    from .predict import load_model_for_predict

    folder = Path(model_dir) if model_dir is not None else default_model_dir()
    try:
        stamp = (folder / MODEL_FILE).stat().st_mtime_ns
    except OSError:
        stamp = None
    key = (str(folder), device, stamp, backend)
    model = _WORKER_MODEL.get(key)
    if model is None:
        _WORKER_MODEL.clear()
        model = load_model_for_predict(model_dir, device, backend=backend, num_threads=threads)
        _WORKER_MODEL[key] = model
        _WORKER_LOADS[0] += 1
    return model


def worker_stats() -> dict[str, Any]:
    """This worker process's pid, model loads and torch threads (for tests, via ``client.run``)."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    return {"pid": os.getpid(), "model_loads": _WORKER_LOADS[0], "torch_threads": threads}


def _done_in_this_run(targets: list[Path], since_ns: int) -> bool:
    try:
        return all(t.stat().st_mtime_ns >= since_ns for t in targets)
    except OSError:
        return False


def _run_batch(items: list[tuple[str, str]], job: _Job) -> list[ImageOutcome]:
    """Worker task: segment ``items`` ((path, output stem) pairs) with the worker's cached model."""
    import torch
    from distributed import get_worker

    from .predict import outcome_from_labels, segment_file

    name = str(get_worker().address)
    if torch.get_num_threads() != job.threads:
        torch.set_num_threads(job.threads)
    try:
        model = worker_model(job.model_dir, job.settings.device, job.settings.backend, job.threads)
    except LivecellError as e:  # re-raised plainly: one line on the client, and always picklable
        raise LivecellError(f"Dask worker {name}: {e}") from None
    params = job.settings.params if job.settings.params is not None else model.params
    out = Path(job.out_dir)
    outcomes = []
    for path_s, stem in items:
        path = Path(path_s)
        targets = job.settings.targets(out, stem)
        if _done_in_this_run(targets, job.run_start_ns):  # its worker died before reporting it
            try:
                recovered = outcome_from_labels(path, targets[0])  # cells, zoom and quality recorded
                recovered.worker = RECOVERED
                outcomes.append(recovered)
                continue
            except LivecellError:
                pass  # unreadable: segment it again
        try:
            outcome = segment_file(model, path, stem, out, params, job.settings, job.record)
        except LivecellError as e:  # an unwritable output stops the run: one plain, picklable line
            raise LivecellError(str(e)) from None
        outcome.worker = name
        outcomes.append(outcome)
    return outcomes


# ------------------------------------------------------------------------------------------------
# client side


def _absolute(path: Path) -> Path:
    """``path`` made absolute for the workers, symbolic links kept (their targets may have other
    names on other machines, the links' own paths are what the user sees everywhere)."""
    return Path(os.path.abspath(path))


def _filesystem_now_ns(folder: Path) -> int:
    """The current time by the clock that stamps files in ``folder`` (on a network file system
    this is the server's, which is what the workers' output files will be compared with)."""
    fd, name = tempfile.mkstemp(prefix=".livecell-seg-run.", dir=folder)
    try:
        os.close(fd)
        return os.stat(name).st_mtime_ns
    finally:
        os.unlink(name)


def remove_orphan_parts(targets: Iterable[Path]) -> int:
    """Delete the temporary files (``io.atomic_path``'s ``.part``) that a killed worker left next to
    ``targets``, called once every task of the run is over. Unlike ``io.sweep_stale_parts`` (run at
    the start: this host's dead processes only) it also removes those of workers on other hosts,
    but only for this run's own outputs. Returns how many."""
    from ..io import part_file_target, part_key

    by_dir: dict[Path, set[str]] = {}
    for t in targets:
        by_dir.setdefault(t.parent, set()).add(part_key(t.name))
    removed = 0
    for d, names in by_dir.items():
        if not d.is_dir():
            continue
        for f in d.glob(".*.part"):
            if part_file_target(f.name) in names:  # names: part_key of each target
                with contextlib.suppress(OSError):
                    f.unlink()
                    removed += 1
    return removed


def summary_line(summary: PredictSummary) -> str:
    """One line for the client: images/s over the run and images per worker."""
    done = sum(summary.workers.values())
    rate = done / summary.wall_s if summary.wall_s else 0.0
    workers = {w: n for w, n in summary.workers.items() if w != RECOVERED}
    per = ", ".join(f"{w} {n}" for w, n in sorted(workers.items()))
    line = f"dask: {done} image(s) in {summary.wall_s or 0:.1f} s ({rate:.2f} images/s) on {len(workers)} worker(s): {per}"
    if RECOVERED in summary.workers:
        line += f"; {summary.workers[RECOVERED]} found written by a lost worker"
    return line


def run_images(
    paths: list[Path],
    out_dir: str | Path,
    cluster: ClusterOptions,
    *,
    model_dir: str | Path | None = None,
    settings: PredictSettings | None = None,
    progress: Progress = True,
    command: str = "predict",
    on_outcome: Callable[[ImageOutcome, Any], None] | None = None,
    stems: list[str] | None = None,
    lock: bool = True,
    **changes: Any,
) -> PredictSummary:
    """Segment ``paths`` into ``out_dir`` on Dask workers; the files equal serial ``predict_paths``'.

    ``model_dir`` (default: the bundled model), ``paths`` and ``out_dir`` must be reachable under
    the same names from every worker (a shared file system; relative paths are made absolute here).
    ``settings`` (:class:`~livecell_seg.inference.predict.PredictSettings`, with ``changes`` replacing single
    fields, as in ``predict_paths``; its ``cluster`` is not read: ``cluster`` is):
    ``num_threads`` is torch (or onnxruntime, ``backend``) threads per worker (default 1: one worker
    per core); with ``backend="onnxruntime"`` the ONNX file is found or exported here, once, before
    the workers start (:func:`livecell_seg.inference.onnx_backend.onnx_session_for`). ``resume`` skips
    images whose outputs all exist. Failures are logged (``log.error``), one line each; ``command``
    names the progress bar and the Dask tasks.
    ``on_outcome(outcome, client)`` is called on the client after each image (progress hooks, tests).
    ``stems``: the output names (:func:`~livecell_seg.inference.predict.check_outputs`, which runs here when
    they are not given: names of earlier runs kept, a run whose outputs would overwrite its inputs
    refused before anything is written).
    ``lock``: hold the output folder's lock (``io.folder_lock``) for the run; False when the
    caller holds it (``predict_paths``).
    Returns the same :class:`~livecell_seg.inference.predict.PredictSummary` as serial predict, plus images
    per worker (``workers``) and the run's wall time (``wall_s``).
    """
    if lock:
        return _run_images_locked(
            paths,
            out_dir,
            cluster,
            model_dir=model_dir,
            settings=settings,
            progress=progress,
            command=command,
            on_outcome=on_outcome,
            stems=stems,
            **changes,
        )
    from .predict import check_outputs, open_outputs, write_run_summary

    distributed = _import_distributed()
    opts, threads, model_dir = _checked_run(settings, changes, model_dir)
    out = Path(out_dir)
    paths = [Path(p) for p in paths]
    if stems is None:  # output names as serial predict gives them (predict_names.json kept)
        stems = check_outputs(paths, out, opts)
    elif len(stems) != len(paths):
        raise ValueError(f"{len(stems)} output stems for {len(paths)} images")
    record = _run_record(opts, model_dir)
    summary, todo = _images_to_do(paths, stems, out, opts, record)
    if not todo:
        open_outputs(paths, out)
        summary.wall_s = 0.0
        write_run_summary(paths, stems, out, summary, opts)
        return summary
    if opts.backend == "onnxruntime":  # the ONNX file exported here once, not by every worker
        from .onnx_backend import onnx_session_for

        onnx_session_for(_model_folder(model_dir), num_threads=1)
    original = {str(_absolute(p)): p for p, _ in todo}
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        client, planned = stack.enter_context(open_client(cluster))  # bad options fail here, first
        open_outputs(paths, out)  # as serially: the folder, stale .part files swept, names recorded
        out_abs = _absolute(out)
        job = _Job(
            out_dir=str(out_abs),
            model_dir=None if model_dir is None else str(model_dir),
            settings=opts,
            threads=threads,
            run_start_ns=_filesystem_now_ns(out_abs),
            record=record,
        )
        bar = ProgressBar(progress, command, total=len(paths), initial=len(summary.skipped_existing))
        stack.callback(bar.close)
        tasks = _submit_all(client, planned, todo, job, cluster, command)
        stack.callback(tasks.cancel)

        def collect(o: ImageOutcome) -> None:
            _named_as_given(o, original)
            summary.add(o)
            bar.update(1)
            if on_outcome is not None:
                on_outcome(o, client)

        tasks.collect(distributed, original, collect)
    summary.wall_s = time.perf_counter() - t0
    _sort_as_given(summary, paths)
    remove_orphan_parts(t for _, stem in todo for t in opts.targets(out_abs, stem))
    write_run_summary(paths, stems, out, summary, opts)
    return summary


def _run_images_locked(
    paths: list[Path],
    out_dir: str | Path,
    cluster: ClusterOptions,
    *,
    settings: PredictSettings | None,
    command: str,
    stems: list[str] | None,
    **rest: Any,
) -> PredictSummary:
    """:func:`run_images` holding the output folder's lock; without ``stems`` the output names are
    checked first (refused before anything is written: the lock creates the folder)."""
    from ..io import folder_lock

    if stems is None:
        from .predict import PredictSettings, check_outputs

        check_outputs([Path(q) for q in paths], Path(out_dir), settings or PredictSettings())
    with folder_lock(out_dir, command):
        return run_images(
            paths, out_dir, cluster, settings=settings, command=command, stems=stems, lock=False, **rest
        )


def _model_folder(model_dir: str | Path | None) -> Path:
    """``model_dir``, or the bundled model's folder when None."""
    from ..model.folder import default_model_dir

    return Path(model_dir) if model_dir is not None else default_model_dir()


def _checked_run(
    settings: PredictSettings | None, changes: dict[str, Any], model_dir: str | Path | None
) -> tuple[PredictSettings, int, Path | None]:
    """The run's settings (``cluster`` dropped), torch threads per worker and the model folder
    made absolute, checked here before any work, with the one-line errors of a serial run."""
    from ..model.folder import LoadedModel, read_model_config
    from .predict import PredictSettings, check_backend, resolve_scale

    opts = (settings or PredictSettings()).replace(**changes, cluster=None)
    check_backend(opts.backend, opts.device, opts.precision)
    threads = int(opts.num_threads or 1)
    if threads < 1:
        raise LivecellError(f"threads per worker must be at least 1, got {threads}")
    if model_dir is not None:
        folder = Path(model_dir)
        if not folder.is_dir():
            raise LivecellError(f"{folder}: model folder not found")
        read_model_config(folder)  # a one-line error here rather than on every worker
        model_dir = _absolute(folder)
    if opts.scale not in (None, 1.0) or opts.diameter is not None:  # fail before any work, as serially
        folder = _model_folder(model_dir)
        mcfg = read_model_config(folder)[1]
        resolve_scale(LoadedModel(net=None, model_config=mcfg, path=folder), opts.scale, opts.diameter)
    return opts, threads, model_dir


def _run_record(opts: PredictSettings, model_dir: str | Path | None) -> dict[str, Any]:
    """The settings record written into each label image (``predict.run_record``)."""
    from ..model.folder import read_model_config, read_params
    from .predict import model_fingerprint, run_record

    folder = _model_folder(model_dir)
    params = opts.params if opts.params is not None else read_params(folder)
    return run_record(opts, params, model_fingerprint(folder), read_model_config(folder)[1].predict_scale)


def _images_to_do(
    paths: list[Path], stems: list[str], out: Path, opts: PredictSettings, record: dict[str, Any]
) -> tuple[PredictSummary, list[tuple[Path, str]]]:
    """The run's summary (images already done with these settings skipped, under ``resume``) and
    the (path, stem) pairs left to segment; outputs made with other settings are reported."""
    from .predict import PredictSummary, finished, report_redone

    summary = PredictSummary(out_dir=out, n_inputs=len(paths))
    todo: list[tuple[Path, str]] = []
    redone: list[str] = []
    for path, stem in zip(paths, stems):
        state = finished(opts, out, stem, record) if opts.resume else "missing"
        if state == "done":
            summary.skipped_existing.append(path)
        else:
            todo.append((path, stem))
            if state == "other":
                redone.append(stem)
    report_redone(out, redone, record, opts)
    return summary, todo


def _submit_all(
    client: Any, planned: int, todo: list[tuple[Path, str]], job: _Job, cluster: ClusterOptions, command: str
) -> _Tasks:
    """Every image of ``todo`` submitted, in tasks of :func:`images_per_task` images (``planned``:
    the worker threads expected, 0 = those that joined)."""
    n_workers = planned or sum(client.nthreads().values())
    if not client.nthreads():
        log.info("waiting for Dask workers to join %s", client.scheduler.address)
    per = images_per_task(len(todo), n_workers, cluster.images_per_task)
    tasks = _Tasks(client, job, command)
    for i in range(0, len(todo), per):
        tasks.submit([(str(_absolute(p)), s) for p, s in todo[i : i + per]])
    return tasks


class _Tasks:
    """The Dask tasks of one run: batches of images submitted to ``client``, collected as they
    finish; a batch whose workers keep dying is split into single images."""

    def __init__(self, client: Any, job: _Job, command: str) -> None:
        self.client = client
        self.job = job
        self.prefix = f"livecell-seg-{command}-{uuid.uuid4().hex[:8]}"
        self.batches: dict[str, list[tuple[str, str]]] = {}
        self.running: dict[str, Any] = {}  # key -> future, until its result is in
        self.kills: collections.Counter[tuple[str, str]] = collections.Counter()  # single-image KilledWorker

    def submit(self, items: list[tuple[str, str]]) -> Any:
        key = f"{self.prefix}-{len(self.batches)}"
        self.batches[key] = items
        self.running[key] = fut = self.client.submit(_run_batch, items, self.job, key=key, pure=False)
        return fut

    def cancel(self) -> None:
        self.client.cancel(list(self.running.values()))

    def collect(
        self, distributed: Any, original: dict[str, Path], handle: Callable[[ImageOutcome], None]
    ) -> None:
        """Call ``handle`` on each image's outcome as its task finishes (``original``: the paths as
        the user gave them, by the absolute path sent to the workers)."""
        from .predict import ImageOutcome

        pending = distributed.as_completed(list(self.running.values()))
        for fut in pending:
            items = self.batches[fut.key]
            try:
                outcomes = fut.result()
            except distributed.KilledWorker:
                # Dask gave up on the task after its workers died (allowed-failures): split it to
                # find the image that kills workers; a single image gets one more chance, since on
                # a scheduler we did not start, a task queued on the dying worker is blamed too
                if len(items) > 1 or self.kills[items[0]] < 1:
                    for item in items:
                        self.kills[item] += len(items) == 1
                        pending.add(self.submit([item]))
                    continue
                shown = original.get(items[0][0], Path(items[0][0]))
                outcomes = [
                    ImageOutcome(
                        path=shown,
                        error=f"{shown}: its Dask worker died each time it was segmented (out of memory?)",
                    )
                ]
            finally:
                # forget the result at once: a worker that dies later must not make Dask redo it
                self.running.pop(fut.key, None)
                fut.release()
            for o in outcomes:
                handle(o)


def _named_as_given(o: ImageOutcome, original: dict[str, Path]) -> None:
    """``o``'s path (and its error message) as the user gave it, as serially; errors logged."""
    sent, o.path = str(o.path), original.get(str(o.path), o.path)
    if o.error is not None:
        o.error = o.error.replace(sent, str(o.path))  # named as the user gave it, as serially
        log.error("skipped %s", o.error)


def _sort_as_given(summary: PredictSummary, paths: list[Path]) -> None:
    """Processed and failed images in the order of ``paths`` (tasks finish in any order)."""
    order = {p: i for i, p in enumerate(paths)}
    summary.processed.sort(key=lambda p: order.get(p, 0))
    summary.failed.sort(key=lambda f: order.get(f[0], 0))
