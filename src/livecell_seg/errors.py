"""User-facing errors: the CLI prints them as one line (no traceback) and exits non-zero."""

from __future__ import annotations


class LivecellError(Exception):
    """An error caused by the user's input (bad file, missing path, wrong option).

    The message must be one line and name the offending file where there is one.
    """


class InputFileError(LivecellError):
    """A file that is missing, truncated, or not in the expected format."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class OutputFileError(LivecellError):
    """An output that cannot be written (read-only or full file system, no permission, a name the
    file system refuses). Not an input problem: a run stops at the first one instead of skipping
    input after input."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class Terminated(KeyboardInterrupt):
    """Raised by the CLI's SIGTERM handler: handled like Ctrl+C (temporary files removed, one line)."""
