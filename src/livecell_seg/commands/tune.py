"""`livecell-seg tune`: search the post-processing parameters on a validation set (mask AP)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..options import integer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument("--model", type=Path, help="model folder (default: the bundled model)")
    parser.add_argument("--json", required=True, type=Path, help="COCO annotation json of the validation set")
    parser.add_argument("--images", required=True, type=Path, help="folder holding the json's images")
    parser.add_argument(
        "--grid", choices=("small", "full"), default="small", help="candidate values (default small)"
    )
    parser.add_argument(
        "--method",
        choices=("coordinate", "grid"),
        default="coordinate",
        help="coordinate ascent (default) or the exhaustive grid",
    )
    parser.add_argument(
        "--max-images", type=integer(1, 10_000_000), help="tune on the first N annotated images only"
    )
    parser.add_argument("--device", default="cpu", help="torch device for the network (default cpu)")
    parser.add_argument("--tta", action="store_true", help="flip test-time augmentation for the maps")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the result, do not write postprocess.json"
    )


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    import json

    from ..inference.tuning import tune_model_dir
    from ..model.folder import default_model_dir

    model = args.model or default_model_dir()
    result = tune_model_dir(
        model,
        args.json,
        args.images,
        grid=args.grid,
        method=args.method,
        max_images=args.max_images,
        device=args.device,
        tta=args.tta,
        write=not args.dry_run,
    )
    t = result["tuning"]
    params = {k: v for k, v in result.items() if k not in ("tuning", "head")}
    print(
        f"mask AP {t['score']:.2f} (defaults {t['default_score']:.2f}) on {t['n_images']} images, "
        f"{t['evaluations']} evaluations"
    )
    print(json.dumps(params))
    return 0
