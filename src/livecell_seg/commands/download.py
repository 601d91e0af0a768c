"""`livecell-seg download`: fetch LIVECell (resumable, validated, unzipped, skips what is done)."""

from __future__ import annotations

import argparse

from ..data.download import (
    BASE_URL,
    DEFAULT_GROUPS,
    ENV_BASE_URL,
    ENV_MAX_UNZIPPED,
    ENV_SHA256,
    GROUPS,
    download,
    resolve_base_url,
)
from ..errors import LivecellError
from ..options import integer, number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument("--out", default="data/livecell", help="target folder (default data/livecell)")
    parser.add_argument(
        "--what",
        default=",".join(DEFAULT_GROUPS),
        help=f"comma-separated groups among {', '.join(GROUPS)} (default {','.join(DEFAULT_GROUPS)})",
    )
    parser.add_argument(
        "--base-url",
        default=None,
        help=f"mirror base URL (default ${ENV_BASE_URL} or the official {BASE_URL})",
    )
    parser.add_argument(
        "--sha256",
        metavar="FILE",
        default=None,
        help=f"expected SHA-256 digests, sha256sum format '<hex>  <path under the base URL>' "
        f"(default ${ENV_SHA256}); LIVECell publishes none, so without it files are checked "
        "structurally only and their digests recorded in OUT/.livecell_download/SHA256SUMS",
    )
    parser.add_argument(
        "--max-unzipped-gb",
        type=number(0, 1e6, lo_open=True),
        default=None,
        help=f"refuse a zip that unpacks to more than this (default 16, or ${ENV_MAX_UNZIPPED} in bytes)",
    )
    parser.add_argument("--keep-zip", action="store_true", help="keep images.zip after extracting it")
    parser.add_argument(
        "--retries",
        type=integer(0, 1000),
        default=5,
        help="resume attempts per file after a broken transfer",
    )
    parser.add_argument(
        "--timeout",
        type=number(0, 86400, lo_open=True),
        default=60.0,
        help="network timeout in seconds (default 60, at most a day)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    import sys

    if args.retries < 0:
        raise LivecellError("--retries must be >= 0")
    if args.max_unzipped_gb is not None and not args.max_unzipped_gb > 0:
        raise LivecellError("--max-unzipped-gb must be positive")
    what = [w for w in args.what.split(",") if w.strip()]
    if not what:
        raise LivecellError("--what is empty")
    print(f"from {resolve_base_url(args.base_url)} into {args.out}")
    results = download(
        args.out,
        what=what,
        base_url=args.base_url,
        keep_zip=args.keep_zip,
        retries=args.retries,
        timeout=args.timeout,
        progress=not args.quiet and sys.stderr.isatty(),
        sha256_file=args.sha256,
        max_unzipped=int(args.max_unzipped_gb * (1 << 30)) if args.max_unzipped_gb else None,
    )
    n_new = sum(r.status == "downloaded" for r in results)
    print(f"done: {n_new} downloaded, {len(results) - n_new} already complete")
    return 0
