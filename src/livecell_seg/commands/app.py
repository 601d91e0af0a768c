"""`livecell-seg app`: start the Streamlit web app on 127.0.0.1."""

from __future__ import annotations

import argparse

from ..app import launch
from ..options import integer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument(
        "--port",
        type=integer(0, 65535),
        default=8501,
        help="port on 127.0.0.1 (default 8501; 0 = any free port)",
    )
    parser.add_argument(
        "--model", metavar="DIR", default=None, help="model folder to preselect (default: the bundled model)"
    )
    parser.add_argument("--no-browser", action="store_true", help="do not open a web browser")


def run(args: argparse.Namespace) -> int:
    """Serve the app until interrupted (Ctrl+C or SIGTERM)."""
    return launch(args.port, args.model, open_browser=not args.no_browser)
