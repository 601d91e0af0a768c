"""`livecell-seg convert`: COCO json -> uint16 instance label TIFFs (and optional binary masks)."""

from __future__ import annotations

import argparse

from ..data.coco import DEFAULT_MIN_FRAGMENT
from ..data.convert import convert
from ..errors import LivecellError
from ..options import integer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument("--json", required=True, help="COCO annotation json (LIVECell's, list or dict form)")
    parser.add_argument(
        "--images",
        default=None,
        help="images folder to check first (official layout with cell-type folders, or flat); "
        "every image must exist, be readable and have the json's size",
    )
    parser.add_argument("--out", required=True, help="output folder: OUT/<image stem>.tif")
    parser.add_argument(
        "--workers",
        type=integer(1, 64),
        default=None,
        help="parallel processes (default: CPUs, max 8; at most 64)",
    )
    parser.add_argument(
        "--semantic",
        action="store_true",
        help="also write binary foreground masks (uint8 0/255) to OUT/semantic/",
    )
    parser.add_argument(
        "--min-fragment",
        type=integer(1, 1_000_000_000),
        default=DEFAULT_MIN_FRAGMENT,
        help=f"drop a cell left with fewer visible pixels after overlaps (default {DEFAULT_MIN_FRAGMENT})",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="redo every image (default: resume an identical earlier run)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    import sys

    if args.workers is not None and args.workers < 1:
        raise LivecellError("--workers must be at least 1")
    if args.min_fragment < 1:
        raise LivecellError("--min-fragment must be at least 1")
    summary = convert(
        args.json,
        args.out,
        images_dir=args.images,
        workers=args.workers,
        semantic=args.semantic,
        min_fragment=args.min_fragment,
        resume=not args.overwrite,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    for line in summary.lines():
        print(line)
    return 0
