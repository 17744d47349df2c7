"""Two runs compared on attribute rates and diversity, B − A: how far run B's share of images
with each option, and the number of kinds of picture it draws, moved from run A's.

Pure numpy / scipy, on what the sweep computes per image (``analysis.rates``): each image's
label in each attribute group, and its value ``W[label, j]`` for option j (W the identity for
raw rates, the inverse of the calibration set's confusion matrix for corrected ones; both runs
are measured by one measurer, so one W).

- **Paired** (both runs made the same template × seed cells): the per-cell difference
  ``v^B_ts − v^A_ts`` gets the crossed test (templates and seeds as random factors, the probe
  shifts' standard); the template and seed effects the two runs share cancel.
- **Unpaired** (the runs' cells differ, e.g. other seeds): each run's mean with the standard
  error read off its own crossed interval (half-width / z; the crossed test's df is descriptive
  only), the difference's variance their sum, the normal quantile: the difference's half-width
  is the runs' half-widths in quadrature, never wider than their sum; a run whose table does not
  vary (every image one label) gets its Wilson interval's width.
- A corrected difference adds the calibration set's own uncertainty (the variance of the
  difference over the calibration's bootstrap resamples), as a sweep's rates do.
- Benjamini–Hochberg across the options of each (term, group); a verdict "higher" / "lower"
  only where the adjusted p is below alpha.
- **Diversity**: the Vendi score and each group's effective number of options, B − A, with an
  interval from resampling templates and seeds (the same draws for both runs when paired,
  independent draws otherwise); "narrows" / "widens" only where that interval excludes 0.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ldmprobe.analysis import stats
from ldmprobe.analysis.diversity import _boot_p, _interval, _num, _verdict, run_stats, verdict_note
from ldmprobe.analysis.inference_crossed import crossed_test
from ldmprobe.analysis.rates import _calibration_var, _wilson, label_table, option_values, table_mean
from ldmprobe.records import Count, Probability, Record, Said, schema

PAIRED_NOTE = ("templates and seeds (paired by template × seed cell: both runs made the same cells, so the "
               "effects they share cancel)")
UNPAIRED_NOTE = ("templates and seeds (unpaired: the runs' cells differ; each run's own crossed interval, "
                 "half-widths combined in quadrature)")


@dataclass(frozen=True)
class RateChange(Record):
    """B − A in the share of one term's images labelled ``option`` in ``group`` (shares 0-1);
    the fields are described in ``json_schema`` (the published schema's words)."""

    json_schema = {"description": "B − A in the share of one term's images (the baseline '' included, then "
                        "terms and controls) that the measurer labels with one option of one "
                        "attribute group (spec [attributes.GROUP]). rate_a, rate_b: shares of "
                        "images 0-1; difference: rate_b − rate_a (share of images); "
                        "ci_low/ci_high: its 95% interval (level 1 − alpha) and p_value its two-"
                        "sided p, both treating templates and seeds as random factors: paired "
                        "(both runs made the same template × seed cells) the crossed test of the "
                        "per-cell differences, unpaired (other seeds) Welch–Satterthwaite on the "
                        "two runs' crossed means (generalises_to says which). corrected: true "
                        "when corrected for the measurer's errors through the spec's calibration "
                        "set (the calibration's own uncertainty is in the interval). p_adjusted: "
                        "Benjamini–Hochberg across the options of the term's group. verdict: "
                        "higher / lower only where p_adjusted < alpha."}

    term: str
    group: str
    option: str
    rate_a: float | None
    rate_b: float | None
    difference: float | None = field(metadata=schema(
        "rate_b - rate_a (paired: the mean of the per-cell differences)"))
    ci_low: float | None
    ci_high: float | None
    p_value: Probability
    p_adjusted: Probability
    corrected: bool
    paired: bool
    n_a: Count = field(metadata=schema("images of the term in run A"))
    n_b: Count
    method: str
    generalises_to: Said
    verdict: Literal["higher", "lower", "no clear change", "untested"] = field(metadata=schema(
        "higher: B's share is larger"))


@dataclass(frozen=True)
class GroupDiversityChange(Record):
    """B − A in the effective number of options of one group (exp of the entropy of the rates)."""

    json_schema = {"description": "B − A in one group's effective number of options (exp of the entropy of "
                        "the term's rates: 1 = every image one option, k = all k equally often). "
                        "ci_low/ci_high: interval by resampling templates and seeds; verdict "
                        "narrows (B spreads over fewer options) / widens only where it excludes "
                        "0."}

    group: str
    effective_number_a: float | None
    effective_number_b: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: Literal["narrows", "widens"] | None = field(metadata=schema(
        "narrows: B spreads over fewer options; null: the interval holds 0"))


@dataclass(frozen=True)
class DiversityChange(Record):
    """B − A in one term's Vendi score (effective number of distinct images) and per group."""

    json_schema = {
        "description": "B − A in one term's Vendi score of its image embeddings (effective "
                        "number of distinct images: exp of the entropy of the eigenvalues of the "
                        "cosine-similarity matrix / n) and per attribute group its effective "
                        "number of options. ci_low/ci_high: interval by resampling templates and "
                        "seeds (the same draws for both runs when paired, independent draws "
                        "otherwise), centred on the estimate; p_value: bootstrap, two-sided; "
                        "verdict narrows / widens only where the interval excludes 0.",
        "required": ("term", "vendi_a", "vendi_b", "difference", "ci_low", "ci_high", "p_value", "verdict", "groups",
                     "paired", "n_resamples", "generalises_to")}

    term: str
    vendi_a: float | None
    vendi_b: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: Probability = field(metadata=schema("bootstrap, two-sided"))
    verdict: Literal["narrows", "widens"] | None
    groups: tuple[GroupDiversityChange, ...]
    paired: bool
    n_resamples: Count
    generalises_to: Said
    verdict_note: str | None = field(default=None, metadata=schema(
        "Why no narrows/widens verdict is said (a run's design has too few templates, seeds or "
        "template x seed cells for the resampling intervals to hold their level); null when "
        "verdicts can be said."))


# ----------------------------------------------------------------------------- rates


def _mean_se(values: np.ndarray, level: float) -> tuple[float, float, int]:
    """(mean, standard error, images) of one run's table of per-image values (binary or
    corrected), templates and seeds random. The standard error is read off the run's own crossed
    interval (its half-width / z), so the run's uncertainty is the one its sweep reports; the
    crossed test's ``df`` is descriptive only and is not used. A table that does not vary (or has
    no crossed interval): its Wilson interval's half-width / z."""
    from scipy import stats as sps

    z = float(sps.norm.ppf(0.5 + level / 2))
    test = crossed_test(values, confidence_level=level)
    n = int(test.n_cells or np.isfinite(values).sum())
    if math.isfinite(test.ci_low) and math.isfinite(test.ci_high) and test.ci_high > test.ci_low:
        return test.estimate, (test.ci_high - test.ci_low) / 2 / z, n
    low, high = _wilson(test.estimate * n, n, level)
    return test.estimate, (high - low) / 2 / z, n


def unpaired_difference(a: tuple[float, float], b: tuple[float, float], *, extra_var: float = 0.0,
                        level: float = 0.95) -> tuple[float, float, float, float | None]:
    """(difference, low, high, p) of mean_b − mean_a from two independent (mean, se): the two
    runs' own interval half-widths (and the calibration's variance) combined in quadrature,
    the normal quantile. The half-width √(h_A² + h_B²) is never wider than h_A + h_B."""
    from scipy import stats as sps

    (ma, sa), (mb, sb) = a, b
    diff = mb - ma
    var = sa * sa + sb * sb + extra_var
    if not var > 0:
        return diff, diff, diff, None
    half = float(sps.norm.ppf(0.5 + level / 2)) * math.sqrt(var)
    p = float(2 * sps.norm.sf(abs(diff) / math.sqrt(var)))
    return diff, diff - half, diff + half, p


def _rate_verdict(p_adjusted, alpha: float, difference) -> str:
    if p_adjusted is None:  # identical shares in every cell is no change; otherwise nothing to test
        return "no clear change" if difference == 0 else "untested"
    if p_adjusted >= alpha:
        return "no clear change"
    return "higher" if difference > 0 else "lower"


def group_rate_changes(term: str, labels_a, labels_b, group: str, options: tuple[str, ...], *, correction=None,
                       paired: bool, alpha: float = 0.05) -> list[RateChange]:
    """B − A for each option of one group of one term, BH-adjusted across the options.

    ``labels_a`` / ``labels_b``: (T, S) label tables (-1: no image); paired tables share their
    shape and cells (template t, seed s in both runs), unpaired ones need not."""
    level = 1 - alpha
    k = len(options)
    weights = correction.weights if correction is not None else np.eye(k)
    boot = correction.boot if correction is not None else None
    va, vb = option_values(labels_a, weights), option_values(labels_b, weights)
    rows = []
    for j, option in enumerate(options):
        cal = _calibration_var(labels_b, boot, j, labels_a)
        ra, rb = _share(va[..., j]), _share(vb[..., j])
        if paired:
            got = table_mean(vb[..., j] - va[..., j], level=level, extra_var=cal, bounds=(-1.0, 1.0))
            diff, low, high, p = got.estimate, got.low, got.high, got.p_value
            method, scope = got.method, PAIRED_NOTE
        elif np.isfinite(va[..., j]).any() and np.isfinite(vb[..., j]).any():
            ma, mb = _mean_se(va[..., j], level), _mean_se(vb[..., j], level)
            diff, low, high, p = unpaired_difference(ma[:2], mb[:2], extra_var=cal, level=level)
            low, high = max(-1.0, low), min(1.0, high)
            method, scope = "two crossed intervals in quadrature", UNPAIRED_NOTE
        else:
            diff = low = high = p = None
            method, scope = "none", "nothing (a run has no image of this term)"
        rows.append(RateChange(
            term=term, group=group, option=option, rate_a=ra, rate_b=rb, difference=_num(diff), ci_low=_num(low),
            ci_high=_num(high), p_value=_num(p), p_adjusted=None, corrected=correction is not None, paired=paired,
            n_a=int(np.isfinite(va[..., j]).sum()), n_b=int(np.isfinite(vb[..., j]).sum()), method=method,
            generalises_to=scope, verdict="untested"))
    p = [np.nan if r.p_value is None else r.p_value for r in rows]
    adjusted = stats.benjamini_hochberg(p) if np.isfinite(p).any() else [np.nan] * len(rows)
    return [dataclasses.replace(r, p_adjusted=_num(a), verdict=_rate_verdict(_num(a), alpha, r.difference))
            for r, a in zip(rows, adjusted)]


def _share(values) -> float | None:
    """A run's rate of one option: the mean over its images, clipped to [0, 1]."""
    values = np.asarray(values, np.float64)
    if not np.isfinite(values).any():
        return None
    return min(1.0, max(0.0, float(np.nanmean(values))))


# ----------------------------------------------------------------------------- diversity


def diversity_change(term: str, emb_a, emb_b, labels_a, labels_b, groups, weights, *, paired: bool,
                     n_resamples: int, seed: int, level: float = 0.95) -> DiversityChange:
    """B − A in Vendi score and effective numbers of one term.

    ``emb_*``: (T, S, d) unit image embeddings (NaN rows: no image); ``labels_*``: per group
    (T, S) labels; ``groups``: the attribute groups' names; ``weights``: per group the matrix
    mapping a label to option values (identity, or the calibration's inverse confusion)."""
    full = [(np.arange(e.shape[0]), np.arange(e.shape[1])) for e in (emb_a, emb_b)]
    point_a = run_stats(emb_a, labels_a, weights, *full[0])
    point_b = run_stats(emb_b, labels_b, weights, *full[1])
    point = np.array(point_b) - np.array(point_a)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_resamples):
        draw_a = tuple(rng.integers(0, n, n) for n in emb_a.shape[:2])
        draw_b = draw_a if paired else tuple(rng.integers(0, n, n) for n in emb_b.shape[:2])
        diffs.append(np.array(run_stats(emb_b, labels_b, weights, *draw_b))
                     - np.array(run_stats(emb_a, labels_a, weights, *draw_a)))
    diffs = np.array(diffs).reshape(-1, len(point))
    notes = [verdict_note(*e.shape[:2], int(np.isfinite(e).all(axis=-1).sum())) for e in (emb_a, emb_b)]
    vendi_ok, options_ok = all(n[0] for n in notes), all(n[1] for n in notes)
    note = next((n[2] for n in notes if n[2]), None)
    low, high = _interval(diffs[:, 0], level, point[0])
    out = []
    for g, group in enumerate(groups):
        g_low, g_high = _interval(diffs[:, 1 + g], level, point[1 + g])
        out.append(GroupDiversityChange(group=group, effective_number_a=_num(point_a[1 + g]),
                                        effective_number_b=_num(point_b[1 + g]), difference=_num(point[1 + g]),
                                        ci_low=g_low, ci_high=g_high,
                                        verdict=_verdict(g_low, g_high) if options_ok else None))
    return DiversityChange(
        term=term, vendi_a=_num(point_a[0]), vendi_b=_num(point_b[0]), difference=_num(point[0]), ci_low=low,
        ci_high=high, p_value=_boot_p(diffs[:, 0], point[0]), verdict=_verdict(low, high) if vendi_ok else None,
        groups=tuple(out), paired=paired, n_resamples=len(diffs), verdict_note=note,
        generalises_to=(f"{PAIRED_NOTE}; bootstrap over templates and seeds, the same draws for both runs" if paired
                        else "templates and seeds (unpaired: independent bootstrap draws for each run)"))


# ----------------------------------------------------------------------------- both runs


@dataclass(frozen=True)
class AttributeRuns:
    """Both runs' unit image embeddings per term, as (T, S, d) tables (NaN rows: no usable
    image); ``paired``: the two runs made the same template × seed cells (same table shapes)."""

    terms: tuple[str, ...]  # the baseline first, then terms and controls
    images_a: Mapping[str, np.ndarray]
    images_b: Mapping[str, np.ndarray]
    paired: bool


def compare_attributes(runs: AttributeRuns, attrs, *, alpha: float = 0.05, n_resamples: int = 400,
                       seed: int = 0) -> tuple[tuple[RateChange, ...], tuple[DiversityChange, ...]]:
    """Every term's rate changes (each group's options) and diversity change, B − A.

    ``attrs``: the sweep's :class:`~ldmprobe.analysis.rates.AttributeInput` (option texts'
    embeddings, the measurer's logit scale, the calibration's corrections), one for both runs."""
    from ldmprobe.analysis.sweep_terms import term_seed

    weights = [attrs.corrections[g].weights if g in attrs.corrections else np.eye(len(opts))
               for g, opts in attrs.groups]
    names = tuple(g for g, _ in attrs.groups)
    rates, diversity = [], []
    for term in runs.terms:
        emb_a, emb_b = runs.images_a[term], runs.images_b[term]
        lab_a = [label_table(emb_a, texts, attrs.logit_scale)[0] for texts in attrs.option_embeddings]
        lab_b = [label_table(emb_b, texts, attrs.logit_scale)[0] for texts in attrs.option_embeddings]
        for g, (group, options) in enumerate(attrs.groups):
            rates += group_rate_changes(term, lab_a[g], lab_b[g], group, options,
                                        correction=attrs.corrections.get(group), paired=runs.paired, alpha=alpha)
        diversity.append(diversity_change(term, emb_a, emb_b, lab_a, lab_b, names, weights, paired=runs.paired,
                                          n_resamples=n_resamples, seed=term_seed(seed, term), level=1 - alpha))
    return tuple(rates), tuple(diversity)
