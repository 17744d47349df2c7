"""Whole-job progress of image generation: a rich bar when the reporter is a terminal, else lines."""

from __future__ import annotations

import time

#: Seconds between progress lines when stderr is not a terminal (a log file, CI, a pipe).
LINE_INTERVAL_S = 5.0


def _now() -> float:
    return time.monotonic()


class Throttle:
    """At most one line every ``interval`` seconds (the first always passes; the final line is the
    caller's to force), so a log of a long job stays short however many batches it has."""

    def __init__(self, interval: float = LINE_INTERVAL_S, clock=None):
        self.interval, self.clock = interval, clock or (lambda: _now())
        self._last: float | None = None

    def ready(self, *, force: bool = False) -> bool:
        now = self.clock()
        if force or self._last is None or now - self._last >= self.interval:
            self._last = now
            return True
        return False


class GenerationProgress:
    """Whole-job progress on stderr: done/total, cached vs generated, images/s, ETA.

    In a distributed run every rank adds its images to ``shared`` (a counter summed across
    ranks) and only the rank with ``show`` (rank 0) draws, so one display covers the job.
    """

    def __init__(self, reporter, total: int, cached: int, label: str, shared=None, show: bool = True,
                 clock=None):
        self.reporter, self.total, self.cached, self.label = reporter, total, cached, label
        self.shared, self.show = shared, show and not getattr(reporter, "quiet", False)
        self._lines = Throttle(clock=clock)
        self._unsaid = False  # a throttled line not printed yet (close() prints the final state)
        self.generated = 0  # across all ranks when ``shared``
        self.started = time.perf_counter()
        self._bar = None
        stderr_tty = bool(getattr(getattr(reporter, "stderr", None), "isatty", lambda: False)())
        if self.show and stderr_tty and total > cached:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress
            from rich.progress import TextColumn, TimeRemainingColumn

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"), TimeRemainingColumn(),
                console=reporter.err_console(), transient=False,
            )
            self._task = self._bar.add_task(label, total=total, completed=cached, detail="")
            self._bar.start()

    def advance(self, n: int) -> None:
        if self.shared is not None:
            self.shared.add(n)
            self.refresh()
        else:
            self._draw(self.generated + n)

    def refresh(self) -> None:
        """Redraw with the count summed across ranks (a distributed run's rank 0, while it waits)."""
        if self.shared is not None:
            generated = self.shared.value()
            if generated != self.generated:
                self._draw(generated)

    def _draw(self, generated: int) -> None:
        n, self.generated = generated - self.generated, generated
        if not self.show:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.generated / elapsed
        remaining = self.total - self.cached - self.generated
        detail = f"cached {self.cached}, new {self.generated}, {rate:.2f} img/s"
        if self._bar is not None:
            self._bar.update(self._task, advance=n, detail=detail)
        elif self._lines.ready(force=remaining <= 0):
            eta = remaining / rate if rate > 0 else float("nan")
            self.reporter.info(f"{self.label}: {self.cached + self.generated}/{self.total} ({detail}, ETA {eta:.0f}s)")
            self._unsaid = False
        else:
            self._unsaid = True

    def close(self) -> None:
        if self._unsaid and self.show:  # stopped (Ctrl-C, a failure) between lines: say where it got to
            self._unsaid = False
            self.reporter.info(f"{self.label}: {self.cached + self.generated}/{self.total} "
                               f"(cached {self.cached}, new {self.generated})")
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
