"""Where output goes: data to stdout (table, json, jsonl), everything else to stderr."""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, TextIO

FORMATS = ("table", "json", "jsonl")


def _json_default(obj: Any):
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite(obj: Any) -> Any:
    """JSON has no NaN/Infinity: write them as null so every parser accepts the document."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json(document: Any, *, indent: int | None = 2) -> str:
    plain = json.loads(json.dumps(document, default=_json_default))
    return json.dumps(_finite(plain), indent=indent, ensure_ascii=False, allow_nan=False)


@dataclass
class Terminal:
    """The streams a command writes to; tests swap them for buffers."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    verbose: bool = False

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
            width=None if tty else 120,
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
        self.err_console().print(message, markup=False, highlight=False)

    def warn(self, message: str) -> None:
        self.err_console().print(f"warning: {message}", style="yellow", markup=False, highlight=False)

    def error(self, message: str) -> None:
        self.err_console().print(f"error: {message}", style="bold red", markup=False, highlight=False)

    def write_json(self, document: Any) -> None:
        self.stdout.write(to_json(document) + "\n")
        self.stdout.flush()

    def write_jsonl(self, records: Iterable[Any]) -> None:
        for record in records:
            self.stdout.write(to_json(record, indent=None) + "\n")
        self.stdout.flush()

    def write_table(self, renderable) -> None:
        self.out_console().print(renderable)
