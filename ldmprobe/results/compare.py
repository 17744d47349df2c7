"""Two sweep run folders read back and compared: the document `ldmprobe compare` prints.

``read_run`` reads a run folder's results.json and items.jsonl; ``check_comparable`` says,
in one paragraph, how two runs differ when they are not runs of one spec by one measurer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldmprobe import SCHEMA_VERSION
from ldmprobe.analysis.compare import CompareAnalysis
from ldmprobe.errors import BadInputError
from ldmprobe.records import Record, jsonable
from ldmprobe.results.sweep_folder import item_lines, read_document

#: The spec fields two runs must share to be paired image by image.
SPEC_FIELDS = ("templates", "baseline", "terms", "seeds", "probes")
#: The spec fields two runs must share for their attribute rates to compare (one measurement).
ATTRIBUTE_FIELDS = ("attributes", "calibration")


@dataclass(frozen=True)
class RunItem:
    """One planned image of a run: its cell, cache key and whether it is usable."""

    template_index: int
    term: str
    seed: int
    key: str | None  # None for a run from an embeddings file (its vectors are in that file)
    usable: bool  # not failed and not dropped by --nsfw drop
    guidance: float | None = None  # the level it was made at (items.jsonl of a sweep over several)
    steps: int | None = None


@dataclass(frozen=True)
class RunData:
    """A sweep run folder as read back: its results.json document and its items."""

    path: Path
    document: dict
    items: tuple[RunItem, ...]

    @property
    def spec(self) -> dict:
        return self.document.get("spec") or {}

    @property
    def source(self) -> dict:
        """Where a run's images came from when it did not generate them (``--embeddings`` / ``--images``)."""
        return self.document.get("source") or {}

    @property
    def from_embeddings(self) -> bool:
        return self.source.get("kind") == "embeddings"

    @property
    def measurer(self) -> dict:
        return (self.document.get("config") or {}).get("measurer") or {}


def _item(line: dict, path: Path, number: int) -> RunItem:
    try:
        flags = line.get("flags") or {}
        key = line["key"]
        guidance, steps = line.get("guidance"), line.get("steps")
        return RunItem(int(line["template_index"]), str(line["term"]), int(line["seed"]),
                       None if key is None else str(key),
                       usable=flags.get("failed") is None and not flags.get("dropped"),
                       guidance=None if guidance is None else float(guidance), steps=None if steps is None else int(steps))
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInputError(f"{path} line {number}: not an item record ({exc}); rerun the sweep to rewrite "
                            "items.jsonl.") from None


def read_run(folder: Path, label: str) -> RunData:
    """Read RUN_A / RUN_B (``label``): results.json of kind "sweep" and every line of items.jsonl."""
    folder = Path(folder)
    document = read_document(folder, label)
    items = [_item(line, folder / "items.jsonl", number) for number, line in item_lines(folder)]
    return RunData(folder, document, tuple(top_level(items, document)))


def top_level(items: list[RunItem], document: dict) -> list[RunItem]:
    """The items of a sweep over several guidance / steps levels that belong to its top level
    (the first listed, whose figures are the document's own); every item of a single-level run."""
    levels = document.get("levels") or []
    if len(levels) < 2:
        return items
    first = (levels[0].get("guidance"), levels[0].get("steps"))
    return [i for i in items if (i.guidance, i.steps) == first]


def level_notes(a: RunData, b: RunData) -> list[str]:
    """A note for each run over several guidance / steps levels: it is compared at its top level
    (the first listed), which this names, while the other run is compared as it is."""
    notes = []
    for label, run, other in (("A", a, b), ("B", b, a)):
        levels = run.document.get("levels") or []
        if len(levels) < 2:
            continue
        top = ", ".join(f"{k} {levels[0].get(k)}" for k in ("guidance", "steps") if levels[0].get(k) is not None)
        made = ", ".join(f"{k} {v}" for k in ("guidance", "steps")
                         if (v := (other.document.get("config") or {}).get(k)) is not None)
        notes.append(f"run {label} ({run.path}) holds {len(levels)} guidance / steps levels: only its top level "
                     f"({top or 'the first listed'}) is compared" + (f", with the other run's {made}" if made else "")
                     + "; sweep that level alone, or each level, to compare another.")
    return notes


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "..."


def _spec_differences(a: RunData, b: RunData, fields=SPEC_FIELDS, cells: bool = True) -> list[str]:
    diffs = []
    for name in fields:
        va, vb = a.spec.get(name), b.spec.get(name)
        if va != vb:
            diffs.append(f"{name}: A has {_short(va)}, B has {_short(vb)}")
    cells_a = {(i.template_index, i.term, i.seed) for i in a.items}
    cells_b = {(i.template_index, i.term, i.seed) for i in b.items}
    if cells and not diffs and cells_a != cells_b:
        only = sorted(cells_a ^ cells_b)[:3]
        diffs.append(f"items.jsonl: {len(cells_a ^ cells_b)} (template, term, seed) cells are in one run only, "
                     f"e.g. {only}")
    return diffs


def same_attributes(a: RunData, b: RunData) -> bool:
    """Both runs measure the same attribute groups (and calibration set): their rates compare."""
    return bool(a.spec.get("attributes")) and all(a.spec.get(k) == b.spec.get(k) for k in ATTRIBUTE_FIELDS)


def check_comparable(a: RunData, b: RunData) -> bool:
    """Whether the runs pair image by image (the same spec and cells: True), or only their rates and
    diversity compare, unpaired (the same spec and attribute groups, other seeds: False); else a
    BadInputError naming the difference. Both runs must be by one measurer."""
    diffs = _spec_differences(a, b)
    unpaired = same_attributes(a, b) and not _spec_differences(a, b, tuple(f for f in SPEC_FIELDS if f != "seeds"),
                                                               cells=False)
    if diffs and not unpaired:
        raise BadInputError(
            f"{a.path} (A) and {b.path} (B) are not runs of the same spec, so their images cannot be paired by "
            f"(template, term, seed): " + "; ".join(diffs) + ". Rerun one sweep with the other's spec and seeds "
            "(only the generator or its settings should differ; runs with the same [attributes] may differ in "
            "seeds, and then only their rates and diversity are compared).")
    if a.from_embeddings or b.from_embeddings:
        if not (a.from_embeddings and b.from_embeddings):
            own, other = (a, b) if a.from_embeddings else (b, a)
            raise BadInputError(
                f"{own.path} was computed from an embeddings file ({own.source.get('path')}) and {other.path} by the "
                f"measurer {other.measurer.get('spec')!r}: ldmprobe cannot tell whether they share one CLIP space. "
                "Compare two runs from embeddings files made by one model, or export this run's embeddings "
                "(sweep --export-embeddings) and sweep both from files.")
        return not diffs  # one space is checked on the files themselves (dimension, probe embeddings)
    ma, mb = a.measurer.get("identity"), b.measurer.get("identity")
    if not ma or not mb:
        raise BadInputError(f"{(a if not ma else b).path / 'results.json'} records no measurer identity "
                            "(config.measurer.identity); rerun that sweep with this version of ldmprobe.")
    if ma != mb:
        raise BadInputError(
            f"the runs were embedded by different measurers: A {a.measurer.get('spec')!r} {_short(ma)}, B "
            f"{b.measurer.get('spec')!r} {_short(mb)}. Drift and probe shifts are only comparable in one CLIP space; "
            f"rerun one sweep with --measurer {a.measurer.get('spec')} (its images are cached, so only the "
            "embedding is redone).")
    return not diffs


def run_summary(run: RunData) -> dict:
    """What the compare document says about each run: where it is and how it was made."""
    config, prov = run.document.get("config") or {}, run.document.get("provenance") or {}
    pipeline = config.get("pipeline") or {}
    return {
        "path": str(run.path.resolve()), "pipeline": pipeline.get("spec"), "pipeline_identity": pipeline.get("identity"),
        "steps": config.get("steps"), "guidance": config.get("guidance"), "dtype": config.get("dtype"),
        "negative_prompt": config.get("negative_prompt"), "nsfw": config.get("nsfw"),
        "finished": prov.get("finished"), "tiny": bool(prov.get("tiny")),
        "n_items": len(run.items), "n_usable": sum(i.usable for i in run.items), "seeds": run.spec.get("seeds"),
        "source": run.document.get("source"),
    }


@dataclass(frozen=True)
class CompareResult(Record):
    """Spec, the two runs, the measurer, settings, provenance and the per-term changes B − A."""

    spec: dict[str, Any]
    runs: dict[str, Any]
    measurer: dict[str, Any]
    config: dict[str, Any]
    provenance: dict[str, Any]
    analysis: CompareAnalysis
    report: str | None = None
    schema_version: str = SCHEMA_VERSION
    kind: str = "compare"

    def to_dict(self) -> dict[str, Any]:
        analysis = self.analysis.to_dict()
        return {
            "schema_version": self.schema_version, "kind": self.kind, "spec": jsonable(self.spec),
            "runs": jsonable(self.runs), "measurer": jsonable(self.measurer), "config": jsonable(self.config),
            "provenance": jsonable(self.provenance), "terms": analysis["terms"],
            "rates": analysis["rates"], "diversity": analysis["diversity"],
            "summary": {"alpha": analysis["alpha"], "design": analysis["design"], "notes": analysis["notes"],
                        "better": [t.term for t in self.analysis.terms if t.verdict == "better"],
                        "worse": [t.term for t in self.analysis.terms if t.verdict == "worse"],
                        "paired": analysis["paired"],
                        "rate_changes": sum(r.verdict in ("higher", "lower") for r in self.analysis.rates),
                        "narrows": [d.term for d in self.analysis.diversity if d.verdict == "narrows"],
                        "widens": [d.term for d in self.analysis.diversity if d.verdict == "widens"]},
            "report": self.report,
        }

    @property
    def terms(self):
        return self.analysis.terms
