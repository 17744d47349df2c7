"""A finished sweep as a typed result: the document `ldmprobe sweep --format json` prints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldmprobe import SCHEMA_VERSION
from ldmprobe.analysis.rates_results import BaselineAttributes
from ldmprobe.analysis.sweep_results import SweepAnalysis, SweepSummary, TermResult
from ldmprobe.records import Record, jsonable


@dataclass(frozen=True)
class ContactSheet(Record):
    template: str
    path: str


@dataclass(frozen=True)
class RunFolder(Record):
    """Where the run folder is and what is in it (contact sheets once they are written)."""

    out: str
    results: str = "results.json"
    items: str = "items.jsonl"
    contact_sheets: tuple[ContactSheet, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if self.contact_sheets is None:
            del data["contact_sheets"]
        return data


@dataclass(frozen=True)
class SweepResult(Record):
    """Spec, resolved config, provenance, counts, the analysis and the run folder."""

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

    def to_dict(self) -> dict[str, Any]:
        document = {
            "schema_version": self.schema_version, "kind": self.kind, "spec": jsonable(self.spec),
            "config": jsonable(self.config), "provenance": jsonable(self.provenance), "counts": jsonable(self.counts),
            "baseline": self.baseline, **self.analysis.to_dict(), "run": self.run.to_dict(),
        }
        if self.source is not None:
            document["source"] = jsonable(self.source)
        return document

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepResult:
        analysis = SweepAnalysis(terms=tuple(TermResult.from_dict(t) for t in data["terms"]),
                                 summary=SweepSummary.from_dict(data["summary"]),
                                 controls=tuple(TermResult.from_dict(t) for t in data.get("controls", ())),
                                 baseline_result=BaselineAttributes.from_dict(data["baseline_result"])
                                 if data.get("baseline_result") else None)
        return cls(spec=data["spec"], config=data["config"], provenance=data["provenance"], counts=data["counts"],
                   baseline=data["baseline"], analysis=analysis, run=RunFolder.from_dict(data["run"]),
                   schema_version=data.get("schema_version", SCHEMA_VERSION), kind=data.get("kind", "sweep"),
                   source=data.get("source"))

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
