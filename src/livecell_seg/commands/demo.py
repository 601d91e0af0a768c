"""`livecell-seg demo`: the whole pipeline on the bundled real LIVECell sample, on a CPU, in minutes."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..demo_pipeline import DemoOptions, run_demo
from ..options import number, seed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument(
        "--out", type=Path, default=Path("demo_output"), help="output folder (default demo_output)"
    )
    parser.add_argument(
        "--pretrained",
        action="store_true",
        help="fine-tune the bundled model instead of training from scratch",
    )
    parser.add_argument(
        "--minutes",
        type=number(0, 7 * 24 * 60, lo_open=True),
        metavar="M",
        help="training time box in minutes (default 4; --quick 0.5); the step count is fitted to it",
    )
    parser.add_argument("--quick", action="store_true", help="tiny network, few steps (about a minute)")
    parser.add_argument(
        "--fresh", action="store_true", help="redo everything (default: reuse a finished identical training)"
    )
    parser.add_argument("--seed", type=seed, default=0, help="seed of the split and the training (0)")
    parser.add_argument(
        "--config", type=Path, help="training config (default: the packaged livecell_seg/configs/demo.yaml)"
    )
    parser.add_argument(
        "--no-bundled", action="store_true", help="do not evaluate the bundled model for comparison"
    )


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    run_demo(
        DemoOptions(
            out=args.out,
            pretrained=args.pretrained,
            minutes=args.minutes,
            quick=args.quick,
            fresh=args.fresh,
            seed=args.seed,
            config=args.config,
            bundled=not args.no_bundled,
        )
    )
    return 0
