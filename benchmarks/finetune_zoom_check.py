"""Does a fine-tuned model lose because of its zoom or because of what it learned? (issue 25)

Scores the bundled model and a fine-tuned one (``--model``, e.g. a folder that
``benchmarks/finetune_gain.py`` wrote) on the other 11 held-out Kaggle SH-SY5Y images at
``--scale auto``, at zoom 1 and at ``--zoom`` (F1@0.5, mean per image)::

    python benchmarks/finetune_zoom_check.py --model /tmp/finetune_gain/model_guarded_shsy5y_150 --zoom 1.29
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dev_table import kaggle_set  # noqa: E402 - reuse, not a copy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="the fine-tuned model folder")
    ap.add_argument("--zoom", type=float, default=1.29, help="the zoom it was fine-tuned at")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from livecell_seg.evaluation.metrics import match_instances
    from livecell_seg.inference.predict import segment_image
    from livecell_seg.model.folder import default_model_dir, load_model_dir

    torch.set_num_threads(args.threads)
    images = kaggle_set()[1:]  # the first one is finetune_gain's training image
    models = {"base": load_model_dir(default_model_dir()), "fine-tuned": load_model_dir(args.model)}
    print("| model | scale | F1@0.5 | zooms used |\n|---|---|---|---|")
    for name, m in models.items():
        for scale in ("auto", 1.0, args.zoom):
            f, zs = [], []
            for _, img, gt in images:
                r = segment_image(m, img, scale=scale)
                f.append(match_instances(gt, r.labels, 0.5).f1)
                zs.append(r.scale)
            print(
                f"| {name} | {scale} | {np.mean(f):.3f} | {', '.join(f'{z:.2f}' for z in zs)} |", flush=True
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
