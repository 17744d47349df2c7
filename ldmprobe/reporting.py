"""The one way the library reports progress and warnings: a :class:`Reporter`.

The library never prints; it tells a reporter. :class:`~ldmprobe.render.terminal.Terminal`
is the command line's (stderr, with progress bars on a terminal); :class:`SilentReporter`
drops everything (the default for library calls that get none).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Reporter(Protocol):
    def info(self, message: str) -> None:
        """A line of status (stderr on the command line)."""

    def warn(self, message: str) -> None:
        """Something the user should know: tiny models, truncated prompts, rebuilt caches."""

    def progress(self, label: str, done: int, total: int) -> None:  # first call per label: before any work
        """``done`` of ``total`` units of the work called ``label``; the last call has done == total."""


class SilentReporter:
    """A reporter that drops everything."""

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def progress(self, label: str, done: int, total: int) -> None:  # first call per label: before any work
        pass


def or_silent(reporter: Reporter | None) -> Reporter:
    return SilentReporter() if reporter is None else reporter
