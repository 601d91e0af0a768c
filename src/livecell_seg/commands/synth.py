"""`livecell-seg synth`: write a synthetic LIVECell-format dataset (images + COCO json)."""

from __future__ import annotations

import argparse

from ..data.synth import MAX_DENSITY, MAX_IMAGES, make_synthetic_dataset
from ..errors import LivecellError
from ..io import check_image_size
from ..options import integer, number, seed


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 520x704, got {text!r}") from None
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError("images must be at least 16x16")
    try:  # the limit every command applies to images (predict, convert, ...)
        check_image_size("--size", h, w, what="the image")
    except LivecellError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--size: ")) from None
    return h, w


_size.bounds = (16, None)  # type: ignore[attr-defined]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument("--out", required=True, help="output folder (images/ and annotations/ go there)")
    parser.add_argument(
        "--n-images", type=integer(1, MAX_IMAGES), default=16, help="number of images (default 16)"
    )
    parser.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--size", type=_size, default=(520, 704), help="image size HEIGHTxWIDTH (default 520x704, LIVECell's)"
    )
    parser.add_argument(
        "--density",
        type=number(0, MAX_DENSITY, lo_open=True),
        default=1.0,
        help=f"multiply the cells per image of every style (default 1, at most {MAX_DENSITY:g})",
    )


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    json_path, images_dir = make_synthetic_dataset(
        args.out, n_images=args.n_images, seed=args.seed, size=args.size, density_scale=args.density
    )
    print(f"wrote {args.n_images} images under {images_dir}")
    print(f"annotations: {json_path}")
    return 0
