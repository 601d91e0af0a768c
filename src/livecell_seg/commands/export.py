"""`livecell-seg export`: a model folder as a BioImage Model Zoo package or as an ONNX file."""

from __future__ import annotations

import argparse

from ..errors import LivecellError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument("--model", metavar="DIR", help="model folder (default: the bundled model)")
    parser.add_argument(
        "--format",
        required=True,
        choices=("bioimageio", "onnx"),
        help="bioimageio: a bioimage.io model package (.zip; pip install 'livecell-seg[bioimageio]'); "
        "onnx: one .onnx file (pip install 'livecell-seg[onnx]')",
    )
    parser.add_argument("--out", "-o", required=True, metavar="PATH", help="output file (.zip or .onnx)")
    parser.add_argument(
        "--author",
        action="append",
        metavar="NAME",
        help="bioimageio: an author of the package (repeat for several; default: 'livecell-seg developers')",
    )
    parser.add_argument("--name", help="bioimageio: package name (default: 'livecell-seg U-Net <head>')")
    parser.add_argument("--description", help="bioimageio: one-paragraph description")
    parser.add_argument(
        "--license",
        default="CC-BY-NC-4.0",
        metavar="SPDX",
        help="bioimageio: licence of the weights (default CC-BY-NC-4.0, the licence of LIVECell)",
    )
    parser.add_argument(
        "--no-test",
        action="store_true",
        help="bioimageio: skip bioimageio.core's model test (the format is always validated)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    import time
    from pathlib import Path

    from ..bioimageio_export import export_bioimageio
    from ..inference.network_export import ONNX_OPSET, export_onnx
    from ..inference.predict import load_model_for_predict

    out = Path(args.out)
    if args.format == "onnx" and out.suffix.lower() != ".onnx":
        raise LivecellError(f"{out}: an ONNX file needs the .onnx suffix")
    if args.format == "bioimageio" and out.suffix.lower() != ".zip":
        raise LivecellError(f"{out}: a bioimage.io package is a .zip file")
    if out.is_dir():
        raise LivecellError(f"{out}: is a folder; give the name of the file to write")
    if args.format == "bioimageio":
        from ..bioimageio_export import check_package_name

        check_package_name(args.name)
    model = load_model_for_predict(args.model, device="cpu")
    t0 = time.perf_counter()
    if args.format == "onnx":
        export_onnx(model, out)
        size = out.stat().st_size / 2**20
        print(f"export: {out} ({size:.1f} MiB, ONNX opset {ONNX_OPSET}, {time.perf_counter() - t0:.0f} s)")
        return 0
    check = export_bioimageio(
        model,
        out,
        name=args.name,
        description=args.description,
        authors=args.author,
        license_id=args.license,
        test=not args.no_test,
    )
    size = out.stat().st_size / 2**20
    tested = (
        "bioimageio.core model test skipped (--no-test)"
        if check.test_status is None
        else f"bioimageio.core model test {check.test_status} ({', '.join(check.weight_formats)})"
    )
    print(
        f"export: {out} ({size:.1f} MiB, {time.perf_counter() - t0:.0f} s): bioimage.io format "
        f"{check.format_status}; {tested}"
    )
    return 0
