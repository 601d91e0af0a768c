"""The end-to-end demo: the whole pipeline on the bundled real LIVECell sample, on a CPU, in minutes.

:func:`run_demo` runs, in order, the functions the CLI commands run (nothing demo-specific in between):

1. split    ``data.splits.split_datasets`` + ``write_splits``  (``livecell-seg split``)
2. convert  ``data.convert.convert`` per split                 (``livecell-seg convert``)
3. EDA      ``data.eda.make_report``                           (``livecell-seg eda``)
4. train    ``training.train`` with ``livecell_seg/configs/demo.yaml`` (``livecell-seg train --config``)
5. tune     ``tuning.tune_model_dir`` on the val split         (``livecell-seg tune``)
6. predict  ``runner.predict_paths`` on the val images        (``livecell-seg predict``)
7. evaluate ``evaluation.evaluate`` + ``write_report``         (``livecell-seg evaluate``)
8. the bundled model, when present: predict + evaluate on the same val images

Training is time-boxed: a few training steps are timed on this CPU first and the run gets as many
steps as fit in ``minutes`` (so the cosine schedule completes), with ``trainer.max_minutes`` as a
hard stop. Output folder (``DIR``)::

    DIR/index.html                the results table and links to everything below
    DIR/summary.json              every stage's time, the split, training, tuned parameters, metrics
    DIR/splits/                   train.json, val.json, split_report.{json,md}
    DIR/labels/{train,val}/       ground-truth label TIFFs
    DIR/eda/index.html            EDA report
    DIR/train/                    run folder; DIR/train/model is the model folder (+ postprocess.json)
    DIR/predictions/              <stem>.tif labels, overlays/*.png, measurements/*.csv, maps/*.npy
    DIR/evaluation/               report.html, metrics.json
    DIR/bundled/{predictions,evaluation}/   the same for the bundled model

Re-running with the same ``DIR`` redoes the cheap stages, resumes an interrupted training (or
reuses a finished one) when the settings are the same, and retrains otherwise; ``fresh`` redoes all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .data import sample_paths
from .errors import InputFileError, LivecellError
from .progress import log_to
from .reports import format_metric

MARKER = ".livecell-seg-demo"
#: folders and files of DIR that the demo writes (and may delete to redo them)
OWNED = (
    "splits",
    "labels",
    "eda",
    "train",
    "predictions",
    "evaluation",
    "bundled",
    "summary.json",
    "index.html",
)
#: the demo's training config, shipped inside the package (works from a wheel too)
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "demo.yaml"
DEFAULT_MINUTES = 4.0
QUICK_MINUTES = 0.5
#: --quick: a tiny network and a few steps (about a minute end to end)
QUICK_OVERRIDES = [
    "model.base_features=8",
    "model.depth=3",
    "data.crop_size=128",
    "data.batch_size=4",
    "data.samples_per_epoch=16",
    "optim.warmup_steps=0",
    "optim.lr=5e-3",
]
QUICK_STEPS = 64
#: --pretrained: fine-tuning from the bundled weights
PRETRAINED_OVERRIDES = ["optim.lr=5e-4", "optim.warmup_steps=0"]
#: --quick tuning grid (the full demo uses the 'small' grid of livecell-seg tune)
QUICK_GRID = {"fg_threshold": [0.3, 0.5], "min_size": [0, 20]}
TABLE_METRICS = (("AP", "AP", True), ("AP50", "AP50", True), ("AFNR", "AFNR", False))
TABLE_METRICS += (("mSA", "mSA", False), ("F1_50", "F1@0.5", False))


@dataclass
class DemoOptions:
    """Settings of :func:`run_demo`. ``minutes``: training time box (default 4, quick 0.5)."""

    out: Path = Path("demo_output")
    pretrained: bool = False
    minutes: float | None = None
    quick: bool = False
    fresh: bool = False
    seed: int = 0
    config: Path | None = None  # default: DEFAULT_CONFIG (livecell_seg/configs/demo.yaml)
    bundled: bool = True  # also evaluate the bundled model when it exists

    @property
    def train_minutes(self) -> float:
        if self.minutes is not None:
            return float(self.minutes)
        return QUICK_MINUTES if self.quick else DEFAULT_MINUTES


# ---------------------------------------------------------------------------------------- helpers
def machine_info() -> dict[str, Any]:
    """CPU model, core count, load average, Python/torch/numpy versions (torch only if importable)."""
    import numpy as np

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        info["torch"] = None
    return info


def bundled_model_ready() -> bool:
    """Whether the bundled model folder holds weights and a config."""
    from .model.folder import CONFIG_FILE, MODEL_FILE, default_model_dir

    d = default_model_dir()
    return (d / CONFIG_FILE).is_file() and (d / MODEL_FILE).is_file()


def measure_step_seconds(
    model_cfg: Any, batch_size: int, crop: int, threads: int | None, repeats: int = 2
) -> float:
    """Seconds of one CPU training step (forward, backward, AdamW) of ``model_cfg`` on random data."""
    import torch

    from .model.folder import build_model

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        net = build_model(model_cfg).train()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        x = torch.randn(batch_size, model_cfg.in_channels, crop, crop)
        y = torch.rand(batch_size, model_cfg.out_channels, crop, crop)
        times = []
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.binary_cross_entropy_with_logits(net(x), y).backward()
            opt.step()
            if i:  # the first step warms up allocators and kernels
                times.append(time.perf_counter() - t0)
        return float(sorted(times)[len(times) // 2])
    finally:
        torch.set_num_threads(old)


def plan_steps(
    minutes: float, step_s: float, steps_per_epoch: int, overhead_s: float = 20.0, margin: float = 1.25
) -> tuple[int, int]:
    """(max_steps, val_every_n_epochs) for a time box: whole epochs, about four validations, the
    last one on the final weights. ``margin`` covers data loading and logging around each step."""
    budget = max(minutes * 60.0 - overhead_s, 0.0)
    steps = int(budget / max(step_s * margin, 1e-6))
    epochs = max(1, steps // max(steps_per_epoch, 1))
    val_every = max(1, epochs // 4)
    epochs = max(val_every, (epochs // val_every) * val_every)
    return epochs * steps_per_epoch, val_every


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _q(path: Path) -> str:
    """A path as a quoted YAML (JSON) string for a dotted override."""
    return json.dumps(str(path))


def _rm(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def prepare_output(out: Path, fresh: bool) -> None:
    """Create ``out`` (marked as a demo folder); refuse a non-empty folder the demo did not make."""
    if out.exists() and not out.is_dir():
        raise InputFileError(out, "exists and is not a folder")
    if out.is_dir() and not (out / MARKER).exists() and any(out.iterdir()):
        raise InputFileError(out, "is not empty and is not a demo output folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    from .io import write_text_atomic

    write_text_atomic(
        out / MARKER, "written by livecell-seg demo; re-running it here overwrites these outputs\n"
    )
    if fresh:
        for name in OWNED:
            _rm(out / name)


class _Progress:
    """Numbered stage headers with timings; collects each stage's record for summary.json."""

    def __init__(self, console: Any, total: int) -> None:
        self.console = console
        self.total = total
        self.i = 0
        self.stages: list[dict[str, Any]] = []

    @contextmanager
    def stage(self, name: str, what: str) -> Iterator[dict[str, Any]]:
        self.i += 1
        from rich.markup import escape

        self.console.print(f"[bold cyan]\\[{self.i}/{self.total}] {escape(what)}[/]")
        rec: dict[str, Any] = {"stage": name}
        t0 = time.perf_counter()
        yield rec
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        self.stages.append(rec)
        self.console.print(f"    [green]done[/] in {rec['seconds']:.1f} s")

    def note(self, text: str) -> None:
        self.console.print(f"    {text}", highlight=False)


def _train_progress_callback(say: Any, total_steps: int, every_s: float = 20.0) -> Any:
    import lightning.pytorch as pl

    class DemoTrainProgress(pl.Callback):
        """Prints the step, loss and elapsed time every ``every_s`` seconds, and each validation."""

        def __init__(self) -> None:
            self.t0 = time.perf_counter()
            self.last = self.t0

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            now = time.perf_counter()
            if now - self.last >= every_s:
                self.last = now
                loss = trainer.callback_metrics.get(
                    "train/loss_step", trainer.callback_metrics.get("train/loss")
                )
                loss_s = f", loss {float(loss):.3f}" if loss is not None else ""
                say(f"step {trainer.global_step}/{total_steps}{loss_s} ({now - self.t0:.0f} s)")

        def on_validation_end(self, trainer: Any, *args: Any) -> None:
            msa = trainer.callback_metrics.get("val/mSA")
            if msa is not None:
                say(
                    f"validation at step {trainer.global_step}: mSA {float(msa):.3f} "
                    f"({time.perf_counter() - self.t0:.0f} s)"
                )

    return DemoTrainProgress()


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Hide Lightning's info lines and known harmless warnings (the demo prints its own progress)."""
    import warnings

    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for pattern in (
            ".*does not have many workers.*",
            ".*isinstance\\(treespec, LeafSpec\\).*",
            ".*limit_val_batches.*",
            ".*number of training batches.*",
            ".*Checkpoint directory .* exists and is not empty.*",
        ):
            warnings.filterwarnings("ignore", message=pattern)
        try:
            yield
        finally:
            for lg, lv in zip(loggers, levels):
                lg.setLevel(lv)


# ---------------------------------------------------------------------------------------- stages
def _split(opts: DemoOptions, json_path: Path, out: Path, prog: _Progress, console: Any) -> tuple[Any, dict]:
    from .data.splits import print_split_table, split_datasets, write_splits

    result = split_datasets([json_path], val=0.2, seed=opts.seed)
    written = write_splits(result, out / "splits")
    print_split_table(result, console=console)
    for w in result.warnings:
        prog.note(f"[yellow]note:[/] {w}")
    return result, written


def _file_names(result: Any, split: str) -> list[str]:
    ds = result.dataset
    by_id = {int(im["id"]): im["file_name"] for im in ds.images}
    return sorted(by_id[i] for i in result.image_ids(split))


def _train_config(
    opts: DemoOptions, out: Path, images: Path, config_path: Path, model_dir: Path | None
) -> tuple[Any, list[str]]:
    from .training.config import load_config

    overrides = [
        f"out_dir={out / 'train'}",
        f"seed={opts.seed}",
        f"data.train=[{{labels: {_q(out / 'labels' / 'train')}, images: {_q(images)}}}]",
        f"data.val=[{{labels: {_q(out / 'labels' / 'val')}, images: {_q(images)}}}]",
        f"trainer.max_minutes={opts.train_minutes}",
        f"trainer.progress_bar={str(False).lower()}",
    ]
    if opts.quick:
        overrides += QUICK_OVERRIDES
    if model_dir is not None:
        from .model.folder import read_model_config

        _, mcfg = read_model_config(model_dir)
        overrides += [f"model.{k}={json.dumps(v)}" for k, v in asdict(mcfg).items()]
        overrides += [f"init_from={_q(model_dir)}", *PRETRAINED_OVERRIDES]
    return load_config(config_path, overrides), overrides


def _train(
    opts: DemoOptions, out: Path, images: Path, config_path: Path, split_key: str, prog: _Progress
) -> tuple[Path, dict[str, Any]]:
    from .io import read_json, write_json_atomic
    from .model.folder import default_model_dir
    from .training.config import apply_overrides, config_from_dict, config_to_dict
    from .training.trainer import CHECKPOINT_DIR, LAST_CKPT, SUMMARY_FILE, train

    init = default_model_dir() if opts.pretrained else None
    cfg, overrides = _train_config(opts, out, images, config_path, init)
    run_dir = out / "train"
    settings = {
        "config_sha": _sha(config_path.read_text()),
        "overrides": overrides,
        "split": split_key,
        "bundled_sha": _sha((init / "config.json").read_text()) if init else None,
    }
    plan_file = run_dir / "demo_plan.json"
    old = read_json(plan_file) if plan_file.is_file() else None
    if old is not None and old.get("settings") != settings:
        old = None
    if old is not None and (run_dir / SUMMARY_FILE).is_file() and (run_dir / "model" / "model.pt").is_file():
        prog.note(f"already trained with these settings in {run_dir} (reused; --fresh retrains)")
        return run_dir / "model", {**read_json(run_dir / SUMMARY_FILE), **old, "reused": True}
    if old is not None and (run_dir / CHECKPOINT_DIR / LAST_CKPT).is_file():
        prog.note(f"resuming the interrupted training in {run_dir}")
        plan = old
        max_steps, val_every = int(old["max_steps"]), int(old["val_every_n_epochs"])
    else:
        if run_dir.exists():
            _rm(run_dir)
        spe = max(1, -(-(cfg.data.samples_per_epoch or 1) // cfg.data.batch_size))
        if opts.quick:
            step_s = None
            max_steps, val_every = QUICK_STEPS, max(1, QUICK_STEPS // spe)
        else:
            step_s = measure_step_seconds(
                cfg.model, cfg.data.batch_size, cfg.data.crop_size, cfg.trainer.threads
            )
            max_steps, val_every = plan_steps(opts.train_minutes, step_s, spe)
            prog.note(
                f"one training step takes {step_s:.2f} s here: {max_steps} steps "
                f"({max_steps * cfg.data.batch_size} crops of {cfg.data.crop_size} px) fit in "
                f"{opts.train_minutes:g} min"
            )
        plan = {
            "settings": settings,
            "measured_step_seconds": step_s,
            "max_steps": max_steps,
            "val_every_n_epochs": val_every,
            "steps_per_epoch": spe,
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(plan_file, plan)
    d = config_to_dict(cfg)
    apply_overrides(d, [f"optim.max_steps={max_steps}", f"trainer.val_every_n_epochs={val_every}"])
    cfg = config_from_dict(d)
    m = cfg.model
    prog.note(
        f"U-Net {m.head}, {m.base_features} base features, depth {m.depth}; "
        + (f"starting from the bundled model ({init})" if init else "from scratch")
        + f"; {max_steps} steps, validation every {val_every * plan['steps_per_epoch']} steps; "
        f"hard stop after {opts.train_minutes:g} min"
    )
    say = prog.note
    train_log = run_dir / "train.log"  # Lightning's prints and train()'s log; the demo prints its progress
    try:
        with (
            train_log.open("a") as f,
            contextlib.redirect_stdout(f),
            log_to(logging.StreamHandler(f), "livecell_seg.training.trainer"),
            _quiet_lightning(),
        ):
            train(cfg, extra_callbacks=[_train_progress_callback(say, max_steps)])
    except SystemExit:  # Lightning's answer to Ctrl+C: sys.exit(1) after a graceful shutdown
        prog.note(
            f"training interrupted; the same command resumes it from {run_dir / CHECKPOINT_DIR / LAST_CKPT}"
        )
        raise KeyboardInterrupt from None
    summary = read_json(run_dir / SUMMARY_FILE)
    if summary.get("global_step", 0) < max_steps:
        prog.note(
            f"[yellow]stopped by the {opts.train_minutes:g} min time box at step {summary['global_step']}[/]"
        )
    return run_dir / "model", {**summary, **plan, "reused": False}


def _predict_and_evaluate(
    model_dir: Path | None,
    val_json: Path,
    val_images: list[Path],
    images: Path,
    dest: Path,
    prog: _Progress,
) -> dict[str, Any]:
    """Predict ``val_images`` with ``model_dir`` (None: bundled) into ``dest/predictions`` and
    evaluate them into ``dest/evaluation``; returns timings and the metrics."""
    from .evaluation.evaluate import evaluate, write_metrics_json, write_report
    from .inference.runner import predict_paths

    pred_dir, eval_dir = dest / "predictions", dest / "evaluation"
    for d in (pred_dir, eval_dir):
        _rm(d)
    t0 = time.perf_counter()
    s = predict_paths(
        val_images,
        pred_dir,
        model_dir,
        save_maps=True,
        overlay=True,
        measurements=True,
        device="cpu",
        progress=False,
    )
    if s.failed:
        raise LivecellError(f"predict failed on {s.failed[0][0]}: {s.failed[0][1]}")
    t_pred = time.perf_counter() - t0
    med = s.median_timings()
    prog.note(
        f"predicted {len(s.processed)} images, {sum(s.n_cells.values())} cells, "
        f"median {1000 * med.get('total_s', 0):.0f} ms/image -> {pred_dir}"
    )
    t0 = time.perf_counter()
    result = evaluate(val_json, pred_dir, images_dir=images, progress=False)  # warnings: logged
    write_metrics_json(result, eval_dir / "metrics.json")
    report = write_report(result, eval_dir)
    t_eval = time.perf_counter() - t0
    prog.note(f"evaluation report -> {report}")
    m = result.metrics
    keep = ("AP", "AP50", "AP75", "AFNR", "mSA", "SA50", "F1_50", "precision_50", "recall_50", "PQ", "dice")
    return {
        "predict_seconds": round(t_pred, 2),
        "evaluate_seconds": round(t_eval, 2),
        "predict_median_ms_per_image": {k: round(1000 * v, 1) for k, v in med.items()},
        "n_cells_predicted": int(sum(s.n_cells.values())),
        "metrics": {
            "overall": {k: m.get(k) for k in keep} | {"n_images": m["n_images"], "n_gt": m["n_gt_instances"]},
            "per_cell_type": {
                ct: {k: row.get(k) for k in keep} | {"n_images": row["n_images"], "n_gt": row["n_gt"]}
                for ct, row in m["per_cell_type"].items()
            },
            "scores": m["protocol"]["scores"],
        },
        "report": str(report),
        "metrics_json": str(eval_dir / "metrics.json"),
    }


def _fmt(v: Any, pct: bool) -> str:
    """A metric in the demo's tables: AP with 1 decimal, fractions with 3, None -> ``-``."""
    return format_metric(v, pct, pct_digits=1, dash_nonfinite=False)


def print_results(results: list[tuple[str, dict[str, Any]]], notes: list[str], console: Any) -> None:
    """One table: per model, a row per cell type and an overall row (AP, AP50, AFNR, mSA, F1)."""
    from rich.table import Table

    t = Table(title="LIVECell-protocol evaluation on the demo's val images", show_lines=False)
    t.add_column("model")
    t.add_column("cell type")
    t.add_column("images", justify="right")
    t.add_column("cells", justify="right")
    for _key, head, _pct in TABLE_METRICS:
        t.add_column(head, justify="right")
    for label, metrics in results:
        rows = [(ct, row) for ct, row in metrics["per_cell_type"].items()]
        rows.append(("all", metrics["overall"]))
        for i, (ct, row) in enumerate(rows):
            t.add_row(
                label if i == 0 else "",
                ct,
                str(row["n_images"]),
                str(row["n_gt"]),
                *(_fmt(row.get(k), pct) for k, _h, pct in TABLE_METRICS),
                style="bold" if ct == "all" else None,
                end_section=i == len(rows) - 1,
            )
    console.print(t)
    for n in notes:
        console.print(n, highlight=False)


def write_index(out: Path, summary: dict[str, Any]) -> Path:
    """``DIR/index.html``: the results table, the notes, stage times and links to every output."""
    import html

    from .io import atomic_path

    def table(label: str, metrics: dict[str, Any]) -> str:
        rows = [*metrics["per_cell_type"].items(), ("all", metrics["overall"])]
        body = "".join(
            "<tr" + (' style="font-weight:bold"' if ct == "all" else "") + ">"
            f"<td>{html.escape(label) if i == 0 else ''}</td><td>{html.escape(ct)}</td>"
            f"<td>{row['n_images']}</td><td>{row['n_gt']}</td>"
            + "".join(f"<td>{_fmt(row.get(k), pct)}</td>" for k, _h, pct in TABLE_METRICS)
            + "</tr>"
            for i, (ct, row) in enumerate(rows)
        )
        return body

    res = summary["results"]
    label = "fine-tuned bundled" if summary["options"]["pretrained"] else "trained now"
    body = table(label, res["trained"]["metrics"])
    if res.get("bundled"):
        body += table("bundled*", res["bundled"]["metrics"])
    heads = "".join(f"<th>{h}</th>" for h in ("model", "cell type", "images", "cells"))
    heads += "".join(f"<th>{h}</th>" for _k, h, _p in TABLE_METRICS)
    links = "".join(
        f'<li><a href="{html.escape(v)}">{html.escape(k)}</a> ({html.escape(v)})</li>'
        for k, v in summary["outputs"].items()
    )
    stages = ", ".join(f"{html.escape(s['stage'])} {s['seconds']:.0f} s" for s in summary["stages"])
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in summary["notes"])
    figs = "".join(
        f'<a href="{html.escape(rel)}"><img src="{html.escape(rel)}" alt="{html.escape(stem)}" '
        f'title="{html.escape(stem)}" style="width:48%;margin:.5%"></a>'
        for stem in (Path(f).stem for f in summary["split"]["val"])
        if (out / (rel := f"predictions/overlays/{stem}.png")).is_file()
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>livecell-seg demo</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}td:first-child,td:nth-child(2){{text-align:left}}</style>
</head><body><h1>livecell-seg demo</h1>
<p>The whole pipeline on the bundled LIVECell sample: split, convert, EDA, training, watershed tuning,
prediction and LIVECell-protocol evaluation, in {summary["total_seconds"]:.0f} s ({stages}).</p>
<table><tr>{heads}</tr>{body}</table>{notes}
<h2>Predicted cells on the val images (outlines)</h2><div>{figs}</div>
<h2>Outputs</h2><ul>{links}<li><a href="summary.json">summary.json</a></li></ul></body></html>
"""
    path = out / "index.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------- main
def _check_options(opts: DemoOptions) -> tuple[Path, bool]:
    """Refuse options that cannot work before anything is written: ``(config path, bundled model ready)``."""
    config_path = Path(opts.config) if opts.config is not None else DEFAULT_CONFIG
    if not config_path.is_file():
        raise InputFileError(
            config_path, "demo training config not found (run from a source checkout, or pass --config)"
        )
    if opts.train_minutes <= 0:
        raise LivecellError(f"--minutes must be positive, got {opts.minutes}")
    have_bundled = bundled_model_ready()
    if opts.pretrained and not have_bundled:
        from .model.folder import default_model_dir

        raise LivecellError(
            f"--pretrained needs the bundled model, but {default_model_dir()} has no model.pt/config.json yet"
        )
    return config_path, have_bundled


@dataclass
class _DemoRun:
    """One demo run: its options, output folder, progress display and the growing ``summary.json``."""

    opts: DemoOptions
    out: Path
    console: Any
    prog: _Progress
    summary: dict[str, Any]
    json_path: Path
    images: Path

    def split(self) -> tuple[dict[str, list[str]], dict[str, Path]]:
        """Stage 1: split the sample by (cell type, well) -> (file names per split, split jsons)."""
        with self.prog.stage("split", "split the sample by (cell type, well)  [livecell-seg split]") as rec:
            result, written = _split(self.opts, self.json_path, self.out, self.prog, self.console)
            split = {s: _file_names(result, s) for s in result.splits}
            rec.update(images={s: len(v) for s, v in split.items()})
            self.summary["split"] = split
            self.summary["split_warnings"] = list(result.warnings)
        if not split.get("train") or not split.get("val"):
            raise LivecellError("the split left the train or the val split empty")
        return split, written

    def convert(self, written: dict[str, Path]) -> None:
        """Stage 2: the split jsons as label TIFFs."""
        with self.prog.stage(
            "convert", "convert the split jsons to label TIFFs  [livecell-seg convert]"
        ) as rec:
            from .data.convert import convert

            for s in ("train", "val"):
                _rm(self.out / "labels" / s)  # a changed split must not leave stale label files behind
                c = convert(written[s], self.out / "labels" / s, images_dir=self.images, workers=1)
                self.prog.note(f"{s}: {c.lines()[0]}; {c.lines()[1]}")
                rec[s] = {"images": c.images, "cells": c.stats.get("cells", 0)}

    def eda(self, written: dict[str, Path]) -> None:
        """Stage 3: the EDA report."""
        with self.prog.stage("eda", "EDA report  [livecell-seg eda]") as rec:
            from .data.eda import make_report

            page = make_report(
                [written["train"], written["val"]], self.out / "eda", images_dir=self.images, progress=False
            )
            self.prog.note(f"-> {page}")
            rec["report"] = str(page)

    def train(self, config_path: Path, split: dict[str, list[str]]) -> tuple[Path, dict[str, Any]]:
        """Stage 4: train (or fine-tune) in a time box -> (model folder, training summary)."""
        opts = self.opts
        what = "fine-tune the bundled model" if opts.pretrained else "train a small U-Net from scratch"
        with self.prog.stage(
            "train", f"{what} ({opts.train_minutes:g} min time box)  [livecell-seg train]"
        ) as rec:
            model_dir, tsum = _train(
                opts, self.out, self.images, config_path, _sha(json.dumps(split)), self.prog
            )
            rec.update(global_step=tsum.get("global_step"), best_val_mSA=tsum.get("best_val_mSA"))
            self.summary["training"] = tsum
            self.prog.note(
                f"{tsum.get('global_step')} steps in {tsum.get('fit_seconds')} s, best val mSA "
                f"{_fmt(tsum.get('best_val_mSA'), False)} -> model folder {model_dir}"
            )
        return model_dir, tsum

    def tune(self, model_dir: Path, val_json: Path) -> None:
        """Stage 5: tune the watershed on the val split; writes the model folder's postprocess.json."""
        with self.prog.stage(
            "tune", "tune the watershed on the val split (mask AP)  [livecell-seg tune]"
        ) as rec:
            from .inference.tuning import tune_model_dir

            _rm(model_dir / "postprocess.json")  # a re-run tunes from the defaults again, as the first run
            grid = QUICK_GRID if self.opts.quick else "small"
            tuned = tune_model_dir(model_dir, val_json, self.images, grid=grid)
            t = tuned["tuning"]
            params = {k: v for k, v in tuned.items() if k not in ("tuning", "head")}
            self.prog.note(
                f"mask AP {t['score']:.2f} with tuned parameters (defaults {t['default_score']:.2f}), "
                f"{t['evaluations']} evaluations on {t['n_images']} images -> {model_dir / 'postprocess.json'}"
            )
            rec.update(score=t["score"], default_score=t["default_score"], evaluations=t["evaluations"])
            self.summary["postprocess"] = {
                "params": params,
                **{k: t[k] for k in ("score", "default_score", "evaluations")},
            }

    def evaluate(
        self, model_dir: Path, val_json: Path, split: dict[str, list[str]], label: str, do_bundled: bool
    ) -> list[tuple[str, dict[str, Any]]]:
        """Stages 6-7: predict and evaluate the val images (and the bundled model) -> table rows."""
        from .data.coco import find_image

        val_images = [find_image(self.images, fn) for fn in split["val"]]
        with self.prog.stage(
            "predict+evaluate", "predict the val images and evaluate  [predict + evaluate]"
        ) as rec:
            trained = _predict_and_evaluate(model_dir, val_json, val_images, self.images, self.out, self.prog)
            rec.update(
                predict_seconds=trained["predict_seconds"], evaluate_seconds=trained["evaluate_seconds"]
            )
        results = [(label, trained["metrics"])]
        self.summary["results"] = {"trained": trained, "bundled": None}
        if do_bundled:
            with self.prog.stage(
                "bundled", "the bundled model on the same val images  [predict + evaluate]"
            ) as rec:
                bundled = _predict_and_evaluate(
                    None, val_json, val_images, self.images, self.out / "bundled", self.prog
                )
                rec.update(
                    predict_seconds=bundled["predict_seconds"], evaluate_seconds=bundled["evaluate_seconds"]
                )
            results.append(("bundled*", bundled["metrics"]))
            self.summary["results"]["bundled"] = bundled
        elif self.opts.bundled:
            self.prog.note("(no bundled model yet: only the model trained now is evaluated)")
        return results


def _result_notes(label: str, n_train: int, n_val: int, global_step: Any, do_bundled: bool) -> list[str]:
    """The notes printed under the results table (what the scores mean, and what they do not)."""
    notes = [
        f"'{label}': trained on the {n_train} train images ({global_step} steps); its checkpoint "
        f"and watershed parameters were picked on these same {n_val} val images (5 sample images leave "
        "no room for a separate test split), so the scores are optimistic.",
    ]
    if do_bundled:
        notes.append(
            "'bundled*': the bundled model was trained on all 5 sample images, these val images included: "
            "NOT a held-out score."
        )
    notes.append(
        "AP, AP50 in % (COCO mask AP, LIVECell protocol); AFNR, mSA, F1 at IoU 0.5 as fractions. "
        "The LIVECell paper's models reach 47.8 AP on the official test set after training on 3,000+ images."
    )
    return notes


def _outputs(do_bundled: bool) -> dict[str, str]:
    """What the demo folder holds (``summary.json``'s ``outputs``, linked from index.html)."""
    return {
        "evaluation report": "evaluation/report.html",
        "EDA report": "eda/index.html",
        "predicted label images": "predictions/",
        "overlays": "predictions/overlays/",
        "measurements (CSV)": "predictions/measurements/",
        "ground-truth label images": "labels/",
        "splits": "splits/",
        "model folder": "train/model/",
        **({"bundled model's evaluation report": "bundled/evaluation/report.html"} if do_bundled else {}),
    }


def run_demo(opts: DemoOptions, console: Any = None) -> dict[str, Any]:
    """Run the whole pipeline on the bundled sample into ``opts.out``; returns ``summary.json``'s content.

    Stages (methods of :class:`_DemoRun`): split, convert, EDA, train, tune, predict + evaluate
    (and the bundled model on the same images); then the results table, ``summary.json`` and index.html.
    """
    from rich.console import Console

    from .io import write_json_atomic

    console = console or Console(highlight=False, file=sys.stdout, width=None if sys.stdout.isatty() else 120)
    t_start = time.perf_counter()
    out = Path(opts.out)
    config_path, have_bundled = _check_options(opts)
    prepare_output(out, opts.fresh)
    json_path, images = sample_paths()
    machine = machine_info()
    console.print(
        f"[bold]livecell-seg demo[/] -> {out}  ({'quick' if opts.quick else 'full'}"
        f"{', from the bundled model' if opts.pretrained else ''}; {machine['cores']} CPU cores, "
        f"load average {machine['load_average'][0] if machine['load_average'] else '?'})"
    )
    do_bundled = opts.bundled and have_bundled
    prog = _Progress(console, total=8 if do_bundled else 7)
    summary: dict[str, Any] = {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
        "train_minutes": opts.train_minutes,
        "machine_start": machine,
        "data": {"json": str(json_path), "images": str(images)},
    }
    run = _DemoRun(opts, out, console, prog, summary, json_path, images)

    split, written = run.split()
    run.convert(written)
    run.eda(written)
    model_dir, tsum = run.train(config_path, split)
    val_json = Path(written["val"])
    run.tune(model_dir, val_json)
    label = "fine-tuned bundled" if opts.pretrained else "trained now"
    results = run.evaluate(model_dir, val_json, split, label, do_bundled)

    notes = _result_notes(label, len(split["train"]), len(split["val"]), tsum.get("global_step"), do_bundled)
    console.print()
    print_results(results, notes, console)
    summary["notes"] = notes

    summary["stages"] = prog.stages
    summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
    summary["machine_end"] = {"load_average": machine_info()["load_average"]}
    summary["outputs"] = _outputs(do_bundled)
    write_json_atomic(out / "summary.json", summary)
    index = write_index(out, summary)
    per_stage = ", ".join(f"{s['stage']} {s['seconds']:.0f} s" for s in prog.stages)
    console.print(
        f"\n[bold]demo finished in {summary['total_seconds']:.0f} s[/] ({per_stage})\n"
        f"open {index} (results and links to the reports); everything is in {out / 'summary.json'}",
        highlight=False,
    )
    return summary


__all__ = [
    "DemoOptions",
    "run_demo",
    "machine_info",
    "measure_step_seconds",
    "plan_steps",
    "prepare_output",
    "print_results",
    "bundled_model_ready",
]
