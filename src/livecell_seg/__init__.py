"""livecell-seg: U-Net + watershed instance segmentation for LIVECell phase-contrast images.

The front door for Python users::

    from livecell_seg import load_model_dir, segment_image, predict_paths, PredictSettings

    model = load_model_dir()                 # the bundled model (or a folder path)
    result = segment_image(model, image)     # result.labels: one integer per cell
    predict_paths(["images/"], "out/", settings=PredictSettings(rois=True))

These names are imported on first use, so ``import livecell_seg`` (and ``livecell-seg --help``)
stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "load_model_dir": "livecell_seg.model.folder",
    "LoadedModel": "livecell_seg.model.folder",
    "segment_image": "livecell_seg.inference.predict",
    "SegmentationResult": "livecell_seg.inference.predict",
    "predict_paths": "livecell_seg.inference.runner",
    "PredictSettings": "livecell_seg.inference.predict",
    "PredictSummary": "livecell_seg.inference.predict",
    "read_image": "livecell_seg.io",
    "read_labels": "livecell_seg.io",
    "write_labels": "livecell_seg.io",
}

__all__ = [
    "LoadedModel",
    "PredictSettings",
    "PredictSummary",
    "SegmentationResult",
    "__version__",
    "load_model_dir",
    "predict_paths",
    "read_image",
    "read_labels",
    "segment_image",
    "write_labels",
]

if TYPE_CHECKING:
    from .inference.predict import (
        PredictSettings,
        PredictSummary,
        SegmentationResult,
        segment_image,
    )
    from .inference.runner import predict_paths
    from .io import read_image, read_labels, write_labels
    from .model.folder import LoadedModel, load_model_dir


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'livecell_seg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
