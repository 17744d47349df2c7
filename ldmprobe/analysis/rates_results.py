"""Typed results of attribute rates and diversity (see ``analysis.rates``, ``analysis.diversity``).

Units: a rate is a share of images (0 to 1); ``difference`` is a difference of shares (term
minus baseline, same templates and seeds); ``ratio`` and ``amplification`` are ratios of
shares (rate / baseline rate, rate / reference rate); ``vendi`` and ``effective_number`` are
numbers of distinct kinds of image (1 = every image alike).
"""

from __future__ import annotations

from dataclasses import dataclass

from ldmprobe.records import Record


@dataclass(frozen=True)
class RateRow(Record):
    """The share of one term's images labelled ``option`` in ``group``.

    ``rate`` with ``ci_low``/``ci_high``: templates and seeds as crossed random factors (the
    probe shifts' standard), clipped to [0, 1]; ``corrected``: True when the measurer's errors
    were corrected through a calibration set (``raw_rate`` is the uncorrected share).
    ``difference`` (term − baseline, paired on template and seed) has its own interval and
    ``p_value`` (``p_adjusted``: Benjamini–Hochberg across the group's options). ``amplification``
    = rate / ``reference_rate`` (the spec's reference figure, e.g. the training data's), its
    interval the rate's interval over the same figure.
    """

    group: str
    option: str
    rate: float | None
    ci_low: float | None
    ci_high: float | None
    corrected: bool
    baseline_rate: float | None
    difference: float | None
    p_value: float | None
    reference_rate: float | None
    amplification: float | None
    difference_ci_low: float | None = None
    difference_ci_high: float | None = None
    p_adjusted: float | None = None
    ratio: float | None = None
    amplification_ci_low: float | None = None
    amplification_ci_high: float | None = None
    raw_rate: float | None = None
    n_images: int = 0
    method: str = ""
    generalises_to: str = ""


@dataclass(frozen=True)
class GroupDiversity(Record):
    """exp(entropy) of a term's (corrected) rates in one group: how many options its images
    effectively spread over (1 = all one option; the group's size = all equally often)."""

    group: str
    effective_number: float | None
    ci_low: float | None
    ci_high: float | None
    baseline_effective_number: float | None
    reference_effective_number: float | None
    difference_ci_low: float | None = None
    difference_ci_high: float | None = None
    versus_baseline: str | None = None  # "narrows" / "widens" / None (interval holds 0)
    versus_reference: str | None = None  # "narrows" / "widens" / None


@dataclass(frozen=True)
class Diversity(Record):
    """Vendi score of a term's image embeddings (exp of the entropy of the eigenvalues of
    the cosine-similarity matrix / n: the effective number of distinct images), with a
    bootstrap interval over templates and seeds, and the same against the baseline's."""

    vendi: float | None
    ci_low: float | None
    ci_high: float | None
    baseline_vendi: float | None
    p_value: float | None
    groups: tuple[GroupDiversity, ...] = ()
    difference_ci_low: float | None = None
    difference_ci_high: float | None = None
    verdict: str | None = None  # "narrows" / "widens" against the baseline, None when unsure
    n_resamples: int = 0
    verdict_note: str | None = None  # why no verdict can be said on this design (too few templates, seeds or cells)


@dataclass(frozen=True)
class BaselineAttributes(Record):
    """The baseline's rates and diversity (its ``difference`` fields are null)."""

    term: str
    rates: tuple[RateRow, ...] = ()
    diversity: Diversity | None = None
