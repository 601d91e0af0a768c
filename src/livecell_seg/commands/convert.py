"""`livecell-seg convert` (not implemented yet)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    from ..errors import LivecellError

    raise LivecellError("'convert' is not implemented yet")
