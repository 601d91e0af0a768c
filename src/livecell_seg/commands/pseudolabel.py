"""`livecell-seg pseudolabel`: a model's confident cells on unannotated images (self-training)."""

from __future__ import annotations

import argparse
import sys

from ..inference.predict import load_model_for_predict
from ..inference.pseudolabel import PseudoLabelSettings, pseudo_label_paths
from ..options import number, scale_or_auto


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    d = PseudoLabelSettings()
    parser.add_argument("--model", metavar="DIR", help="model folder (default: the bundled model)")
    parser.add_argument("--input", "-i", nargs="+", required=True, metavar="PATH", help="image files/folders")
    parser.add_argument(
        "--out",
        "-o",
        required=True,
        metavar="DIR",
        help="writes DIR/labels/<stem>.tif, DIR/ignore/<stem>.tif",
    )
    parser.add_argument("--no-tta", action="store_true", help="first view without 8x test-time augmentation")
    parser.add_argument(
        "--scale",
        type=scale_or_auto,
        default="auto",
        metavar="S|auto",
        help="zoom of the first view, auto or 0.05-20 (default: auto)",
    )
    parser.add_argument(
        "--min-score",
        type=number(0, 1),
        default=d.min_score,
        help=f"least mean foreground probability (default {d.min_score})",
    )
    parser.add_argument(
        "--min-agreement",
        type=number(0, 1),
        default=d.min_agreement,
        help=f"least IoU with the second view's cell (default {d.min_agreement})",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--resume", action="store_true", help="skip images already pseudo-labelled")
    parser.add_argument("--quiet", "-q", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; exit code 1 when any input was skipped."""

    scale: float | str = args.scale
    settings = PseudoLabelSettings(
        tta=not args.no_tta, scale=scale, min_score=args.min_score, min_agreement=args.min_agreement
    )
    model = load_model_for_predict(args.model, args.device)
    summary = pseudo_label_paths(
        args.input, args.out, model, settings, resume=args.resume, progress=not args.quiet
    )
    if not args.quiet:
        kept = sum(int(v["kept"]) for v in summary.images.values())
        rej = sum(int(v["rejected"]) for v in summary.images.values())
        print(
            f"pseudolabel: {len(summary.images)} image(s), {kept} cells kept, {rej} rejected -> {summary.out_dir}"
        )
    if summary.failed:
        print(f"livecell-seg pseudolabel: {len(summary.failed)} file(s) failed", file=sys.stderr)
        return 1
    return 0
