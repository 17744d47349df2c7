"""A finished sweep as a typed result: the document `ldmprobe sweep --format json` prints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldmprobe import SCHEMA_VERSION
from ldmprobe.analysis.rates_results import BaselineAttributes
from ldmprobe.analysis.sweep_results import SweepAnalysis, SweepSummary, TermResult
from ldmprobe.analysis.trends import TrendRow
from ldmprobe.records import Record, jsonable


@dataclass(frozen=True)
class ContactSheet(Record):
    template: str
    path: str


@dataclass(frozen=True)
class RunFiles(Record):
    """Where a run folder is and its results document (paths in it relative to ``out``)."""

    out: str
    results: str = "results.json"


@dataclass(frozen=True)
class RunFolder(RunFiles):
    """A sweep's run folder: its results, item list and (once written) contact sheets."""

    items: str = "items.jsonl"
    contact_sheets: tuple[ContactSheet, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if self.contact_sheets is None:
            del data["contact_sheets"]
        return data


def _analysis_from_dict(data: dict[str, Any]) -> SweepAnalysis:
    return SweepAnalysis(terms=tuple(TermResult.from_dict(t) for t in data["terms"]),
                         summary=SweepSummary.from_dict(data["summary"]),
                         controls=tuple(TermResult.from_dict(t) for t in data.get("controls", ())),
                         baseline_result=BaselineAttributes.from_dict(data["baseline_result"])
                         if data.get("baseline_result") else None)


@dataclass(frozen=True)
class LevelResult(Record):
    """One guidance / steps level of a several-level sweep, shaped as a single-level run's
    ``baseline``, ``terms``, ``controls``, ``summary`` (and ``baseline_result``)."""

    guidance: float
    steps: int
    baseline: str
    analysis: SweepAnalysis

    def to_dict(self) -> dict[str, Any]:
        return {"guidance": self.guidance, "steps": self.steps, "baseline": self.baseline, **self.analysis.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LevelResult:
        return cls(guidance=data["guidance"], steps=data["steps"], baseline=data["baseline"],
                   analysis=_analysis_from_dict(data))


@dataclass(frozen=True)
class SweepResult(Record):
    """Spec, resolved config, provenance, counts, the analysis and the run folder.

    A sweep over several guidance / steps levels also has ``levels`` (each level's own
    analysis) and ``trends`` (each rate's slope over guidance); its top-level analysis and
    ``config`` are its first level's. A single-level sweep has neither key."""

    spec: dict[str, Any]
    config: dict[str, Any]
    provenance: dict[str, Any]
    counts: dict[str, int]
    baseline: str
    analysis: SweepAnalysis
    run: RunFolder
    schema_version: str = SCHEMA_VERSION
    kind: str = "sweep"
    source: dict[str, Any] | None = None  # the user's own images or embeddings (None: generated)
    levels: tuple[LevelResult, ...] = ()  # several guidance / steps levels (the first is the top level)
    trends: tuple[TrendRow, ...] = ()  # slopes of the rates over guidance (analysis.trends)

    def to_dict(self) -> dict[str, Any]:
        document = {
            "schema_version": self.schema_version, "kind": self.kind, "spec": jsonable(self.spec),
            "config": jsonable(self.config), "provenance": jsonable(self.provenance), "counts": jsonable(self.counts),
            "baseline": self.baseline, **self.analysis.to_dict(), "run": self.run.to_dict(),
        }
        if self.source is not None:
            document["source"] = jsonable(self.source)
        if self.levels:
            document["levels"] = [level.to_dict() for level in self.levels]
            document["trends"] = [trend.to_dict() for trend in self.trends]
        return document

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepResult:
        return cls(spec=data["spec"], config=data["config"], provenance=data["provenance"], counts=data["counts"],
                   baseline=data["baseline"], analysis=_analysis_from_dict(data), run=RunFolder.from_dict(data["run"]),
                   schema_version=data.get("schema_version", SCHEMA_VERSION), kind=data.get("kind", "sweep"),
                   source=data.get("source"),
                   levels=tuple(LevelResult.from_dict(level) for level in data.get("levels") or ()),
                   trends=tuple(TrendRow.from_dict(trend) for trend in data.get("trends") or ()))

    def with_contact_sheets(self, sheets: list[ContactSheet]) -> SweepResult:
        return dataclasses.replace(self, run=dataclasses.replace(self.run, contact_sheets=tuple(sheets)))

    # -- reading it, as the Python API's users do

    @property
    def document(self) -> dict[str, Any]:
        return self.to_dict()

    @property
    def terms(self) -> tuple[TermResult, ...]:
        """Per-term results, ranked by centroid drift (largest first)."""
        return self.analysis.terms

    @property
    def summary(self) -> SweepSummary:
        return self.analysis.summary

    @property
    def run_dir(self) -> Path:
        return Path(self.run.out)

    @property
    def tiny(self) -> bool:
        return bool(self.provenance.get("tiny"))

    def term(self, name: str) -> TermResult:
        return self.analysis.term(name)
