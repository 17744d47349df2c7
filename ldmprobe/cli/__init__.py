"""Command line: one module per command (parse → one use case → emit)."""

from ldmprobe.cli.main import main, run

__all__ = ["main", "run"]
