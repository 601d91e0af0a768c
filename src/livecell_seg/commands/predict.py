"""`livecell-seg predict`: segment images into cell instances (uint16 label TIFFs + extras)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

# light (standard library only): the parser and --help import no numpy, torch or Dask
from ..errors import LivecellError
from ..inference.distributed import (
    CLUSTER_KINDS,
    INSTALL_HINT,
    MAX_IMAGES_PER_TASK,
    TASKS_PER_WORKER,
    ClusterOptions,
    summary_line,
)
from ..options import SCALE_RANGE, integer, number, scale_or_auto

if TYPE_CHECKING:  # pragma: no cover
    from ..inference.predict import PredictSettings


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and network options shared by every command that segments images (predict,
    timecourse), with the Dask cluster options (:func:`add_cluster_arguments`)."""
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
    add_cluster_arguments(parser)


#: ``--overlap`` at most: each tile then advances by a quarter of its side (16 passes per area);
#: an overlap near 1 would advance by a pixel (one network pass per pixel)
MAX_OVERLAP = 0.75


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--scheduler``, ``--local-workers``, ``--cluster`` (+ ``--jobs --cores --memory
    --walltime``) and ``--images-per-task`` to a command's parser, in their own group."""
    g = parser.add_argument_group(
        "parallel run on Dask workers (needs " + INSTALL_HINT + "; without these options: serial)"
    )
    g.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="use the workers of a running Dask scheduler, e.g. tcp://10.1.2.3:8786",
    )
    g.add_argument(
        "--local-workers",
        type=integer(1, 1024),
        metavar="N",
        help="start N single-threaded Dask worker processes on this machine",
    )
    g.add_argument(
        "--cluster",
        choices=CLUSTER_KINDS,
        help="start Dask workers as batch jobs through dask-jobqueue (unset values come from its "
        "config, e.g. ~/.config/dask/jobqueue.yaml: queue, account, job_extra_directives, ...)",
    )
    g.add_argument(
        "--jobs",
        type=integer(1, 10_000),
        metavar="N",
        help="with --cluster: batch jobs to submit (default 1)",
    )
    g.add_argument(
        "--cores",
        type=integer(1, 4096),
        metavar="N",
        help="with --cluster: cores per job (one 1-thread worker per core)",
    )
    g.add_argument("--memory", metavar="SIZE", help="with --cluster: memory per job, e.g. 16GB")
    g.add_argument("--walltime", metavar="TIME", help="with --cluster: time limit per job, e.g. 02:00:00")
    g.add_argument(
        "--images-per-task",
        type=integer(1, 10_000),
        metavar="N",
        help=f"images per Dask task (default: enough tasks for {TASKS_PER_WORKER} per worker, 1 to {MAX_IMAGES_PER_TASK})",
    )


def cluster_options_from_args(args: argparse.Namespace) -> ClusterOptions | None:
    """The :class:`ClusterOptions` of parsed arguments, or None when no cluster option was given
    (then the command runs serially). Raises a one-line :class:`LivecellError` on bad values."""
    names = (
        "scheduler",
        "local_workers",
        "cluster",
        "jobs",
        "cores",
        "memory",
        "walltime",
        "images_per_task",
    )
    values = {n: getattr(args, n, None) for n in names}
    if all(v is None for v in values.values()):
        return None
    return ClusterOptions(**values)


def network_settings(args: argparse.Namespace) -> PredictSettings:
    """Check the options of :func:`add_network_arguments` and return them as the
    :class:`~livecell_seg.inference.predict.PredictSettings` of a run (``--model`` excluded; ``cluster`` is
    None without a cluster option: serial; outputs not chosen)."""
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
