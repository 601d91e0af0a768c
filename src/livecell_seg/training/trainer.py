"""Lightning training: ``train(cfg) -> run_dir``.

The run folder is self-describing::

    run_dir/
      config.json        the TrainConfig (its ``model`` entry is the ModelConfig)
      model.pt           best network weights (by validation mSA after the watershed)
      summary.json       best score, steps, timings
      model/             the same network as a clean model folder (config.json, model.pt, summary.json)
      checkpoints/       best-*.ckpt and last.ckpt (Lightning; resume from last.ckpt)
      logs/              CSV (logs/csv/version_N/metrics.csv) and TensorBoard (logs/tensorboard)

This module imports torch and Lightning at the top: import it only inside functions from the CLI.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from ..errors import InputFileError, LivecellError, OutputFileError
from ..evaluation.metrics import segmentation_accuracies
from ..inference.postprocess import PostprocessParams
from ..inference.predict import segment_image
from ..inference.scale import image_diameter, training_diameter
from ..io import describe_os_error, read_json, write_json_atomic
from ..model.folder import (
    CONFIG_FILE,
    MODEL_FILE,
    LoadedModel,
    ModelConfig,
    build_model,
    read_model_config,
    save_model_dir,
)
from ..model.heads import head_channels
from ..model.unet import pad_to_multiple
from .config import TrainConfig, config_from_dict, config_to_dict
from .dataset import (
    CropDataset,
    FullImageDataset,
    SampleRef,
    load_sample,
    resolve_sources,
    sampling_probabilities,
)
from .losses import SegLoss

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST_CKPT = "last.ckpt"
SUMMARY_FILE = "summary.json"


def _use_gpu(cfg: TrainConfig) -> bool:
    acc = cfg.trainer.accelerator
    return acc in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def resolve_precision(cfg: TrainConfig) -> str:
    """``auto`` → bf16-mixed on a GPU that supports it (else 16-mixed), 32-true on CPU."""
    if cfg.trainer.precision != "auto":
        return cfg.trainer.precision
    if _use_gpu(cfg):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


class SegModule(pl.LightningModule):
    """The U-Net, its loss, the optimizer/schedule and the instance-level validation."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg = config_from_dict(config)
        self.head = self.cfg.model.head
        self.channels = head_channels(self.head)
        self.net = build_model(self.cfg.model)
        #: the network as ``predict`` sees a model folder: validation segments through it
        self.inference_model = LoadedModel(net=self.net, model_config=self.cfg.model, config=config)
        self.loss_fn = SegLoss(self.head, self.cfg.loss)
        self._val_scores: list[tuple[float, float]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.net(batch["image"])
        loss, parts = self.loss_fn(logits, batch["target"], batch.get("weight"))
        n = batch["image"].shape[0]
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        for ch, v in parts.items():
            self.log(f"train/loss_{ch}", v, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def _full_forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits of whole images (padded to the stride, cropped back): the validation loss."""

        h, w = image.shape[-2:]
        return self.net(pad_to_multiple(image, self.cfg.model.stride))[..., :h, :w]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Validation loss, and each image segmented by :func:`livecell_seg.inference.predict.segment_image`
        (what ``predict`` runs) scored against its ground truth (mSA, SA50).

        The segmentation runs at zoom 1 (the network at native scale, not the model's
        ``predict_scale``), with the default post-processing (the folder is not tuned yet) and no
        autocast of its own (``precision="fp32"``; Lightning's mixed-precision context, when one is
        set, applies as it does to the loss). The images are already normalized by the dataset,
        with the same :func:`~livecell_seg.io.normalize_image` ``predict`` applies. The network
        runs on a prepared copy (:func:`~livecell_seg.inference.tiling.inference_net`): the training
        network itself is neither switched to eval mode nor modified.
        """

        logits = self._full_forward(batch["image"]).float()
        loss, _ = self.loss_fn(logits, batch["target"])
        self.log("val/loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=1)
        images = batch["image"][:, 0].cpu().numpy()
        gts = batch["labels"].cpu().numpy()
        params = PostprocessParams()
        for image, gt in zip(images, gts):
            res = segment_image(
                self.inference_model, image, params, scale=1.0, normalized=True, precision="fp32"
            )
            sa = segmentation_accuracies(gt, res.labels)
            self._val_scores.append((float(np.mean(sa)), float(sa[0])))

    def on_validation_epoch_end(self) -> None:
        scores = np.array(self._val_scores or [(0.0, 0.0)], dtype=np.float64)
        count = len(self._val_scores)
        self._val_scores = []
        t = torch.tensor(
            [scores[:, 0].sum(), scores[:, 1].sum(), count], dtype=torch.float64, device=self.device
        )
        if self.trainer.world_size > 1:
            t = self.trainer.strategy.reduce(t, reduce_op="sum")
        n = max(float(t[2]), 1.0)
        self.log("val/mSA", float(t[0]) / n, prog_bar=True, sync_dist=True)
        self.log("val/SA50", float(t[1]) / n, sync_dist=True)

    def configure_optimizers(self) -> Any:
        o = self.cfg.optim
        opt = torch.optim.AdamW(self.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if o.schedule == "onecycle":
            sched: Any = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o.lr, total_steps=total + 1)
        else:
            warm = max(0, o.warmup_steps)
            floor = o.min_lr_ratio
            cosine = o.schedule == "cosine"

            def factor(step: int) -> float:
                if step < warm:
                    return (step + 1) / (warm + 1)
                if not cosine:
                    return 1.0
                p = min(1.0, (step - warm) / max(1, total - warm))
                return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _collate_val(batch: list[dict]) -> dict:
    from torch.utils.data import default_collate

    names = [b["name"] for b in batch]
    out = default_collate([{k: v for k, v in b.items() if k != "name"} for b in batch])
    out["name"] = names
    return out


class SegDataModule(pl.LightningDataModule):
    """Training crops and full validation images for a :class:`TrainConfig`."""

    def __init__(self, cfg: TrainConfig, train_refs: list[SampleRef], val_refs: list[SampleRef]) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_refs = train_refs
        self.val_refs = val_refs

    def _pin(self) -> bool:
        pin = self.cfg.data.pin_memory
        return _use_gpu(self.cfg) if pin == "auto" else bool(pin)

    def train_dataloader(self) -> Any:
        from torch.utils.data import DataLoader

        d = self.cfg.data
        ds = CropDataset(
            self.train_refs,
            self.cfg.model.head,
            crop_size=d.crop_size,
            augment=d.augment,
            samples_per_epoch=d.samples_per_epoch,
            target_margin=d.target_margin,
            boundary_width=d.boundary_width,
            cache_images=d.cache_images,
            probabilities=sampling_probabilities(self.train_refs, [s.weight for s in d.train], d.balance),
            partial_margin=d.partial_margin,
        )
        return DataLoader(
            ds,  # type: ignore[arg-type]
            batch_size=d.batch_size,
            shuffle=True,
            num_workers=d.num_workers,
            pin_memory=self._pin(),
            drop_last=len(ds) > d.batch_size,
            persistent_workers=d.num_workers > 0,
        )

    def val_dataloader(self) -> Any:
        from torch.utils.data import DataLoader

        d = self.cfg.data
        ds = FullImageDataset(self.val_refs, self.cfg.model.head, boundary_width=d.boundary_width)
        workers = min(d.num_workers, 2)
        return DataLoader(
            ds,  # type: ignore[arg-type]
            batch_size=1,
            shuffle=False,
            num_workers=workers,
            pin_memory=self._pin(),
            collate_fn=_collate_val,
            persistent_workers=workers > 0,
        )


def _loggers(cfg: TrainConfig, run_dir: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    out: list[Any] = []
    for name in cfg.trainer.loggers:
        if name == "csv":
            out.append(CSVLogger(run_dir / "logs", name="csv"))
        elif name == "tensorboard":
            out.append(TensorBoardLogger(run_dir / "logs", name="tensorboard", default_hp_metric=False))
        elif name == "wandb":
            import importlib.util

            if importlib.util.find_spec("wandb") is None:
                raise LivecellError("trainer.loggers: 'wandb' needs the wandb package (pip install wandb)")
            from lightning.pytorch.loggers import WandbLogger

            out.append(
                WandbLogger(
                    project=cfg.trainer.wandb_project,
                    save_dir=str(run_dir / "logs"),
                    offline=cfg.trainer.wandb_offline,
                    name=run_dir.name,
                )
            )
    return out


def find_resume_checkpoint(cfg: TrainConfig) -> Path | None:
    """The checkpoint to resume from: ``out_dir/checkpoints/last.ckpt`` if it exists and
    ``resume`` is auto/true; raises if ``resume: true`` and there is none."""
    last = Path(cfg.out_dir) / CHECKPOINT_DIR / LAST_CKPT
    if cfg.resume is False or str(cfg.resume) == "False":
        return None
    if last.is_file():
        return last
    if cfg.resume is True or str(cfg.resume) == "True":
        raise LivecellError(f"{last}: no checkpoint to resume from")
    return None


def export_checkpoint(
    ckpt: str | Path, run_dir: Path, config: dict[str, Any], summary: dict[str, Any]
) -> Path:
    """Write the checkpoint's network as ``run_dir/model.pt`` and as a model folder ``run_dir/model``."""

    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    net = build_model(ModelConfig.from_dict(config["model"]))
    net.load_state_dict({k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")})
    model_dir = save_model_dir(run_dir / "model", net, config)
    write_json_atomic(model_dir / SUMMARY_FILE, summary)
    save_model_dir(run_dir, net, config)  # the run folder itself is a model folder too
    return model_dir


def export_last(run_dir: str | Path, dst: str | Path | None = None) -> Path:
    """Export ``run_dir``'s last checkpoint as a model folder (default ``run_dir/last_model``).

    Skipped when the folder is newer than the checkpoint. ``train`` exports the *best*
    checkpoint; use this for a run without validation data or one still in progress.
    """
    import shutil
    import tempfile

    run = Path(run_dir)
    ckpt = run / CHECKPOINT_DIR / LAST_CKPT
    if not ckpt.is_file():
        raise InputFileError(run, f"no {CHECKPOINT_DIR}/{LAST_CKPT} in this run folder")
    out = Path(dst) if dst is not None else run / "last_model"
    if (out / MODEL_FILE).is_file() and (out / MODEL_FILE).stat().st_mtime >= ckpt.stat().st_mtime:
        return out
    config = read_json(run / CONFIG_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        md = export_checkpoint(ckpt, Path(tmp), config, {"checkpoint": LAST_CKPT})
        out.mkdir(parents=True, exist_ok=True)
        for f in md.iterdir():
            shutil.copy2(f, out / f.name)
    return out


def init_weights_from(net: torch.nn.Module, cfg: TrainConfig) -> Path:
    """Load ``cfg.init_from`` (a model folder) into ``net``; its architecture must match ``cfg.model``."""

    src = Path(str(cfg.init_from))
    _, mcfg = read_model_config(src)  # InputFileError when it is not a model folder
    keys = ("arch", "head", "in_channels", "base_features", "depth", "norm")
    diff = [f"{k}={getattr(mcfg, k)!r}" for k in keys if getattr(mcfg, k) != getattr(cfg.model, k)]
    if diff:
        raise LivecellError(f"init_from {src}: its model has {', '.join(diff)}; set model.* to match")
    weights = src / MODEL_FILE
    if not weights.is_file():
        raise InputFileError(src, f"not a model folder (no {MODEL_FILE})")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as e:  # noqa: BLE001
        raise InputFileError(weights, f"cannot load weights ({type(e).__name__})") from None
    return src


def measure_cell_diameter(cfg: TrainConfig, refs: list[SampleRef]) -> float | None:
    """Typical cell diameter (pixels) of the training data: the median of per-image median
    diameters, each image weighted by how often training draws it (``scale.training_diameter``)."""

    probs = sampling_probabilities(refs, [s.weight for s in cfg.data.train], cfg.data.balance)
    diameters = [image_diameter(load_sample(r)[1]) for r in refs]
    d = training_diameter(diameters, None if probs is None else list(probs))
    return None if d is None else round(d, 2)


def _callbacks(
    cfg: TrainConfig, run_dir: Path, has_val: bool, extra: list[Any] | None
) -> tuple[Any, list[Any]]:
    """The best-checkpoint callback and every callback of the fit (checkpoints, early stopping, ...)."""
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    ckpt_cb = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINT_DIR,
        filename="best-epoch{epoch:04d}-step{step:07d}" if has_val else "epoch{epoch:04d}-step{step:07d}",
        auto_insert_metric_name=False,
        monitor="val/mSA" if has_val else None,
        mode="max",
        save_top_k=1,
        save_last=False,
    )
    # last.ckpt after every training epoch (validated or not), so an interruption loses < 1 epoch
    # (save_top_k=0 + save_last=True does not do this: Lightning 2.6 writes "last" only in a step
    # where another checkpoint was saved; a top-1 checkpoint without a monitor named "last" does)
    last_cb = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINT_DIR,
        filename=LAST_CKPT[: -len(".ckpt")],
        monitor=None,
        save_top_k=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    callbacks: list[Any] = [ckpt_cb, last_cb, *(extra or [])]
    if has_val and cfg.trainer.early_stopping_patience > 0:
        callbacks.append(EarlyStopping("val/mSA", mode="max", patience=cfg.trainer.early_stopping_patience))
    return ckpt_cb, callbacks


def _trainer(cfg: TrainConfig, run_dir: Path, has_val: bool, callbacks: list[Any]) -> pl.Trainer:
    """The Lightning Trainer of ``cfg`` (devices, precision, length, logging)."""
    from lightning.pytorch.callbacks import LearningRateMonitor

    loggers = _loggers(cfg, run_dir)
    if loggers:
        callbacks = [*callbacks, LearningRateMonitor(logging_interval="step")]
    det = cfg.trainer.deterministic
    deterministic = (not _use_gpu(cfg)) if det == "auto" else det
    if _use_gpu(cfg):
        torch.set_float32_matmul_precision("high")  # TF32 for the fp32 parts on Ampere and later
    return pl.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        num_nodes=cfg.trainer.num_nodes,
        strategy=cfg.trainer.strategy,
        precision=resolve_precision(cfg),  # type: ignore[arg-type]
        max_epochs=cfg.optim.epochs,
        max_steps=cfg.optim.max_steps,
        max_time=timedelta(minutes=cfg.trainer.max_minutes) if cfg.trainer.max_minutes else None,
        gradient_clip_val=cfg.optim.grad_clip,
        accumulate_grad_batches=cfg.optim.accumulate_grad_batches,
        check_val_every_n_epoch=cfg.trainer.val_every_n_epochs,
        limit_val_batches=1.0 if has_val else 0,
        num_sanity_val_steps=0,
        deterministic=deterministic,
        benchmark=_use_gpu(cfg) and not deterministic,  # fixed crop size: let cuDNN pick kernels
        logger=loggers or False,
        callbacks=callbacks,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        enable_progress_bar=cfg.trainer.progress_bar,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
    )


def _fit(
    trainer: pl.Trainer, module: SegModule, dm: SegDataModule, resume: Path | None, run_dir: Path
) -> float:
    """Run the fit; its seconds. A full or read-only run folder is one line naming the folder."""
    t0 = time.time()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM):
            raise
        # a checkpoint or a log in the run folder could not be written (Lightning names a temporary
        # file of its own): the run folder is what the user can act on
        raise OutputFileError(run_dir, f"cannot be written ({describe_os_error(e)}) while training") from None
    return time.time() - t0


def train(cfg: TrainConfig, extra_callbacks: list[Any] | None = None) -> Path:
    """Train the U-Net described by ``cfg``; return the run folder (``cfg.out_dir``).

    Resumes from ``out_dir/checkpoints/last.ckpt`` when it exists (``resume: auto``), continuing
    at the same global step; otherwise ``init_from`` (a model folder) gives the starting weights.
    ``trainer.max_minutes`` caps the wall time of the fit. At the end the best checkpoint (by
    validation mSA; the last one without validation data) is exported as ``out_dir/model`` and
    ``out_dir/model.pt``. ``extra_callbacks``: more Lightning callbacks (e.g. progress reporting).
    """
    cfg.validate()
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    run_dir = Path(cfg.out_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    train_refs = resolve_sources(cfg.data.train)
    if not train_refs:
        raise LivecellError("data.train: no training images left after include/exclude")
    if cfg.model.cell_diameter is None:
        cfg.model.cell_diameter = measure_cell_diameter(cfg, train_refs)
    config = config_to_dict(cfg)
    val_refs = resolve_sources(cfg.data.val, cfg.data.val_max_images) if cfg.data.val else []
    has_val = bool(val_refs)
    ckpt_cb, callbacks = _callbacks(cfg, run_dir, has_val, extra_callbacks)
    trainer = _trainer(cfg, run_dir, has_val, callbacks)
    resume = find_resume_checkpoint(cfg)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / CONFIG_FILE, config)
        if resume is not None:
            log.info("resuming from %s", resume)
    module = SegModule(config)
    if cfg.init_from and resume is None:
        init_weights_from(module.net, cfg)
    elapsed = _fit(trainer, module, SegDataModule(cfg, train_refs, val_refs), resume, run_dir)

    if trainer.is_global_zero:
        best = ckpt_cb.best_model_path or ""
        last = run_dir / CHECKPOINT_DIR / LAST_CKPT
        src = best if best and Path(best).is_file() else (str(last) if last.is_file() else "")
        if not src:
            raise LivecellError(f"{run_dir}: training produced no checkpoint")
        best_score = ckpt_cb.best_model_score
        summary = {
            "checkpoint": Path(src).name,
            "best_val_mSA": float(best_score) if best_score is not None and has_val else None,
            "global_step": int(trainer.global_step),
            "world_size": int(trainer.world_size),
            "epochs_done": int(trainer.current_epoch),
            "train_images": len(train_refs),
            "val_images": len(val_refs),
            "fit_seconds": round(elapsed, 1),
            "resumed_from": str(resume) if resume else None,
            "init_from": str(cfg.init_from) if cfg.init_from and resume is None else None,
            "loss": config["loss"]["kind"],
            "head": cfg.model.head,
        }
        export_checkpoint(src, run_dir, config, summary)
        write_json_atomic(run_dir / SUMMARY_FILE, summary)
        log.info("%s", json.dumps(summary))
    return run_dir


__all__ = [
    "SegModule",
    "SegDataModule",
    "train",
    "find_resume_checkpoint",
    "export_checkpoint",
    "export_last",
    "MODEL_FILE",
]
