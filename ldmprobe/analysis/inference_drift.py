"""Image drift as an unbiased squared distance, control terms, neighbour null, z-scores.

Unbiased drift. For template t with n_t pairs (m_i, b_i) of unit image embeddings made from
the same seed, D_i = m_i − b_i has E[D_i] = μ_m − μ_b. The U-statistic
    U_t = Σ_{i≠j} D_i·D_j / (n_t (n_t − 1))
        = (‖Σ_i D_i‖² − Σ_i ‖D_i‖²) / (n_t (n_t − 1))
is unbiased for ‖μ_m − μ_b‖² when pairs are independent: it has no same-image products
(every term pairs images of two different seeds), so E[U_t] = 0 under no effect whatever
n_t. The estimate is the mean of U_t over templates (each needs n_t >= 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .inference_core import (
    CHUNK, SIGNS, TIE_RTOL, Result, check_level, check_resamples, choose_exact, chunk_rows,
    clean_pairs, clean_rows, fair_bits, pair_mask, perm_p, require_finite, sign_chunks, unit_rows,
)


@dataclass(frozen=True)
class UnbiasedDrift(Result):
    """Unbiased ‖μ_m − μ_b‖² averaged over templates, bootstrap CI and sign-flip p."""

    estimate: float
    ci_low: float
    ci_high: float
    confidence_level: float
    n_boot: int
    standardised: float  # estimate / mean within-template spread (trace of covariance)
    spread: float  # mean over templates and conditions of tr Cov (unbiased)
    per_template: tuple[float, ...]
    p_value: float  # sign-flip within pairs: "the wording changed the images"
    min_p: float
    exact: bool
    n_resamples: int
    generalises_to: str
    n_pairs: int
    n_dropped: int  # pairs dropped for non-finite or zero-norm rows


@dataclass(frozen=True)
class PairGram:
    """One template's Gram matrix G_ij = D_i·D_j of its pair differences D (n × d), held as G
    when n <= d and as D otherwise: a quadratic form wᵀGw = ‖Dᵀw‖² then costs n·min(n, d)
    and memory stays n·min(n, d), so a template with thousands of seeds never builds n × n."""

    matrix: np.ndarray  # G (n, n) when ``is_gram``, else D (n, d)
    is_gram: bool
    diag: np.ndarray  # G_ii = ‖D_i‖²
    u: float  # U_t = Σ_{i≠j} G_ij / (n (n − 1))

    @classmethod
    def of_differences(cls, d: np.ndarray) -> PairGram:
        n, dim = d.shape
        if n <= dim:
            return cls.of_gram(d @ d.T)
        diag = np.einsum("ij,ij->i", d, d)
        total = d.sum(0)
        return cls(d, False, diag, float((total @ total - diag.sum()) / (n * (n - 1))))

    @classmethod
    def of_gram(cls, gram) -> PairGram:
        gram = np.asarray(gram, dtype=np.float64)
        return cls(gram, True, np.diag(gram).copy(), _u_stat(gram))

    def __len__(self) -> int:
        return len(self.matrix)

    @property
    def trace(self) -> float:
        return float(self.diag.sum())

    def forms(self, w: np.ndarray) -> np.ndarray:
        """wᵀGw for each row of w (k, n)."""
        v = w @ self.matrix
        return np.einsum("ki,ki->k", v, w) if self.is_gram else np.einsum("kd,kd->k", v, v)

    def forms_first_fixed(self, flips: np.ndarray) -> np.ndarray:
        """sᵀGs for s = (1, flips) per row (flips: k × (n − 1) signs, or uint8 bits b for
        flips 1 − 2b: then Dᵀs = D_0 + Σ_i D_i − 2 Dᵀb, with no ±1 matrix made)."""
        if flips.dtype == np.uint8:
            if self.is_gram:
                flips = SIGNS[flips]
            else:
                v = (self.matrix[0] + self.matrix[1:].sum(0)) - 2.0 * (flips.astype(np.float64) @ self.matrix[1:])
                return np.einsum("kd,kd->k", v, v)
        v = flips @ self.matrix[1:] + self.matrix[0]
        if self.is_gram:
            return v[:, 0] + np.einsum("ki,ki->k", v[:, 1:], flips)
        return np.einsum("kd,kd->k", v, v)


def _as_pair_gram(gram) -> PairGram:
    return gram if isinstance(gram, PairGram) else PairGram.of_gram(gram)


def _template_parts(m, b, groups, rows=None):
    """(pair positions, PairGram of the differences, (spread of m + spread of b) / 2) per template
    with two pairs or more. ``rows``: m and b are the raw rows and ``rows[i]`` is unit pair i's
    row there (each template's rows are made unit in turn: unit_rows works row by row, so these
    are the rows of ``unit_rows(m[rows])``, without all of them held at once)."""
    n = len(m) if rows is None else len(rows)
    labels = np.zeros(n, dtype=int) if groups is None else np.asarray(groups)
    if labels.shape != (n,):
        raise ValueError(f"groups must have one label per pair ({n}); got {labels.shape}")
    parts = []
    for g in np.unique(labels):
        idx = np.flatnonzero(labels == g)
        if len(idx) < 2:
            continue  # a template with one pair has no cross products: skipped
        mt, bt = (m[idx], b[idx]) if rows is None else (unit_rows(m[rows[idx]])[0], unit_rows(b[rows[idx]])[0])
        parts.append((idx, PairGram.of_differences(mt - bt), (_spread(mt) + _spread(bt)) / 2))
    if not parts:
        raise ValueError("unbiased drift needs a template with at least 2 usable pairs")
    return parts


def _u_stat(gram: np.ndarray) -> float:
    n = len(gram)
    return float((gram.sum() - np.trace(gram)) / (n * (n - 1)))  # Σ_{i≠j} D_i·D_j / n(n−1)


def _spread(x: np.ndarray) -> float:
    return float(np.sum(np.var(x, axis=0, ddof=1)))  # tr Cov, unbiased


def boot_drift(grams, n_boot, rng) -> np.ndarray:
    """Hierarchical bootstrap of the mean U: templates with replacement, then pairs.

    A bootstrap sample with pair counts w uses the weighted U-statistic
    (wᵀGw − Σ w_i² G_ii) / ((Σw)² − Σ w_i²), which drops products of a pair with its own
    copies (they would be same-image products and bias it upward). A drawn template copy
    whose pairs are all one pair has no cross product; it keeps its observed U_t.
    ``grams``: Gram matrices (n × n arrays) or :class:`PairGram`; the weights are drawn a
    bounded block of rows at a time (the same draws as all at once).
    """
    grams = [_as_pair_gram(g) for g in grams]
    n_t = len(grams)
    picks = rng.integers(0, n_t, size=(n_boot, n_t))
    values = np.empty((n_boot, n_t))
    for t, gram in enumerate(grams):
        slots = np.argwhere(picks == t)
        n = len(gram)
        step = chunk_rows(n)
        for start in range(0, len(slots), step):
            block = slots[start:start + step]
            w = rng.multinomial(n, np.full(n, 1.0 / n), size=len(block)).astype(np.float64)
            num = gram.forms(w) - (w**2) @ gram.diag
            den = w.sum(1) ** 2 - (w**2).sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                u = np.where(den > 0, num / np.where(den > 0, den, 1.0), gram.u)
            values[block[:, 0], block[:, 1]] = u
    return values.mean(1)


def _sign_flip_drift(grams, n_resamples, rng, max_enumerate):
    """Sign-flip p of mean U over templates; s and −s within a template give equal U_t."""
    sizes = [len(g) for g in grams]
    n_free = sum(n - 1 for n in sizes)
    exact = n_free < 62 and choose_exact(2**n_free, max_enumerate=max_enumerate)
    observed = float(np.mean([g.u for g in grams]))
    scale = float(np.mean([g.trace / len(g) for g in grams]))
    threshold = observed - TIE_RTOL * max(scale, 1e-300)
    total = 2**n_free if exact else n_resamples
    k = 0
    chunks = (sign_chunks(n_free, exact=True) if exact else
              (fair_bits(rng, min(step, n_resamples - start), n_free)
               for step in (chunk_rows(n_free),) for start in range(0, n_resamples, step)))
    for flips in chunks:  # ±1 signs (enumerated) or the sampled signs' bits
        stat, col = np.zeros(len(flips)), 0
        for g, n in zip(grams, sizes):
            quad = g.forms_first_fixed(flips[:, col:col + n - 1])
            col += n - 1
            stat += (quad - g.trace) / (n * (n - 1)) / len(grams)
        k += int(np.count_nonzero(stat >= threshold))
    p, min_p = perm_p(k, total, exact)
    return p, min_p, exact, total


def unbiased_drift(
    term_emb, base_emb, groups=None, *, n_boot: int = 2000, n_resamples: int = 9999,
    confidence_level: float = 0.95, seed=None, max_enumerate: int | None = None,
) -> UnbiasedDrift:
    """Unbiased squared distance between term and baseline mean embeddings.

    ``term_emb[i]`` and ``base_emb[i]`` are the images of pair i (same template and seed);
    ``groups[i]`` its template (None: one template). Rows are unit-normalised; a pair with a
    non-finite or zero-norm row is dropped (counted in ``n_dropped``). CI: percentile
    bootstrap over templates then pairs. ``standardised``: estimate / mean within-template
    total variance tr Cov of term and baseline images (a squared, multivariate effect size,
    ‖δ‖²/tr Σ). p: one-sided sign-flip test within pairs (swap term and baseline of a pair),
    which only says the wording changed these templates' images; judge a term against
    control terms (``control_comparison``) for anything more.
    """
    check_level(confidence_level), check_resamples(n_boot, "n_boot"), check_resamples(n_resamples)
    return resampled_drift(drift_parts(term_emb, base_emb, groups), n_boot=n_boot, n_resamples=n_resamples,
                           confidence_level=confidence_level, seed=seed, max_enumerate=max_enumerate)


def drift_parts(term_emb, base_emb, groups=None) -> tuple[list, int]:
    """(Each template's (pair positions, :class:`PairGram`, spread), pairs dropped): what
    :func:`resampled_drift` needs, so that the rows can go before it (ValueError as unbiased_drift)."""
    m, b, kept, n_dropped = pair_mask(term_emb, base_emb, name="drift pairs", min_rows=2)
    groups = None if groups is None else np.asarray(groups)[kept]
    return _template_parts(m, b, groups, rows=np.flatnonzero(kept)), n_dropped  # unit rows a template at a time


def resampled_drift(prepared: tuple[list, int], *, n_boot: int = 2000, n_resamples: int = 9999,
                    confidence_level: float = 0.95, seed=None, max_enumerate: int | None = None) -> UnbiasedDrift:
    """:func:`unbiased_drift` from its :func:`drift_parts` (the same result)."""
    level = check_level(confidence_level)
    n_boot, n_resamples = check_resamples(n_boot, "n_boot"), check_resamples(n_resamples)
    parts, n_dropped = prepared
    grams = [g for _, g, _ in parts]
    per = tuple(g.u for g in grams)
    estimate = require_finite(np.mean(per), "drift estimate")
    spread = float(np.mean([s for _, _, s in parts]))
    perm_rng, boot_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(_entropy(seed)).spawn(2))
    boot = boot_drift(grams, n_boot, boot_rng)
    low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    p, min_p, exact, total = _sign_flip_drift(grams, n_resamples, perm_rng, max_enumerate)
    return UnbiasedDrift(estimate, float(low), float(high), level, n_boot,
                         estimate / spread if spread > 0 else math.nan, spread, per, p, min_p, exact, total,
                         "these templates and seeds (the wording changed the images)",
                         int(sum(len(i) for i, _, _ in parts)), n_dropped)


def drift_estimate(term_emb, base_emb, groups=None) -> float:
    """The ``unbiased_drift`` estimate alone (no bootstrap, no p); NaN when no template has
    two usable pairs. For recomputing a term or a control on a subset of its cells."""
    try:
        m, b, kept, _ = clean_pairs(term_emb, base_emb, name="drift pairs", min_rows=2)
        parts = _template_parts(m, b, None if groups is None else np.asarray(groups)[kept])
    except ValueError:
        return math.nan
    return float(np.mean([g.u for _, g, _ in parts]))


def _entropy(seed):
    """An int or SeedSequence for spawning streams from any seed default_rng accepts."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2**63))
    if isinstance(seed, np.random.SeedSequence):
        return seed.entropy
    return seed


# ----------------------------------------------------------------------------- controls


@dataclass(frozen=True)
class ControlComparison(Result):
    """A term's statistic against K control terms' statistics."""

    statistic: float
    controls_median: float
    ratio: float  # statistic / median of the controls, as compared (magnitudes when two-sided); NaN when that median is <= 0
    rank: int  # number of controls >= the statistic (ties count as exceedances)
    p_value: float  # (rank + 1) / (K + 1)
    min_p: float  # 1 / (K + 1)
    exact: bool
    n_resamples: int  # K
    n_controls: int
    n_dropped: int  # non-finite control statistics left out
    generalises_to: str


def control_comparison(
    statistic: float, controls, *, alternative: str = "greater", term_values=None,
) -> ControlComparison:
    """Rank p of a term's statistic among control terms' (exchangeable under "no more
    than an irrelevant modifier"). ``alternative="greater"``: large is extreme (drift);
    ``"two-sided"``: |value| is compared (a signed probe shift). p = (1 + #{c >= x}) /
    (K + 1); its floor 1/(K+1) is reported (K >= 19 to reach 0.05).

    ``term_values`` (like with like): the term's statistic recomputed on the cells it shares
    with each control (one value per control); control k is then compared with
    ``term_values[k]``, so a term that lost seeds its controls kept is not compared with
    statistics on more (or other) data. ``statistic`` stays the reported value.
    """
    x = require_finite(statistic, "term statistic")
    c = np.asarray(controls, dtype=np.float64).ravel()
    xk = np.full(c.shape, x) if term_values is None else np.asarray(term_values, dtype=np.float64).ravel()
    if xk.shape != c.shape:
        raise ValueError(f"term_values must have one value per control ({len(c)}); got {len(xk)}")
    finite = np.isfinite(c) & np.isfinite(xk)
    c, xk = c[finite], xk[finite]
    if len(c) == 0:
        raise ValueError("control_comparison needs at least one finite control statistic")
    if alternative == "two-sided":
        xs, cs = np.abs(xk), np.abs(c)
    elif alternative == "greater":
        xs, cs = xk, c
    else:
        raise ValueError(f"alternative must be 'greater' or 'two-sided'; got {alternative!r}")
    tol = TIE_RTOL * max(float(np.abs(xs).max()), float(np.abs(cs).max()), 1e-300)
    rank = int(np.count_nonzero(cs >= xs - tol))
    k = len(c)
    med = float(np.median(c))
    # a ratio is read as "so many times the controls' typical value": only against a positive
    # typical value (an unbiased drift's median can be <= 0, which gave "-354x the controls")
    typical = float(np.median(cs))
    ratio = (abs(x) if alternative == "two-sided" else x) / typical if typical > 0 else math.nan
    return ControlComparison(x, med, ratio, rank, (rank + 1) / (k + 1), 1 / (k + 1), True, k,
                             k, int((~finite).sum()), "modifiers like these controls")


# ----------------------------------------------------------------------------- neighbours


@dataclass(frozen=True)
class NeighbourNull(Result):
    """Direction neighbours listed only beyond a permutation-null threshold of max |cos|."""

    threshold: float  # (1 − alpha) quantile of max_w |cos(v*, w̃)| under the null
    alpha: float
    toward: tuple[tuple[str, float], ...]
    away: tuple[tuple[str, float], ...]
    n_resamples: int
    null: str


def neighbour_null(
    term_emb, base_emb, word_emb, words, *, alpha: float = 0.05, k: int = 10,
    n_resamples: int = 999, seed=None,
) -> NeighbourNull:
    """Words toward/away from the drift direction v = mean_i (m_i − b_i), with a null.

    Null: swap term and baseline within random pairs (v* = mean_i s_i D_i, s_i = ±1), which
    is what "no drift" means for paired images. For each draw, the largest |cos(v*, w̃)| over
    the vocabulary (w̃ = unit(w − vocabulary mean)); the threshold is its (1 − alpha)
    quantile, so under no drift a word is listed with probability about alpha (family-wise
    over the vocabulary). Listed: up to k words with cos > threshold (toward) or
    < −threshold (away).
    """
    m, b, _, _ = clean_pairs(term_emb, base_emb, name="neighbour pairs", min_rows=2)
    w = clean_rows(word_emb, name="word embeddings").rows
    if len(w) != len(words):
        raise ValueError(f"{len(w)} usable word embeddings but {len(words)} words "
                         "(clean them together with their words first)")
    n_resamples = check_resamples(n_resamples)
    centred = w - w.mean(0)
    centred = centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-300)
    d = m - b
    del m, b  # only the differences are resampled
    rng = np.random.default_rng(seed)
    maxima = []
    step = chunk_rows(len(d), CHUNK // 4)
    for start in range(0, n_resamples, step):
        rows = min(step, n_resamples - start)
        v = SIGNS[fair_bits(rng, rows, len(d))] @ d  # as 1 − 2·rng.integers(0, 2, (rows, n))
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)
        maxima.append(np.abs(v @ centred.T).max(1))
    threshold = float(np.quantile(np.concatenate(maxima), 1 - alpha))
    v = d.sum(0)
    norm = np.linalg.norm(v)
    score = centred @ (v / norm) if norm > 0 else np.zeros(len(w))
    order = np.argsort(-score, kind="stable")
    toward = tuple((str(words[i]), float(score[i])) for i in order[:k] if score[i] > threshold)
    away = tuple((str(words[i]), float(score[i])) for i in order[::-1][:k]
                 if score[i] < -threshold)
    return NeighbourNull(threshold, float(alpha), toward, away, n_resamples,
                         "sign flips of paired differences (term/baseline swapped within pairs)")


# ----------------------------------------------------------------------------- z-scores


@dataclass(frozen=True)
class ComparableShifts(Result):
    """Text and image shifts of each probe as z-scores among the vocabulary's shifts."""

    text_z: np.ndarray
    image_z: np.ndarray
    difference: np.ndarray  # image_z − text_z: > 0 when generation moves further than text


def vocabulary_z(shifts) -> np.ndarray:
    """z = (x − mean) / sd (ddof=1) of each shift among all finite shifts; NaN stays NaN."""
    x = np.asarray(shifts, dtype=np.float64)
    ok = np.isfinite(x)
    if ok.sum() < 2:
        raise ValueError("a z-score among shifts needs at least 2 finite shifts")
    sd = float(np.std(x[ok], ddof=1))
    if sd == 0:
        raise ValueError("all shifts are equal; no z-score scale")
    return (x - x[ok].mean()) / sd


def comparable_shifts(text_shifts, image_shifts) -> ComparableShifts:
    """Put text-space and image-space probe shifts on one scale (z among the vocabulary)."""
    t, i = vocabulary_z(text_shifts), vocabulary_z(image_shifts)
    if t.shape != i.shape:
        raise ValueError(f"text and image shifts differ in shape: {t.shape} vs {i.shape}")
    return ComparableShifts(t, i, i - t)
