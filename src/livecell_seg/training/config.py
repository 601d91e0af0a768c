"""Typed training configuration: dataclasses loaded from YAML/JSON with dotted overrides.

Pure Python (+ PyYAML); no torch. ``livecell-seg train --config cfg.yaml --set optim.lr=1e-3``
builds a :class:`TrainConfig`; the run folder's ``config.json`` is :func:`config_to_dict` of it,
whose ``model`` entry is the :class:`~livecell_seg.model.folder.ModelConfig` a model folder needs.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..dataclass_dicts import bounded, settings_from_dict
from ..errors import InputFileError, LivecellError
from ..io import check_input_file
from ..model.folder import ModelConfig
from ..model.heads import HEADS

#: how completely a source's images are annotated (see SourceConfig.annotation)
ANNOTATION_POLICIES = ("full", "partial")
#: how training crops are spread within a source (see DataConfig.balance)
BALANCE_MODES = ("none", "cell_type")


@dataclass
class SourceConfig:
    """One set of annotated images.

    Exactly one of: ``labels`` + ``images`` (a folder of instance label TIFFs named
    ``<image stem>.tif``, as written by ``livecell-seg convert``, and the images folder, any
    LIVECell layout), ``json`` + ``images`` (a LIVECell COCO json and its images folder),
    ``folder`` (a folder holding ``images/`` and ``labels/`` with the same file stems) or
    ``sample: true`` (the bundled real LIVECell sample). ``include`` / ``exclude`` filter images
    by file stem (``A172_Phase_C7_1_02d16h00m_2``) or stem prefix such as a cell type (``A172``).

    Mixing sources: ``weight`` is the source's share of the training crops (relative to the other
    sources' weights; by default every source gets a share proportional to its number of images).
    ``annotation: partial`` marks a source where only some cells are annotated (e.g. the Kaggle
    astrocyte/cortical-neuron images): the foreground loss then ignores background pixels farther
    than ``data.partial_margin`` pixels from any annotated cell. ``ignore`` is an optional folder of
    masks named like the label files (nonzero = no loss there; written by ``livecell-seg
    pseudolabel`` for the unconfident parts of pseudo-labels); a ``folder`` source uses its
    ``ignore/`` subfolder when it has one. ``cell_types``: a JSON file mapping image stems to cell
    types (a ``folder`` source reads its ``cell_types.json`` when present; LIVECell file names carry
    the type), used by ``data.balance: cell_type`` and by ``include_types`` (keep only those types).
    """

    labels: str | None = None
    json: str | None = None
    images: str | None = None
    folder: str | None = None
    sample: bool = False
    include: list[str] | None = None
    exclude: list[str] | None = None
    weight: float | None = bounded(None, 1e-9, 1e9)
    annotation: str = "full"  # full | partial
    ignore: str | None = None
    cell_types: str | None = None
    include_types: list[str] | None = None  # keep only images of these cell types

    def validate(self, where: str) -> None:
        kinds = [self.labels is not None, self.json is not None, self.folder is not None, self.sample]
        if sum(kinds) != 1:
            raise LivecellError(
                f"{where}: give exactly one of 'labels' (+ 'images'), 'json' (+ 'images'), 'folder' or 'sample: true'"
            )
        for key in ("labels", "json"):
            if getattr(self, key) is not None and self.images is None:
                raise LivecellError(f"{where}: '{key}' needs 'images' (the images folder)")
        if self.weight is not None and not (math.isfinite(self.weight) and self.weight > 0):
            raise LivecellError(f"{where}.weight: must be a positive number, got {self.weight!r}")
        if self.annotation not in ANNOTATION_POLICIES:
            raise LivecellError(
                f"{where}.annotation: unknown {self.annotation!r}; choose {', '.join(ANNOTATION_POLICIES)}"
            )


@dataclass
class AugmentConfig:
    """Augmentation of training crops. ``strength`` scales every range below (0 turns all off).

    Geometric transforms act on the image and (nearest-neighbour) on the instance labels before
    the targets are computed; intensity transforms act on the normalized image only.
    """

    strength: float = bounded(1.0, 0, 10)
    flips: bool = True
    rot90: bool = True
    scale: float = bounded(0.15, 0, 0.9)  # zoom factor drawn log-uniformly from [1 - scale, 1 + scale]
    scale_range: list[float] | None = bounded(
        None, 0.05, 20
    )  # [min, max] zoom (overrides ``scale``), e.g. [0.5, 2.0]
    brightness: float = bounded(0.1, 0, 10)  # additive shift, in units of the normalized range
    contrast: float = bounded(0.2, 0, 10)  # multiplicative factor from [1 - c, 1 + c] about the mean
    gamma: float = bounded(0.2, 0, 0.99)  # gamma from [1 - g, 1 + g]
    noise: float = bounded(0.03, 0, 10)  # Gaussian noise std drawn from [0, noise]
    blur: float = bounded(1.0, 0, 20)  # Gaussian blur sigma drawn from [0, blur]
    p_intensity: float = bounded(0.5, 0, 1)  # probability of each intensity transform
    p_scale: float = bounded(0.5, 0, 1)


@dataclass
class DataConfig:
    """Training/validation data and loading."""

    train: list[SourceConfig] = field(default_factory=lambda: [SourceConfig(sample=True)])
    val: list[SourceConfig] = field(default_factory=list)
    crop_size: int = bounded(
        256, 16, 8192
    )  # square crops at native resolution (images smaller than this are padded)
    target_margin: int = bounded(32, 0, 1024)  # context around a crop used when computing its targets
    boundary_width: int = bounded(1, 1, 64)  # width of the `boundary` target, pixels
    samples_per_epoch: int | None = bounded(
        None, 1, 100_000_000
    )  # crops per epoch (default: one per training image)
    batch_size: int = bounded(8, 1, 4096)
    num_workers: int = bounded(2, 0, 256)
    pin_memory: str | bool = "auto"  # auto: on when training on a GPU
    cache_images: int = bounded(4, 0, 100_000)  # decoded images kept per worker (LRU)
    val_max_images: int | None = bounded(
        None, 1, 100_000_000
    )  # validate on the first N validation images only
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    balance: str = "none"  # none | cell_type: within a source, every cell type gets an equal share
    partial_margin: int = bounded(
        12, 0, 1024
    )  # partially annotated sources: background within this many px of a cell counts


@dataclass
class OptimConfig:
    """Optimizer (AdamW) and learning-rate schedule."""

    lr: float = bounded(1e-3, 0, 10)
    weight_decay: float = bounded(1e-4, 0, 10)
    schedule: str = "cosine"  # cosine | onecycle | constant
    warmup_steps: int = bounded(0, 0, 1_000_000_000)  # linear warm-up (cosine/constant)
    min_lr_ratio: float = bounded(0.01, 0, 1)  # cosine floor, as a fraction of lr
    epochs: int = bounded(100, 1, 10_000_000)
    max_steps: int = bounded(
        -1, -1, 1_000_000_000
    )  # stop after this many optimizer steps (-1: epochs decide)
    grad_clip: float | None = bounded(1.0, 0, 1e9)
    accumulate_grad_batches: int = bounded(1, 1, 100_000)


LOSS_KINDS = ("bce_dice", "focal_dice", "bce_tversky")


@dataclass
class LossConfig:
    """Loss per output channel.

    Binary channels (``fg``, ``boundary``) use ``kind``: ``bce_dice`` (BCE + soft Dice, the default),
    ``focal_dice`` (focal + soft Dice) or ``bce_tversky`` (BCE + Tversky). Distance channels
    (``center_dist``, ``boundary_dist``) are regression targets defined only inside cells: their
    loss (``dist_loss``: soft-target BCE, offset so a perfect prediction scores 0, or ``mse``, plus
    soft Dice) is masked by the ground-truth foreground.
    """

    kind: str = "bce_dice"
    dist_loss: str = "bce"  # bce | mse
    bce_weight: float = bounded(1.0, 0, 1000)
    dice_weight: float = bounded(1.0, 0, 1000)
    focal_gamma: float = bounded(2.0, 0, 100)
    focal_alpha: float = bounded(0.25, 0, 1)
    tversky_alpha: float = bounded(0.3, 0, 1)  # weight of false positives
    tversky_beta: float = bounded(0.7, 0, 1)  # weight of false negatives
    channel_weights: dict[str, float] = field(
        default_factory=dict, metadata={"range": (0, 1000)}
    )  # channel name -> weight


@dataclass
class TrainerConfig:
    """Lightning trainer settings."""

    accelerator: str = "auto"  # auto | cpu | gpu | ...
    devices: int | str = bounded("auto", 1, 100_000)
    num_nodes: int = bounded(1, 1, 100_000)
    strategy: str = "auto"  # auto | ddp | ddp_spawn | ...
    precision: str = "auto"  # auto: bf16-mixed on a GPU, 32-true on CPU
    deterministic: bool | str = "auto"  # auto: on for CPU, off for GPU (cuDNN speed)
    val_every_n_epochs: int = bounded(1, 1, 10_000_000)
    early_stopping_patience: int = bounded(
        0, 0, 10_000_000
    )  # validations without mSA improvement; 0 disables
    loggers: list[str] = field(default_factory=lambda: ["csv", "tensorboard"])  # + "wandb"
    wandb_project: str = "livecell-seg"
    wandb_offline: bool = True
    log_every_n_steps: int = bounded(10, 1, 10_000_000)
    progress_bar: bool = True
    threads: int | None = bounded(None, 1, 4096)  # torch CPU threads (default: torch's choice)
    max_minutes: float | None = bounded(
        None, 1e-6, 1e7
    )  # stop training after this wall time (Lightning max_time)


@dataclass
class TrainConfig:
    """Everything a training run needs; saved as ``config.json`` in the run folder."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    out_dir: str = "runs/train"
    seed: int = bounded(0, 0, 2**32 - 1)
    resume: str | bool = "auto"  # auto: resume when out_dir/checkpoints/last.ckpt exists
    init_from: str | None = None  # model folder whose model.pt initializes the network (not when resuming)

    def validate(self) -> TrainConfig:
        """Check values that would otherwise fail deep inside training; returns self."""
        if self.model.head not in HEADS:
            raise LivecellError(f"model.head: unknown head {self.model.head!r}; choose {', '.join(HEADS)}")
        if self.model.arch not in ("unet", "monai_basicunet"):
            raise LivecellError(f"model.arch: unknown {self.model.arch!r} (unet or monai_basicunet)")
        if self.loss.kind not in LOSS_KINDS:
            raise LivecellError(f"loss.kind: unknown {self.loss.kind!r}; choose {', '.join(LOSS_KINDS)}")
        if self.loss.dist_loss not in ("bce", "mse"):
            raise LivecellError(f"loss.dist_loss: unknown {self.loss.dist_loss!r} (bce or mse)")
        if self.optim.schedule not in ("cosine", "onecycle", "constant"):
            raise LivecellError(
                f"optim.schedule: unknown {self.optim.schedule!r} (cosine, onecycle, constant)"
            )
        if not self.data.train:
            raise LivecellError("data.train: no training source given")
        for name, srcs in (("train", self.data.train), ("val", self.data.val)):
            for i, s in enumerate(srcs):
                s.validate(f"data.{name}[{i}]")
        if self.data.crop_size < 16:
            raise LivecellError("data.crop_size must be at least 16")
        if self.data.batch_size < 1:
            raise LivecellError("data.batch_size must be at least 1")
        if self.data.balance not in BALANCE_MODES:
            raise LivecellError(
                f"data.balance: unknown {self.data.balance!r}; choose {', '.join(BALANCE_MODES)}"
            )
        if self.data.partial_margin < 0:
            raise LivecellError("data.partial_margin must be >= 0")
        sr = self.data.augment.scale_range
        if sr is not None and not (len(sr) == 2 and 0 < sr[0] <= sr[1] and all(map(math.isfinite, sr))):
            raise LivecellError(
                f"data.augment.scale_range: expected [min, max] with 0 < min <= max, got {sr!r}"
            )
        for lg in self.trainer.loggers:
            if lg not in ("csv", "tensorboard", "wandb"):
                raise LivecellError(f"trainer.loggers: unknown logger {lg!r} (csv, tensorboard, wandb)")
        dev = self.trainer.devices
        if isinstance(dev, str) and not re.fullmatch(r"\s*(auto|-1|\d+|\[?\d+(\s*,\s*\d+)*\s*,?\]?)\s*", dev):
            raise LivecellError(
                f"trainer.devices: expected auto, a number of devices or a list such as 0,1; got {dev!r}"
            )
        if self.trainer.max_minutes is not None and self.trainer.max_minutes <= 0:
            raise LivecellError("trainer.max_minutes must be positive")
        if str(self.resume) not in ("auto", "True", "False"):
            raise LivecellError("resume: auto, true or false")
        return self


# ----------------------------------------------------------------------------- dict <-> dataclass


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a plain dict (unknown keys are errors)."""
    return settings_from_dict(TrainConfig, dict(d)).validate()


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """JSON-ready dict of ``cfg`` (its ``model`` entry is a ModelConfig dict)."""
    return asdict(cfg)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` (value in YAML syntax) into (key path, value)."""
    import yaml

    if "=" not in text:
        raise LivecellError(f"override {text!r}: expected key=value, e.g. optim.lr=1e-3")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise LivecellError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):  # YAML reads 1e-3 as a string; accept it as a number
        try:
            value = float(value) if any(c in value for c in "eE.") and not value.isalpha() else value
        except ValueError:
            pass
    return key.split("."), value


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply dotted ``key=value`` overrides to a nested config dict (in place; returns it).

    List items are addressed by index: ``data.train.0.folder=/data/train``.
    """
    for text in overrides:
        path, value = parse_override(text)
        node: Any = d
        for i, part in enumerate(path[:-1]):
            where = ".".join(path[: i + 1])
            if isinstance(node, list):
                try:
                    node = node[int(part)]
                except (ValueError, IndexError):
                    raise LivecellError(f"override {text!r}: no list item {part!r} at {where}") from None
            else:
                if part not in node or node[part] is None:
                    if path[i + 1].isdigit():
                        raise LivecellError(
                            f"override {text!r}: {where} is not a list in the config file; "
                            f"set it whole, e.g. {where}=[{{folder: path}}]"
                        )
                    node[part] = {}
                node = node[part]
            if not isinstance(node, (dict, list)):
                raise LivecellError(f"override {text!r}: {where} is not a section")
        last = path[-1]
        if isinstance(node, list):
            try:
                node[int(last)] = value
            except (ValueError, IndexError):
                raise LivecellError(f"override {text!r}: no list item {last!r}") from None
        else:
            node[last] = value
    return d


def _read_mapping(p: Path) -> dict[str, Any]:
    import yaml

    check_input_file(p, "config file")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(p, f"cannot be read as a config file ({type(e).__name__})") from None
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputFileError(p, f"invalid config ({first})") from None
    except RecursionError:
        raise InputFileError(p, "invalid config (nested too deeply)") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputFileError(p, "config must be a mapping at the top level")
    return data


def merge_configs(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings are merged key by key, everything else (lists too) replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge_configs(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file as a dict (InputFileError on a bad file).

    A top-level ``extends: other.yaml`` (relative to this file) reads that file first and merges
    this one on top (:func:`merge_configs`), so a family of runs can share one base.
    """
    p = Path(path)
    data = _read_mapping(p)
    seen = [p.resolve()]
    while "extends" in data:
        parent = data.pop("extends")
        if not isinstance(parent, str):
            raise InputFileError(p, "extends: expected a file name")
        q = (seen[-1].parent / parent).resolve()
        if q in seen:
            raise InputFileError(p, f"extends: cycle through {q.name}")
        seen.append(q)
        data = merge_configs(_read_mapping(q), data)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Load a :class:`TrainConfig` from a YAML/JSON file (or defaults) plus dotted overrides.

    A model folder's or run folder's ``config.json`` works too (its extra keys, if any, are errors).
    """
    d = read_config_file(path) if path is not None else {}
    d = apply_overrides(d, list(overrides or []))
    try:
        return config_from_dict(d)
    except LivecellError as e:
        if path is not None:
            raise InputFileError(path, str(e)) from None
        raise
