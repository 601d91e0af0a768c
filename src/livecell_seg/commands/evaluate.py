"""`livecell-seg evaluate`: LIVECell-protocol instance evaluation (COCO mask AP, AFNR, mSA, F1, ...)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..options import integer, number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument("--gt", required=True, type=Path, help="COCO annotation json (ground truth)")
    parser.add_argument(
        "--pred",
        required=True,
        type=Path,
        help="folder of label images <image file stem>.tif (optional PRED/maps/ for scores) "
        "or a COCO results json (RLE masks with scores)",
    )
    parser.add_argument("--images", type=Path, help="image folder (only for the report's pictures)")
    parser.add_argument(
        "--json-out", type=Path, default=Path("metrics.json"), help="metrics file (default metrics.json)"
    )
    parser.add_argument("--report", type=Path, metavar="DIR", help="write an HTML report into DIR")
    parser.add_argument(
        "--only-predicted",
        action="store_true",
        help="evaluate only the images that have a prediction file (default: missing = empty prediction)",
    )
    parser.add_argument(
        "--max-images", type=integer(1, 100_000_000), help="evaluate the first N images of the json only"
    )
    parser.add_argument(
        "--score-threshold",
        type=number(0, 1),
        default=0.5,
        help="results json only: detections kept for the matching metrics (AP uses all; default 0.5)",
    )
    parser.add_argument(
        "--backend",
        choices=("faster", "pycocotools"),
        default="faster",
        help="COCOeval implementation (identical numbers; faster-coco-eval is C++)",
    )
    parser.add_argument(
        "--worst", type=integer(0, 100), default=6, help="number of worst images in the report"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    from ..evaluation.evaluate import evaluate, print_summary, write_metrics_json, write_report

    result = evaluate(
        args.gt,
        args.pred,
        images_dir=args.images,
        score_threshold=args.score_threshold,
        only_predicted=args.only_predicted,
        max_images=args.max_images,
        backend=args.backend,
        progress=not args.quiet,
    )
    write_metrics_json(result, args.json_out)
    print_summary(result)
    print(f"metrics written to {args.json_out}")
    if args.report is not None:
        report = write_report(result, args.report, n_worst=args.worst)
        print(f"report written to {report}")
    return 0
