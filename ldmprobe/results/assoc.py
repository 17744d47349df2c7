"""An association test as a typed result: the document `ldmprobe assoc --format json` prints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ldmprobe import SCHEMA_VERSION
from ldmprobe.analysis.association import WeatResult
from ldmprobe.engine.assoc_images import ImageRecord
from ldmprobe.records import schema
from ldmprobe.specs.assoc_types import AssocSpec
from ldmprobe.specs.embedding_files import SetSource

_WEAT_FIELDS = frozenset(f.name for f in dataclasses.fields(WeatResult))
_SET_LABELS = {"type": "string"}


@dataclass(frozen=True)
class AssocTestResult(WeatResult):
    """The document's ``result``: the WEAT fields, the sets' labels and the requested permutations."""

    json_schema = {"description": "The WEAT fields (Caliskan et al. 2017) plus set labels and the requested number "
                                  "of permutations. effect_size/statistic are null when undefined (e.g. zero spread).",
                   "additionalProperties": True}

    labels: dict[str, str] = field(kw_only=True, metadata=schema(
        required=["X", "Y", "A", "B"], additionalProperties=False, properties=dict.fromkeys("XYAB", _SET_LABELS)))
    permutations: int = field(kw_only=True, metadata=schema(minimum=1))


@dataclass(frozen=True)
class AssocResult:
    """An association test's outcome with everything needed to read and reproduce it.

    ``test`` is the :class:`~ldmprobe.analysis.association.WeatResult` (its fields read
    directly too: ``result.effect_size``); ``labels`` maps X, Y, A, B to the sets' labels;
    ``permutations`` is the requested B (``n_resamples`` is what the p-value was computed
    over: all partitions when ``exact``); ``sources`` says where each set read from the user's
    files came from (path, sha256, items); ``notes`` are caveats of the design (unequal sizes).
    """

    kind: ClassVar[str] = "assoc"

    test: WeatResult
    labels: dict[str, str]
    permutations: int
    spec: AssocSpec
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    images: tuple[ImageRecord, ...] = ()
    sources: dict[str, SetSource] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __getattr__(self, name: str) -> Any:
        if name in _WEAT_FIELDS:
            return getattr(self.test, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def tiny(self) -> bool:
        return bool(self.provenance.get("tiny"))

    def result_dict(self) -> dict[str, Any]:
        """The ``result`` object of the JSON document."""
        fields = {name: getattr(self.test, name) for name in _WEAT_FIELDS}
        return AssocTestResult(**fields, labels=dict(self.labels), permutations=int(self.permutations)).to_dict()

    def record(self) -> dict[str, Any]:
        """One JSONL record: the result, named, with the tiny-model flag and the design's notes."""
        return {"kind": "assoc", "name": self.spec.name, "tiny": self.tiny, **self.result_dict(),
                "notes": list(self.notes)}

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (``--format json``); validates against assoc.schema.json."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "assoc",
            "spec": self.spec.to_dict(),
            "config": self.config,
            "provenance": self.provenance,
            "result": self.result_dict(),
            "notes": list(self.notes),
            "images": [r.to_dict() for r in self.images],
            "sources": {name: source.to_dict() for name, source in self.sources.items()},
        }


def schema_path() -> Path:
    """The JSON Schema that ``AssocResult.to_dict()`` documents validate against."""
    from ldmprobe.resources import schema_path as _schema_path

    return _schema_path("assoc")
