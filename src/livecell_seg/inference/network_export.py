"""The network alone (not the pipeline around it) written as ONNX or TorchScript.

- :func:`export_onnx`: ``(N, 1, H, W)`` normalized image -> ``(N, C, H, W)`` sigmoid probabilities,
  ``H`` and ``W`` multiples of the network's stride (``2**depth``), batch, height and width dynamic.
  The model folder's fingerprint (:func:`model_fingerprint`) is stored in the file's metadata, so
  ``predict --backend onnxruntime`` (:mod:`livecell_seg.inference.onnx_backend`) can tell whether a
  ``model.onnx`` belongs to the weights next to it (:func:`matching_onnx`).
- :func:`export_torchscript`: the same network traced as TorchScript.

The bioimage.io package, which runs the whole pipeline for its test tensors and cover, is built on
these in :mod:`livecell_seg.bioimageio_export`. Heavy imports (torch, onnx) happen inside the functions;
the ``[onnx]`` extra installs what they need.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LivecellError
from ..io import atomic_path
from ..model.folder import MODEL_FILE, model_to_dict, read_model_config
from ..model.heads import head_channels
from .tiling import inference_net

if TYPE_CHECKING:  # pragma: no cover
    from ..model.folder import LoadedModel

#: ONNX opset of exported files (onnxruntime >= 1.14, deepImageJ's and ilastik's runtimes read it)
ONNX_OPSET = 18
#: bumped when the exported graph changes, so that cached exports are redone
EXPORT_VERSION = "1"
#: metadata key of the model folder fingerprint in exported ONNX files
FINGERPRINT_KEY = "livecell_seg.fingerprint"
#: the ONNX file of a model folder (``export --format onnx --out DIR/model.onnx``), used when it matches
ONNX_FILE = "model.onnx"


def missing_extra(extra: str, e: ImportError) -> LivecellError:
    """The one-line error for an optional dependency of the ``[extra]`` extra that is not installed."""
    return LivecellError(
        f"this needs the optional dependencies of livecell-seg[{extra}] ({e.name or e} is not installed): "
        f"pip install 'livecell-seg[{extra}]'"
    )


def model_fingerprint(model_dir: str | Path) -> str:
    """sha256 of a model folder's weights and architecture (``model.pt`` + the config's ``model``
    entry, less what is not part of the network: ``cell_diameter``, ``predict_scale``) and of the
    export format: two folders with the same network get the same fingerprint."""
    d = Path(model_dir)
    _, mcfg = read_model_config(d)
    arch = {k: v for k, v in model_to_dict(mcfg).items() if k not in ("cell_diameter", "predict_scale")}
    h = hashlib.sha256()
    h.update((d / MODEL_FILE).read_bytes())
    h.update(json.dumps(arch, sort_keys=True).encode())
    h.update(f"opset={ONNX_OPSET};export={EXPORT_VERSION}".encode())
    return h.hexdigest()


def probability_network(model: LoadedModel) -> Any:
    """A CPU, eval-mode ``torch.nn.Module``: normalized ``(N, 1, H, W)`` -> sigmoid probabilities,
    BatchNorm folded into the convolutions (the same prepared copy ``predict`` runs on a CPU)."""
    import torch

    class ProbabilityNet(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.net(x))

    net = copy.deepcopy(inference_net(model, "cpu", channels_last=False, fuse=True))
    return ProbabilityNet(net).eval()


def export_onnx(model: LoadedModel, out: str | Path, *, opset: int = ONNX_OPSET) -> Path:
    """Write the network of ``model`` (a loaded model folder) as one ONNX file, atomically.

    Input ``input``: ``(N, 1, H, W)`` float32, the image normalized as by
    :func:`livecell_seg.io.normalize_image`, ``H``/``W`` multiples of the stride; output
    ``output``: ``(N, C, H, W)`` float32 probabilities (channels of the model's head).
    """
    try:
        import onnx
        import onnxscript  # noqa: F401 - torch's ONNX exporter needs it
        import torch
    except ImportError as e:
        raise missing_extra("onnx", e) from None

    out = Path(out)
    net = probability_network(model)
    stride = model.stride
    batch = torch.export.Dim("batch", min=1, max=4096)
    hs = torch.export.Dim("h_blocks", min=1, max=4096)
    ws = torch.export.Dim("w_blocks", min=1, max=4096)
    example = torch.zeros(1, int(model.model_config.in_channels), 4 * stride, 4 * stride)
    # the exporter prints progress lines; keep the user's terminal clean
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        program = torch.onnx.export(
            net,
            (example,),
            None,
            dynamo=True,
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes={"x": {0: batch, 2: stride * hs, 3: stride * ws}},
            opset_version=opset,
            optimize=True,
            verbose=False,
        )
    proto = program.model_proto
    meta = {
        "livecell_seg.head": model.head,
        "livecell_seg.channels": ",".join(head_channels(model.head)),
        "livecell_seg.stride": str(stride),
        "livecell_seg.input": "image normalized by percentiles 1/99.8 (livecell_seg.io.normalize_image)",
        "livecell_seg.output": "sigmoid probabilities",
    }
    if model.path is not None:
        meta[FINGERPRINT_KEY] = model_fingerprint(model.path)
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "livecell-seg"
    onnx.checker.check_model(proto)
    with atomic_path(out) as tmp:
        onnx.save_model(proto, str(tmp))
    return out


def matching_onnx(model: LoadedModel) -> Path | None:
    """The model folder's ``model.onnx`` when it was exported from these very weights (its
    fingerprint matches), else None."""
    path = model.path / ONNX_FILE if model.path is not None else None
    if path is None or not path.is_file():
        return None
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - an unreadable file is simply not reused
        return None
    meta = {p.key: p.value for p in proto.metadata_props}
    return path if meta.get(FINGERPRINT_KEY) == model_fingerprint(model.path) else None


def export_torchscript(model: LoadedModel, out: str | Path) -> Path:
    """Write the network as TorchScript (traced; probabilities out), atomically. Inputs must have
    height and width multiples of the stride (the trace records no padding)."""
    import warnings

    import torch

    net = probability_network(model)
    stride = model.stride
    example = torch.zeros(1, int(model.model_config.in_channels), 4 * stride, 4 * stride)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(net, example)
    with atomic_path(out) as tmp:
        traced.save(str(tmp))
    return Path(out)
