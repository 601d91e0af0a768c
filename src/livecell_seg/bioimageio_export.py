"""Export a model folder as a BioImage Model Zoo (bioimage.io) package.

- :func:`export_bioimageio`: a zip with ``rdf.yaml`` (bioimage.io model spec 0.5) that holds the
  weights three ways (``pytorch_state_dict`` built from :mod:`livecell_seg.model.unet`, which is copied
  into the package; ``torchscript``; ``onnx``), the percentile normalization as a ``scale_range``
  preprocessing step, test input/output tensors computed with livecell-seg's own inference, a
  cover image, a README and the model folder's ``postprocess.json`` and ``config.json`` as
  attachments. The watershed is not part of the package: it is run by ``livecell-seg postprocess``.
- :func:`validate_bioimageio`: bioimage.io's own checks (``bioimageio.spec`` format validation,
  ``bioimageio.core`` model test) on a written package.

The network alone (ONNX, TorchScript, the model folder's fingerprint) is written by
:mod:`livecell_seg.inference.network_export`, which ``predict --backend onnxruntime`` uses too.
Heavy imports (torch, onnx, bioimageio) happen inside the functions; the ``[onnx]`` and
``[bioimageio]`` extras install what they need.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import sample_paths
from .errors import LivecellError, OutputFileError
from .inference.network_export import (
    ONNX_OPSET,
    export_onnx,
    export_torchscript,
    matching_onnx,
    missing_extra,
)
from .inference.outputs import overlay_image
from .inference.postprocess import PostprocessParams
from .inference.predict import segment_image
from .inference.tiling import predict_maps
from .io import describe_os_error, list_images, read_image
from .model.folder import MODEL_FILE, model_to_dict, unet_kwargs
from .model.heads import CHANNELS, head_channels

if TYPE_CHECKING:  # pragma: no cover
    from .model.folder import LoadedModel

LIVECELL_CITATION = (
    "Edlund, C., Jackson, T.R., Khalid, N. et al. LIVECell - A large-scale dataset for label-free live "
    "cell segmentation. Nature Methods 18, 1038-1045 (2021)"
)
LIVECELL_DOI = "10.1038/s41592-021-01249-6"
#: percentiles of livecell_seg.io.normalize_image (the scale_range preprocessing of the package)
NORM_PERCENTILES = (1.0, 99.8)


# ------------------------------------------------------------------------------------------------
# bioimage.io


@dataclass
class BioimageioCheck:
    """What bioimage.io's own tools said about a package: ``format_status`` from
    ``bioimageio.spec`` (``valid-format`` is good), ``test_status`` from ``bioimageio.core``'s model
    test (``passed`` is good; None when not run), the messages of failed checks, seconds taken."""

    format_status: str
    test_status: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    weight_formats: list[str] = field(default_factory=list)
    format_s: float = 0.0
    test_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.format_status == "valid-format" and self.test_status in (None, "passed")


def _summary_messages(summary: Any) -> tuple[list[str], list[str]]:
    errors, warns = [], []
    for d in summary.details:
        for e in d.errors:
            errors.append(f"{d.name}: {'.'.join(map(str, e.loc))}: {e.msg}".strip())
        for w in d.warnings:
            warns.append(f"{d.name}: {'.'.join(map(str, w.loc))}: {w.msg}".strip())
    return errors, warns


def validate_bioimageio(path: str | Path, *, test: bool = True) -> BioimageioCheck:
    """Run bioimage.io's validator (``bioimageio.spec``, with file checks) and, with ``test``,
    ``bioimageio.core.test_model`` (every weight format reproduces the test outputs, and runs on
    other input sizes and batch sizes) on a package zip or ``rdf.yaml``."""
    try:
        from bioimageio.spec import load_description
    except ImportError as e:
        raise missing_extra("bioimageio", e) from None

    t0 = time.perf_counter()
    descr = load_description(str(path), perform_io_checks=True)
    summary = descr.validation_summary
    errors, warns = _summary_messages(summary)
    check = BioimageioCheck(format_status=str(summary.status), errors=errors, warnings=warns)
    check.format_s = time.perf_counter() - t0
    weights = getattr(descr, "weights", None)
    if weights is not None:
        check.weight_formats = [w for w, entry in weights if entry is not None]
    if test and check.format_status == "valid-format":
        try:
            from bioimageio.core import test_model
        except ImportError as e:
            raise missing_extra("bioimageio", e) from None
        t1 = time.perf_counter()
        result = test_model(str(path))
        check.test_status = str(result.status)
        errors, warns = _summary_messages(result)
        check.errors += [e for e in errors if e not in check.errors]
        check.warnings += [w for w in warns if w not in check.warnings]
        check.test_s = time.perf_counter() - t1
    return check


def _first_sample() -> tuple[np.ndarray, str]:
    """The first bundled LIVECell sample image (704 x 520) and its file name."""
    path = list_images(sample_paths()[1])[0]
    return read_image(path), path.name


def _test_crop(img: np.ndarray, stride: int) -> np.ndarray:
    """The central 256 x 256 crop (a stride multiple) of an image: the package's test tensor."""
    side = max(stride, min(256, min(img.shape)) // stride * stride)
    y0 = (img.shape[0] - side) // 2 // stride * stride
    x0 = (img.shape[1] - side) // 2 // stride * stride
    return img[y0 : y0 + side, x0 : x0 + side]


def _cover(model: LoadedModel, image: np.ndarray, out: Path, params: Any) -> None:
    """Cover (2:1): the image with the outlines of the cells livecell-seg finds | the maps as RGB."""
    from PIL import Image

    h, w = image.shape
    side = min(h, w)
    crop = image[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
    res = segment_image(model, crop, params)
    left = overlay_image(crop, res.labels)
    maps = np.clip(res.maps, 0.0, 1.0)
    rgb = np.zeros((side, side, 3), np.float32)
    for c in range(min(3, maps.shape[0])):
        rgb[..., c] = maps[c] if c == 0 else maps[0] * (1.0 - maps[c])  # distances shown inside cells
    right = (rgb * 255).round().astype(np.uint8)
    cover = Image.fromarray(np.concatenate([left, right], axis=1))
    target = 384
    if side > target:
        cover = cover.resize((2 * target, target), Image.Resampling.LANCZOS)
    cover.save(out, format="PNG", optimize=True)


def _readme_training_and_licence(cfg: dict[str, Any], test_image: str, license_id: str) -> list[str]:
    """The README's sections on training, validation, limitations, licence and citation."""
    optim = cfg.get("optim", {})
    data = cfg.get("data", {})
    return [
        "## Training",
        "",
        f"- Data: {_describe_training_data(data)}",
        f"- Crops {data.get('crop_size', '?')} px, batch {data.get('batch_size', '?')}, "
        f"{_training_length(optim)}, AdamW lr {optim.get('lr', '?')} ({optim.get('schedule', '?')} schedule); "
        f"loss {cfg.get('loss', {}).get('kind', '?')} per channel; augmentation: flips, rotations, zoom, intensity.",
        "- The full training configuration is attached as `config.json` (`livecell-seg train --config config.json`",
        "  reproduces the run when the data is at hand).",
        "",
        "## Validation",
        "",
        "Validate on images the model never saw with livecell-seg's evaluation (LIVECell protocol: COCO mask AP",
        "with the paper's area ranges, AFNR, mean segmentation accuracy, F1):",
        "",
        "```bash",
        "livecell-seg predict --model MODEL_DIR --input test_images/ --out pred/",
        "livecell-seg evaluate --gt livecell_coco_test.json --pred pred/ --images test_images/ --json-out metrics.json",
        "```",
        "",
        f"The test tensors of this package are a 256 x 256 crop of the LIVECell image `{test_image}` and the maps",
        "livecell-seg's own PyTorch inference computes for it.",
        "",
        "## Limitations",
        "",
        "Trained for phase-contrast images of adherent cell lines at LIVECell's magnification and pixel size;",
        "other modalities, magnifications or cell types need fine-tuning (or rescaling the images to LIVECell's",
        "cell sizes). Check the training data above: a model trained on few images is a demo, not a",
        "LIVECell-scale model.",
        "",
        "## Licence and citation",
        "",
        f"Weights: {license_id}. LIVECell images are licensed CC BY-NC 4.0 (non-commercial use); other training",
        "sets listed above come with their own terms. Cite LIVECell:",
        f"{LIVECELL_CITATION}, doi:{LIVECELL_DOI}.",
        "",
    ]


def _readme(
    model: LoadedModel,
    *,
    name: str,
    stride: int,
    min_size: int,
    postprocess: dict[str, Any],
    tuned: bool,
    test_image: str,
    license_id: str,
) -> str:
    channels = head_channels(model.head)
    meaning = {ch: CHANNELS[ch].help for ch in channels}
    cfg = model.config or {}
    mc = model.model_config
    lines = [
        f"# {name}",
        "",
        "A U-Net for **label-free live-cell segmentation** of phase-contrast microscopy images, trained",
        "with [livecell-seg](https://pypi.org/project/livecell-seg/) on LIVECell-style images (the LIVECell",
        "dataset, Edlund et al., Nature Methods 2021, and the sets listed under Training). The network",
        "predicts per-pixel maps; a seeded watershed in livecell-seg turns them into cell instances.",
        "",
        "## What the network does",
        "",
        "- **Input** `input`: one phase-contrast image, axes `batch, channel (1), y, x`, height and width",
        f"  multiples of {stride} (at least {min_size}). Preprocessing (`scale_range` in `rdf.yaml`): percentile",
        f"  normalization per image, percentile {NORM_PERCENTILES[0]:g} -> 0 and percentile {NORM_PERCENTILES[1]:g} -> 1,",
        "  exactly as livecell-seg does in training and prediction (`livecell_seg.io.normalize_image`). Any bit depth.",
        f"- **Output** `output`: axes `batch, channel ({len(channels)}), y, x`, sigmoid probabilities in [0, 1]:",
    ]
    lines += [f"  - `{c}`: {meaning.get(c, c)}" for c in channels]
    lines += [
        "",
        f"Architecture: U-Net (`{mc.arch}`, depth {mc.depth}, {mc.base_features} base features, {mc.norm} norm, "
        f"head `{mc.head}`), defined in `unet.py` (plain PyTorch, in this package: the `pytorch_state_dict` weights",
        "are built with `UNet(**kwargs)` from it). The `torchscript` and `onnx` weights are the same network with",
        "BatchNorm folded into the convolutions; all three give the same outputs (checked by `bioimageio.core`'s",
        "model test on the test tensors).",
        "",
        *_cell_size_note(mc.cell_diameter, mc.predict_scale),
        "## From maps to cells: the watershed is applied by livecell-seg",
        "",
        "The package stops at the probability maps: bioimage.io has no standard post-processing step for this",
        "seeded watershed, so **instance labels come from livecell-seg's `postprocess`**, with the parameters",
        f"in the attached `postprocess.json` ({'tuned for this model' if tuned else 'livecell-seg defaults: this model folder had no tuned parameters'}):",
        "",
        "```bash",
        "pip install livecell-seg",
        "# maps saved by any bioimage.io tool as (1, C, H, W) or (C, H, W) .npy or .tif files in maps/:",
        "livecell-seg postprocess --maps maps/ --out labels/ --params postprocess.json",
        "# or the whole pipeline (network + watershed) from a model folder:",
        "livecell-seg predict --model MODEL_DIR --input images/ --out seg/",
        "```",
        "",
        "In Python: `livecell_seg.inference.postprocess.instances_from_maps(maps, "
        f"'{model.head}', PostprocessParams.read('postprocess.json'))` -> int32 labels.",
        "",
        "Watershed parameters:",
        "",
        "```json",
        json.dumps({k: v for k, v in postprocess.items() if k != "tuning"}, indent=2),
        "```",
        "",
        *_readme_training_and_licence(cfg, test_image, license_id),
    ]
    return "\n".join(lines)


def _cell_size_note(diameter: float | None, predict_scale: float | str = 1.0) -> list[str]:
    """README lines on the cell size the network was trained at (when the model folder records it)
    and on the zoom ``livecell-seg predict`` uses by default for this model (``predict_scale``)."""
    if not diameter:
        return []
    lines = [
        "## Cell size",
        "",
        f"The network was trained on cells of about {diameter:.0f} px diameter (median, recorded by",
        "livecell-seg's `train`). The package runs it at the image's own scale; for cells of another size,",
        "zoom the image by (that diameter / your cells' diameter) first, or let livecell-seg choose the zoom:",
        "`livecell-seg predict --model MODEL_DIR --scale auto` (or `--diameter PX`).",
    ]
    if predict_scale == "auto":
        lines += [
            "`livecell-seg predict` does that by default for this model (`predict_scale: auto` in",
            "`config.json`), and the attached `postprocess.json` was tuned on maps made that way.",
        ]
    elif predict_scale != 1:
        lines += [f"`livecell-seg predict` zooms images by {predict_scale:g} by default for this model."]
    return [*lines, ""]


def _training_length(optim: dict[str, Any]) -> str:
    steps, epochs = optim.get("max_steps"), optim.get("epochs")
    if isinstance(steps, int) and steps > 0:
        return f"{steps} steps"
    return f"{epochs} epochs" if epochs else "length not recorded"


def _describe_training_data(data: dict[str, Any]) -> str:
    """The training sources of a model folder's ``config.json`` ``data`` entry, in one line."""
    sources = data.get("train") or []
    parts = []
    for s in sources if isinstance(sources, list) else []:
        if not isinstance(s, dict):
            continue
        if s.get("sample"):
            text = "the 5 LIVECell images bundled with livecell-seg (CC BY-NC 4.0)"
        else:  # the set's name, not the trainer's local path
            where = s.get("json") or s.get("folder") or s.get("labels")
            text = Path(str(where)).name if where else "a LIVECell-format set"
        notes = []
        if s.get("weight") is not None:
            notes.append(f"weight {s['weight']:g}")
        if s.get("annotation") == "partial":
            notes.append("partially annotated")
        for key in ("include", "include_types", "exclude"):
            items = [str(x) for x in s.get(key) or []]
            if len(items) > 4:
                notes.append(f"{key.replace('_', ' ')} {len(items)} names")
            elif items:
                notes.append(f"{key.replace('_', ' ')} {', '.join(items)}")
        parts.append(text + (f" ({'; '.join(notes)})" if notes else ""))
    if not parts:
        return "not recorded in the model folder"
    balance = data.get("balance")
    return "; ".join(parts) + (
        f"; balanced by {balance.replace('_', ' ')}" if balance not in (None, "none") else ""
    )


#: what bioimage.io accepts in a model name (``bioimageio.spec``'s rule)
_NAME_CHARS = re.compile(r"^[A-Za-z0-9_+\- ()]{1,128}$")


def check_package_name(name: str | None) -> None:
    """Refuse (one line) a bioimage.io package name that ``bioimageio.spec`` would reject after
    the whole export (``../``, slashes, other characters) or that is too long."""
    if name is None:
        return
    if not _NAME_CHARS.match(name) or not name.strip():
        raise LivecellError(
            f"--name {name!r}: a bioimage.io model name holds 1-128 letters, digits, spaces and _+-() only"
        )


def _write_package_files(
    model: LoadedModel, files: Path, *, pp: dict[str, Any], name: str, license_id: str
) -> None:
    """The files of the package into ``files``: ``unet.py``, the weights three ways, test and
    sample tensors, the cover, ``postprocess.json`` (``pp``), ``config.json`` and ``README.md``."""
    from .model import unet as unet_module

    stride = model.stride
    files.mkdir()
    shutil.copyfile(Path(unet_module.__file__), files / "unet.py")
    shutil.copyfile(model.path / MODEL_FILE, files / "weights.pt")
    export_torchscript(model, files / "weights_torchscript.pt")
    existing = matching_onnx(model)  # reuse DIR/model.onnx of these weights (export --format onnx)
    if existing is not None:
        shutil.copyfile(existing, files / "weights.onnx")
    else:
        export_onnx(model, files / "weights.onnx")
    sample, image_name = _first_sample()
    image = _test_crop(sample, stride)
    test_in = image.astype(np.float32)[None, None]
    test_out = predict_maps(model, image, device="cpu")[None]
    np.save(files / "test_input.npy", test_in)
    np.save(files / "test_output.npy", test_out.astype(np.float32))
    import tifffile  # sample tensors (for people and the website): the same crop as TIFF

    tifffile.imwrite(files / "sample_input.tif", image)
    tifffile.imwrite(files / "sample_output.tif", test_out[0].astype(np.float32), compression="zlib")
    _cover(model, sample, files / "cover.png", model.params)
    (files / "postprocess.json").write_text(json.dumps(pp, indent=2) + "\n")
    (files / "config.json").write_text(
        json.dumps(model.config or {"model": model_to_dict(model.model_config)}, indent=2) + "\n"
    )
    (files / "README.md").write_text(
        _readme(
            model,
            name=name,
            stride=stride,
            min_size=4 * stride,
            postprocess=pp,
            tuned=model.postprocess_file is not None,
            test_image=image_name,
            license_id=license_id,
        )
    )


def _tensor_descrs(v05: Any, files: Path, channels: list[str], stride: int) -> tuple[Any, Any]:
    """bioimage.io's descriptions of the input (with its ``scale_range`` preprocessing) and output
    tensors; ``v05`` is ``bioimageio.spec.model.v0_5``."""
    min_size = 4 * stride
    in_axes = [
        v05.BatchAxis(),
        v05.ChannelAxis(channel_names=[v05.Identifier("phase_contrast")]),
        v05.SpaceInputAxis(id=v05.AxisId("y"), size=v05.ParameterizedSize(min=min_size, step=stride)),
        v05.SpaceInputAxis(id=v05.AxisId("x"), size=v05.ParameterizedSize(min=min_size, step=stride)),
    ]
    out_axes = [
        v05.BatchAxis(),
        v05.ChannelAxis(channel_names=[v05.Identifier(c) for c in channels]),
        *(
            v05.SpaceOutputAxis(
                id=v05.AxisId(ax),
                size=v05.SizeReference(tensor_id=v05.TensorId("input"), axis_id=v05.AxisId(ax)),
            )
            for ax in ("y", "x")
        ),
    ]
    inputs = v05.InputTensorDescr(
        id=v05.TensorId("input"),
        axes=in_axes,
        description="phase-contrast image (any bit depth), height and width multiples of the stride",
        test_tensor=v05.FileDescr(source=files / "test_input.npy"),
        sample_tensor=v05.FileDescr(source=files / "sample_input.tif"),
        data=v05.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[
            v05.ScaleRangeDescr(
                kwargs=v05.ScaleRangeKwargs(
                    axes=[v05.AxisId("y"), v05.AxisId("x")],
                    min_percentile=NORM_PERCENTILES[0],
                    max_percentile=NORM_PERCENTILES[1],
                )
            )
        ],
    )
    outputs = v05.OutputTensorDescr(
        id=v05.TensorId("output"),
        axes=out_axes,
        description=f"sigmoid probabilities: {', '.join(channels)}"[:128],
        test_tensor=v05.FileDescr(source=files / "test_output.npy"),
        sample_tensor=v05.FileDescr(source=files / "sample_output.tif"),
        data=v05.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
    )
    return inputs, outputs


def _weights_descr(v05: Any, files: Path, mc: Any, torch_version: Any) -> Any:
    """The three weight formats: the state dict with ``unet.py`` as its architecture, and the
    TorchScript and ONNX files made from it."""
    arch = v05.ArchitectureFromFileDescr(
        source=files / "unet.py",
        callable=v05.Identifier("UNet"),
        kwargs={**unet_kwargs(mc), "final_activation": "sigmoid"},
    )
    return v05.WeightsDescr(
        pytorch_state_dict=v05.PytorchStateDictWeightsDescr(
            source=files / "weights.pt", architecture=arch, pytorch_version=torch_version
        ),
        torchscript=v05.TorchscriptWeightsDescr(
            source=files / "weights_torchscript.pt",
            pytorch_version=torch_version,
            parent="pytorch_state_dict",
            comment="BatchNorm folded into the convolutions; traced",
        ),
        onnx=v05.OnnxWeightsDescr(
            source=files / "weights.onnx",
            opset_version=ONNX_OPSET,
            parent="pytorch_state_dict",
            comment="BatchNorm folded into the convolutions; torch.onnx (dynamo) export",
        ),
    )


#: the package's tags on bioimage.io
PACKAGE_TAGS = [
    "unet",
    "2d",
    "pytorch",
    "onnx",
    "cells",
    "phase-contrast",
    "livecell",
    "instance-segmentation",
    "semantic-segmentation",
    "livecell-seg",
]


def _bioimageio_config(v05: Any, model: LoadedModel, channels: list[str]) -> Any:
    """The ``config.bioimageio`` entry: architecture, modality, task and training details."""
    mc = model.model_config
    cfg = model.config or {}
    optim = cfg.get("optim", {})
    n_params = int(sum(p.numel() for p in model.net.parameters()))
    return v05.Config(
        bioimageio=v05.BioimageioConfig(
            architecture_type="U-Net",
            architecture_description=f"U-Net, depth {mc.depth}, {mc.base_features} base features, "
            f"{mc.norm} norm, bilinear upsampling; head {mc.head} ({', '.join(channels)})",
            modality="phase-contrast microscopy (label-free)",
            target_structure=["cells"],
            task="semantic segmentation maps for instance segmentation (watershed in livecell-seg)",
            model_parameter_count=n_params,
            training=v05.TrainingDetails(
                training_preprocessing="percentile normalization 1/99.8; random crops, flips, rotations, zoom, intensity",
                training_batch_size=cfg.get("data", {}).get("batch_size"),
                initial_learning_rate=optim.get("lr"),
                learning_rate_schedule=optim.get("schedule"),
                loss_function=str(cfg.get("loss", {}).get("kind")) if cfg.get("loss") else None,
                optimizer="torch.optim.AdamW",
            ),
        ),
    )


def _model_descr(
    v05: Any,
    model: LoadedModel,
    files: Path,
    *,
    name: str,
    description: str,
    authors: list[str] | None,
    license_id: str,
    torch_version: Any,
) -> Any:
    """bioimage.io's description (``rdf.yaml``) of the package whose files are in ``files``."""
    channels = list(head_channels(model.head))
    inputs, outputs = _tensor_descrs(v05, files, channels, model.stride)
    return v05.ModelDescr(
        name=name,
        description=description,
        authors=[v05.Author(name=a) for a in (authors or ["livecell-seg developers"])],
        cite=[v05.CiteEntry(text=LIVECELL_CITATION, doi=v05.Doi(LIVECELL_DOI))],
        license=v05.LicenseId(license_id),
        documentation=v05.FileDescr(source=files / "README.md"),
        covers=[v05.FileDescr(source=files / "cover.png")],
        attachments=[
            v05.FileDescr(source=files / "postprocess.json"),
            v05.FileDescr(source=files / "config.json"),
        ],
        tags=list(PACKAGE_TAGS),
        inputs=[inputs],
        outputs=[outputs],
        weights=_weights_descr(v05, files, model.model_config, torch_version),
        config=_bioimageio_config(v05, model, channels),
    )


def export_bioimageio(
    model: LoadedModel,
    out: str | Path,
    *,
    name: str | None = None,
    description: str | None = None,
    authors: list[str] | None = None,
    license_id: str = "CC-BY-NC-4.0",
    test: bool = True,
) -> BioimageioCheck:
    """Write ``model`` (a loaded model folder, ``arch: unet``) as a bioimage.io package zip.

    The zip is written to ``out`` only when ``bioimageio.spec`` validates it (and, with ``test``,
    when ``bioimageio.core``'s model test passes); otherwise a :class:`LivecellError` names the
    first problem and nothing is written. Returns what the checks said.
    """
    check_package_name(name)
    try:
        import torch
        from bioimageio.spec import save_bioimageio_package
        from bioimageio.spec.model import v0_5 as v05
    except ImportError as e:
        raise missing_extra("bioimageio", e) from None

    mc = model.model_config
    if mc.arch != "unet" or model.path is None:
        raise LivecellError(
            f"bioimage.io export needs a model folder with arch 'unet' (got {mc.arch!r}); "
            "export --format onnx works for any architecture"
        )
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise LivecellError(f"{out}: a bioimage.io package is a .zip file")
    channels = list(head_channels(model.head))
    tuned = model.postprocess_file is not None
    pp = dict(model.postprocess_file) if tuned else {**PostprocessParams().to_dict(), "head": model.head}
    name = name or f"livecell-seg U-Net {model.head}"
    description = description or (
        "U-Net for label-free live-cell segmentation of phase-contrast images (LIVECell), predicting "
        f"{', '.join(channels)} maps; instances come from livecell-seg's seeded watershed (postprocess.json)."
    )
    torch_version = v05.Version(torch.__version__.split("+")[0])

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".bioimageio-", dir=out.parent))
    try:
        files = work / "files"
        _write_package_files(model, files, pp=pp, name=name, license_id=license_id)
        descr = _model_descr(
            v05,
            model,
            files,
            name=name,
            description=description,
            authors=authors,
            license_id=license_id,
            torch_version=torch_version,
        )
        pkg = work / out.name
        save_bioimageio_package(descr, output_path=pkg)
        check = validate_bioimageio(pkg, test=test)
        if not check.ok:
            first = check.errors[0] if check.errors else f"status {check.format_status}/{check.test_status}"
            raise LivecellError(f"{out}: bioimage.io validation failed ({first}); nothing written")
        os.replace(pkg, out)
        return check
    except OSError as e:  # a full or read-only file system while the package is built next to out
        if e.filename is not None and not str(e.filename).startswith(str(work)):
            raise  # about another file (an input): named by the command line's last line of defence
        raise OutputFileError(out, f"cannot be written ({describe_os_error(e)})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
