"""Typed results of a sweep's analysis (see :func:`ldmprobe.analysis.sweep.analyse_sweep`).

Field order is the JSON order of ``ldmprobe sweep --format json`` (``terms`` and ``summary``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ldmprobe.records import Record
from ldmprobe.analysis.inference_crossed import CrossedRow
from ldmprobe.analysis.rates_results import BaselineAttributes, Diversity, RateRow


@dataclass(frozen=True)
class EncoderDrift(Record):
    """Conditioning drift in one output of one of the generator's text encoders: ``tokens``
    (mean over positions of 1 − cos, then over templates) or ``pooled`` (1 − cos)."""

    encoder: str  # the pipeline component, e.g. "text_encoder_2"
    part: str  # "tokens" | "pooled"
    estimate: float | None
    model: str = ""  # what the encoder is, e.g. "CLIP-L", "OpenCLIP-bigG", "T5"


@dataclass(frozen=True)
class TextDrift(Record):
    """Text drift between term and baseline prompts: in the measurer's space and in the
    generator's own conditioning (None when the generator has no CLIP text encoder), and per
    encoder output the generator reads (``conditioning_by_encoder``; empty without a generator)."""

    measurer: float | None
    conditioning: float | None
    conditioning_by_encoder: tuple[EncoderDrift, ...] = ()


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
    """A term's image drift over all templates (fields None: no usable pairs).

    ``estimate``: unbiased squared distance between the term's and the baseline's mean image
    embeddings (expectation 0 under no effect whatever the number of pairs), with a
    bootstrap CI over templates then pairs. ``p_value`` is the headline verdict: against
    the controls' estimates (``versus`` "controls", rank p, floor 1/(K+1)) when the spec
    has controls, else the sign-flip p within pairs (``versus`` "pairs"), which only says
    the wording changed these images. ``min_p``/``exact``/``n_resamples`` describe
    ``p_value``; ``p_pairs`` is the within-pairs p either way.
    """

    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    standardised: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    versus: str | None = None
    p_controls: float | None = None
    controls_ratio: float | None = None
    p_pairs: float | None = None
    min_p: float | None = None
    exact: bool | None = None
    n_resamples: int | None = None
    generalises_to: str | None = None
    centroid: float | None = None
    paired: float | None = None
    baseline_spread: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class ProbeRow(CrossedRow):
    """Shift of the images toward one probe word.

    Headline (``shift``, ``ci_low``/``ci_high``, ``p_value``): templates and seeds as crossed
    random factors (method-of-moments variance components on every usable cell, generalised
    p; ``df`` is the Satterthwaite df, descriptive); ``n_cells``: the cells used by the shift,
    p and ``p_fixed`` alike; ``generalises_to`` says to what. ``p_fixed``: exact or sampled sign-flip p over these pairs, "these templates and
    seeds only"; ``min_p``, ``exact`` and ``n_resamples`` describe it. ``level_05``,
    ``conservative``, ``level_note``: where the crossed p is conservative at this row's own
    estimated variance components (``inference_level.level_check``). ``p_controls``: rank
    p of |shift| among the controls' shifts toward the probe (None without controls).
    ``text_shift`` is the same shift of the prompts' text embeddings; ``text_z`` and
    ``image_z`` put both on one scale (z among the shifts toward the vocabulary's words).
    """

    probe: str
    shift: float
    p_controls: float | None
    controls_ratio: float | None
    text_shift: float
    text_z: float | None
    image_z: float | None
    n_cells: int | None = None  # template × seed cells used: shift, p_value and p_fixed all use these
    level_05: float | None = None  # the crossed p's rejection rate at 0.05 at this row's estimated components
    conservative: bool = False  # level_05 below 0.05's Monte Carlo interval (inference_level)
    level_note: str | None = None  # what conservative means for a reader (None unless conservative)


@dataclass(frozen=True)
class Neighbours(Record):
    """Vocabulary words toward / away from the drift direction, listed only beyond
    ``threshold``: the (1 − alpha) quantile of the largest |cos| over the vocabulary under a
    sign-flip null of the paired differences (None: no test was possible)."""

    toward: tuple[tuple[str, float], ...] = ()
    away: tuple[tuple[str, float], ...] = ()
    threshold: float | None = None
    alpha: float | None = None
    n_resamples: int | None = None
    null: str | None = None


@dataclass(frozen=True)
class TermResult(Record):
    term: str
    n_pairs: int
    failed: int
    flagged: int
    dropped: int
    excluded: int  # images of this term with a non-finite or zero-norm embedding
    text_drift: TextDrift
    templates: tuple[TemplateResult, ...]
    image_drift: ImageDrift
    probes: tuple[ProbeRow, ...]
    direction_neighbours: Neighbours
    rates: tuple[RateRow, ...] | None = None  # attribute rates (spec [attributes]; analysis.rates)
    diversity: Diversity | None = None  # Vendi score and effective numbers (analysis.diversity)


@dataclass(frozen=True)
class RankCorrelation(Record):
    """Spearman correlation of text drift and image drift across terms, with a permutation
    p (exact over all n! pairings for small n)."""

    spearman_rho: float
    p_value: float
    n_terms: int
    exact: bool
    min_p: float
    n_resamples: int
    text: str = "measurer"
    image: str = "estimate"
    note: str | None = None  # set when no p below alpha is attainable (too few terms)


@dataclass(frozen=True)
class SweepSummary(Record):
    baseline_spread: float | None
    text_image_rank_correlation: RankCorrelation | None
    controls: tuple[str, ...] = ()
    excluded: dict | None = None  # term -> images excluded (non-finite or zero-norm)
    design: dict | None = None  # design_check: alpha, reachable, min_p, messages
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SweepAnalysis(Record):
    """Per-term results, ranked by drift estimate (largest first), the controls' results
    (each judged against its pairs only) and the run's summary."""

    terms: tuple[TermResult, ...]
    summary: SweepSummary
    controls: tuple[TermResult, ...] = ()
    baseline_result: BaselineAttributes | None = None  # the baseline's rates and diversity

    def term(self, name: str) -> TermResult:
        for entry in (*self.terms, *self.controls):
            if entry.term == name:
                return entry
        raise KeyError(name)
