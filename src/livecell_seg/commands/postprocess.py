"""`livecell-seg postprocess`: re-run instance extraction from saved probability maps (no network)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import InputFileError, LivecellError, OutputFileError
from ..model.heads import HEADS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument(
        "--maps",
        required=True,
        nargs="+",
        metavar="PATH",
        help="folder of maps saved by 'predict --save-maps' (<stem>.npy + maps.json), or map files",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder for <stem>.tif label images")
    parser.add_argument(
        "--params",
        type=Path,
        help="post-processing parameters: a JSON file or a model folder (its postprocess.json); "
        "default: built-in defaults",
    )
    parser.add_argument(
        "--head",
        choices=tuple(HEADS),
        help="head of the maps (default: from maps.json, else from the channel count)",
    )
    parser.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")


def _read_params(path: Path | None):  # noqa: ANN202
    from ..inference.postprocess import PostprocessParams
    from ..model.folder import POSTPROCESS_FILE

    if path is None:
        return PostprocessParams()
    if path.is_dir():
        if not (path / POSTPROCESS_FILE).is_file():
            raise InputFileError(path, f"folder has no {POSTPROCESS_FILE}")
        path = path / POSTPROCESS_FILE
    return PostprocessParams.read(path)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    from ..inference.postprocess import list_maps
    from ..io import check_input_file, folder_lock

    params = _read_params(args.params)
    files: list[Path] = []
    for item in args.maps:
        p = Path(item)
        if p.is_dir():
            files.extend(list_maps(p))
        elif p.exists() or p.is_symlink():
            files.append(check_input_file(p, "maps file"))  # a FIFO, a device: said so
        else:
            raise InputFileError(p, "no such file or folder")
    if not files:
        raise LivecellError(f"no map files (.npy/.tif) in {' '.join(map(str, args.maps))}")
    if args.out.exists() and not args.out.is_dir():
        raise InputFileError(args.out, "output path exists and is not a folder")
    inputs = {f.resolve(): f for f in files}
    writers: dict[Path, Path] = {}
    for f in files:
        target = (args.out / f"{f.stem}.tif").resolve()
        if target in inputs:
            raise InputFileError(
                f, f"would be overwritten by its own output; choose another --out than {args.out}"
            )
        if target in writers and writers[target] != f:
            raise InputFileError(f, f"and {writers[target]} would both write {args.out / target.name}")
        writers[target] = f
    with folder_lock(args.out, "postprocess"):  # a second run into the same folder at once is refused
        return _run_locked(args, files, params)


def _record(params, head: str | None, maps_file: Path) -> dict:  # noqa: ANN001
    """What decides a label file of ``postprocess`` (kept in it: ``io.write_labels``'s record)."""
    st = maps_file.stat()
    return {"params": params.to_dict(), "head": head, "maps": [maps_file.name, st.st_size, st.st_mtime_ns]}


def _run_locked(args: argparse.Namespace, files: list[Path], params) -> int:  # noqa: ANN001
    from ..inference.postprocess import instances_from_maps, load_maps
    from ..inference.predict import settings_change
    from ..io import read_labels_record, sweep_stale_parts, write_labels

    sweep_stale_parts(args.out, recursive=False)
    failed = done = skipped = 0
    redone: list[tuple[dict | None, dict]] = []
    for i, f in enumerate(files, 1):
        out = args.out / f"{f.stem}.tif"
        record = _record(params, args.head, f)
        if out.exists() and not args.overwrite:
            if read_labels_record(out) == record:
                skipped += 1
                continue
            redone.append((read_labels_record(out), record))  # from other maps or other parameters
        try:
            maps, head = load_maps(f)
            if args.head and args.head != head:
                if maps.shape[0] != len(HEADS[args.head]):
                    raise InputFileError(
                        f, f"{maps.shape[0]} channels, but head {args.head!r} needs {len(HEADS[args.head])}"
                    )
                head = args.head
            labels = instances_from_maps(maps, head, params)
            write_labels(out, labels, record=record)
        except OutputFileError:
            raise  # a full or read-only file system: every other file would fail too
        except LivecellError as e:
            failed += 1
            print(f"livecell-seg postprocess: skipped: {e}", file=sys.stderr)
            continue
        done += 1
        print(f"[{i}/{len(files)}] {f.name} -> {out.name}: {int(labels.max())} cells", flush=True)
    if redone:
        logging.getLogger(__name__).warning(
            "%d existing label file(s) were made from other maps or with other parameters (%s): written again",
            len(redone),
            settings_change(*redone[0]),
        )
    print(f"{done} written, {skipped} already done, {failed} failed -> {args.out}")
    return 1 if failed else 0
