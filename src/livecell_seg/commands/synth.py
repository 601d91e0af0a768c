"""`livecell-seg synth`: write a synthetic LIVECell-format dataset (images + COCO json)."""

from __future__ import annotations

import argparse


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 520x704, got {text!r}") from None
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError("images must be at least 16x16")
    return h, w


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument("--out", required=True, help="output folder (images/ and annotations/ go there)")
    parser.add_argument("--n-images", type=int, default=16, help="number of images (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--size", type=_size, default=(520, 704), help="image size HEIGHTxWIDTH (default 520x704, LIVECell's)"
    )
    parser.add_argument(
        "--density", type=float, default=1.0, help="multiply the cells per image of every style (default 1)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    from ..data.synth import make_synthetic_dataset
    from ..errors import LivecellError

    if args.n_images < 1:
        raise LivecellError("--n-images must be at least 1")
    if args.density <= 0:
        raise LivecellError("--density must be positive")
    json_path, images_dir = make_synthetic_dataset(
        args.out, n_images=args.n_images, seed=args.seed, size=args.size, density_scale=args.density
    )
    print(f"wrote {args.n_images} images under {images_dir}")
    print(f"annotations: {json_path}")
    return 0
