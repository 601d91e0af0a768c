"""`livecell-seg eda`: a self-contained HTML report on LIVECell-format annotations (and images)."""

from __future__ import annotations

import argparse

from ..options import integer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument(
        "--json",
        action="append",
        required=True,
        metavar="ANN.json",
        help="LIVECell COCO json; repeat for several splits (named train/val/test from the file name, else its stem)",
    )
    parser.add_argument(
        "--images", metavar="DIR", help="image folder: adds intensity statistics and example images"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="report folder (index.html, stats.json)")
    parser.add_argument(
        "--examples",
        type=integer(0, 100),
        default=8,
        help="at most this many example images, one per cell type (8)",
    )
    parser.add_argument(
        "--png", action="store_true", help="also write each figure as a PNG file next to index.html"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    from ..data.eda import make_report

    page = make_report(
        args.json,
        args.out,
        images_dir=args.images,
        n_examples=max(0, args.examples),
        progress=not args.no_progress,
        save_pngs=args.png,
    )
    print(f"wrote {page} (and stats.json); open it in a browser")
    return 0
