"""The ``livecell-seg`` command line: a thin, lazily-importing layer over the package modules.

Each subcommand lives in ``livecell_seg.commands.<name>`` and exposes ``add_arguments(parser)``
and ``run(args) -> int``. Only the chosen subcommand's module is imported, so ``--help`` is instant;
heavy libraries (torch, streamlit) are imported inside ``run``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator

from . import __version__
from .errors import LivecellError, Terminated
from .progress import log_to

#: subcommand -> (module under livecell_seg.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "download": ("download", "download LIVECell (resumable, validated, unzipped)"),
    "convert": ("convert", "COCO json -> uint16 instance label TIFFs (and optional binary masks)"),
    "synth": ("synth", "generate a synthetic LIVECell-format dataset (images + COCO json)"),
    "split": ("split", "leakage-free train/val/test splits grouped by cell type and well"),
    "eda": ("eda", "exploratory data analysis report (HTML with plots)"),
    "train": ("train", "train a U-Net (PyTorch Lightning)"),
    "predict": ("predict", "segment images into cell instances"),
    "pseudolabel": ("pseudolabel", "confident cells of a model on unannotated images, for self-training"),
    "postprocess": ("postprocess", "re-run instance extraction from saved probability maps"),
    "timecourse": ("timecourse", "time lapse: confluence, cell counts and doubling times per well"),
    "finetune": ("finetune", "fine-tune a model on a few corrected images (minutes on a CPU)"),
    "tune": ("tune", "tune watershed parameters on a validation set"),
    "evaluate": ("evaluate", "LIVECell-protocol instance evaluation (COCO mask AP, AFNR, mSA, F1, ...)"),
    "export": ("export", "export a model as a BioImage Model Zoo (bioimage.io) package or ONNX"),
    "demo": ("demo", "run the whole pipeline on the bundled sample"),
    "app": ("app", "start the Streamlit web app"),
}


def _load(name: str):  # noqa: ANN202
    return importlib.import_module(f"livecell_seg.commands.{COMMANDS[name][0]}")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (no usage block): ``livecell-seg CMD: error: argument
    --x: ...``, exit code 2, like every other error of the command line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        text = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the argument parser; with ``only`` set, import just that subcommand's module."""
    parser = _Parser(
        prog="livecell-seg",
        description="Label-free live-cell segmentation on LIVECell: U-Net + watershed.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_mod, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == only:
            _load(name).add_arguments(p)
    return parser


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While the body runs, SIGTERM (what ``kill`` and cluster schedulers send) raises
    :class:`Terminated`, a KeyboardInterrupt: the same clean-up as Ctrl+C runs (temporary files
    removed, nothing half-written). Later SIGTERMs during that clean-up are ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        if not fired:
            fired.append(signum)
            raise Terminated()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class _CliFormatter(logging.Formatter):
    """One line per message, by level: info as is; ``livecell-seg CMD: warning: ...``;
    errors (an input left out, the run goes on) ``livecell-seg CMD: ...``."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self.prefix = f"livecell-seg {command}: "

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.ERROR:
            return self.prefix + msg
        if record.levelno >= logging.WARNING:
            return f"{self.prefix}warning: {msg}"
        return msg


class _CliHandler(logging.Handler):
    """Writes to the current ``sys.stderr`` through ``tqdm.write`` (above a running progress bar)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never break the command
            self.handleError(record)


def _cli_logging(command: str) -> contextlib.AbstractContextManager[None]:
    """While a command runs, the package's messages (``logging.getLogger(__name__)`` in each
    module) are printed on stderr, one line each, info included."""

    handler = _CliHandler()
    handler.setFormatter(_CliFormatter(command))
    return log_to(handler)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script. Returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen not in COMMANDS:
        chosen = None
    # The one place this is set (before any command imports torch): OpenMP threads that busy-wait
    # between parallel regions make torch 2-10x slower on a shared, busy CPU (measured in
    # BENCHMARKS.md, predict section); passive waiting costs nothing on an idle one. libgomp reads
    # it once, when torch loads; a user's own setting wins. Python API users set it themselves.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser(only=chosen)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version (0) or a bad option (2, one line printed)
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with _sigterm_as_interrupt(), _cli_logging(args.command):
            return int(_load(args.command).run(args) or 0)
    except LivecellError as e:
        print(f"livecell-seg {args.command}: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except (OSError, MemoryError, RecursionError, ValueError, OverflowError) as e:
        # the last line of defence: an input or a file system that no check above foresaw still
        # gets one line naming what went wrong, never a traceback (issue 22)
        print(f"livecell-seg {args.command}: error: {_describe(e)}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"livecell-seg {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"livecell-seg {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(text: str, limit: int = 600) -> str:
    """``text`` on one line, at most ``limit`` characters (an error must never dump its input)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 20] + f" ... ({len(line):,} characters)"


def _describe(e: BaseException) -> str:
    """One line for an exception that no check turned into a :class:`LivecellError`."""
    if isinstance(e, OSError):
        from .io import describe_os_error

        what = describe_os_error(e)
        if e.filename is not None:
            return _one_line(f"{e.filename}: {what}")
        return _one_line(f"{what} (while reading the inputs or writing the outputs; check the output folder)")
    if isinstance(e, MemoryError):
        return "out of memory: an input or an option asks for more memory than this machine has"
    if isinstance(e, RecursionError):
        return "an input is nested too deeply to be read (RecursionError)"
    first = str(e).splitlines()[0] if str(e) else ""
    return _one_line(f"invalid input ({type(e).__name__}{': ' + first if first else ''})", 300)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
