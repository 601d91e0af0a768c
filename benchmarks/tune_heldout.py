"""Tune a recipe's watershed parameters on images its network never saw (issue 16).

The bundled model is trained on every annotated LIVECell image we have, so its post-processing
cannot be tuned on held-out LIVECell images directly. Instead the *lever run with the same recipe*
(trained without those images, e.g. ``runs/levers/l4_wide_scale``) segments them, and the
parameters that score best there are written into the bundled model folder's ``postprocess.json``
(with a ``tuning`` record naming the images, the tuning network and the scores).

Maps are computed once per image at the zoom the model folder's ``--scale auto`` chooses (the
shipped default), with the starting parameters; then :func:`livecell_seg.inference.tuning.tune_params`
(coordinate ascent on the small grid, LIVECell-protocol mask AP) runs on those maps. Images used
here must not be reported as held out for a model tuned here. ::

    python benchmarks/tune_heldout.py --tuning-model runs/levers/l4_wide_scale \\
        --target src/livecell_seg/models/default [--scale auto] [--dry-run]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy_levers import LIVECELL_HELDOUT, livecell_set, resolve_model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tuning-model", required=True, help="model or run folder trained without the images")
    ap.add_argument("--target", required=True, help="model folder whose postprocess.json is written")
    ap.add_argument("--scale", default="auto", help="zoom for the maps: a number or auto (default)")
    ap.add_argument("--grid", default="small", choices=["small", "full"])
    ap.add_argument("--dry-run", action="store_true", help="print, do not write")
    args = ap.parse_args(argv)

    from livecell_seg.inference.postprocess import PostprocessParams
    from livecell_seg.inference.predict import segment_image
    from livecell_seg.inference.tuning import tune_params
    from livecell_seg.io import write_json_atomic
    from livecell_seg.model.folder import POSTPROCESS_FILE, load_model_dir

    tuner = load_model_dir(resolve_model(Path(args.tuning_model)))
    target = Path(args.target)
    start_file = target / POSTPROCESS_FILE
    start = PostprocessParams.read(start_file) if start_file.is_file() else None
    scale = args.scale if args.scale == "auto" else float(args.scale)
    items = livecell_set()
    maps, gts, zooms = [], [], []
    t0 = time.perf_counter()
    for _, img, gt in items:
        res = segment_image(tuner, img, start, scale=scale)
        maps.append(np.asarray(res.maps, dtype=np.float32))
        gts.append(gt)
        zooms.append(res.scale)
    print(f"maps of {len(items)} images at zooms {zooms} ({time.perf_counter() - t0:.0f} s)", flush=True)
    progress_log = logging.getLogger("livecell_seg.inference.tuning")  # its progress lines, on stdout
    progress_log.addHandler(logging.StreamHandler(sys.stdout))
    progress_log.setLevel(logging.INFO)
    best, score, history = tune_params(maps, gts, tuner.head, grid=args.grid, start=start)
    first = history[0]["score"]
    print(f"mask AP {first:.2f} (start) -> {score:.2f} (tuned): {best.to_dict()}")
    result = {
        **best.to_dict(),
        "head": tuner.head,
        "tuning": {
            "metric": "mask AP (LIVECell protocol)",
            "how": (
                f"coordinate ascent on the {args.grid} grid of livecell_seg.inference.tuning, on the maps of a "
                "network with this model's recipe that never saw the tuning images "
                f"({args.tuning_model}), each image at the zoom that --scale {args.scale} chose"
            ),
            "images": list(LIVECELL_HELDOUT),
            "zooms": zooms,
            "start_score": round(first, 2),
            "score": round(score, 2),
            "start": start.to_dict() if start else PostprocessParams().to_dict(),
            "evaluations": len(history),
            "command": (
                f"python benchmarks/tune_heldout.py --tuning-model {args.tuning_model} "
                f"--target {args.target} --scale {args.scale}"
            ),
            "note": "these images are tuning images for this model: never report them as held out for it",
        },
    }
    if not args.dry_run:
        write_json_atomic(target / POSTPROCESS_FILE, result)
        print(f"wrote {target / POSTPROCESS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
