"""A finished trace as a typed result: the document ``ldmprobe trace --format json`` prints.

Sections (conditioning, attention, steps, vae) are the analysis records of
:mod:`ldmprobe.analysis.trace`; ``pictures`` (arrays for the report's figures) never goes to JSON.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ldmprobe import SCHEMA_VERSION
from ldmprobe.analysis.trace_results import AttentionTrace, EffectTable, VaeGroup, VaeTrace
from ldmprobe.records import Count, Record, jsonable, schema
from ldmprobe.results.sweep import RunFiles

SECTIONS = ("conditioning", "attention", "steps", "vae")


@dataclass(frozen=True)
class TraceCost(Record):
    """Images and seconds of a section, relative to the plain sweep (baseline + term images)."""

    section: Literal["plain", "conditioning", "steps", "attention", "vae"]
    images: Count = field(metadata=schema("images the section needs"))
    generated: Count = field(metadata=schema("images made in this run (the rest came from the cache)"))
    seconds: float
    images_vs_plain: float = field(metadata=schema("images / the plain section's"))
    seconds_vs_plain: float = field(metadata=schema(
        "seconds / the plain section's: a cost only when both were generated in this run"))


@dataclass(frozen=True)
class TraceRun(RunFiles):
    """A trace's run folder: its results, report and figures."""

    json_schema = {"required": ("out", "results")}

    report: str | None = None
    figures: tuple[str, ...] = ()


@dataclass(frozen=True)
class TraceResult(Record):
    """Everything ``trace`` found, with the spec, provenance and run folder once the command adds them."""

    config: dict
    conditioning: tuple[EffectTable, ...]
    attention: tuple[AttentionTrace, ...]
    steps: tuple[EffectTable, ...]
    vae: tuple[VaeTrace, ...]
    vae_folder: tuple[VaeGroup, ...]
    costs: tuple[TraceCost, ...]
    attention_overhead: float  # traced / untraced seconds − 1, same images
    notes: tuple[str, ...]
    spec: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    run: TraceRun | None = None
    schema_version: str = SCHEMA_VERSION
    kind: str = "trace"
    pictures: dict = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document; validates against ``trace.schema.json``."""
        data = {"schema_version": self.schema_version, "kind": self.kind, "spec": jsonable(self.spec),
                "config": jsonable(self.config), "provenance": jsonable(self.provenance)}
        for name in ("conditioning", "attention", "steps", "vae", "vae_folder", "costs", "attention_overhead",
                     "notes"):
            data[name] = jsonable(getattr(self, name))
        if self.run is not None:
            data["run"] = self.run.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceResult:
        result = super().from_dict({k: v for k, v in data.items() if k != "pictures"})
        if result.attention_overhead is None:
            result = dataclasses.replace(result, attention_overhead=math.nan)
        return result

    @property
    def tiny(self) -> bool:
        return bool(self.provenance.get("tiny")) or any("tiny models" in note for note in self.notes)

    def with_run(self, run: TraceRun) -> TraceResult:
        return dataclasses.replace(self, run=run)


def write_results(out: Path, result: TraceResult) -> Path:
    """``results.json`` in the run folder (written atomically)."""
    from ldmprobe.store.files import atomic_write_text
    from ldmprobe.records import to_json

    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    atomic_write_text(path, to_json(result) + "\n")
    return path


def read_results(out: Path) -> TraceResult:
    import json

    return TraceResult.from_dict(json.loads((Path(out) / "results.json").read_text(encoding="utf-8")))
