"""Typed results of a sweep's analysis (see :func:`ldmprobe.analysis.sweep.analyse_sweep`).

Field order is the JSON order of ``ldmprobe sweep --format json`` (``terms`` and ``summary``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ldmprobe.records import Count, Probability, Record, schema
from ldmprobe.analysis.inference_crossed import CrossedRow
from ldmprobe.analysis.rates_results import BaselineAttributes, Diversity, RateRow


@dataclass(frozen=True)
class EncoderDrift(Record):
    """Conditioning drift in one output of one of the generator's text encoders: ``tokens``
    (mean over positions of 1 − cos, then over templates) or ``pooled`` (1 − cos)."""

    json_schema = {"required": ("encoder", "part", "estimate")}

    encoder: str = field(metadata=schema('the pipeline component, e.g. "text_encoder_2"'))
    part: Literal["tokens", "pooled"]
    estimate: float | None
    model: str = field(default="", metadata=schema('what the encoder is, e.g. "CLIP-L", "OpenCLIP-bigG", "T5"'))


@dataclass(frozen=True)
class TextDrift(Record):
    """Text drift between term and baseline prompts: in the measurer's space and in the
    generator's own conditioning (None when the generator has no CLIP text encoder), and per
    encoder output the generator reads (``conditioning_by_encoder``; empty without a generator)."""

    json_schema = {"required": ("measurer", "conditioning")}

    measurer: float | None = field(metadata=schema(
        "mean over templates of 1 - cos(term prompt, baseline prompt) in the measurer's text space"))
    conditioning: float | None = field(metadata=schema(
        "the same in the generator's own text conditioning, 1 - the mean over token positions of cos (null: "
        "the generator has no CLIP text encoder)"))
    conditioning_by_encoder: tuple[EncoderDrift, ...] = ()


_CENTROID = schema("1 - cos between the mean term and the mean baseline image embedding")
_PAIRED = schema("mean over (template, seed) pairs of 1 - cos(term image, baseline image)")
_SPREAD = schema("the baseline's seed-to-seed spread: mean 1 - cos over distinct pairs of its images of one template")


@dataclass(frozen=True)
class TemplateImageDrift(Record):
    """One template's image drift, descriptive only (the term's drift is tested over all templates)."""

    centroid: float | None = field(default=None, metadata=_CENTROID)
    paired: float | None = field(default=None, metadata=_PAIRED)
    baseline_spread: float | None = field(default=None, metadata=_SPREAD)


@dataclass(frozen=True)
class TemplateResult(Record):
    """One template's share of a term: its pairs, prompt, text drift and image drift."""

    json_schema = {"required": ("template", "n_pairs", "image_drift", "text_drift")}

    template: str
    n_pairs: Count = field(metadata=schema("usable term / baseline image pairs of this template"))
    prompt: str = field(metadata=schema("the template filled with the term"))
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

    json_schema = {
        "description": "Term image drift. estimate: unbiased squared distance of mean embeddings; p_value: "
                       "headline verdict (versus controls when the spec has controls, else versus pairs: 'the "
                       "wording changed the images'); min_p/exact/n_resamples describe p_value.",
        "required": ("estimate", "ci_low", "ci_high", "p_value", "p_adjusted", "versus", "p_controls", "p_pairs",
                     "min_p", "exact", "n_resamples", "generalises_to", "centroid", "paired", "baseline_spread")}

    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    standardised: float | None = field(default=None, metadata=schema(
        "estimate / mean within-template spread of the images (trace of their covariance)"))
    p_value: Probability = None
    p_adjusted: Probability = None
    versus: Literal["controls", "pairs"] | None = None
    p_controls: Probability = None
    controls_ratio: float | None = field(default=None, metadata=schema(
        "estimate / the median of the controls' estimates (null without controls, or when that median <= 0)"))
    p_pairs: Probability = None
    min_p: Probability = None
    exact: bool | None = None
    n_resamples: Count | None = None
    generalises_to: str | None = None
    centroid: float | None = field(default=None, metadata=_CENTROID)
    paired: float | None = field(default=None, metadata=_PAIRED)
    baseline_spread: float | None = field(default=None, metadata=_SPREAD)
    seed: Count | None = field(default=None, metadata=schema("the resampling seed"))


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

    json_schema = {
        "description": "Headline shift, ci_low/ci_high, p_value: templates and seeds as crossed random factors "
                       "(generalises_to). p_fixed: sign-flip p over these pairs (these templates and seeds only); "
                       "min_p, exact, n_resamples describe p_fixed. p_controls: rank p of |shift| among the "
                       "controls' shifts.",
        "required": ("probe", "shift", "ci_low", "ci_high", "p_value", "p_adjusted", "df", "method", "generalises_to",
                     "p_fixed", "min_p", "exact", "n_resamples", "fixed_generalises_to", "p_controls",
                     "controls_ratio", "text_shift", "text_z", "image_z"),
        "properties": {"p_fixed": {"type": "number", "exclusiveMinimum": 0},
                       "min_p": {"type": "number", "exclusiveMinimum": 0}, "n_resamples": {"minimum": 1}}}

    probe: str
    shift: float = field(metadata=schema(type="number"))
    p_controls: Probability
    controls_ratio: float | None = field(metadata=schema(
        "|shift| / the median of the controls' |shift| toward the probe (null without controls)"))
    text_shift: float = field(metadata=schema(
        "the same shift of the prompts' text embeddings; null when there are no prompt embeddings (a sweep "
        "on your own embeddings without them)"))
    text_z: float | None = field(metadata=schema(
        "text_shift as a z among the text shifts toward every vocabulary word (null: no vocabulary)"))
    image_z: float | None = field(metadata=schema(
        "shift as a z among the image shifts toward every vocabulary word (null: no vocabulary)"))
    n_cells: int | None = field(default=None, metadata=schema(
        "template x seed cells used; shift, p_value and p_fixed all use exactly these"))
    level_05: Probability = field(default=None, metadata=schema(
        "rejection rate at 0.05 of the crossed p if the true variance components were this row's estimated "
        "ones (negative ones as 0); null where p_value is not the crossed generalised p"))
    conservative: bool = field(default=False, metadata=schema(
        "level_05 below 0.0404, the lower end of the 95% Monte Carlo interval of 0.05 over 2,000 tables: the "
        "crossed p is conservative here (docs/CALIBRATION.md)"))
    level_note: str | None = field(default=None, metadata=schema(
        "what a conservative p means for a reader; null unless conservative"))


@dataclass(frozen=True)
class Neighbours(Record):
    """Vocabulary words toward / away from the drift direction, listed only beyond
    ``threshold``: the (1 − alpha) quantile of the largest |cos| over the vocabulary under a
    sign-flip null of the paired differences (None: no test was possible)."""

    json_schema = {
        "description": "words listed only where |cos| exceeds threshold: the (1 - alpha) quantile of the largest "
                       "|cos| over the vocabulary under sign flips of the paired differences"}

    toward: tuple[tuple[str, float], ...] = ()
    away: tuple[tuple[str, float], ...] = ()
    threshold: float | None = None
    alpha: float | None = None
    n_resamples: Count | None = None
    null: str | None = None


@dataclass(frozen=True)
class TermResult(Record):
    """One term: its pairs and the images left out, its text and image drift (overall and per
    template), probe shifts and direction neighbours, and with [attributes] its rates and diversity."""

    json_schema = {"required": ("term", "n_pairs", "image_drift", "templates", "probes", "text_drift",
                                "direction_neighbours", "failed", "flagged", "excluded")}

    term: str
    n_pairs: Count
    failed: Count
    flagged: Count
    dropped: Count = field(metadata=schema("images left out because --nsfw drop dropped them"))
    excluded: Count = field(metadata=schema("images with a non-finite or zero-norm embedding, left out"))
    text_drift: TextDrift
    templates: tuple[TemplateResult, ...]
    image_drift: ImageDrift
    probes: tuple[ProbeRow, ...]
    direction_neighbours: Neighbours
    rates: tuple[RateRow, ...] | None = field(default=None, metadata=schema(
        "attribute rates (null: the spec has no [attributes])"))
    diversity: Diversity | None = field(default=None, metadata=schema(
        "Vendi score and effective numbers of options (null: not measured)"))


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
