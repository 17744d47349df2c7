"""Where output goes: data to stdout (table, json, jsonl), everything else to stderr."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, TextIO

from ldmprobe.records import to_json  # noqa: F401  (the one JSON writer)

FORMATS = ("table", "json", "jsonl")


def _printable(message: str) -> str:
    """A message with control characters shown as escapes (a term or path may carry ESC)."""
    from ldmprobe.render.layout import printable

    return printable(str(message))


def _piped_width() -> int:
    """Table width when stdout is not a terminal: ``COLUMNS`` when it is a positive number, else 80
    (the width every table is laid out for, as the README and ``--help`` say)."""
    value = os.environ.get("COLUMNS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else 80


@dataclass
class Terminal:
    """The streams a command writes to; tests swap them for buffers."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    verbose: bool = False
    quiet: bool = False  # -q: only errors on stderr (no status lines, warnings or progress)

    @property
    def stdout_is_tty(self) -> bool:
        return bool(getattr(self.stdout, "isatty", lambda: False)())

    def _no_color(self) -> bool:
        return "NO_COLOR" in os.environ

    def out_console(self):
        from rich.console import Console

        tty = self.stdout_is_tty
        return Console(
            file=self.stdout, force_terminal=tty, no_color=self._no_color() or not tty,
            color_system="auto" if tty and not self._no_color() else None, soft_wrap=False,
            width=None if tty else _piped_width(),
        )

    def err_console(self):
        from rich.console import Console

        tty = bool(getattr(self.stderr, "isatty", lambda: False)())
        return Console(
            file=self.stderr, stderr=True, no_color=self._no_color() or not tty,
            color_system="auto" if tty and not self._no_color() else None, highlight=False,
            soft_wrap=True,
        )

    def default_format(self) -> str:
        return "table" if self.stdout_is_tty else "json"

    def info(self, message: str) -> None:
        if self.quiet:
            return
        self.err_console().print(_printable(message), markup=False, highlight=False)

    def warn(self, message: str) -> None:
        if self.quiet:
            return
        self.err_console().print(f"warning: {_printable(message)}", style="yellow", markup=False, highlight=False)

    def progress(self, label: str, done: int, total: int) -> None:
        """Reporter protocol: a transient bar per label on a terminal; elsewhere a line at the
        start, at most one every few seconds after it, and the final one. A label's first call
        comes before any work: its ``done`` is what was already there (cached)."""
        if self.quiet:
            return
        from ldmprobe.engine.progress import Throttle

        bars = self.__dict__.setdefault("_bars", {})
        if label not in bars:
            if done >= total > 0:
                self.info(f"{label}: all {total} cached")
                return
            console = self.err_console()
            self.info(f"{label}: {total - done} to do" + (f" ({done} of {total} cached)" if done else ""))
            bar, lines = None, Throttle()
            lines.ready()  # the start line counts as the first
            if console.is_terminal:
                from rich.progress import Progress

                bar = Progress(console=console, transient=True)
                bar.start()
                bar.add_task(label, total=total)
            bars[label] = (bar, lines)
        bar, lines = bars[label]
        if bar is not None:
            bar.update(bar.task_ids[0], completed=done)
        elif lines.ready(force=done >= total):
            self.info(f"{label}: {done}/{total}")
        if done >= total:
            if bar is not None:
                bar.stop()
            del bars[label]

    def error(self, message: str) -> None:
        self.err_console().print(f"error: {_printable(message)}", style="bold red", markup=False, highlight=False)

    def write_json(self, document: Any) -> None:
        self.stdout.write(to_json(document) + "\n")
        self.stdout.flush()

    def write_jsonl(self, records: Iterable[Any]) -> None:
        for record in records:
            self.stdout.write(to_json(record, indent=None) + "\n")
        self.stdout.flush()

    def write_table(self, renderable) -> None:
        self.out_console().print(renderable)
