"""The Python API: the stages as functions returning typed results (see ``ldmprobe.__init__``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep: the same document `ldmprobe sweep --format json` prints."""

    document: dict[str, Any]

    @property
    def terms(self) -> list[dict[str, Any]]:
        """Per-term results, ranked by centroid drift (largest first)."""
        return self.document["terms"]

    @property
    def counts(self) -> dict[str, int]:
        return self.document["counts"]

    @property
    def run_dir(self) -> Path:
        return Path(self.document["run"]["out"])

    @property
    def tiny(self) -> bool:
        return bool(self.document["provenance"].get("tiny"))

    def term(self, name: str) -> dict[str, Any]:
        for entry in self.terms:
            if entry["term"] == name:
                return entry
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return self.document


def run_sweep(spec, options=None, *, terminal=None, report: bool = True) -> SweepResult:
    """Plan, generate, embed and compute statistics for ``spec``; write the run folder.

    ``spec`` is a :class:`~ldmprobe.specs.sweep.Spec` or anything :func:`~ldmprobe.specs.sweep.load_spec`
    accepts; ``options`` a :class:`~ldmprobe.usecases.sweep.SweepOptions`. Progress and warnings go
    to ``terminal`` (stderr by default); nothing is printed to stdout.
    """
    from ldmprobe.render.terminal import Terminal
    from ldmprobe.specs.sweep import Spec, load_spec
    from ldmprobe.usecases.sweep import SweepOptions
    from ldmprobe.usecases.sweep import run_sweep as _run

    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    document = _run(spec, options or SweepOptions(), terminal or Terminal())
    if report:
        from ldmprobe.render.report import write_report

        write_report(document["run"]["out"])
    return SweepResult(document)
