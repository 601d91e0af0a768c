"""Network inference on whole images of any size: sliding-window tiles with Gaussian blending, TTA.

:func:`predict_maps` turns a raw 2-D grey image into the model's ``(C, H, W)`` sigmoid
probabilities (channel order of :data:`livecell_seg.model.heads.HEADS`):

- the image is normalized with :func:`livecell_seg.io.normalize_image`, exactly as in training;
- an image whose area is at most ``max(tile area, whole_max_pixels)`` runs **whole** (one forward
  pass: faster than overlapping tiles and free of seams); larger images are cut into
  ``tile``-sized windows that overlap by ``overlap`` and are blended with Gaussian weights;
- tile origins and sizes are multiples of the network's down-sampling factor (``2**depth``), so a
  tile sees the same pooling grid as the whole image; the image is reflect-padded at the
  bottom/right to that grid only (exactly as for a whole-image pass), the last tile of a row or
  column is moved back to end at the image border, and tiled and whole-image predictions agree
  everywhere up to the lack of context at inner tile edges;
- blending weights are Gaussian (sigma = tile / 8), but the outer quarter of each overlap next to
  an inner tile edge (where the network lacks context) gets no weight: this cuts the tiled/whole
  disagreement about 20-fold against plain Gaussian blending; tiles that touch the image border
  keep full weight up to that border (plain Gaussian weights would leave border pixels almost
  weightless);
- ``tta`` averages the 8 flips/rotations (or the 4 flips), each undone before averaging.

We use our own sliding window rather than MONAI's ``sliding_window_inference``: MONAI pads images
smaller than a tile with zeros (a black frame the network never saw in training) and does not align
tiles to the pooling grid.

torch is imported inside the functions (the CLI imports this module lazily anyway).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..io import normalize_image
from .scale import zoom_image, zoom_maps

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..model.folder import LoadedModel

#: images up to this many pixels (after padding) run whole by default; larger ones are tiled.
#: 1024 x 1024 keeps CPU activation memory of the default U-Net well under 2 GB.
WHOLE_MAX_PIXELS = 1024 * 1024

#: Gaussian blending: sigma = SIGMA_SCALE * tile side (MONAI's and nnU-Net's default)
SIGMA_SCALE = 0.125
#: fraction of the overlap, next to each inner tile edge, that gets no blending weight
TRIM = 0.25


def resolve_device(device: str | None, model: LoadedModel | None = None) -> str:
    """``None``/``"auto"`` -> the model's device (or CUDA when available); else ``device`` checked."""
    import torch

    if device in (None, "auto"):
        if model is not None and device is None:
            try:
                return str(next(model.net.parameters()).device)
            except StopIteration:  # pragma: no cover - a model without parameters
                return "cpu"
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        from ..errors import LivecellError

        raise LivecellError(f"device {device!r} requested but CUDA is not available (use --device cpu)")
    return str(device)


def _tile_shape(tile: int | tuple[int, int], stride: int) -> tuple[int, int]:
    th, tw = (tile, tile) if isinstance(tile, (int, np.integer)) else tuple(tile)
    if th < 1 or tw < 1:
        raise ValueError(f"tile must be positive, got {tile!r}")
    # round to the pooling grid (at least one stride)
    return max(stride, int(th) // stride * stride), max(stride, int(tw) // stride * stride)


def _ceil_to(n: int, m: int) -> int:
    return -(-n // m) * m


def _axis_tiles(length: int, tile: int, step: int, stride: int) -> list[tuple[int, int]]:
    """(origin, size) of the tiles along one axis of a stride-aligned ``length``.

    Origins are multiples of ``step`` (itself a multiple of ``stride``); the last tile is moved
    back onto the pooling grid so that it ends exactly at ``length`` (it may then be up to
    ``stride - 1`` pixels larger than ``tile``). No padding beyond the aligned image is needed.
    """
    if length <= tile:
        return [(0, length)]
    out: list[tuple[int, int]] = []
    s = 0
    while s + tile < length:
        out.append((s, tile))
        s += step
    last = (length - tile) // stride * stride
    out.append((last, length - last))
    return out


def _axis_weight(tile: int, at_start: bool, at_end: bool, trim: int = 0) -> np.ndarray:
    """1-D Gaussian blending weight; flat (=1) from the centre to a side that is an image border.

    The ``trim`` pixels next to an inner tile edge (where the network lacks context) get ~zero weight.
    """
    x = np.arange(tile, dtype=np.float64)
    c = (tile - 1) / 2.0
    w = np.exp(-0.5 * ((x - c) / (SIGMA_SCALE * tile)) ** 2)
    if at_start:
        w[x <= c] = 1.0
    elif trim:
        w[:trim] = 0.0
    if at_end:
        w[x >= c] = 1.0
    elif trim:
        w[tile - trim :] = 0.0
    return np.maximum(w, 1e-12)


def _pad_reflect(img: np.ndarray, ph: int, pw: int) -> np.ndarray:
    if ph == 0 and pw == 0:
        return img
    h, w = img.shape
    # numpy's reflect needs >= 2 samples along an axis; a 1-pixel axis is simply repeated
    mode_h = "reflect" if h > 1 else "edge"
    mode_w = "reflect" if w > 1 else "edge"
    if mode_h == mode_w:
        return np.pad(img, ((0, ph), (0, pw)), mode=mode_h)
    return np.pad(np.pad(img, ((0, ph), (0, 0)), mode=mode_h), ((0, 0), (0, pw)), mode=mode_w)


def _tta_transforms(tta: bool | str | int) -> list[tuple[int, bool]]:
    """(k rot90, flip) pairs: 1 (identity), 4 (flips) or 8 (dihedral group)."""
    if tta is True or (not isinstance(tta, bool) and tta in ("d4", 8)):  # note: True == 1 in Python
        return [(k, f) for k in range(4) for f in (False, True)]
    if tta is False or tta is None or (not isinstance(tta, bool) and tta in (0, 1)):
        return [(0, False)]
    if tta in ("flips", 4):
        return [(0, False), (0, True), (2, False), (2, True)]  # id, h-flip, rot180 (= h+v), v-flip
    raise ValueError(f"tta must be False, True/8 or 'flips'/4, got {tta!r}")


def _autocast(device: str, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    import torch

    if bf16:
        return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_precision(precision: str, device: str) -> bool:
    """``"auto"`` -> bf16 autocast on CUDA, float32 on CPU; ``"bf16"``/``"fp32"`` force it. True = bf16."""
    if precision == "auto":
        return device.startswith("cuda")
    if precision in ("bf16", "fp32"):
        return precision == "bf16"
    raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")


def _fuse_conv_bn(net: Any) -> Any:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d in an ``nn.Sequential``
    into the convolution (one pass over the activations less per layer; same outputs)."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for mod in net.modules():
        if not isinstance(mod, torch.nn.Sequential):
            continue
        items = list(mod._modules.items())
        for (n1, a), (n2, b) in zip(items, items[1:]):
            if (
                isinstance(a, torch.nn.Conv2d)
                and isinstance(b, torch.nn.BatchNorm2d)
                and b.track_running_stats
                and b.running_mean is not None
            ):
                mod._modules[n1] = fuse_conv_bn_eval(a, b)
                mod._modules[n2] = torch.nn.Identity()
    return net


def inference_net(model: LoadedModel, device: str, channels_last: bool = False, fuse: bool = True) -> Any:
    """An eval-mode copy of ``model.net`` on ``device`` prepared for inference (Conv+BN folded,
    optionally channels_last); the original network is left untouched.

    The copy is kept on the model, one at a time (another device or layout replaces it). The key
    includes every parameter's and buffer's in-place version counter and storage, so a network
    that was trained or reloaded since is prepared afresh.
    """
    import copy

    import torch

    net = model.net
    tensors = [*net.parameters(), *net.buffers()]
    key = (
        id(net),
        device,
        channels_last,
        fuse,
        tuple(t._version for t in tensors),
        tuple(t.data_ptr() for t in tensors),
    )
    hit = model._prepared
    if hit is not None and hit[0] == key:
        return hit[1]
    model._prepared = None  # one prepared copy at a time: free the old one before copying
    with torch.no_grad():
        prepared = copy.deepcopy(net).eval().to(device)
        if fuse:
            _fuse_conv_bn(prepared)
        if channels_last:
            prepared = prepared.to(memory_format=torch.channels_last)
    model._prepared = (key, prepared)
    return prepared


def make_forward(
    net: Any,
    device: str,
    tta: bool | str | int = False,
    channels_last: bool = False,
    bf16: bool = False,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function ``(N,1,h,w) float32 tensor on device -> (N,C,h,w) float32 probabilities``.

    Applies sigmoid, bf16 autocast when ``bf16``, and the TTA transforms (each undone before averaging).
    """
    import torch

    transforms = _tta_transforms(tta)
    # a network that outputs probabilities itself (the onnxruntime backend) gets no second sigmoid
    probabilities = bool(getattr(net, "returns_probabilities", False))

    def run(x: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, bf16):
            y = net(x)
        return y.float() if probabilities else torch.sigmoid(y.float())

    def forward(x: torch.Tensor) -> torch.Tensor:
        acc: torch.Tensor | None = None
        for k, flip in transforms:
            t = torch.flip(x, dims=(-1,)) if flip else x
            t = torch.rot90(t, k, dims=(-2, -1)) if k else t
            y = run(t)
            y = torch.rot90(y, -k, dims=(-2, -1)) if k else y
            y = torch.flip(y, dims=(-1,)) if flip else y
            acc = y if acc is None else acc.add_(y)
        assert acc is not None
        return acc / len(transforms) if len(transforms) > 1 else acc

    return forward


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def predict_maps_scaled(
    model: LoadedModel, image: np.ndarray, scale: float = 1.0, **kwargs: Any
) -> np.ndarray:
    """:func:`predict_maps` of ``image`` zoomed by ``scale``, the maps resized back to the image's size.

    The image is normalized first (so the zoom does not change its intensity statistics), zoomed
    with :func:`livecell_seg.inference.scale.zoom_image` and the ``(C, h, w)`` maps linearly resized back.
    """

    if scale == 1.0:
        return predict_maps(model, image, **kwargs)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {img.shape}")
    x = img if kwargs.pop("normalized", False) else normalize_image(img)
    maps = predict_maps(model, zoom_image(np.asarray(x, np.float32), scale), normalized=True, **kwargs)
    return zoom_maps(maps, img.shape)


def _predict_tiled(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: np.ndarray,
    c: int,
    stride: int,
    tile_shape: tuple[int, int],
    overlap: float,
    batch_size: int,
    dev: str,
) -> np.ndarray:
    """``(c, H, W)`` maps of the normalized image ``x`` from overlapping ``tile_shape`` windows on the
    stride grid, blended with Gaussian weights trimmed at inner tile edges (see the module's notes)."""
    import torch

    th, tw = tile_shape
    h, w = x.shape
    hp, wp = _ceil_to(h, stride), _ceil_to(w, stride)
    step_h = max(stride, int(th * (1.0 - overlap)) // stride * stride)
    step_w = max(stride, int(tw * (1.0 - overlap)) // stride * stride)
    tiles_y = _axis_tiles(hp, th, step_h, stride)
    tiles_x = _axis_tiles(wp, tw, step_w, stride)
    xp = _pad_reflect(x, hp - h, wp - w)  # the same stride padding as a whole-image pass
    src = torch.from_numpy(np.ascontiguousarray(xp)).to(dev)
    acc = torch.zeros((c, hp, wp), dtype=torch.float32, device=dev)
    norm = torch.zeros((hp, wp), dtype=torch.float32, device=dev)
    trim_h = int(max(0, th - step_h) * TRIM)
    trim_w = int(max(0, tw - step_w) * TRIM)

    weights: dict[tuple[int, bool, bool, int, bool, bool], torch.Tensor] = {}

    def weight(y0: int, ty: int, x0: int, tx: int) -> torch.Tensor:
        key = (ty, y0 == 0, y0 + ty >= hp, tx, x0 == 0, x0 + tx >= wp)
        if key not in weights:  # at most a few distinct tile kinds: build each once
            wy = _axis_weight(ty, key[1], key[2], trim_h)
            wx = _axis_weight(tx, key[4], key[5], trim_w)
            weights[key] = torch.from_numpy(np.outer(wy, wx).astype(np.float32)).to(dev)
        return weights[key]

    # group equal-sized tiles so they can be batched
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for y0, ty in tiles_y:
        for x0, tx in tiles_x:
            groups.setdefault((ty, tx), []).append((y0, x0))
    for (ty, tx), origins in groups.items():
        for chunk in _batches(origins, max(1, int(batch_size))):
            batch = torch.stack([src[y0 : y0 + ty, x0 : x0 + tx] for y0, x0 in chunk])[:, None]
            probs = forward(batch)
            for (y0, x0), pr in zip(chunk, probs):
                wgt = weight(y0, ty, x0, tx)
                acc[:, y0 : y0 + ty, x0 : x0 + tx].add_(pr * wgt)
                norm[y0 : y0 + ty, x0 : x0 + tx].add_(wgt)
    out = (acc / norm)[:, :h, :w]
    return np.ascontiguousarray(out.cpu().numpy())


def predict_maps(
    model: LoadedModel,
    image: np.ndarray,
    *,
    tile: int | tuple[int, int] = 512,
    overlap: float = 0.25,
    tta: bool | str | int = False,
    batch_size: int = 4,
    device: str | None = None,
    whole: bool | None = None,
    whole_max_pixels: int | None = None,
    channels_last: bool | None = None,
    optimize: bool = True,
    precision: str = "auto",
    normalized: bool = False,
) -> np.ndarray:
    """Probability maps ``(C, H, W)`` float32 of a raw 2-D grey ``image`` (any dtype, any size).

    ``whole=None`` (auto) runs the image in one pass when its (grid-padded) area is at most
    ``max(tile area, whole_max_pixels)`` (default :data:`WHOLE_MAX_PIXELS`), else tiles it;
    ``True``/``False`` force either.
    ``tile`` (side, or (h, w)) and the tile step ``tile * (1 - overlap)`` are rounded down to
    multiples of the network's stride. ``tta``: ``True`` = 8 flips/rotations, ``"flips"`` = 4.
    ``device=None`` uses the device the network is on. ``optimize`` (default) runs a cached,
    eval-mode copy of the network with BatchNorm folded into the convolutions (the model itself
    is not modified); ``channels_last`` (default: on CPU) uses that memory layout. Both were
    measured faster on CPU (benchmarks/bench_predict.py). With ``optimize=False`` the network
    itself is put in eval mode and moved to ``device``. ``precision``: ``"auto"`` = bf16 autocast
    on CUDA, float32 on CPU (bf16 on a CPU with native bf16 is faster but not the default: it
    shifts probabilities by up to a few 0.01); ``"bf16"``/``"fp32"`` force either.
    ``normalized=True`` skips normalization (``image`` already went through ``normalize_image``).
    """
    import torch

    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {img.shape}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if img.size == 0:
        raise ValueError("empty image")
    dev = resolve_device(device, model)
    if channels_last is None:
        channels_last = dev == "cpu"
    if optimize:
        net = inference_net(model, dev, channels_last=channels_last)
    else:
        net = model.net
        if device is not None:
            net.to(dev)
        net.eval()
    stride = model.stride
    th, tw = _tile_shape(tile, stride)
    h, w = img.shape
    x = img if normalized else normalize_image(img)
    x = np.asarray(x, dtype=np.float32)

    hp, wp = _ceil_to(h, stride), _ceil_to(w, stride)
    if whole is None:
        if whole_max_pixels is None:
            whole_max_pixels = WHOLE_MAX_PIXELS
        whole = hp * wp <= max(th * tw, whole_max_pixels)
    forward = make_forward(
        net, dev, tta=tta, channels_last=channels_last, bf16=resolve_precision(precision, dev)
    )

    with torch.inference_mode():
        if whole:
            xp = _pad_reflect(x, hp - h, wp - w)
            t = torch.from_numpy(np.ascontiguousarray(xp))[None, None].to(dev)
            out = forward(t)[0, :, :h, :w]
            return np.ascontiguousarray(out.float().cpu().numpy())

        return _predict_tiled(
            forward, x, int(model.model_config.out_channels), stride, (th, tw), overlap, batch_size, dev
        )
