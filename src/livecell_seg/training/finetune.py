"""Fine-tune a model folder on a few corrected images, in minutes on a CPU (``livecell-seg finetune``).

:func:`finetune` takes :class:`CorrectedImage` s (a grey image and its corrected instance labels)
and writes a new model folder next to the base one's architecture, head and ``cell_diameter``:

- **at the zoom the model will segment at**: each image (and its labels) is rescaled by the zoom
  ``predict --scale auto`` chooses for it with the base model
  (:func:`livecell_seg.inference.predict.segment_image`), so the network learns the cells at the
  size it will see them; the base ``cell_diameter`` is kept (it describes what the model knows,
  not one image);
- **guarded against forgetting** (:class:`Recipe`): BatchNorm layers stay in eval mode (their
  running statistics are the base model's), a low learning rate, and half of every batch is
  *replay*: crops of the 5 bundled LIVECell sample images on which the network is kept close to
  the frozen base model's outputs (knowledge distillation, "learning without forgetting");
- the watershed parameters are re-tuned on the given images, cross-validated (leave one image out,
  or one half of the image out when there is one image), and kept only when they beat the base
  model's ``postprocess.json`` on the held-out parts;
- ``provenance.json`` records the base model and its fingerprint, every image's sha256, the steps,
  seconds, zooms and the recipe.

Resuming: ``OUT/finetune_state.pt`` (weights, optimizer, step, random state) is written every
:data:`CHECKPOINT_EVERY` steps and when the run is stopped; the same call again continues from it
(its inputs and settings must be the same, else it starts afresh). A finished folder holds no
state file; the same call again returns at once. Ctrl+C (or ``should_stop``) leaves a usable model
folder with the last completed step's weights and the base watershed parameters.

Imports torch at the top: import it inside functions from the CLI.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import sample_paths
from ..dataclass_dicts import settings_from_dict
from ..errors import LivecellError
from ..evaluation.metrics import match_instances
from ..inference.predict import auto_zoom_for, model_cell_diameter, model_fingerprint, segment_image
from ..inference.scale import estimate_diameter, scaled_shape, zoom_image
from ..inference.tiling import predict_maps_scaled
from ..io import (
    atomic_path,
    folder_lock,
    list_images,
    normalize_image,
    read_image,
    read_json,
    sweep_stale_parts,
    write_json_atomic,
)
from ..model.folder import (
    CONFIG_FILE,
    MODEL_FILE,
    POSTPROCESS_FILE,
    LoadedModel,
    default_model_dir,
    load_model_dir,
    model_to_dict,
    save_model_dir,
)
from ..options import check_finite
from ..progress import Progress, ProgressBar
from .config import AugmentConfig, LossConfig
from .finetune_options import DEFAULT_STEPS, MAX_MINUTES, MAX_STEPS
from .losses import SegLoss

log = logging.getLogger(__name__)

PROVENANCE_FILE = "provenance.json"
STATE_FILE = "finetune_state.pt"
#: the resume state is written every this many steps (and when the run stops)
CHECKPOINT_EVERY = 25
#: the clock of the ``minutes`` time box (tests replace it with a fake one)
_clock: Callable[[], float] = time.monotonic


@dataclass
class CorrectedImage:
    """One corrected image: ``image`` 2-D grey (any dtype; normalized like predict does),
    ``labels`` the same shape, integer instance labels, 0 = background."""

    name: str
    image: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class Recipe:
    """How the network is fine-tuned (recorded in ``provenance.json``).

    ``lr``: AdamW learning rate (constant after ``warmup`` steps); ``batch``: crops per step, of which
    ``replay`` are replay crops (the bundled sample images, loss = distillation towards the base
    model, weighted ``distill``), shown at their auto zoom times each of ``replay_zooms`` (the first
    pass of ``--scale auto`` shows the network cells of every size at zoom 1: its behaviour there
    is kept too); ``crop``: crop side in pixels (at the training zoom);
    ``freeze_bn``: BatchNorm layers in eval mode (running statistics frozen); ``intensity``:
    strength of the intensity augmentation (flips and 90° rotations always).
    """

    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup: int = 10
    batch: int = 4
    replay: int = 2
    distill: float = 10.0
    replay_zooms: tuple[float, ...] = (0.5, 0.7, 1.0, 1.5)
    crop: int = 256
    freeze_bn: bool = True
    intensity: float = 0.5
    grad_clip: float = 1.0
    zoom: str = "auto"  # auto (the zoom predict --scale auto picks) | none (native size)

    def __post_init__(self) -> None:

        check_finite(self.lr, "lr", 0, 1)
        check_finite(self.weight_decay, "weight_decay", 0, 10)
        check_finite(self.warmup, "warmup", 0, MAX_STEPS)
        check_finite(self.batch, "batch", 1, 256)
        check_finite(self.replay, "replay", 0, self.batch - 1)
        check_finite(self.distill, "distill", 0, 1000)
        check_finite(self.crop, "crop", 16, 4096)
        check_finite(self.intensity, "intensity", 0, 10)
        check_finite(self.grad_clip, "grad_clip", 0, 1e9)
        if not self.replay_zooms or not all(0.1 <= float(z) <= 10 for z in self.replay_zooms):
            raise LivecellError(f"recipe replay_zooms must be zooms in [0.1, 10], got {self.replay_zooms!r}")
        if self.zoom not in ("auto", "none"):
            raise LivecellError(f"recipe zoom must be 'auto' or 'none', got {self.zoom!r}")


def _sha256(a: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str((a.dtype.str, a.shape)).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def check_examples(examples: Sequence[CorrectedImage]) -> list[CorrectedImage]:
    """The examples as given, checked: 2-D images, labels of the same shape, integer, with cells.

    A problem is a one-line :class:`LivecellError` naming the example.
    """
    out = list(examples)
    if not out:
        raise LivecellError("finetune: no corrected images given")
    for ex in out:
        img, lab = np.asarray(ex.image), np.asarray(ex.labels)
        if img.ndim != 2:
            raise LivecellError(f"{ex.name}: expected a 2-D grey image, got shape {img.shape}")
        if lab.shape != img.shape:
            raise LivecellError(
                f"{ex.name}: labels of shape {lab.shape} do not match the image's {img.shape}"
            )
        if not np.issubdtype(lab.dtype, np.integer):
            raise LivecellError(f"{ex.name}: labels must be integers (0 = background), got {lab.dtype}")
        if lab.size == 0 or int(lab.max()) <= 0:
            raise LivecellError(f"{ex.name}: the labels hold no cell")
        if np.issubdtype(lab.dtype, np.signedinteger) and int(lab.min()) < 0:
            raise LivecellError(f"{ex.name}: labels have negative values (0 = background, cells 1..n)")
        if np.issubdtype(img.dtype, np.floating) and not np.isfinite(img).all():
            raise LivecellError(f"{ex.name}: the image has NaN or infinite pixels")
    return out


# ------------------------------------------------------------------------------------ data
def zoom_labels(labels: np.ndarray, zoom: float) -> np.ndarray:
    """Instance labels zoomed by ``zoom`` (nearest neighbour, the image's :func:`~livecell_seg.inference.scale.scaled_shape`)."""
    from skimage.transform import resize

    if zoom == 1.0:
        return labels.astype(np.int32, copy=False)
    out = resize(labels, scaled_shape(labels.shape, zoom), order=0, preserve_range=True, anti_aliasing=False)
    return out.astype(np.int32)


@dataclass
class _Prepared:
    """One training image at its training zoom: normalized image and targets (C, H, W)."""

    image: np.ndarray
    targets: np.ndarray | None  # None: a replay image (distillation only)


def training_zoom(model: LoadedModel, labels: np.ndarray) -> float:
    """The zoom ``predict --scale auto`` chooses for an image whose cells are ``labels``: its rule
    (:func:`~livecell_seg.inference.predict.auto_zoom_for`: the model's ``cell_diameter`` over the
    median diameter of the cells found at zoom 1) applied to the corrected cells.

    This is the zoom the fine-tuned model will segment the image at once it finds these cells; the
    base model's own choice (:func:`auto_zoom`) rests on its wrong cells: on a Kaggle SH-SY5Y image
    it chose 1 where the corrected cells ask for 1.33, and the model trained at 1 was then run at
    about 1.3 by ``--scale auto`` (F1 0.60 -> 0.51 on the other images of that type).
    """
    return float(auto_zoom_for(estimate_diameter(np.asarray(labels)), model_cell_diameter(model)))


def auto_zoom(model: LoadedModel, image: np.ndarray) -> float:
    """The zoom ``predict --scale auto`` chooses for ``image`` with ``model`` (one or two passes)."""

    return float(segment_image(model, image, scale="auto").scale)


def _prepare(image: np.ndarray, labels: np.ndarray | None, zoom: float, head: str) -> _Prepared:
    from .targets import make_targets

    x = zoom_image(normalize_image(image), zoom)
    if labels is None:
        return _Prepared(x, None)
    lab = zoom_labels(np.asarray(labels), zoom)
    return _Prepared(x, make_targets(lab, head))


def replay_images() -> list[tuple[str, np.ndarray]]:
    """The bundled LIVECell sample images (the base model trained on them): (name, image)."""

    _, folder = sample_paths()
    return [(p.name, read_image(p)) for p in list_images(folder)]


def _crop_side(shapes: list[tuple[int, int]], want: int, stride: int) -> int:
    """The crop side: ``want``, shrunk to the smallest training image, a multiple of ``stride``."""
    side = min([want, *(min(s) for s in shapes)])
    side = (side // stride) * stride
    if side < stride:
        raise LivecellError(
            f"finetune: an image is smaller than {stride} pixels at its training zoom (the network's "
            "down-sampling factor); give larger images"
        )
    return side


def _crop(p: _Prepared, side: int, rng: np.random.Generator, intensity: float) -> tuple[np.ndarray, ...]:
    from .dataset import geometric_flips, intensity_augment

    h, w = p.image.shape
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    img = p.image[y : y + side, x : x + side]
    more = [] if p.targets is None else list(p.targets[:, y : y + side, x : x + side])
    aug = AugmentConfig()
    flipped = geometric_flips(img, img, aug, rng, *more)
    img, more = flipped[0], list(flipped[2:])
    if intensity > 0:
        img = intensity_augment(img, AugmentConfig(strength=intensity), rng)
    tgt = np.stack(more).astype(np.float32) if more else None
    return (img, tgt) if tgt is not None else (img,)


# ------------------------------------------------------------------------------------ losses
def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean Bernoulli KL divergence of the student's sigmoid outputs from the teacher's, over every
    channel and pixel: 0 when the two agree (same gradient as soft-target BCE)."""
    import torch.nn.functional as F

    t = torch.sigmoid(teacher_logits)
    bce = F.binary_cross_entropy_with_logits(student_logits, t, reduction="mean")
    ent = F.binary_cross_entropy_with_logits(teacher_logits, t, reduction="mean")
    return bce - ent


def freeze_batchnorm(net: torch.nn.Module) -> int:
    """Put every BatchNorm layer of ``net`` in eval mode (running statistics no longer updated);
    returns how many. Call after ``net.train()``."""
    n = 0
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
            n += 1
    return n


# ------------------------------------------------------------------------------------ watershed
def _f1_score(gts: Sequence[np.ndarray], preds: Sequence[np.ndarray], _scores: Sequence[Any]) -> float:

    return float(np.mean([match_instances(g, p, 0.5).f1 for g, p in zip(gts, preds)]))


def _parts(maps: np.ndarray, gt: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    w = gt.shape[1] // 2
    return [(maps[:, :, :w], gt[:, :w]), (maps[:, :, w:], gt[:, w:])]


def retune_watershed(
    model: LoadedModel,
    examples: Sequence[CorrectedImage],
    zooms: Sequence[float],
    base_params: Any,
) -> tuple[Any, dict[str, Any]]:
    """Watershed parameters for ``model`` on the examples, cross-validated (F1@0.5).

    Folds: leave one image out (several images) or one half of the image out (one image). The
    tuned parameters (searched on all parts) are kept only when the held-out score of parameters
    tuned without that part beats ``base_params``' held-out score; else ``base_params``.
    Returns (params, record).
    """
    from ..inference.tuning import tune_params

    pieces: list[list[tuple[np.ndarray, np.ndarray]]] = []
    for ex, z in zip(examples, zooms):
        maps = predict_maps_scaled(model, ex.image, z)
        gt = np.asarray(ex.labels).astype(np.int32)
        pieces.append([(maps, gt)] if len(examples) > 1 else _parts(maps, gt))
    folds = pieces if len(examples) > 1 else [[p] for p in pieces[0]]
    head = model.head
    held_tuned, held_base = [], []
    for i, test in enumerate(folds):
        train = [p for j, f in enumerate(folds) if j != i for p in f]
        p_i, _, _ = tune_params(
            [m for m, _ in train], [g for _, g in train], head, _f1_score, start=base_params, max_rounds=2
        )
        held_tuned.append(_f1_score([g for _, g in test], [_labels(m, head, p_i) for m, _ in test], []))
        held_base.append(
            _f1_score([g for _, g in test], [_labels(m, head, base_params) for m, _ in test], [])
        )
    cv_tuned, cv_base = float(np.mean(held_tuned)), float(np.mean(held_base))
    everything = [p for f in folds for p in f]
    best, score, _ = tune_params(
        [m for m, _ in everything],
        [g for _, g in everything],
        head,
        _f1_score,
        start=base_params,
        max_rounds=2,
    )
    # one image, or a few: keep the tuned parameters only when they win on every held-out part,
    # by 0.01 F1 on average (on one image they fit it, not the cell type)
    keep = cv_tuned >= cv_base + 0.01 and all(t >= b for t, b in zip(held_tuned, held_base))
    record = {
        "metric": "F1@0.5 (mean per held-out part)",
        "folds": "leave one image out" if len(examples) > 1 else "leave one half of the image out",
        "cv_tuned": round(cv_tuned, 4),
        "cv_base": round(cv_base, 4),
        "kept": "tuned" if keep else "base (tuning did not beat it on held-out parts)",
    }
    return (best if keep else base_params), record


def _labels(maps: np.ndarray, head: str, params: Any) -> np.ndarray:
    from ..inference.postprocess import instances_from_maps

    return instances_from_maps(maps, head, params)


# ------------------------------------------------------------------------------------ the run
def _run_key(
    fingerprint: str,
    shas: list[tuple[str, str, str]],
    steps: int,
    minutes: float | None,
    recipe: Recipe,
    seed: int,
) -> str:
    blob = json.dumps(
        {
            "base": fingerprint,
            "images": shas,
            "steps": steps,
            "minutes": minutes,
            "recipe": asdict(recipe),
            "seed": seed,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class _State:
    step: int = 0
    seconds: float = 0.0
    resumed_from: list[int] = field(default_factory=list)


def _save_state(path: Path, key: str, net: Any, opt: Any, st: _State, rng: np.random.Generator) -> None:

    blob = {
        "key": key,
        "net": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "opt": opt.state_dict(),
        "step": st.step,
        "seconds": st.seconds,
        "resumed_from": st.resumed_from,
        "rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def _load_state(path: Path, key: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - a broken state file: start afresh
        log.warning("%s: unreadable resume state, starting afresh", path)
        return None
    if not isinstance(blob, dict) or blob.get("key") != key:
        log.info("%s: made with other inputs or settings, starting afresh", path)
        return None
    return blob


@dataclass
class _Data:
    """The training material of one run: examples and replay images at their training zooms."""

    zooms: list[float]
    train: list[_Prepared]
    replay: list[_Prepared]
    replay_names: list[str]
    side: int


def _prepare_data(base: LoadedModel, examples: Sequence[CorrectedImage], recipe: Recipe) -> _Data:
    """Each example at the zoom ``predict --scale auto`` chooses once its cells are found, and the
    replay images at their auto zoom times each of ``recipe.replay_zooms``."""
    head = base.head
    zooms = [training_zoom(base, ex.labels) if recipe.zoom == "auto" else 1.0 for ex in examples]
    for ex, z in zip(examples, zooms):
        log.info("%s: training at zoom %g (what --scale auto chooses for its cells)", ex.name, z)
    train = [_prepare(ex.image, ex.labels, z, head) for ex, z in zip(examples, zooms)]
    replay: list[_Prepared] = []
    replay_names: list[str] = []
    if recipe.replay > 0:
        for name, img in replay_images():
            z = auto_zoom(base, img) if recipe.zoom == "auto" else 1.0
            replay.extend(_prepare(img, None, z * float(f), head) for f in recipe.replay_zooms)
            replay_names.append(name)
    side = _crop_side([p.image.shape for p in train + replay], recipe.crop, base.stride)
    return _Data(zooms, train, replay, replay_names, side)


@dataclass
class _Run:
    """The networks, optimizer, loss, random state and progress of one fine-tuning run."""

    recipe: Recipe
    data: _Data
    teacher: Any
    student: Any
    opt: Any
    seg_loss: Any
    rng: np.random.Generator
    st: _State
    state_path: Path
    key: str
    total: int
    stopped: bool = False
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        """The run reached its step count or time box (neither stopped nor interrupted)."""
        return not (self.stopped or self.interrupted)

    @property
    def n_user(self) -> int:
        """Crops per batch from the corrected images (the rest are replay crops)."""
        return self.recipe.batch - (self.recipe.replay if self.data.replay else 0)


def _start_run(
    base: LoadedModel, data: _Data, recipe: Recipe, seed: int, out: Path, key: str, total: int
) -> _Run:
    """A frozen teacher and a trainable student copy of the base network, resumed from
    ``out/finetune_state.pt`` when that state was made with the same key."""
    teacher = base.net.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = copy.deepcopy(teacher)
    for p in student.parameters():
        p.requires_grad_(True)
    loss_cfg = settings_from_dict(LossConfig, base.config.get("loss", {}) or {}, "loss")
    opt = torch.optim.AdamW(student.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    run = _Run(
        recipe,
        data,
        teacher,
        student,
        opt,
        SegLoss(base.head, loss_cfg),
        rng,
        _State(),
        out / STATE_FILE,
        key,
        total,
    )
    blob = _load_state(run.state_path, key)
    if blob is not None:
        student.load_state_dict(blob["net"])
        opt.load_state_dict(blob["opt"])
        run.st = _State(int(blob["step"]), float(blob["seconds"]), [*blob["resumed_from"], int(blob["step"])])
        rng.bit_generator.state = blob["rng"]
        torch.set_rng_state(blob["torch_rng"])
        log.info("%s: resuming at step %d of %d", run.state_path, run.st.step, total)
    return run


def _step(run: _Run) -> None:
    """One optimizer step: segmentation loss on the corrected crops, distillation towards the
    teacher on the replay crops."""
    recipe, data, rng, n_user = run.recipe, run.data, run.rng, run.n_user
    for g in run.opt.param_groups:
        g["lr"] = recipe.lr * min(1.0, (run.st.step + 1) / (recipe.warmup + 1))
    crops = [
        _crop(data.train[int(rng.integers(len(data.train)))], data.side, rng, recipe.intensity)
        for _ in range(n_user)
    ]
    rcrops = (
        [
            _crop(data.replay[int(rng.integers(len(data.replay)))], data.side, rng, 0.0)
            for _ in range(recipe.batch - n_user)
        ]
        if data.replay
        else []
    )
    x = torch.from_numpy(np.stack([c[0] for c in crops + rcrops])[:, None].copy())
    y = torch.from_numpy(np.stack([c[1] for c in crops]))
    run.student.train()
    if recipe.freeze_bn:
        freeze_batchnorm(run.student)
    logits = run.student(x)
    loss, _ = run.seg_loss(logits[:n_user], y)
    if rcrops and recipe.distill > 0:
        with torch.no_grad():
            t_logits = run.teacher(x[n_user:])
        loss = loss + recipe.distill * distillation_loss(logits[n_user:], t_logits)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if recipe.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.student.parameters(), recipe.grad_clip)
    run.opt.step()
    run.st.step += 1


def _train(
    run: _Run,
    minutes: float | None,
    progress: Callable[[int, int], None] | Progress | None,
    should_stop: Callable[[], bool] | None,
) -> None:
    """Train until ``run.total`` steps, the time box, ``should_stop`` or Ctrl+C; the student ends
    with the weights of the last completed step, in eval mode."""
    st = run.st
    last_good = {k: v.detach().clone() for k, v in run.student.state_dict().items()}
    t_start = _clock()
    seconds0 = st.seconds
    try:
        with ProgressBar(progress or False, "finetune", total=run.total, unit="step", initial=st.step) as bar:
            while st.step < run.total:
                if should_stop is not None and should_stop():
                    run.stopped = True
                    break
                st.seconds = seconds0 + (_clock() - t_start)
                if minutes is not None and st.seconds >= minutes * 60:
                    break
                _step(run)
                last_good = {k: v.detach().clone() for k, v in run.student.state_dict().items()}
                bar.update(1)
                if st.step % CHECKPOINT_EVERY == 0 and st.step < run.total:
                    _save_state(run.state_path, run.key, run.student, run.opt, st, run.rng)
    except KeyboardInterrupt:
        run.interrupted = True
    st.seconds = seconds0 + (_clock() - t_start)
    run.student.load_state_dict(last_good)
    run.student.eval()


def _watershed_for(
    run: _Run, base: LoadedModel, examples: Sequence[CorrectedImage]
) -> tuple[Any, dict[str, Any], list[float]]:
    """The watershed parameters for the fine-tuned network (re-tuned when the run completed, else
    the base model's), their record, and the zooms ``--scale auto`` now picks for the examples."""
    if not run.complete:
        return base.params, {"kept": "base (the run was stopped before the end)"}, []
    new = LoadedModel(net=run.student, model_config=base.model_config, config=base.config, path=None)
    tuning_log = logging.getLogger("livecell_seg.inference.tuning")
    level = tuning_log.level
    tuning_log.setLevel(logging.WARNING)  # its per-parameter lines are noise here
    try:
        zooms_after = [auto_zoom(new, ex.image) for ex in examples]
        params, tuning = retune_watershed(new, examples, zooms_after, base.params)
    finally:
        tuning_log.setLevel(level)
    log.info(
        "watershed: %s (held-out F1 %.3f tuned, %.3f base)",
        tuning["kept"],
        tuning["cv_tuned"],
        tuning["cv_base"],
    )
    return params, tuning, zooms_after


def _provenance(
    run: _Run,
    base: LoadedModel,
    base_path: Path,
    fp: str,
    shas: list[tuple[str, str, str]],
    asked: tuple[int | None, float | None, int],
    tuning: dict[str, Any],
    zooms_after: list[float],
) -> dict[str, Any]:
    """The new folder's ``provenance.json``: this run's record and the base model's own."""
    steps, minutes, seed = asked
    record = {
        "key": run.key,
        "complete": run.complete,
        "base_model": str(base_path),
        "base_fingerprint": fp,
        "images": [{"name": n, "image_sha256": a, "labels_sha256": b} for n, a, b in shas],
        "zooms": [round(z, 4) for z in run.data.zooms],
        "zooms_after": [round(z, 4) for z in zooms_after],
        "cell_diameter": base.model_config.cell_diameter,
        "steps": run.st.step,
        "steps_asked": steps,
        "minutes_asked": minutes,
        "seconds": round(run.st.seconds, 1),
        "resumed_from_steps": run.st.resumed_from,
        "recipe": asdict(run.recipe),
        "replay_images": run.data.replay_names,
        "crop": run.data.side,
        "seed": seed,
        "watershed": tuning,
        "recorded_with": {"torch": torch.__version__},
    }
    base_prov = base_path / PROVENANCE_FILE
    prov: dict[str, Any] = {"finetune": record}
    if base_prov.is_file():
        try:
            prov["base_provenance"] = {k: v for k, v in read_json(base_prov).items() if k != "scores"}
        except Exception:  # noqa: BLE001 - the base's record is a courtesy
            pass
    return prov


def _already_done(out: Path, key: str) -> bool:
    """``out`` holds a complete fine-tuned model made with the same inputs and settings."""
    prov_path = out / PROVENANCE_FILE
    if not (prov_path.is_file() and (out / MODEL_FILE).is_file()):
        return False
    try:
        old = read_json(prov_path).get("finetune", {})
    except Exception:  # noqa: BLE001
        old = {}
    return old.get("key") == key and bool(old.get("complete"))


def finetune(
    examples: Sequence[CorrectedImage],
    out_dir: str | Path,
    base_dir: str | Path | None = None,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    progress: Callable[[int, int], None] | Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    recipe: Recipe | None = None,
    seed: int = 0,
    threads: int | None = None,
) -> Path:
    """Fine-tune the model folder ``base_dir`` (default: the bundled model) on ``examples``; write
    the new model folder ``out_dir`` and return it.

    ``steps`` (default :data:`DEFAULT_STEPS` when ``minutes`` is not given either) and ``minutes``
    (a time box, counted over resumed runs too) stop the training, whichever comes first.
    ``progress``: a callable ``(done, total)``, True for a bar on stderr, None/False for none.
    ``should_stop``: polled before every step; when it returns True the run stops and leaves a
    usable folder (the last step's weights, the base watershed parameters) and its resume state.
    Ctrl+C does the same, then re-raises. See the module docstring for the recipe.
    """

    recipe = recipe or Recipe()
    examples = check_examples(examples)
    if steps is not None:
        steps = int(check_finite(steps, "steps", 1, MAX_STEPS))
    if minutes is not None:
        minutes = check_finite(minutes, "minutes", 0.01, MAX_MINUTES)
    total = steps if steps is not None else (DEFAULT_STEPS if minutes is None else MAX_STEPS)
    if threads:
        torch.set_num_threads(int(threads))

    base_path = Path(base_dir) if base_dir is not None else default_model_dir()
    out = Path(out_dir)
    if out.resolve() == base_path.resolve():
        raise LivecellError(f"{out}: the output folder is the base model folder; give a new folder")
    base = load_model_dir(base_path)
    fp = model_fingerprint(base_path)
    shas = [(ex.name, _sha256(np.asarray(ex.image)), _sha256(np.asarray(ex.labels))) for ex in examples]
    key = _run_key(fp, shas, total, minutes, recipe, seed)

    with folder_lock(out, "finetune"):
        sweep_stale_parts(out, recursive=False)
        if _already_done(out, key):
            log.info("%s: already fine-tuned with these images and settings", out)
            return out
        run = _start_run(base, _prepare_data(base, examples, recipe), recipe, seed, out, key, total)
        _train(run, minutes, progress, should_stop)
        params, tuning, zooms_after = _watershed_for(run, base, examples)
        pp = params.to_dict()
        pp["head"] = base.head
        pp["tuning"] = {"how": "livecell-seg finetune", **tuning}
        config = copy.deepcopy(base.config)
        config["model"] = model_to_dict(base.model_config)  # architecture, head and cell_diameter kept
        config["init_from"] = str(base_path)
        save_model_dir(out, run.student, config, pp)
        prov = _provenance(run, base, base_path, fp, shas, (steps, minutes, seed), tuning, zooms_after)
        write_json_atomic(out / PROVENANCE_FILE, prov)
        if run.complete:
            run.state_path.unlink(missing_ok=True)
        else:
            _save_state(run.state_path, key, run.student, run.opt, run.st, run.rng)
            log.warning(
                "%s at step %d of %d: %s holds a usable model (the weights of step %d, the base "
                "watershed parameters); run the same command again to resume",
                "interrupted" if run.interrupted else "stopped",
                run.st.step,
                total,
                out,
                run.st.step,
            )
        if run.interrupted:
            raise KeyboardInterrupt
        log.info("fine-tuned %d steps in %.0f s: %s", run.st.step, run.st.seconds, out)
    return out


__all__ = [
    "CorrectedImage",
    "Recipe",
    "finetune",
    "check_examples",
    "distillation_loss",
    "freeze_batchnorm",
    "retune_watershed",
    "auto_zoom",
    "training_zoom",
    "zoom_labels",
    "CONFIG_FILE",
    "POSTPROCESS_FILE",
]
