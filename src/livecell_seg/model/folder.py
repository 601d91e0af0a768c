"""The U-Net and the self-describing model folder.

A model folder holds ``model.pt`` (the network's state dict), ``config.json`` (the training
config, whose ``model`` entry is a :class:`ModelConfig`) and, once tuned, ``postprocess.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..dataclass_dicts import bounded, check_ranges, settings_from_dict
from ..errors import InputFileError, LivecellError
from ..io import atomic_path, read_json, write_json_atomic
from .heads import HEADS, head_channels
from .params import PostprocessParams

#: widest level of our U-Net (``base_features * 2**(depth - 1)`` channels) accepted: 4096 channels
#: already mean 0.6 GiB of weights per 3x3 convolution (a model config is a size parameter too)
MAX_WIDTH = 4096

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
POSTPROCESS_FILE = "postprocess.json"


@dataclass
class ModelConfig:
    """Architecture of the U-Net.

    ``arch``: ``"unet"`` (ours: configurable ``depth`` and ``base_features``, channels double per
    level, bilinear upsampling) or ``"monai_basicunet"`` (MONAI's BasicUNet, depth 4, features
    ``(f, f, 2f, 4f, 8f, f)``). ``head`` picks the output channels (see :mod:`livecell_seg.model.heads`).
    ``cell_diameter``: the cell diameter (pixels) the network segments best; ``train`` records the
    typical diameter of its training data (:func:`livecell_seg.inference.scale.training_diameter`),
    which may be calibrated afterwards on images the model never trained on (the bundled model's
    was: its ``provenance.json`` says how); ``predict --scale auto`` and ``--diameter`` rescale
    images so their cells come to this size. ``predict_scale``: the zoom ``predict`` uses when
    none is given (a number, or ``"auto"``, which needs ``cell_diameter``). Neither is part of the
    architecture.
    """

    head: str = "fg+boundary"
    arch: str = "unet"
    in_channels: int = bounded(1, 1, 64)
    base_features: int = bounded(16, 1, 1024)
    depth: int = bounded(4, 1, 10)
    norm: str = "batch"  # batch | instance | group
    dropout: float = bounded(0.0, 0, 0.99)
    cell_diameter: float | None = bounded(None, 1e-6, 1e6)
    predict_scale: float | str = bounded(1.0, 0.05, 20)

    def __post_init__(self) -> None:
        """Refuse an architecture that cannot be built (unknown head/arch/norm, non-positive sizes)."""
        if self.head not in HEADS:
            raise LivecellError(f"model: unknown head {self.head!r} (choose {', '.join(HEADS)})")
        if self.arch not in ("unet", "monai_basicunet"):
            raise LivecellError(f"model: unknown arch {self.arch!r} (choose unet or monai_basicunet)")
        if self.norm not in ("batch", "instance", "group"):
            raise LivecellError(f"model: unknown norm {self.norm!r} (choose batch, instance or group)")
        for name, lo, hi in (("in_channels", 1, 64), ("base_features", 1, 1024), ("depth", 1, 10)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise LivecellError(f"model: {name} must be an integer in [{lo}, {hi}], got {v!r}")
        widest = self.base_features * 2 ** (self.depth - 1)
        if self.arch == "unet" and widest > MAX_WIDTH:
            raise LivecellError(
                f"model: base_features {self.base_features} x 2^(depth - 1) = {widest} channels at the "
                f"deepest level, above {MAX_WIDTH} (one 3x3 convolution there would hold "
                f"{9 * widest * widest * 4 / 2**30:,.1f} GiB of weights)"
            )
        if (
            isinstance(self.dropout, bool)
            or not isinstance(self.dropout, (int, float))
            or not 0 <= self.dropout < 1
        ):
            raise LivecellError(f"model: dropout must be in [0, 1), got {self.dropout!r}")
        d = self.cell_diameter
        if d is not None and (isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 < d < 1e6):
            raise LivecellError(f"model: cell_diameter must be a positive number of pixels, got {d!r}")
        z = self.predict_scale  # "auto" needs cell_diameter, which train measures: checked by predict
        if z != "auto" and (isinstance(z, bool) or not isinstance(z, (int, float)) or not 0.05 <= z <= 20):
            raise LivecellError(f"model: predict_scale must be 'auto' or a zoom in [0.05, 20], got {z!r}")
        check_ranges(self, "model")

    @property
    def out_channels(self) -> int:
        return len(head_channels(self.head))

    @property
    def stride(self) -> int:
        """The network's total down-sampling factor: input sizes are padded to a multiple of it.

        The one place it is computed (inference tiles, training validation and export read it).
        """
        if self.arch == "unet":
            return 2 ** int(self.depth)
        return 16  # MONAI BasicUNet: 4 pooling levels

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from a ``config.json``'s ``model`` entry (:func:`~livecell_seg.dataclass_dicts.settings_from_dict`:
        unknown keys and mistyped values are one-line errors naming the key)."""
        return settings_from_dict(cls, d, "model")


def build_model(cfg: ModelConfig):  # noqa: ANN201 - returns torch.nn.Module
    """Build the network described by ``cfg`` (imports torch)."""
    head_channels(cfg.head)  # validate
    if cfg.arch == "unet":
        return UNet(cfg)
    if cfg.arch == "monai_basicunet":
        from monai.networks.nets import BasicUNet

        f = cfg.base_features
        return BasicUNet(
            spatial_dims=2,
            in_channels=cfg.in_channels,
            out_channels=cfg.out_channels,
            features=(f, f, 2 * f, 4 * f, 8 * f, f),
            dropout=cfg.dropout,
        )
    raise LivecellError(f"unknown model arch {cfg.arch!r} (choose unet or monai_basicunet)")


def unet_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """Keyword arguments of :class:`livecell_seg.model.unet.UNet` for ``cfg`` (``arch: unet``)."""
    return {
        "in_channels": int(cfg.in_channels),
        "out_channels": int(cfg.out_channels),
        "base_features": int(cfg.base_features),
        "depth": int(cfg.depth),
        "norm": cfg.norm,
        "dropout": float(cfg.dropout),
    }


def _torch_unet(cfg: ModelConfig):  # noqa: ANN202
    from .unet import UNet as TorchUNet

    return TorchUNet(**unet_kwargs(cfg))  # cfg was checked by ModelConfig.__post_init__


class _LazyUNet:
    """``UNet(cfg)`` builds our U-Net (:class:`livecell_seg.model.unet.UNet`); torch is imported only
    when it is first used."""

    def __call__(self, cfg: ModelConfig):  # noqa: ANN204
        return _torch_unet(cfg)


UNet = _LazyUNet()


@dataclass
class LoadedModel:
    """A network loaded from a model folder, with its configs: the one object that knows its
    network, its architecture (:attr:`stride`) and its typed post-processing (:attr:`params`).

    It also holds the copy of its network prepared for inference
    (:func:`livecell_seg.inference.tiling.inference_net`), one at a time.
    """

    net: Any
    model_config: ModelConfig
    config: dict[str, Any] = field(default_factory=dict)
    #: the folder's ``postprocess.json`` as read (with its head and tuning records; None: not tuned);
    #: the typed parameters are :attr:`params`
    postprocess_file: dict[str, Any] | None = None
    path: Path | None = None
    #: (key, network) of :func:`livecell_seg.inference.tiling.inference_net`'s prepared copy of ``net``
    _prepared: tuple[tuple[Any, ...], Any] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def head(self) -> str:
        return self.model_config.head

    @property
    def stride(self) -> int:
        """The network's total down-sampling factor (:attr:`ModelConfig.stride`): tile sizes and
        origins are multiples of it, inputs are padded to it."""
        return self.model_config.stride

    @property
    def params(self) -> PostprocessParams:
        """The folder's typed post-processing parameters (``postprocess.json``, else the defaults).

        The one place a loaded model's ``postprocess.json`` is typed (predict, tuning, export,
        pseudo-labels, the Dask runner and the app read it here); an invalid file is a one-line
        :class:`InputFileError` naming it.
        """
        return typed_params(self.postprocess_file, self.path)


def save_model_dir(
    path: str | Path, net: Any, config: dict[str, Any], postprocess: dict | None = None
) -> Path:
    """Write ``model.pt`` and ``config.json`` (and ``postprocess.json`` if given) atomically.

    ``config`` must hold a ``model`` entry (a :class:`ModelConfig` as dict).
    """
    import torch

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if "model" not in config:
        raise ValueError("config needs a 'model' entry")
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    with atomic_path(path / MODEL_FILE) as tmp:
        torch.save(state, tmp)
    write_json_atomic(path / CONFIG_FILE, config)
    if postprocess is not None:
        write_json_atomic(path / POSTPROCESS_FILE, postprocess)
    return path


def default_model_dir() -> Path:
    """The model bundled with the package (used when no ``--model`` is given)."""
    return Path(__file__).resolve().parent.parent / "models" / "default"


def read_model_config(path: str | Path) -> tuple[dict[str, Any], ModelConfig]:
    """Read ``config.json`` of a model folder (no torch needed)."""
    p = Path(path) / CONFIG_FILE
    if not p.is_file():
        raise InputFileError(Path(path), f"not a model folder (no {CONFIG_FILE})")
    try:
        config = read_json(p)
    except InputFileError as e:
        raise InputFileError(p, f"invalid model config ({e.problem})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise InputFileError(p, "invalid model config (no 'model' object)")
    try:
        return config, ModelConfig.from_dict(config["model"])
    except (KeyError, TypeError, ValueError, LivecellError) as e:
        raise InputFileError(p, f"invalid model config ({e})") from None


def read_postprocess(path: str | Path) -> dict[str, Any] | None:
    """Read ``postprocess.json`` of a model folder (checked), or None when it has none."""
    p = Path(path) / POSTPROCESS_FILE
    if not p.is_file():
        return None
    d = read_json(p)
    PostprocessParams.checked(d, p)  # one-line InputFileError for invalid values
    return d


def typed_params(postprocess: dict[str, Any] | None, path: str | Path | None = None) -> PostprocessParams:
    """A model folder's ``postprocess.json`` content (``None``: none) as typed parameters.

    The one rule for it (defaults when absent; a one-line :class:`InputFileError` naming
    ``path/postprocess.json`` when invalid), used by :attr:`LoadedModel.params` and :func:`read_params`.
    """
    where = Path(path) / POSTPROCESS_FILE if path is not None else POSTPROCESS_FILE
    return PostprocessParams.checked(postprocess or {}, where)


def read_params(path: str | Path) -> PostprocessParams:
    """A model folder's typed post-processing parameters without loading the network (no torch)."""
    return typed_params(read_postprocess(path), path)


def load_model_dir(path: str | Path | None = None, device: str = "cpu") -> LoadedModel:
    """Load a model folder (default: the bundled model) onto ``device``, in eval mode."""
    import torch

    path = Path(path) if path is not None else default_model_dir()
    config, mcfg = read_model_config(path)
    weights = path / MODEL_FILE
    if not weights.is_file():
        raise InputFileError(path, f"not a model folder (no {MODEL_FILE})")
    net = build_model(mcfg)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise InputFileError(weights, f"cannot load weights ({type(e).__name__})") from None
    problem = weights_mismatch(net.state_dict(), state)
    if problem is not None:
        raise InputFileError(
            weights, f"does not fit {path / CONFIG_FILE} ({problem}); the folder mixes two models?"
        )
    try:
        net.load_state_dict(state)
    except Exception as e:  # noqa: BLE001
        raise InputFileError(weights, f"cannot load weights ({type(e).__name__})") from None
    net.to(device).eval()
    return LoadedModel(
        net=net, model_config=mcfg, config=config, postprocess_file=read_postprocess(path), path=path
    )


def weights_mismatch(expected: dict[str, Any], state: Any) -> str | None:
    """How a loaded state dict differs from the one the config's network has: the first layer
    whose shape differs (both shapes), else the missing and unexpected layers; None if they fit."""
    if not isinstance(state, dict):
        return f"the weights file holds a {type(state).__name__}, not a state dict"

    def shape(v: Any) -> str:
        return "x".join(str(int(n)) for n in getattr(v, "shape", ())) or "scalar"

    for k, v in expected.items():
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(v.shape):
            return f"layer {k}: the weights have shape {shape(state[k])}, the config's network {shape(v)}"
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} layer(s) of the config's network missing, e.g. {missing[0]}")
        if extra:
            parts.append(f"{len(extra)} layer(s) the config's network does not have, e.g. {extra[0]}")
        return "; ".join(parts)
    return None


def model_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    """ModelConfig as a JSON-ready dict."""
    return asdict(cfg)
