"""Attribute rates: what share of a term's images the measurer labels with each option.

Pure functions of arrays (no model). Each image gets the measurer's zero-shot probabilities
over a group's options — softmax of ``logit_scale · cos(image, option text)``, the measurer's
own temperature — and a label (the most probable option). The rate of option j is the mean
of a per-image value ``W[label, j]``: ``W`` is the identity for raw rates, or the inverse of
the calibration set's confusion matrix for corrected ones (matrix inversion; Rogan–Gladen
for two options), because the expected label shares are ``q = Cᵀ π`` for true shares π.

Being a mean of per-image values on a template × seed table, a rate gets the probe shifts'
standard: ``crossed_test`` (templates and seeds as crossed random factors, Satterthwaite df).
The difference against the baseline is the same test on the paired differences. A corrected
rate's interval adds the calibration set's own uncertainty: the variance of the rate over
bootstrap resamples of the calibration images is added to the crossed variance.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ldmprobe.analysis import stats
from ldmprobe.analysis.inference_crossed import crossed_test
from ldmprobe.analysis.rates_results import BaselineAttributes, RateRow

MAX_CONDITION = 10.0  # a confusion matrix worse conditioned than this amplifies errors too much to correct


@dataclass(frozen=True)
class Correction:
    """One group's correction: ``weights`` = inv(C) (labels × options) and the same matrix
    for each bootstrap resample of the calibration images (``boot``, shape (B, k, k))."""

    weights: np.ndarray
    boot: np.ndarray
    confusion: np.ndarray  # C[i, j] = P(label j | true option i), estimated
    counts: np.ndarray  # images per true option
    condition: float


@dataclass(frozen=True)
class AttributeInput:
    """What the rates need besides the image embeddings: each group's option names and unit
    text embeddings, the measurer's logit scale, reference rates and corrections."""

    groups: tuple[tuple[str, tuple[str, ...]], ...]
    option_embeddings: tuple[np.ndarray, ...]
    logit_scale: float
    reference: Mapping[tuple[str, str], Mapping[str, float]] = field(default_factory=dict)
    corrections: Mapping[str, Correction] = field(default_factory=dict)
    # for --export-embeddings: each group's option texts, and the calibration images' embeddings
    # with their (group, option) labels (empty when unknown or without a calibration set)
    option_texts: tuple[tuple[str, ...], ...] = ()
    calibration: tuple[np.ndarray, tuple[tuple[str, str], ...]] | tuple = ()


def zero_shot(images, texts, logit_scale: float) -> np.ndarray:
    """(n, k) probabilities: softmax over options of ``logit_scale · images @ textsᵀ``."""
    logits = float(logit_scale) * np.asarray(images, np.float64) @ np.asarray(texts, np.float64).T
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def correction_from_labels(true, predicted, k: int, *, n_boot: int = 500, seed: int = 0,
                           group: str = "group") -> Correction:
    """The correction of one group from calibration images: true and measured option indices.

    Raises ValueError (a clear sentence) when an option has no calibration image or the
    confusion matrix is too near singular to invert (condition number above MAX_CONDITION):
    the measurer cannot tell the options apart well enough for a correction to mean anything.
    """
    true, predicted = np.asarray(true, int), np.asarray(predicted, int)
    counts = np.bincount(true, minlength=k)
    if (counts == 0).any():
        missing = [int(i) for i in np.flatnonzero(counts == 0)]
        raise ValueError(f"calibration of {group}: no image of option(s) {missing}")
    conf = _confusion(true, predicted, k)
    cond = float(np.linalg.cond(conf))
    if not math.isfinite(cond) or cond > MAX_CONDITION:
        raise ValueError(
            f"calibration of {group}: the measurer's confusion matrix is too near singular to correct "
            f"(condition number {cond:.3g} > {MAX_CONDITION:g}; diagonal {np.round(np.diag(conf), 3).tolist()}): "
            f"it cannot tell these options apart reliably. Rewrite the option texts, use a better measurer, or "
            f"drop the calibration to report raw rates.")
    rng = np.random.default_rng(seed)
    boot = []
    by_option = [np.flatnonzero(true == i) for i in range(k)]
    for _ in range(n_boot):  # resample within each true option (the calibration design)
        idx = np.concatenate([rng.choice(rows, size=len(rows)) for rows in by_option])
        c = _confusion(true[idx], predicted[idx], k)
        if np.linalg.cond(c) <= 10 * MAX_CONDITION:
            boot.append(np.linalg.inv(c))
    return Correction(np.linalg.inv(conf), np.array(boot).reshape(-1, k, k), conf, counts, cond)


def _confusion(true, predicted, k: int) -> np.ndarray:
    conf = np.zeros((k, k))
    np.add.at(conf, (true, predicted), 1.0)
    return conf / conf.sum(axis=1, keepdims=True)


def _wilson(successes: float, n: int, level: float) -> tuple[float, float]:
    from scipy import stats as sps

    z = float(sps.norm.ppf(0.5 + level / 2))
    p = min(1.0, max(0.0, successes / n))  # a corrected share may sit just outside [0, 1]
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = centre - half, centre + half
    return (0.0 if low < 1e-12 else low), (1.0 if high > 1 - 1e-12 else high)  # rounding at the ends


@dataclass(frozen=True)
class MeanInterval:
    estimate: float | None
    low: float | None
    high: float | None
    p_value: float | None
    n: int
    method: str
    generalises_to: str


def table_mean(y, *, level: float = 0.95, extra_var: float = 0.0, binary: bool = False,
               bounds: tuple[float, float] | None = None) -> MeanInterval:
    """Mean of a template × seed table (NaN = missing) with the crossed interval and p.

    ``extra_var``: a further variance of the estimate (the calibration's), added in quadrature
    to each side of the crossed interval (and to its variance for the p). A constant binary
    table (every image, or none, has the option: nothing to estimate a variance from) gets a
    Wilson interval over its images instead of none (a corrected table is constant only when
    every image has one label, so the same holds for it).
    """
    from scipy import stats as sps

    y = np.asarray(y, np.float64)
    if not np.isfinite(y).any():
        return MeanInterval(None, None, None, None, 0, "none", "nothing (no image)")
    test = crossed_test(y, confidence_level=level)
    n = int(test.n_cells or np.isfinite(y).sum())
    est, low, high, p = test.estimate, test.ci_low, test.ci_high, test.p_value
    if not (math.isfinite(low) and math.isfinite(high)):
        if binary:
            low, high = _wilson(est * n, n, level)
            return MeanInterval(est, low, high, None, n, "wilson (no variation between images)", "these images")
        low = high = est
        p = None
    if extra_var > 0:
        # each side of the crossed interval widened by the calibration's z·sd, in quadrature; the p
        # is the one that interval implies (its half-width toward 0 as z standard errors), so
        # p < 1 − level exactly when the interval excludes 0 (the crossed test's df is descriptive
        # only and gave p 0.66 beside an interval of [+0.009, +0.176])
        z = float(sps.norm.ppf(0.5 + level / 2))
        add = z * math.sqrt(extra_var)
        low, high = est - math.hypot(est - low, add), est + math.hypot(high - est, add)
        half = est - low if est >= 0 else high - est
        p = float(2 * sps.norm.sf(z * abs(est) / half)) if half > 0 else p
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    p = None if p is None or not math.isfinite(p) else float(p)
    return MeanInterval(est, float(low), float(high), p, n, test.method, test.generalises_to)


def option_values(labels, weights: np.ndarray) -> np.ndarray:
    """(T, S, k) per-image values ``weights[label]`` (NaN where the label is -1: no image)."""
    labels = np.asarray(labels)
    out = np.full(labels.shape + (weights.shape[1],), np.nan)
    ok = labels >= 0
    out[ok] = weights[labels[ok]]
    return out


def _calibration_var(labels, boot: np.ndarray, j: int, base=None) -> float:
    """Variance over calibration resamples of the (difference of) mean corrected value."""
    if boot is None or len(boot) < 2:
        return 0.0
    means = [np.nanmean(option_values(labels, b)[..., j]) for b in boot]
    if base is not None:
        means = [m - np.nanmean(option_values(base, b)[..., j]) for m, b in zip(means, boot)]
    return float(np.var(means, ddof=1))


def group_rates(labels, base_labels, group: str, options: tuple[str, ...], *, correction: Correction | None = None,
                reference: Mapping[str, float] | None = None, level: float = 0.95) -> list[RateRow]:
    """Rows of one group for one term: rate, interval, paired difference with the baseline
    (None: this is the baseline), ratio, reference rate and amplification."""
    k = len(options)
    weights = correction.weights if correction is not None else np.eye(k)
    boot = correction.boot if correction is not None else None
    values = option_values(labels, weights)
    raw = option_values(labels, np.eye(k))
    base_values = option_values(base_labels, weights) if base_labels is not None else None
    rows = []
    for j, option in enumerate(options):
        rate = table_mean(values[..., j], level=level, binary=True, bounds=(0.0, 1.0),
                          extra_var=_calibration_var(labels, boot, j))
        row = dict(group=group, option=option, rate=_clip01(rate.estimate), ci_low=rate.low, ci_high=rate.high,
                   corrected=correction is not None, raw_rate=_est(raw[..., j]), n_images=rate.n,
                   method=rate.method, generalises_to=rate.generalises_to, baseline_rate=None, difference=None,
                   p_value=None, reference_rate=None, amplification=None)
        if base_values is not None:
            paired = values[..., j] - base_values[..., j]
            diff = table_mean(paired, level=level, extra_var=_calibration_var(labels, boot, j, base_labels),
                              bounds=(-1.0, 1.0))
            base_rate = _clip01(_est(base_values[..., j]))
            row.update(baseline_rate=base_rate, difference=diff.estimate, difference_ci_low=diff.low,
                       difference_ci_high=diff.high, p_value=diff.p_value,
                       ratio=_div(row["rate"], base_rate))
        ref = (reference or {}).get(option)
        if ref is not None:
            row.update(reference_rate=ref, amplification=_div(row["rate"], ref),
                       amplification_ci_low=_div(rate.low, ref), amplification_ci_high=_div(rate.high, ref))
        rows.append(RateRow(**row))
    return rows


def adjust_rows(rows: list[RateRow]) -> list[RateRow]:
    """Benjamini–Hochberg across the options of each group of a term (rows with a p-value)."""
    out = list(rows)
    for group in dict.fromkeys(r.group for r in rows):
        index = [i for i, r in enumerate(rows) if r.group == group]
        p = [np.nan if rows[i].p_value is None else rows[i].p_value for i in index]
        if not np.isfinite(p).any():
            continue
        for i, a in zip(index, stats.benjamini_hochberg(p)):
            out[i] = dataclasses.replace(rows[i], p_adjusted=None if not np.isfinite(a) else float(a))
    return out


def _est(a) -> float | None:
    """The table's mean over its complete sub-table (the estimate its interval belongs to)."""
    a = np.asarray(a, np.float64)
    return crossed_test(a).estimate if np.isfinite(a).any() else None


def _clip01(x: float | None) -> float | None:
    return None if x is None else min(1.0, max(0.0, float(x)))


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else float(a) / float(b)


# ----------------------------------------------------------------------------- a whole sweep


def embedding_table(data, term: str, cells=None) -> np.ndarray:
    """(T, S, d) unit image embeddings of one term (NaN rows: failed, dropped or non-finite);
    ``cells``: the term's :class:`~ldmprobe.analysis.sweep_terms.TermCells` when already gathered."""
    from ldmprobe.analysis.sweep_terms import term_cells

    cells = term_cells(data, term) if cells is None else cells
    table = np.where(cells.usable[..., None], cells.raw.astype(np.float64), np.nan)
    return table / np.linalg.norm(table, axis=-1, keepdims=True)  # a user's own embeddings need not be unit


def label_table(emb: np.ndarray, texts: np.ndarray, logit_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(T, S) labels (-1 where there is no image) and (T, S, k) probabilities of one group."""
    ok = np.isfinite(emb).all(axis=-1)
    probs = np.full(emb.shape[:2] + (len(texts),), np.nan)
    labels = np.full(emb.shape[:2], -1, dtype=int)
    if ok.any():
        probs[ok] = zero_shot(emb[ok], texts, logit_scale)
        labels[ok] = probs[ok].argmax(axis=1)
    return labels, probs


def attach_attributes(data, settings, terms: list, controls: list, *, cells=None):
    """Rates and diversity for every term and control (replacing their ``rates`` and
    ``diversity``) and the baseline's own; unchanged inputs and None without attributes.
    ``cells``: modifier -> its gathered ``TermCells`` (gathered here when not given)."""
    attrs = getattr(data, "attributes", None)
    if attrs is None or not attrs.groups:
        return terms, controls, None
    from ldmprobe.analysis.diversity import term_diversity

    level = 1 - settings.alpha
    tables = {term: embedding_table(data, term, (cells or {}).get(term))
              for term in (data.baseline, *data.terms, *data.controls)}
    labels = {term: [label_table(emb, texts, attrs.logit_scale)[0] for texts in attrs.option_embeddings]
              for term, emb in tables.items()}

    def one(term: str, is_base: bool):
        rows = []
        for g, (group, options) in enumerate(attrs.groups):
            rows += group_rates(labels[term][g], None if is_base else labels[data.baseline][g], group, options,
                                correction=attrs.corrections.get(group), level=level,
                                reference=attrs.reference.get((term, group)))
        from ldmprobe.analysis.sweep_terms import term_seed

        diversity = term_diversity(tables[term], labels[term], tables[data.baseline], labels[data.baseline],
                                   attrs, term=term, baseline=data.baseline, is_baseline=is_base,
                                   n_resamples=min(settings.bootstrap, 400), seed=term_seed(settings.seed, term),
                                   level=level)
        return tuple(rows if is_base else adjust_rows(rows)), diversity

    def attach(result):
        rows, diversity = one(result.term, False)
        return dataclasses.replace(result, rates=rows, diversity=diversity)

    base_rows, base_div = one(data.baseline, True)
    return ([attach(t) for t in terms], [attach(c) for c in controls],
            BaselineAttributes(term=data.baseline, rates=base_rows, diversity=base_div))
