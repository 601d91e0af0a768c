"""`livecell-seg timecourse`: confluence, cell counts and growth curves per well of a time lapse."""

from __future__ import annotations

import argparse
import math
import sys

from ..data import LIVECELL_PIXEL_SIZE_UM
from ..errors import LivecellError
from ..inference.distributed import summary_line
from ..options import number
from .predict import add_network_arguments, network_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument(
        "--input",
        "-i",
        nargs="+",
        required=True,
        metavar="PATH",
        help="image files, folders (searched recursively) and/or quoted glob patterns; names like "
        "<cell type>_Phase_<well>_<field>_<DD>d<HH>h<MM>m_<crop>.tif (LIVECell/Incucyte) or see --pattern",
    )
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--pattern",
        metavar="REGEX",
        help="regex searched in each file name, with named groups time (02d04h00m, 12h30m, or hours) or "
        "days/hours/minutes, and optionally cell_type, well, field, crop; "
        r"e.g. '(?P<well>[A-H]\d+)_(?P<field>\d+)_t(?P<hours>\d+)'",
    )
    parser.add_argument(
        "--labels",
        metavar="DIR",
        help="use existing label images DIR/<image stem>.tif (from predict or convert) instead of the "
        "network (torch is not loaded; the model and Dask options are ignored)",
    )
    parser.add_argument(
        "--pixel-size",
        type=number(0, 1000),
        default=LIVECELL_PIXEL_SIZE_UM,
        metavar="UM",
        help=f"µm per pixel, for areas in µm² and cells per mm² (default {LIVECELL_PIXEL_SIZE_UM:g}: "
        "LIVECell's Incucyte S3 at 10x; give your instrument's; 0 = unknown)",
    )
    parser.add_argument(
        "--fit-range",
        metavar="START:END",
        help="fit growth on the time points from START to END hours only (default: the exponential "
        "phase found by a three-phase lag/exponential/plateau fit)",
    )
    parser.add_argument(
        "--min-r2",
        type=number(0, 1),
        default=0.8,
        metavar="R2",
        help="a fit below this R² is reported as not meaningful (default 0.8)",
    )
    parser.add_argument(
        "--overlay", action="store_true", help="also write outlined overlays to OUT/segmentation/overlays/"
    )
    parser.add_argument("--no-report", action="store_true", help="CSV files only: no plots, no index.html")
    add_network_arguments(parser)
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; exit code 1 when any input was skipped."""
    from ..timecourse.analysis import run_timecourse

    fit_range = None
    if args.fit_range:
        try:
            a, b = (float(x) for x in args.fit_range.split(":"))
        except ValueError:
            raise LivecellError(f"--fit-range must be START:END in hours, got {args.fit_range!r}") from None
        if not (math.isfinite(a) and math.isfinite(b)):
            raise LivecellError(f"--fit-range must be finite hours, got {args.fit_range!r}")
        if not a < b:
            raise LivecellError(f"--fit-range: START must be below END, got {args.fit_range!r}")
        fit_range = (a, b)
    settings = None
    if args.labels is None:
        settings = network_settings(args).replace(overlay=args.overlay)
    res = run_timecourse(
        args.input,
        args.out,
        args.model,
        pattern=args.pattern,
        labels_dir=args.labels,
        pixel_size_um=args.pixel_size or None,
        fit_range=fit_range,
        min_r2=args.min_r2,
        report=not args.no_report,
        progress=not args.quiet,
        settings=settings,
    )
    if not args.quiet:
        wells = {(r["cell_type"], r["well"]) for r in res.per_image}
        print(
            f"timecourse: {len(res.per_image)} image(s), {len(wells)} well(s), "
            f"{len(res.per_well_time)} well time point(s) -> {res.out_dir}"
            + (f" (open {res.files['index']})" if "index" in res.files else "")
        )
        for g in res.growth:
            if g["metric"] != "count":
                continue
            name = f"{g['cell_type']} {g['well']}".strip()
            if g["meaningful"]:
                hi = g["doubling_time_ci_high"]
                print(
                    f"  {name}: count doubling time {g['doubling_time_h']:.1f} h "
                    f"[95% CI {g['doubling_time_ci_low']:.1f}, {'inf' if math.isinf(hi) else f'{hi:.1f}'}], "
                    f"R² {g['r2']:.2f}, {g['n_used']} of {g['n_points']} time points"
                )
            else:
                print(f"  {name}: count doubling time not meaningful ({g['reason']})")
        from pathlib import Path

        from ..timecourse.report import frames_to_check

        check = frames_to_check(res.per_image)
        if check:
            print(
                "  check these frames (lowest quality first): "
                + ", ".join(f"{Path(r['file']).name} ({r['quality']:.2f})" for r in check)
            )
        seg = res.segmentation.predict if res.segmentation is not None else None
        if seg is not None and seg.workers:
            print(summary_line(seg))
    if res.skipped:
        print(
            f"livecell-seg timecourse: {len(res.skipped)} file(s) skipped (listed in {res.files['json']})",
            file=sys.stderr,
        )
        return 1
    return 0
