"""A neighbours query as a typed result: the document `ldmprobe neighbours --format json` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ldmprobe import SCHEMA_VERSION
from ldmprobe.analysis.neighbours import Neighbour, Overlap


@dataclass
class NeighbourResult:
    """One ``neighbours`` query: the ranked lists and everything needed to reproduce them."""

    kind: ClassVar[str] = "neighbours"

    term: str
    config: dict[str, Any]
    neighbours: tuple[Neighbour, ...]
    excluded: tuple[str, ...]
    provenance: dict[str, Any]
    cache: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    image_neighbours: tuple[Neighbour, ...] | None = None
    overlap: Overlap | None = None

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "kind": "neighbours",
            "term": self.term,
            "config": self.config,
            "neighbours": [n.to_dict() for n in self.neighbours],
            "excluded": list(self.excluded),
            "cache": self.cache,
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "provenance": self.provenance,
        }
        if self.image_neighbours is not None:
            document["image_neighbours"] = [n.to_dict() for n in self.image_neighbours]
        if self.overlap is not None:
            document["overlap"] = self.overlap.to_dict()
        return document

    def records(self) -> list[dict[str, Any]]:
        """One flat record per neighbour (``space`` is "text" or "image"), for JSON Lines."""
        tiny = bool(self.provenance.get("tiny"))
        lists = [("text", self.neighbours)]
        if self.image_neighbours is not None:
            lists.append(("image", self.image_neighbours))
        return [
            {"term": self.term, "space": space, **n.to_dict(), "tiny": tiny}
            for space, ranked in lists for n in ranked
        ]
