"""The published JSON Schemas' record shapes, derived from the result dataclasses.

Each ``$defs`` entry named here is written by :func:`ldmprobe.records.record_schema` from its
record class (fields, types, and the descriptions and bounds the fields carry); the rest of a
schema file (its top level and the sections that are plain dicts in the code: config,
provenance) is written by hand; the ``spec`` entry is the sweep spec's dataclass
(``specs.sweep.Spec``), which sweep and trace documents write. ``python -m ldmprobe.results.schema_defs`` rewrites the
derived entries in ``ldmprobe/schemas``; ``--check`` exits 1 when a file is not what the
dataclasses derive (the tests run it), so a field added to a record reaches its schema.
"""

from __future__ import annotations

import json
import sys

from ldmprobe.analysis.compare import DriftChange, ProbeChange, TermChange
from ldmprobe.analysis.compare_rates import DiversityChange, GroupDiversityChange, RateChange
from ldmprobe.analysis.inference_crossed import CrossedTest, SignFlipTest
from ldmprobe.analysis.neighbours import Neighbour, Overlap
from ldmprobe.analysis.rates_results import Diversity, GroupDiversity, RateRow
from ldmprobe.analysis.sweep_results import (EncoderDrift, ImageDrift, Neighbours, ProbeRow, TemplateImageDrift,
                                             TemplateResult, TermResult, TextDrift)
from ldmprobe.analysis.trace_results import AttentionTrace, EffectTable, VaeGroup, VaeTrace, VariantEffect
from ldmprobe.analysis.trends import TrendRow
from ldmprobe.records import record_schema
from ldmprobe.resources import schema_path
from ldmprobe.results.assoc import AssocTestResult
from ldmprobe.results.trace import TraceCost, TraceRun
from ldmprobe.specs.sweep import Spec

#: schema name -> {$defs name: record class}, in the order the entries are written.
DERIVED: dict[str, dict[str, type]] = {
    "sweep": {"drift": ImageDrift, "text_drift": TextDrift, "encoder_drift": EncoderDrift,
              "template_drift": TemplateImageDrift, "template": TemplateResult, "probe": ProbeRow,
              "direction_neighbours": Neighbours, "term": TermResult, "rate_row": RateRow,
              "group_diversity": GroupDiversity, "diversity": Diversity, "trend": TrendRow, "spec": Spec},
    "trace": {"crossed_test": CrossedTest, "sign_flip_test": SignFlipTest, "variant_effect": VariantEffect,
              "effect_table": EffectTable, "attention_trace": AttentionTrace, "vae_trace": VaeTrace,
              "vae_group": VaeGroup, "cost": TraceCost, "run": TraceRun, "spec": Spec},
    "neighbours": {"neighbour": Neighbour, "overlap": Overlap},
    "assoc": {"result_core": AssocTestResult},
    "compare": {"drift": DriftChange, "probe": ProbeChange, "term": TermChange, "rate_change": RateChange,
                "group_diversity_change": GroupDiversityChange, "diversity_change": DiversityChange},
}

#: Schemas whose record entries allow keys they do not name (as first published).
OPEN = frozenset({"sweep"})


def derived_defs(name: str) -> dict[str, dict]:
    """The ``$defs`` entries of schema ``name`` that its record classes derive."""
    names = {cls: key for key, cls in DERIVED[name].items()}

    def ref(cls: type) -> str:
        if cls not in names:
            raise LookupError(f"{cls.__name__} is nested in a {name} record but has no $defs entry in DERIVED[{name!r}]")
        return names[cls]

    return {key: record_schema(cls, ref, closed=name not in OPEN) for key, cls in DERIVED[name].items()}


def formatted(value, column: int = 0, indent: int = 0, width: int = 110) -> str:
    """JSON as the schema files are laid out: a value that fits on its line stays on one line,
    a longer object or array has one member per line (json.dumps gives all or nothing)."""
    line = json.dumps(value, ensure_ascii=False)
    if column + len(line) <= width or not isinstance(value, (dict, list)) or not value:
        return line
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        members = []
        for key, item in value.items():
            prefix = json.dumps(key, ensure_ascii=False) + ": "
            members.append(pad + prefix + formatted(item, indent + 2 + len(prefix), indent + 2, width))
        return "{\n" + ",\n".join(members) + "\n" + " " * indent + "}"
    if not any(isinstance(item, (dict, list)) for item in value):  # scalars: as many to a line as fit
        lines, line = [], pad
        for item in value:
            text = json.dumps(item, ensure_ascii=False) + ","
            if line != pad and len(line) + 1 + len(text) > width:
                lines.append(line)
                line = pad
            line += ("" if line == pad else " ") + text
        return "[\n" + "\n".join(lines + [line[:-1]]) + "\n" + " " * indent + "]"
    members = [pad + formatted(item, indent + 2, indent + 2, width) for item in value]
    return "[\n" + ",\n".join(members) + "\n" + " " * indent + "]"


def rewritten(name: str) -> tuple[str, str]:
    """Schema file ``name`` as it is, and as it is with its derived ``$defs`` entries rewritten."""
    text = schema_path(name).read_text(encoding="utf-8")
    document = json.loads(text)
    defs = document.setdefault("$defs", {})
    for key, value in derived_defs(name).items():
        defs[key] = value
    return text, formatted(document) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    check = "--check" in argv
    stale = []
    for name in DERIVED:
        before, after = rewritten(name)
        if before != after:
            stale.append(name)
            if not check:
                schema_path(name).write_text(after, encoding="utf-8")
    if check and stale:
        print(f"schemas not derived from the current records: {', '.join(stale)} "
              "(run python -m ldmprobe.results.schema_defs)", file=sys.stderr)
        return 1
    print(("rewrote: " + ", ".join(stale)) if stale and not check else "schemas up to date", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
