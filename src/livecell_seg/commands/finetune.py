"""`livecell-seg finetune`: fine-tune a model on a few corrected images (minutes on a CPU)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..options import integer, number, seed
from ..training.finetune_options import DEFAULT_STEPS, MAX_MINUTES, MAX_STEPS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""

    parser.add_argument(
        "--images",
        nargs="+",
        required=True,
        metavar="FILE_OR_DIR",
        help="the corrected images (files or folders)",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--labels", type=Path, metavar="DIR", help="their label images DIR/<stem>.tif (as predict writes)"
    )
    src.add_argument(
        "--rois",
        type=Path,
        metavar="DIR",
        help="their ImageJ/Fiji ROI sets DIR/<stem>.zip (or DIR/rois/<stem>.zip)",
    )
    src.add_argument(
        "--geojson", type=Path, metavar="DIR", help="their QuPath GeoJSON files DIR/<stem>.geojson"
    )
    parser.add_argument(
        "--model", type=Path, metavar="DIR", help="base model folder (default: the bundled model)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="NEW_MODEL_DIR", help="the new model folder"
    )
    parser.add_argument(
        "--steps",
        type=integer(1, MAX_STEPS),
        metavar="N",
        help=f"training steps of 4 crops (default {DEFAULT_STEPS}: a few minutes on a 2-core CPU)",
    )
    parser.add_argument(
        "--minutes",
        type=number(0.01, MAX_MINUTES),
        metavar="M",
        help="stop after M minutes of training (with --steps: whichever comes first)",
    )
    parser.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    parser.add_argument("--threads", type=integer(1, 1024), metavar="N", help="CPU threads for torch")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    from ..training.corrections import load_corrections
    from ..training.finetune import finetune

    kind, folder = next((k, getattr(args, k)) for k in ("labels", "rois", "geojson") if getattr(args, k))
    examples = load_corrections(args.images, folder, kind)
    out = finetune(
        examples,
        args.out,
        args.model,
        steps=args.steps,
        minutes=args.minutes,
        progress=True,
        seed=args.seed,
        threads=args.threads,
    )
    print(f"new model folder: {out}  (segment with: livecell-seg predict IMAGES --model {out} --out OUT)")
    return 0
