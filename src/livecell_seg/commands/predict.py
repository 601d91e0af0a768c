"""`livecell-seg predict`: segment images into cell instances (uint16 label TIFFs + extras)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..inference.predict import PredictSettings


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and network options shared by every command that segments images (predict,
    timecourse), with the Dask cluster options (:func:`livecell_seg.inference.distributed.add_cluster_arguments`)."""
    from ..options import SCALE_RANGE, integer, number, scale_or_auto

    parser.add_argument("--model", metavar="DIR", help="model folder (default: the bundled model)")
    parser.add_argument(
        "--params", metavar="JSON", help="post-processing parameters (default: the model's postprocess.json)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="network runtime: torch (default) or onnxruntime (CPU; pip install 'livecell-seg[onnx]')",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="network arithmetic: auto = bf16 autocast on CUDA, float32 on CPU (default)",
    )
    parser.add_argument("--tta", action="store_true", help="average the 8 flips/rotations (8x slower)")
    parser.add_argument(
        "--scale",
        type=scale_or_auto,
        default=None,
        metavar="S|auto",
        help=f"zoom images by S ({SCALE_RANGE[0]:g}-{SCALE_RANGE[1]:g}) for the network (labels keep "
        "the image's size); 'auto': segment at zoom 1 and, when the cells found are far from the "
        "model's cell diameter, once more at the zoom that brings them there (1-1.5 passes on "
        "LIVECell); default: the model folder's predict_scale (auto for the bundled model, 1 for "
        "models that record none)",
    )
    parser.add_argument(
        "--diameter",
        type=number(0, 100_000, lo_open=True),
        metavar="PX",
        help="typical cell diameter in pixels, if known: zoom so cells match the model's cell diameter",
    )
    parser.add_argument(
        "--tile",
        type=integer(16, 2048),
        default=512,
        metavar="N",
        help="tile side for images above ~1 megapixel (smaller ones run whole), 16-2048; default 512",
    )
    parser.add_argument(
        "--overlap",
        type=number(0, MAX_OVERLAP),
        default=0.25,
        metavar="F",
        help=f"tile overlap fraction, 0-{MAX_OVERLAP:g}; default 0.25",
    )
    parser.add_argument(
        "--threads",
        type=integer(1, 1024),
        metavar="N",
        help="CPU threads for the network (default: all cores; 1 per Dask worker)",
    )
    parser.add_argument("--resume", action="store_true", help="skip images whose outputs already exist")
    parser.add_argument(
        "--quality",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="estimate each image's segmentation quality (0-1: agreement with a segmentation of the "
        "mirrored image; one more network pass per image) into OUT/summary.csv; default: off",
    )
    from ..inference.distributed import add_cluster_arguments

    add_cluster_arguments(parser)


#: ``--overlap`` at most: each tile then advances by a quarter of its side (16 passes per area);
#: an overlap near 1 would advance by a pixel (one network pass per pixel)
MAX_OVERLAP = 0.75


def network_settings(args: argparse.Namespace) -> PredictSettings:
    """Check the options of :func:`add_network_arguments` and return them as the
    :class:`~livecell_seg.inference.predict.PredictSettings` of a run (``--model`` excluded; ``cluster`` is
    None without a cluster option: serial; outputs not chosen)."""
    from ..inference.distributed import cluster_options_from_args

    params = None
    if args.params:
        from ..inference.postprocess import PostprocessParams

        params = PostprocessParams.read(args.params)
    from ..inference.predict import PredictSettings

    return PredictSettings(
        params=params,
        device=args.device,
        backend=args.backend,
        tta=args.tta,
        precision=args.precision,
        scale=args.scale,
        diameter=args.diameter,
        tile=args.tile,
        overlap=args.overlap,
        resume=args.resume,
        quality=bool(args.quality),
        num_threads=args.threads,
        cluster=cluster_options_from_args(args),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument(
        "--input",
        "-i",
        nargs="+",
        required=True,
        metavar="PATH",
        help="image files, folders (searched recursively for .tif/.tiff/.png/.jpg/.jpeg) and/or quoted glob patterns such as 'frames/*.tif'",
    )
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--save-maps", action="store_true", help="also write probability maps to OUT/maps/<stem>.npy"
    )
    parser.add_argument(
        "--overlay", action="store_true", help="also write outlines on the image to OUT/overlays/<stem>.png"
    )
    parser.add_argument(
        "--csv",
        action="store_true",
        help="also write per-cell measurements to OUT/measurements/<stem>.csv",
    )
    parser.add_argument(
        "--rois", action="store_true", help="also write an ImageJ/Fiji ROI zip to OUT/rois/<stem>.zip"
    )
    parser.add_argument(
        "--geojson",
        action="store_true",
        help="also write the cells as QuPath detections (GeoJSON polygons with measurements) to OUT/<stem>.geojson",
    )
    add_network_arguments(parser)
    parser.add_argument(
        "--rank-for-correction",
        action="store_true",
        help="estimate each image's quality (as --quality) and list the images worst first, the ones "
        "to correct first (also written to OUT/correction_order.csv)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; exit code 1 when any input was skipped."""
    from ..errors import LivecellError
    from ..inference.runner import predict_paths

    if args.rank_for_correction and args.quality is False:
        raise LivecellError("--rank-for-correction needs the quality estimate: leave out --no-quality")
    settings = network_settings(args).replace(
        save_maps=args.save_maps,
        overlay=args.overlay,
        measurements=args.csv,
        rois=args.rois,
        geojson=args.geojson,
        quality=bool(args.quality) or args.rank_for_correction,
    )
    summary = predict_paths(args.input, args.out, args.model, settings, progress=not args.quiet)
    if summary.ignored_outputs:
        print(
            f"livecell-seg predict: ignored {len(summary.ignored_outputs)} file(s) in {summary.out_dir} "
            f"that are outputs of an earlier run (e.g. {summary.ignored_outputs[0]})",
            file=sys.stderr,
        )
    if not args.quiet:
        med = summary.median_timings()
        cells = sum(summary.n_cells.values())
        line = f"predict: {len(summary.processed)} image(s) segmented, {cells} cells -> {summary.out_dir}"
        if summary.skipped_existing:
            line += f"; {len(summary.skipped_existing)} already done"
        if med:
            line += f"; median {1000 * med['total_s']:.0f} ms/image"
        if summary.scales and (
            args.scale == "auto" or args.diameter or set(summary.scales.values()) != {1.0}
        ):
            zs = sorted(summary.scales.values())
            line += f"; zoom {zs[0]:.2f}-{zs[-1]:.2f} (median {zs[len(zs) // 2]:.2f})"
        if summary.quality:
            qs = sorted(summary.quality.values())
            line += f"; quality {qs[0]:.2f}-{qs[-1]:.2f} (median {qs[len(qs) // 2]:.2f})"
        print(line)
        if summary.workers:
            from ..inference.distributed import summary_line

            print(summary_line(summary))
    if args.rank_for_correction:
        from ..inference.quality import RANKING_FILE, rank_for_correction, ranking_table

        ranked = rank_for_correction(summary.rows)
        if ranked:
            print(f"images to correct first (worst quality first; all in {summary.out_dir / RANKING_FILE}):")
            print(ranking_table(ranked))
    if summary.failed:
        print(
            f"livecell-seg predict: {len(summary.failed)} of {summary.n_inputs} file(s) failed",
            file=sys.stderr,
        )
        return 1
    return 0
