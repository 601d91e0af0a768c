"""``predict --backend onnxruntime``: the network run by ONNX Runtime on the CPU.

:func:`load_onnx_model` returns a :class:`~livecell_seg.model.folder.LoadedModel` whose ``net`` is an
:class:`OnnxRuntimeNet`, so everything above the network (normalization, stride padding, tiles,
TTA, the watershed, the outputs) is the same code as with PyTorch.

The ONNX file comes from the model folder's ``model.onnx`` when its recorded fingerprint matches the
folder's weights (``livecell-seg export --model DIR --format onnx --out DIR/model.onnx``), else from
a cache (``$LIVECELL_SEG_CACHE`` or ``~/.cache/livecell-seg``, ``onnx/<fingerprint>.onnx``), exported
there once on first use (that needs the ``[onnx]`` extra; running needs only ``onnxruntime``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import LivecellError
from ..model.folder import LoadedModel, load_model_dir, read_model_config, read_postprocess
from .network_export import FINGERPRINT_KEY, ONNX_FILE, export_onnx, missing_extra, model_fingerprint

log = logging.getLogger(__name__)


class OnnxRuntimeNet(torch.nn.Module):
    """A ``torch.nn.Module`` face for an ONNX Runtime session: ``(N, 1, H, W)`` float32 CPU tensor ->
    ``(N, C, H, W)`` probabilities (``returns_probabilities``: the sigmoid is inside the graph)."""

    returns_probabilities = True

    def __init__(self, session: Any, path: Path) -> None:
        super().__init__()
        self.session = session
        self.path = path
        self.input_name = session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (y,) = self.session.run(None, {self.input_name: arr})
        return torch.from_numpy(y)

    def __deepcopy__(self, memo: dict[int, Any]) -> OnnxRuntimeNet:
        return self  # the session is immutable; inference_net's prepared copy is the net itself


def cache_dir() -> Path:
    """Where exported ONNX files are cached: ``$LIVECELL_SEG_CACHE``, else ``$XDG_CACHE_HOME`` or
    ``~/.cache``, then ``livecell-seg``."""
    env = os.environ.get("LIVECELL_SEG_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "livecell-seg"


def make_session(path: str | Path, num_threads: int | None = None, spinning: bool = False) -> Any:
    """An ONNX Runtime CPU session with all graph optimizations and ``num_threads`` (default: all
    cores). ``spinning=False`` makes idle threads sleep instead of busy-wait (as
    ``OMP_WAIT_POLICY=PASSIVE`` does for PyTorch; see BENCHMARKS.md, ONNX section)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise missing_extra("onnx", e) from None
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = int(num_threads or os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise LivecellError(f"{path}: cannot load ONNX model ({str(e).splitlines()[0][:200]})") from None


def _fingerprint_of(session: Any) -> str | None:
    return session.get_modelmeta().custom_metadata_map.get(FINGERPRINT_KEY)


def onnx_session_for(
    model_dir: str | Path, num_threads: int | None = None, spinning: bool = False
) -> tuple[Any, Path]:
    """(session, file) for the network of ``model_dir``: its ``model.onnx`` when that matches the
    weights, else the cached export, made now if missing (a note is logged)."""
    d = Path(model_dir)
    fp = model_fingerprint(d)
    candidates = [d / ONNX_FILE, cache_dir() / "onnx" / f"{fp[:32]}.onnx"]
    for path in candidates:
        if path.is_file():
            session = make_session(path, num_threads, spinning)
            if _fingerprint_of(session) == fp:
                return session, path
    target = candidates[1]
    log.info(
        "exporting %s to ONNX once (cached as %s; 'livecell-seg export --format onnx --out %s' keeps it "
        "with the model)",
        d,
        target,
        d / ONNX_FILE,
    )
    model = load_model_dir(d, device="cpu")
    try:
        export_onnx(model, target)
    except OSError:  # cache not writable: export into a temporary folder for this run
        target = Path(tempfile.mkdtemp(prefix="livecell-seg-onnx-")) / f"{fp[:32]}.onnx"
        export_onnx(model, target)
    return make_session(target, num_threads, spinning), target


def load_onnx_model(
    model_dir: str | Path, num_threads: int | None = None, spinning: bool = False
) -> LoadedModel:
    """A model folder loaded for the onnxruntime backend (CPU): ``net`` is an :class:`OnnxRuntimeNet`."""
    d = Path(model_dir)
    config, mcfg = read_model_config(d)
    session, path = onnx_session_for(d, num_threads=num_threads, spinning=spinning)
    return LoadedModel(
        net=OnnxRuntimeNet(session, path),
        model_config=mcfg,
        config=config,
        postprocess_file=read_postprocess(d),
        path=d,
    )
