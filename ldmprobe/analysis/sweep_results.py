"""Typed results of a sweep's analysis (see :func:`ldmprobe.analysis.sweep.analyse_sweep`).

Field order is the JSON order of ``ldmprobe sweep --format json`` (``terms`` and ``summary``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ldmprobe.analysis.stats import DirectionNeighbours
from ldmprobe.records import Record


@dataclass(frozen=True)
class TextDrift(Record):
    """Text drift between term and baseline prompts: in the measurer's space and in the
    generator's own conditioning (None when the generator has no CLIP text encoder)."""

    measurer: float | None
    conditioning: float | None


@dataclass(frozen=True)
class TemplateImageDrift(Record):
    centroid: float | None = None
    paired: float | None = None
    baseline_spread: float | None = None


@dataclass(frozen=True)
class TemplateResult(Record):
    """One template's share of a term: its pairs, prompt, text drift and image drift."""

    template: str
    n_pairs: int
    prompt: str
    text_drift: TextDrift
    image_drift: TemplateImageDrift


@dataclass(frozen=True)
class ImageDrift(Record):
    """A term's image drift over all templates with its permutation test (None: no pairs)."""

    centroid: float | None = None
    paired: float | None = None
    baseline_spread: float | None = None
    statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    exact: bool | None = None
    n_resamples: int | None = None
    min_p: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class ProbeRow(Record):
    """Shift of the images toward one probe word, its CI and sign-flip p; the same shift of
    the prompts' text embeddings beside it."""

    probe: str
    shift: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float | None
    exact: bool
    text_shift: float
    min_p: float
    n_resamples: int


@dataclass(frozen=True)
class TermResult(Record):
    term: str
    n_pairs: int
    failed: int
    flagged: int
    dropped: int
    text_drift: TextDrift
    templates: tuple[TemplateResult, ...]
    image_drift: ImageDrift
    probes: tuple[ProbeRow, ...]
    direction_neighbours: DirectionNeighbours


@dataclass(frozen=True)
class RankCorrelation(Record):
    """Spearman correlation of text drift and image drift across terms."""

    spearman_rho: float
    p_value: float
    n_terms: int
    text: str = "measurer"
    image: str = "centroid"


@dataclass(frozen=True)
class SweepSummary(Record):
    baseline_spread: float | None
    text_image_rank_correlation: RankCorrelation | None


@dataclass(frozen=True)
class SweepAnalysis(Record):
    """Per-term results, ranked by centroid drift (largest first), and the run's summary."""

    terms: tuple[TermResult, ...]
    summary: SweepSummary

    def term(self, name: str) -> TermResult:
        for entry in self.terms:
            if entry.term == name:
                return entry
        raise KeyError(name)
