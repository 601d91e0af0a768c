"""The one ``progress`` option (livecell_seg.progress) and the CLI's one line per log message."""

from __future__ import annotations

import logging

import pytest

from livecell_seg.progress import ProgressBar, progress_bar


def test_callable_progress_gets_done_and_total_after_each_item() -> None:
    calls: list[tuple[int, int | None]] = []
    assert list(progress_bar("abc", lambda d, t: calls.append((d, t)), "x")) == ["a", "b", "c"]
    assert calls == [(1, 3), (2, 3), (3, 3)]
    calls.clear()
    assert list(progress_bar(iter("ab"), lambda d, t: calls.append((d, t)), "x")) == ["a", "b"]
    assert calls == [(1, None), (2, None)]  # no len(): total unknown unless given


def test_bar_on_stderr_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(progress_bar(range(4), False, "quiet")) == [0, 1, 2, 3]
    assert capsys.readouterr().err == ""
    assert list(progress_bar(range(4), True, "loud")) == [0, 1, 2, 3]
    captured = capsys.readouterr()
    assert "loud" in captured.err and "4/4" in captured.err and captured.out == ""


def test_progress_bar_resumed_and_reset() -> None:
    calls: list[tuple[int, int | None]] = []
    with ProgressBar(lambda d, t: calls.append((d, t)), "bytes", total=10, unit="B", initial=4) as bar:
        bar.update(3)
        bar.reset(20, 5)  # a transfer started again at another offset
        bar.update(2)
    assert calls == [(7, 10), (7, 20)]


def test_cli_prints_log_records_one_line_each_by_level(capsys: pytest.CaptureFixture[str]) -> None:
    from livecell_seg.cli import _cli_logging

    log = logging.getLogger("livecell_seg.some_stage")
    with _cli_logging("predict"):
        log.debug("not shown")
        log.info("maps %d/%d", 1, 2)
        log.warning("check %s", "this")
        log.error("skipped %s: cannot read image", "a.tif")
    assert capsys.readouterr().err.splitlines() == [
        "maps 1/2",
        "livecell-seg predict: warning: check this",
        "livecell-seg predict: skipped a.tif: cannot read image",
    ]
    log.info("after the command: the handler is gone")
    assert capsys.readouterr().err == ""
    assert not logging.getLogger("livecell_seg").handlers
