"""Pseudo-labels for self-training: a model's confident cells on unannotated images.

:func:`pseudo_label` segments an image twice, at two different zooms (the first with 8x TTA and
``scale="auto"``), and keeps a cell only when

- its mean foreground probability is at least ``min_score``, and
- the second view finds the same cell (best IoU at least ``min_agreement``).

Everything else that the model calls foreground (rejected cells, with a ``ring`` of pixels around
them) and every pixel whose foreground probability is undecided (between ``uncertain[0]`` and
``uncertain[1]``) goes into an *ignore mask*: training puts no loss there (``SourceConfig.ignore``).
:func:`pseudo_label_paths` writes ``OUT/labels/<stem>.tif`` and ``OUT/ignore/<stem>.tif`` for a folder
of images, so the result is a training source::

    data:
      train:
        - {labels: OUT/labels, images: IMAGES, ignore: OUT/ignore, weight: 0.2}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import LivecellError
from ..evaluation.metrics import instance_overlap
from ..io import folder_lock, list_images, read_image, write_json_atomic, write_labels, write_tiff_atomic
from ..progress import Progress, progress_bar
from .predict import segment_image

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from ..model.folder import LoadedModel
    from .postprocess import PostprocessParams


@dataclass
class PseudoLabelSettings:
    """How confident a cell must be to become a pseudo-label (see the module docstring)."""

    tta: bool = True
    scale: float | str = "auto"
    second_zoom: float = 0.8  # the second view runs at this times the first view's zoom
    min_score: float = 0.8
    min_agreement: float = 0.7
    uncertain: tuple[float, float] = (0.3, 0.7)
    ring: int = 2


@dataclass
class PseudoLabel:
    """Kept cells (``labels``, int32), the ``ignore`` mask (bool) and counts."""

    labels: np.ndarray
    ignore: np.ndarray
    kept: int
    rejected: int
    scale: float


def best_iou_per_cell(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each label 1..max of ``a``: its best IoU with any cell of ``b`` (0 where none overlaps)."""

    out = np.zeros((int(a.max()) if a.size else 0) + 1)
    ov = instance_overlap(a, b)
    np.maximum.at(out, ov.gt_ids[ov.pair_gt], ov.pair_iou)
    return out


def confident_cells(
    labels: np.ndarray,
    fg: np.ndarray,
    other: np.ndarray,
    settings: PseudoLabelSettings,
) -> PseudoLabel:
    """Split ``labels`` into kept cells and an ignore mask (pure numpy; see the module docstring).

    ``fg``: the foreground probability; ``other``: the second view's labels.
    """
    from scipy import ndimage as ndi

    from .postprocess import instance_scores, relabel_consecutive

    s = settings
    scores = instance_scores(labels, fg)
    agree = best_iou_per_cell(labels, other)
    n = int(labels.max()) if labels.size else 0
    ok = np.zeros(n + 1, bool)
    for lab, sc in scores.items():
        ok[lab] = sc >= s.min_score and agree[lab] >= s.min_agreement
    rejected = (labels > 0) & ~ok[labels]
    if s.ring > 0 and rejected.any():
        rejected = ndi.binary_dilation(rejected, iterations=s.ring)
    kept = np.where(ok[labels], labels, 0)
    ignore = rejected | ((fg > s.uncertain[0]) & (fg < s.uncertain[1]))
    ignore &= kept == 0
    kept = relabel_consecutive(kept)
    return PseudoLabel(
        labels=kept.astype(np.int32),
        ignore=ignore,
        kept=int(ok[1:].sum()),
        rejected=len(scores) - int(ok[1:].sum()),
        scale=1.0,
    )


def pseudo_label(
    model: LoadedModel,
    image: np.ndarray,
    params: PostprocessParams | None = None,
    settings: PseudoLabelSettings | None = None,
    **predict_kwargs: Any,
) -> PseudoLabel:
    """Confident cells of ``image`` and the mask of everything not trusted (two network views)."""

    s = settings or PseudoLabelSettings()
    first = segment_image(model, image, params, scale=s.scale, tta=s.tta, **predict_kwargs)
    second = segment_image(model, image, params, scale=first.scale * s.second_zoom, **predict_kwargs)
    out = confident_cells(first.labels, first.maps[0], second.labels, s)
    out.scale = first.scale
    return out


@dataclass
class PseudoLabelSummary:
    """What :func:`pseudo_label_paths` did, per image: kept and rejected cells, ignored fraction."""

    out_dir: Path
    images: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped_existing: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def pseudo_label_paths(
    inputs: list[str | Path],
    out_dir: str | Path,
    model: LoadedModel,
    settings: PseudoLabelSettings | None = None,
    *,
    resume: bool = False,
    progress: Progress = True,
) -> PseudoLabelSummary:
    """Pseudo-label every image of ``inputs`` into ``OUT/labels`` and ``OUT/ignore`` (+ ``summary.json``)."""

    out = Path(out_dir)
    paths = [p for p in list_images(inputs) if out.resolve() not in p.resolve().parents]
    if not paths:
        raise LivecellError(f"no images found in {', '.join(map(str, inputs))}")
    stems = [p.stem for p in paths]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise LivecellError(
            f"two input images share the name {dupes[0]!r}: pseudo-labels are named by file stem"
        )
    params = model.params
    s = settings or PseudoLabelSettings()
    record = {
        "model": str(model.path) if model.path else None,
        "settings": {k: getattr(s, k) for k in s.__dataclass_fields__},
    }
    with folder_lock(out, "pseudolabel"):  # a second run into the same folder at once is refused
        return _pseudo_label_locked(paths, out, model, params, settings, record, resume, progress)


def _pseudo_label_locked(
    paths: list[Path],
    out: Path,
    model: LoadedModel,
    params: Any,
    settings: PseudoLabelSettings | None,
    record: dict[str, Any],
    resume: bool,
    progress: Progress,
) -> PseudoLabelSummary:

    summary = PseudoLabelSummary(out_dir=out)
    old = out / "summary.json"
    if resume and old.is_file():
        from ..io import read_json

        prev = read_json(old)
        prev = prev if isinstance(prev, dict) else {}
        if {k: prev.get(k) for k in record} != record:  # made with other settings: redo all
            log.warning(
                "%s holds pseudo-labels made with other settings or another model: "
                "pseudo-labelling every image again",
                out,
            )
            resume = False
        else:
            summary.images.update(prev.get("images", {}))
    for path in progress_bar(paths, progress, "pseudolabel"):
        lab, ign = out / "labels" / f"{path.stem}.tif", out / "ignore" / f"{path.stem}.tif"
        if resume and lab.is_file() and ign.is_file():
            summary.skipped_existing.append(str(path))
            continue
        try:
            pl = pseudo_label(model, read_image(path), params, settings)
        except (LivecellError, ValueError, OSError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            summary.failed.append((str(path), msg if str(path) in msg else f"{path}: {msg}"))
            log.error("skipped %s", summary.failed[-1][1])
            continue
        write_tiff_atomic(ign, pl.ignore.astype(np.uint8))
        write_labels(lab, pl.labels)  # labels last: an image counts as done when both exist
        summary.images[path.stem] = {
            "kept": pl.kept,
            "rejected": pl.rejected,
            "ignored_fraction": round(float(pl.ignore.mean()), 4),
            "zoom": round(pl.scale, 3),
        }
    write_json_atomic(
        old,
        {
            **record,
            "images": summary.images,
            "failed": summary.failed,
        },
    )
    return summary
