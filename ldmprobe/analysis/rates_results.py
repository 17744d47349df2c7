"""Typed results of attribute rates and diversity (see ``analysis.rates``, ``analysis.diversity``).

Units: a rate is a share of images (0 to 1); ``difference`` is a difference of shares (term
minus baseline, same templates and seeds); ``ratio`` and ``amplification`` are ratios of
shares (rate / baseline rate, rate / reference rate); ``vendi`` and ``effective_number`` are
numbers of distinct kinds of image (1 = every image alike).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ldmprobe.records import Count, Probability, Record, schema


@dataclass(frozen=True)
class RateRow(Record):
    """The share of one term's images labelled ``option`` in ``group``; every field is described
    in ``json_schema`` (the published schema's words), the units in this module's docstring."""

    json_schema = {
        "description": "Share of a term's images the measurer labels with one option of one "
                        "attribute group (spec [attributes.GROUP]). rate, ci_low, ci_high: share "
                        "of images 0-1, interval with templates and seeds as crossed random "
                        "factors; corrected: true when corrected for the measurer's errors "
                        "through the spec's calibration set (raw_rate: uncorrected share); "
                        "baseline_rate: the baseline's share; difference: term minus baseline "
                        "(shares, paired on template and seed) with p_value (p_adjusted: "
                        "Benjamini-Hochberg across the group's options); reference_rate: the "
                        "spec's reference figure (reference_source); amplification: rate / "
                        "reference_rate (ratio, interval amplification_ci_low/high). Null where "
                        "not applicable (the baseline has no difference; no reference given).",
        "required": ("group", "option", "rate", "ci_low", "ci_high", "corrected", "baseline_rate", "difference",
                     "p_value", "reference_rate", "amplification")}

    group: str
    option: str
    rate: float | None
    ci_low: float | None
    ci_high: float | None
    corrected: bool
    baseline_rate: float | None
    difference: float | None
    p_value: Probability
    reference_rate: float | None
    amplification: float | None
    difference_ci_low: float | None = None
    difference_ci_high: float | None = None
    p_adjusted: Probability = None
    ratio: float | None = None
    amplification_ci_low: float | None = None
    amplification_ci_high: float | None = None
    raw_rate: float | None = None
    n_images: Count = 0
    method: str = ""
    generalises_to: str = ""


@dataclass(frozen=True)
class GroupDiversity(Record):
    """exp(entropy) of a term's (corrected) rates in one group: how many options its images
    effectively spread over (1 = all one option; the group's size = all equally often)."""

    json_schema = {
        "description": "exp(entropy) of a term's (corrected) rates in one group: the effective "
                        "number of options (1 = all one option). Intervals resample templates and"
                        " seeds; versus_baseline / versus_reference say narrows or widens only "
                        "where the interval excludes no change.",
        "required": ("group", "effective_number", "ci_low", "ci_high", "baseline_effective_number",
                     "reference_effective_number")}

    group: str
    effective_number: float | None
    ci_low: float | None
    ci_high: float | None
    baseline_effective_number: float | None
    reference_effective_number: float | None
    difference_ci_low: float | None = None
    difference_ci_high: float | None = None
    versus_baseline: Literal["narrows", "widens"] | None = field(default=None, metadata=schema(
        "null: the interval holds no change"))
    versus_reference: Literal["narrows", "widens"] | None = None


@dataclass(frozen=True)
class Diversity(Record):
    """Vendi score of a term's image embeddings (exp of the entropy of the eigenvalues of
    the cosine-similarity matrix / n: the effective number of distinct images), with a
    bootstrap interval over templates and seeds, and the same against the baseline's."""

    json_schema = {
        "description": "Vendi score of the term's image embeddings (effective number of distinct"
                        " images: exp of the entropy of the eigenvalues of the cosine-similarity "
                        "matrix / n), interval by resampling templates and seeds, against the "
                        "baseline's (p_value: bootstrap, paired resamples; verdict narrows/widens"
                        " only where the difference's interval excludes 0), and per attribute "
                        "group the effective number of options.",
        "required": ("vendi", "ci_low", "ci_high", "baseline_vendi", "p_value", "groups")}

    vendi: float | None
    ci_low: float | None
    ci_high: float | None
    baseline_vendi: float | None
    p_value: Probability
    groups: tuple[GroupDiversity, ...] = ()
    difference_ci_low: float | None = None
    difference_ci_high: float | None = None
    verdict: Literal["narrows", "widens"] | None = field(default=None, metadata=schema(
        "against the baseline; null when unsure"))
    n_resamples: Count = 0
    verdict_note: str | None = field(default=None, metadata=schema(
        "Why no narrows/widens verdict is said on this design (too few templates, seeds or "
        "template x seed cells for the resampling intervals to hold their level; "
        "benchmarks/bench_diversity_coverage.py); null when verdicts can be said."))


@dataclass(frozen=True)
class BaselineAttributes(Record):
    """The baseline's rates and diversity (its ``difference`` fields are null)."""

    term: str
    rates: tuple[RateRow, ...] = ()
    diversity: Diversity | None = None
