"""Shared test fixtures and references (one copy each, used by several test modules).

- ``one_torch_thread``: torch limited to one thread for a module (the CPU is shared; tiny models
  are faster with one); ``keep_torch_threads``: the thread count restored after the module.
- ``random_model_dir``: a factory writing a tiny randomly initialised model folder.
- :func:`pycocotools_eval` / :func:`pycocotools_results`: the independent COCO reference (pycocotools'
  ``COCOeval`` with LIVECell's parameters) that the metric and evaluation tests compare against
  (imported by the test modules: ``from conftest import pycocotools_eval``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

#: seconds a test waits for a subprocess, a server or a widget before calling it hung. Only a guard
#: against a hang, never a measure of speed: generous enough for a 2-core machine shared with
#: other CPU-heavy jobs (a test must not fail because the machine is busy; issue 22).
HANG_S = 1800.0


@pytest.fixture(scope="module")
def keep_torch_threads() -> Iterator[None]:
    """Restore torch's thread count at the end of the module (``predict --threads 1`` sets it)."""
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def one_torch_thread(keep_torch_threads: None) -> None:
    """Run the module's tests with one torch thread; the previous setting is restored after."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def random_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``make(head, base_features, depth, seed=0) -> Path``: a tiny random model folder (eval mode)."""
    torch = pytest.importorskip("torch")
    from livecell_seg.model.folder import ModelConfig, build_model, model_to_dict, save_model_dir

    def make(head: str, base_features: int, depth: int, seed: int = 0, name: str = "model") -> Path:
        torch.manual_seed(seed)
        cfg = ModelConfig(head=head, base_features=base_features, depth=depth)
        net = build_model(cfg).eval()
        return save_model_dir(tmp_path_factory.mktemp(name), net, {"model": model_to_dict(cfg)})

    return make


# ----------------------------------------------------------------------------- pycocotools reference


def pycocotools_results(
    image_ids: Sequence[int], preds: Sequence[np.ndarray], scores: Sequence[dict | None] | None = None
) -> list[dict[str, Any]]:
    """Detections for ``COCO.loadRes``: one pycocotools-encoded RLE per instance of each label image.

    ``scores[i]`` maps label -> score (None or missing: 1.0 for every instance).
    """
    from pycocotools import mask as mu

    res: list[dict[str, Any]] = []
    for iid, p, sc in zip(image_ids, preds, scores or [None] * len(preds)):
        for v in np.unique(p)[1:]:
            rle = mu.encode(np.asfortranarray((p == v).astype(np.uint8)))
            res.append(
                {
                    "image_id": iid,
                    "category_id": 1,
                    "segmentation": rle,
                    "score": 1.0 if sc is None else sc[int(v)],
                }
            )
    return res


def pycocotools_eval(
    gt_dataset: dict[str, Any], results: list[dict[str, Any]], summarize: bool = True
) -> Any:
    """pycocotools' ``COCOeval`` (segm) with LIVECell's parameters, evaluated and accumulated.

    Class-agnostic, up to 2000 detections, LIVECell's area ranges (small < 324 px <= medium < 961 px
    <= large). ``summarize`` fills ``ev.stats`` (whose AP is at 100 detections, pycocotools' habit).
    pycocotools rewrites the ground truth's segmentations in place: pass a copy of a dict you keep.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt_dataset
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "segm")
        ev.params.useCats = 0
        ev.params.maxDets = [100, 500, 2000]
        ev.params.areaRng = [[0, 1e10], [0, 324], [324, 961], [961, 1e10]]
        ev.params.areaRngLbl = ["all", "small", "medium", "large"]
        ev.evaluate()
        ev.accumulate()
        if summarize:
            ev.summarize()
    return ev
