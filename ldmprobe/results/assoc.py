"""An association test as a typed result: the document `ldmprobe assoc --format json` prints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ldmprobe import SCHEMA_VERSION
from ldmprobe.engine.assoc_images import ImageRecord
from ldmprobe.specs.assoc_types import AssocSpec


@dataclass(frozen=True)
class AssocResult:
    """An association test's outcome with everything needed to read and reproduce it.

    The first fields are those of :class:`ldmprobe.analysis.association.WeatResult`; ``labels`` maps X, Y,
    A, B to the sets' labels; ``permutations`` is the requested B (``n_resamples`` is what
    the p-value was computed over: all partitions when ``exact``).
    """

    kind: ClassVar[str] = "assoc"

    effect_size: float
    statistic: float
    p_value: float
    exact: bool
    n_partitions: int
    n_resamples: int
    seed: int
    ddof: int
    min_p: float
    n_x: int
    n_y: int
    n_a: int
    n_b: int
    labels: dict[str, str]
    permutations: int
    spec: AssocSpec
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    images: tuple[ImageRecord, ...] = ()

    @property
    def tiny(self) -> bool:
        return bool(self.provenance.get("tiny"))

    def result_dict(self) -> dict[str, Any]:
        """The ``result`` object of the JSON document."""
        from ldmprobe.analysis.association import WeatResult
        from ldmprobe.records import jsonable

        names = [f.name for f in dataclasses.fields(WeatResult)]
        out = {n: getattr(self, n) for n in names}
        out["labels"] = dict(self.labels)
        out["permutations"] = self.permutations
        return jsonable(out)

    def record(self) -> dict[str, Any]:
        """One JSONL record: the result, named, with the tiny-model flag."""
        return {"kind": "assoc", "name": self.spec.name, "tiny": self.tiny, **self.result_dict()}

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (``--format json``); validates against assoc.schema.json."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "assoc",
            "spec": self.spec.to_dict(),
            "config": self.config,
            "provenance": self.provenance,
            "result": self.result_dict(),
            "images": [r.to_dict() for r in self.images],
        }


def schema_path() -> Path:
    """The JSON Schema that ``AssocResult.to_dict()`` documents validate against."""
    from ldmprobe.resources import schema_path as _schema_path

    return _schema_path("assoc")
