"""`livecell-seg split`: leakage-free train/val/test splits grouped by cell type and well."""

from __future__ import annotations

import argparse

from ..options import number, seed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument(
        "--json",
        action="append",
        required=True,
        metavar="ANN.json",
        help="LIVECell COCO json (list or dict form); repeat to merge several (e.g. train, val, test)",
    )
    parser.add_argument("--out", required=True, help="output folder for train.json, val.json, test.json")
    parser.add_argument(
        "--val",
        type=number(0, 1, hi_open=True),
        default=0.2,
        help="fraction of all images for validation (0.2)",
    )
    parser.add_argument(
        "--test",
        type=number(0, 1, hi_open=True),
        default=0.0,
        help="fraction of all images for a test split (0)",
    )
    parser.add_argument(
        "--seed", type=seed, default=0, help="random seed; the same seed gives the same split (0)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    import sys

    from rich.console import Console

    from ..data.splits import print_split_table, split_datasets, write_splits

    result = split_datasets(args.json, val=args.val, test=args.test, seed=args.seed)
    written = write_splits(result, args.out)
    print_split_table(result)
    err = Console(stderr=True, soft_wrap=True)
    dups = result.merged.duplicates
    if dups:
        n_cross = sum(d.cross_file for d in dups)
        n_diff = sum(d.annotations_differ for d in dups)
        err.print(
            f"removed {sum(len(d.dropped) for d in dups)} duplicate image entr(y/ies) of {len(dups)} file name(s) "
            f"({n_cross} across files; {n_diff} with different annotations: the copy with most annotations kept); "
            "see split_report.json"
        )
    if result.merged.remapped_image_ids or result.merged.remapped_annotation_ids:
        err.print(
            f"renumbered {result.merged.remapped_image_ids} image id(s) and "
            f"{result.merged.remapped_annotation_ids} annotation id(s) that collided across files"
        )
    for m in result.moved_groups:
        err.print(
            f"moved well {m['group']} from {m['from']} to {m['to']} so that {m['cell_type']} is in every split"
        )
    for w in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {w}")
    print(f"wrote {', '.join(str(p) for p in written.values())}", file=sys.stdout)
    return 0
