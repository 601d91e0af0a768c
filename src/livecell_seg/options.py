"""Numbers on the command line, checked where argparse parses them (issue 22).

Every numeric option of every subcommand has a type from this module: NaN, infinities and values
outside the option's range are refused by argparse itself (usage line, then one line naming the
option), before any work starts. Each type function carries its range (``.bounds``), so a test
can walk every option of every subcommand (``tests/test_bad_input_and_interrupts.py``). Pure Python.

The ranges bound the work one option can ask for (a size, a count, a kernel) as well as the
values that make sense; where a bound is an image size it follows :func:`livecell_seg.io.max_image_pixels`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from .errors import LivecellError

#: the zoom range of ``--scale`` (the same as a model folder's ``predict_scale``)
SCALE_RANGE = (0.05, 20.0)
#: largest seed (numpy's and torch's generators take 32-bit seeds)
MAX_SEED = 2**32 - 1


def _fmt(x: float) -> str:
    return f"{x:g}"


def _range_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"{'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_fmt(lo)}"
    return f"{'<' if hi_open else '<='} {_fmt(hi)}"  # type: ignore[arg-type]


def _check(v: float, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool, what: str) -> None:
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{what} must be a finite number, got {v!r}")
    bad = (lo is not None and (v <= lo if lo_open else v < lo)) or (
        hi is not None and (v >= hi if hi_open else v > hi)
    )
    if bad:
        raise argparse.ArgumentTypeError(
            f"{what} must be in {_range_text(lo, hi, lo_open, hi_open)}, got {_fmt(v)}"
        )


def number(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    also: tuple[str, ...] = (),
) -> Callable[[str], Any]:
    """An argparse ``type``: a finite float in the range; ``also``: words accepted as they are
    (e.g. ``"auto"``)."""

    def parse(text: str) -> Any:
        if text.strip().lower() in also:
            return text.strip().lower()
        try:
            v = float(text)
        except ValueError:
            alt = f" or {' or '.join(repr(a) for a in also)}" if also else ""
            raise argparse.ArgumentTypeError(f"expected a number{alt}, got {text!r}") from None
        _check(v, lo, hi, lo_open, hi_open, "the value")
        return v

    parse.bounds = (lo, hi)  # type: ignore[attr-defined]
    parse.__name__ = "number"
    return parse


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[lo, hi]`` (``1e3`` is accepted as 1000)."""

    def parse(text: str) -> int:
        t = text.strip()
        try:
            v = int(t)
        except ValueError:
            try:
                f = float(t)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
            if not math.isfinite(f) or not f.is_integer():
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
            v = int(f)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            shown = str(v) if len(str(v)) <= 24 else f"{str(v)[:12]}... ({len(str(v))} digits)"
            raise argparse.ArgumentTypeError(
                f"the value must be in {_range_text(lo, hi, False, False)}, got {shown}"
            )
        return v

    parse.bounds = (lo, hi)  # type: ignore[attr-defined]
    parse.__name__ = "integer"
    return parse


def scale_or_auto(text: str) -> float | str:
    """``--scale``: ``auto`` or a zoom in :data:`SCALE_RANGE`."""
    return _scale(text)


_scale = number(*SCALE_RANGE, also=("auto",))
scale_or_auto.bounds = SCALE_RANGE  # type: ignore[attr-defined]
seed = integer(0, MAX_SEED)


def check_finite(value: Any, what: str, lo: float | None = None, hi: float | None = None) -> float:
    """The Python API's counterpart of :func:`number`: ``value`` as a finite float in ``[lo, hi]``,
    else a one-line :class:`~livecell_seg.errors.LivecellError` naming ``what``. Booleans are not
    numbers."""

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LivecellError(f"{what} must be a number, got {value!r}")
    try:
        _check(float(value), lo, hi, False, False, what)
    except argparse.ArgumentTypeError as e:
        raise LivecellError(str(e)) from None
    except OverflowError:
        raise LivecellError(f"{what} must be a finite number, got {value!r}") from None
    return float(value)
