"""Search of the post-processing parameters on a validation set, maximizing mask AP.

The network's maps are computed once per image; the search then only re-runs the (fast)
post-processing. Two strategies: ``coordinate`` (coordinate ascent over the grid's axes, from a
start point, until a full round changes nothing) and ``grid`` (every combination). Parameters
applied after the watershed (``min_size``, ``smooth``) reuse the last raw watershed, so varying
them costs almost nothing.

:func:`tune_params` works on precomputed maps (used by the demo, training and the app);
:func:`tune_model_dir` computes the maps of a model on a COCO validation set and writes
``postprocess.json`` into the model folder.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data.coco import annotations_to_labels, find_image, load_coco
from ..errors import LivecellError
from ..evaluation.metrics import coco_mask_ap
from ..io import read_image, write_json_atomic
from ..model.folder import POSTPROCESS_FILE, load_model_dir
from ..model.heads import GRID_SIZES, get_head
from .postprocess import (
    FINISH_FIELDS,
    PostprocessParams,
    finish_instances,
    instance_scores,
    instances_from_maps,
)
from .tiling import predict_maps

log = logging.getLogger(__name__)

#: ``score_fn(gt_list, pred_list, scores_list) -> float``: higher is better.
ScoreFn = Callable[[Sequence[np.ndarray], Sequence[np.ndarray], Sequence[dict[int, float]]], float]


def default_grid(head: str, size: str = "small") -> dict[str, list]:
    """The named grid (``small`` or ``full``) for ``head``: parameter -> candidate values.

    The grids live in the heads registry (:attr:`livecell_seg.model.heads.Head.grids`).
    """
    entry = get_head(head)
    if size not in GRID_SIZES:
        raise LivecellError(f"unknown grid {size!r} (choose {' or '.join(GRID_SIZES)})")
    return {k: list(v) for k, v in entry.grids[size].items()}


def mask_ap_score(
    gt_list: Sequence[np.ndarray], pred_list: Sequence[np.ndarray], scores_list: Sequence[dict[int, float]]
) -> float:
    """COCO mask AP (LIVECell protocol, in percent) of predicted label images against ground truth."""

    res = coco_mask_ap(list(gt_list), list(pred_list), list(scores_list))
    if isinstance(res, dict):
        return float(res["AP"])
    return float(res)


def _check_grid(grid: dict[str, Sequence[Any]]) -> dict[str, list]:
    known = set(PostprocessParams().to_dict())
    out: dict[str, list] = {}
    for k, v in grid.items():
        if k not in known:
            raise LivecellError(f"unknown post-processing parameter in grid: {k!r}")
        vals = list(v) if isinstance(v, (list, tuple)) else [v]
        if not vals:
            raise LivecellError(f"empty candidate list for {k!r}")
        out[k] = vals
    return out


class _Evaluator:
    """Scores parameter sets on fixed maps; caches scores and the last raw watershed."""

    def __init__(
        self,
        maps_list: Sequence[np.ndarray],
        gt_list: Sequence[np.ndarray],
        head: str,
        score_fn: ScoreFn,
    ) -> None:
        self.maps_list = maps_list
        self.gt_list = gt_list
        self.head = head
        self.score_fn = score_fn
        self.cache: dict[tuple, float] = {}
        self.history: list[dict[str, Any]] = []
        self._raw_key: tuple | None = None
        self._raw: list[np.ndarray] = []

    @staticmethod
    def _key(p: PostprocessParams) -> tuple:
        return tuple(sorted(p.to_dict().items()))

    @staticmethod
    def _raw_key_of(p: PostprocessParams) -> tuple:
        return tuple(sorted((k, v) for k, v in p.to_dict().items() if k not in FINISH_FIELDS))

    def __call__(self, p: PostprocessParams) -> float:
        key = self._key(p)
        if key in self.cache:
            return self.cache[key]
        t0 = time.perf_counter()
        rk = self._raw_key_of(p)
        if rk != self._raw_key:
            self._raw = [instances_from_maps(m, self.head, p, finish=False) for m in self.maps_list]
            self._raw_key = rk
        preds = [finish_instances(r, m[0], p) for r, m in zip(self._raw, self.maps_list)]
        scores = [instance_scores(lab, m[0]) for lab, m in zip(preds, self.maps_list)]
        s = float(self.score_fn(self.gt_list, preds, scores))
        if not np.isfinite(s):
            s = float("-inf")
        self.cache[key] = s
        self.history.append({"params": p.to_dict(), "score": s, "seconds": time.perf_counter() - t0})
        return s


def tune_params(
    maps_list: Sequence[np.ndarray],
    gt_list: Sequence[np.ndarray],
    head: str,
    score_fn: ScoreFn | None = None,
    grid: str | dict[str, Sequence[Any]] = "small",
    *,
    method: str = "coordinate",
    start: PostprocessParams | None = None,
    max_rounds: int = 4,
) -> tuple[PostprocessParams, float, list[dict[str, Any]]]:
    """Find the post-processing parameters that maximize ``score_fn`` on precomputed maps.

    ``maps_list``: ``(C, H, W)`` maps in HEADS order, one per image; ``gt_list``: matching
    ground-truth label images. ``score_fn`` defaults to :func:`mask_ap_score` (COCO mask AP).
    ``grid``: ``"small"``, ``"full"`` or a dict parameter -> candidate values. ``method``:
    ``"coordinate"`` (ascent along one parameter at a time, rounds until nothing changes, at most
    ``max_rounds``) or ``"grid"`` (every combination). Parameters not in the grid keep their
    ``start`` value (default :class:`PostprocessParams`). Returns ``(best_params, best_score,
    history)``, history being every evaluated ``{"params", "score", "seconds"}`` in order.
    The best score so far is logged (``log.info``) every 25 combinations or after each parameter.
    """
    get_head(head)
    if len(maps_list) != len(gt_list):
        raise ValueError(f"{len(maps_list)} maps but {len(gt_list)} ground-truth images")
    if not maps_list:
        raise ValueError("no images to tune on")
    if method not in ("coordinate", "grid"):
        raise LivecellError(f"unknown search method {method!r} (choose coordinate or grid)")
    g = _check_grid(default_grid(head, grid) if isinstance(grid, str) else grid)
    ev = _Evaluator(maps_list, gt_list, head, score_fn or mask_ap_score)
    best = start or PostprocessParams()
    best_score = ev(best)

    if method == "grid":
        # watershed parameters vary slowest, so the raw watershed is reused across finish values
        names = [n for n in g if n not in FINISH_FIELDS] + [n for n in g if n in FINISH_FIELDS]
        combos = list(itertools.product(*(g[n] for n in names)))
        for j, combo in enumerate(combos, 1):
            p = replace(start or PostprocessParams(), **dict(zip(names, combo)))
            s = ev(p)
            if s > best_score:
                best, best_score = p, s
            if j % 25 == 0 or j == len(combos):
                log.info("grid %d/%d: best %.3f", j, len(combos), best_score)
        return best, best_score, ev.history

    for rnd in range(1, max_rounds + 1):
        changed = False
        for name, values in g.items():
            for v in values:
                p = replace(best, **{name: v})
                s = ev(p)
                if s > best_score + 1e-12:
                    best, best_score, changed = p, s, True
            log.info("round %d, %s = %r: best %.3f", rnd, name, getattr(best, name), best_score)
        if not changed:
            break
    return best, best_score, ev.history


def tune_model_dir(
    model_dir: str | Path,
    json_path: str | Path,
    images_dir: str | Path,
    *,
    grid: str | dict[str, Sequence[Any]] = "small",
    method: str = "coordinate",
    max_images: int | None = None,
    device: str = "cpu",
    tta: bool = False,
    score_fn: ScoreFn | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Tune a model folder's post-processing on a COCO validation set; write ``postprocess.json``.

    Maps are computed once per image with :func:`livecell_seg.inference.tiling.predict_maps`. The written
    file holds the parameters (top level, readable by :meth:`PostprocessParams.from_dict`) and a
    ``tuning`` record: head, metric, score, default-parameter score, image count, grid, method,
    evaluations. Returns that dict. Progress (maps computed, best score so far) is logged.
    """

    model_dir = Path(model_dir)
    loaded = load_model_dir(model_dir, device=device)
    head = loaded.head
    ds = load_coco(json_path)
    images = [im for im in ds.images if ds.anns_by_image.get(int(im["id"]))]
    if max_images is not None:
        if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
            raise LivecellError(f"max_images must be a positive integer, got {max_images!r}")
        images = images[:max_images]
    if not images:
        raise LivecellError(f"{json_path}: no annotated images to tune on")
    maps_list: list[np.ndarray] = []
    gt_list: list[np.ndarray] = []
    t0 = time.perf_counter()
    for i, im in enumerate(images, 1):
        path = find_image(images_dir, im["file_name"])
        img = read_image(path)
        gt = annotations_to_labels(ds.anns_by_image[int(im["id"])], img.shape[0], img.shape[1])
        # float16 halves the memory of a large validation set (570 LIVECell val images x 3 maps)
        maps_list.append(np.asarray(predict_maps(loaded, img, tta=tta), dtype=np.float16))
        gt_list.append(gt)
        if i % 10 == 0 or i == len(images):
            log.info("maps %d/%d (%.0f s)", i, len(images), time.perf_counter() - t0)
    start = loaded.params
    score_fn = score_fn or mask_ap_score
    baseline = _Evaluator(maps_list, gt_list, head, score_fn)(PostprocessParams())
    best, best_score, history = tune_params(
        maps_list, gt_list, head, score_fn, grid, method=method, start=start
    )
    g = default_grid(head, grid) if isinstance(grid, str) else {k: list(v) for k, v in grid.items()}
    result: dict[str, Any] = {
        **best.to_dict(),
        "head": head,
        "tuning": {
            "metric": "mask AP" if score_fn is mask_ap_score else getattr(score_fn, "__name__", "custom"),
            "score": best_score,
            "default_score": baseline,
            "n_images": len(images),
            "json": str(Path(json_path).resolve()),
            "grid": grid if isinstance(grid, str) else "custom",
            "grid_values": g,
            "method": method,
            "evaluations": len(history),
            "tta": tta,
        },
    }
    if write:
        write_json_atomic(model_dir / POSTPROCESS_FILE, result)
        log.info("wrote %s", model_dir / POSTPROCESS_FILE)
    return result
