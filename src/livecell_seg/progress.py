"""Progress and messages: the one ``progress`` option of every stage, and where log records go.

Every stage that loops over images (or bytes) takes ``progress: Progress``:

- ``True``: a tqdm bar on stderr; ``False``: nothing;
- a callable ``progress(done, total)``: called after each step with the number of steps done so far
  and the total (``None`` when unknown) — for GUIs (the Streamlit app) and tests.

Messages (notes, warnings, skipped files) are not progress: they go through ``logging``
(``logging.getLogger(__name__)`` per module; see CONTRIBUTING.md, "Rules of the house").
:func:`log_to` sends them somewhere for a while (the CLI: stderr; the demo: training's into
``train.log``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

#: the type of every stage's ``progress`` argument
Progress = bool | Callable[[int, int | None], None]

T = TypeVar("T")


class ProgressBar:
    """A bar to update by hand (``update(n)``), shown as ``progress`` asks; close it (or use ``with``)."""

    def __init__(
        self,
        progress: Progress,
        desc: str,
        total: int | None = None,
        unit: str = "img",
        initial: int = 0,
        **tqdm_kwargs: Any,
    ) -> None:
        self.total, self.done = total, initial
        self._callback = progress if callable(progress) else None
        self._bar = None
        if progress and not callable(progress):
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                unit=unit,
                file=sys.stderr,
                dynamic_ncols=True,
                **tqdm_kwargs,
            )

    def update(self, n: int = 1) -> None:
        """``n`` more steps done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        if self._callback is not None:
            self._callback(self.done, self.total)

    def reset(self, total: int | None, done: int = 0) -> None:
        """Start again at ``done`` of ``total`` (a download resumed from an offset)."""
        self.total, self.done = total, done
        if self._bar is not None:
            self._bar.reset(total=total)
            self._bar.update(done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(
    iterable: Iterable[T],
    progress: Progress,
    desc: str,
    total: int | None = None,
    unit: str = "img",
    **tqdm_kwargs: Any,
) -> Iterator[T]:
    """Yield the items of ``iterable``, reporting each one done as ``progress`` asks.

    ``total`` defaults to ``len(iterable)`` when it has one. The bar closes when the loop ends,
    breaks or raises.
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with ProgressBar(progress, desc, total=total, unit=unit, **tqdm_kwargs) as bar:
        for item in iterable:
            yield item
            bar.update(1)


@contextlib.contextmanager
def log_to(handler: logging.Handler, name: str = "livecell_seg", level: int = logging.INFO) -> Iterator[None]:
    """While the body runs, the records of logger ``name`` (and its children) at ``level`` and above
    go to ``handler`` only (not on to the root logger's handlers); then everything is as before."""
    logger = logging.getLogger(name)
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
