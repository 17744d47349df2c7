"""Signed per-pair effects on a template × seed table: templates and seeds as random factors.

Model (balanced, crossed, no replication): y[t, s] = μ + a_t + b_s + e_ts with
a_t ~ (0, σ_a²), b_s ~ (0, σ_b²), e_ts ~ (0, σ_e²). The grand mean ȳ estimates μ with
Var(ȳ) = σ_a²/T + σ_b²/S + σ_e²/(T·S) = E[MS_T + MS_S − MS_E] / (T·S), so the headline
test is a t-test of ȳ against that variance with Satterthwaite df (Clark 1973; Judd,
Westfall & Kenny 2012). It generalises to new templates and new seeds. The secondary
paired sign-flip test treats the T·S pairs as the whole population ("these templates and
seeds").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .inference_core import (
    CHUNK, TIE_RTOL, Result, check_level, check_resamples, choose_exact, perm_p,
)


@dataclass(frozen=True)
class CrossedTest(Result):
    """Variance-components t-test of the grand mean of a template × seed table."""

    estimate: float  # grand mean of the complete sub-table
    se: float
    df: float
    statistic: float  # t = estimate / se
    p_value: float  # two-sided
    ci_low: float
    ci_high: float
    confidence_level: float
    min_p: float
    exact: bool  # False: an approximation (Satterthwaite t), no Monte Carlo error
    n_resamples: int  # 0: analytic
    method: str  # "crossed", "crossed (floored: ...)", "one-way over ...", "none"
    generalises_to: str
    n_templates: int  # used (after dropping incomplete ones)
    n_seeds: int
    dropped_templates: tuple[int, ...]
    dropped_seeds: tuple[int, ...]
    var_template: float  # method-of-moments σ_a², σ_b², σ_e² (may be negative; NaN if n/a)
    var_seed: float
    var_residual: float


@dataclass(frozen=True)
class SignFlipTest(Result):
    """Two-sided paired sign-flip test of a mean ("these templates and seeds only")."""

    estimate: float
    p_value: float
    min_p: float
    exact: bool
    n_resamples: int
    generalises_to: str


# ----------------------------------------------------------------------------- missing cells


def complete_subtable(y) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a large complete (NaN-free) sub-table of ``y``.

    Greedy: while any cell is missing, drop the template (row) or seed (column) with the
    largest share of missing cells among those left; ties drop the one that removes fewer
    present cells, then a template before a seed. Finding the largest complete sub-table
    exactly is a maximum-biclique problem (NP-hard); the greedy answer is exact when the
    missing cells sit in whole rows or columns, the common case (a failed template, a seed
    lost for every template, or a term that lost a few images).
    """
    present = np.isfinite(np.asarray(y, dtype=np.float64))
    rows, cols = np.arange(present.shape[0]), np.arange(present.shape[1])
    while len(rows) and len(cols):
        sub = present[np.ix_(rows, cols)]
        if sub.all():
            break
        row_miss = 1 - sub.mean(1)
        col_miss = 1 - sub.mean(0)
        r, c = int(np.argmax(row_miss)), int(np.argmax(col_miss))
        row_cost, col_cost = sub[r].sum(), sub[:, c].sum()  # present cells each drop loses
        if (row_miss[r], -row_cost) >= (col_miss[c], -col_cost):
            rows = np.delete(rows, r)
        else:
            cols = np.delete(cols, c)
    return rows, cols


# ----------------------------------------------------------------------------- crossed test


def _mean_squares(y: np.ndarray) -> tuple[float, float, float]:
    """Two-way ANOVA mean squares (templates, seeds, residual) of a complete T × S table."""
    n_t, n_s = y.shape
    grand = y.mean()
    row, col = y.mean(1), y.mean(0)
    ms_t = n_s * np.sum((row - grand) ** 2) / (n_t - 1)
    ms_s = n_t * np.sum((col - grand) ** 2) / (n_s - 1)
    resid = y - row[:, None] - col[None, :] + grand
    ms_e = np.sum(resid**2) / ((n_t - 1) * (n_s - 1))
    return float(ms_t), float(ms_s), float(ms_e)


def _crossed_variance(y: np.ndarray) -> tuple[float, float, str, tuple[float, float, float]]:
    """(T·S·Var(ȳ) estimate, df, method, (σ_a², σ_b², σ_e²)); complete table, T, S >= 2.

    V = MS_T + MS_S − MS_E is unbiased for T·S·Var(ȳ) but can be small or negative when a
    variance component's estimate is negative. Truncating negative components at zero (the
    usual rule) gives exactly V* = max(MS_T, MS_S, MS_E, V):
      σ_b² < 0 → V* = MS_T: the one-way t-test on the T template means (df T − 1);
      σ_a² < 0 → V* = MS_S: the one-way t-test on the S seed means (df S − 1);
      both < 0 → V* = MS_E (df (T−1)(S−1)).
    So the floor is the larger of the two one-way variances and the residual one; it never
    claims less uncertainty than a one-way analysis over either factor, at the price of some
    conservatism when a component is truly 0 (see docs/CALIBRATION.md).
    """
    n_t, n_s = y.shape
    ms_t, ms_s, ms_e = _mean_squares(y)
    df_t, df_s, df_e = n_t - 1, n_s - 1, (n_t - 1) * (n_s - 1)
    comps = ((ms_t - ms_e) / n_s, (ms_s - ms_e) / n_t, ms_e)
    v = ms_t + ms_s - ms_e
    best = max((v, "crossed"), (ms_t, "crossed (floored: one-way over templates)"),
               (ms_s, "crossed (floored: one-way over seeds)"),
               (ms_e, "crossed (floored: residual)"), key=lambda c: c[0])
    value, method = best
    if method == "crossed":
        denom = ms_t**2 / df_t + ms_s**2 / df_s + ms_e**2 / df_e
        df = v**2 / denom if denom > 0 else float(df_e)  # Satterthwaite (1946)
    else:
        df = {"crossed (floored: one-way over templates)": df_t,
              "crossed (floored: one-way over seeds)": df_s}.get(method, df_e)
    return float(value), float(df), method, comps


def _t_result(est, var_mean, df, level):
    from scipy import stats as sps

    se = math.sqrt(var_mean) if var_mean > 0 else 0.0
    if se > 0:
        t = est / se
        p = float(2 * sps.t.sf(abs(t), df))
        half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    else:  # a constant table: no variance to test against, so no p (never a p of 0)
        t, p, half = math.nan, math.nan, math.nan
    return se, t, p, est - half, est + half


def crossed_test(y, *, confidence_level: float = 0.95) -> CrossedTest:
    """Headline test of a signed per-pair effect y[t, s] (template t, seed s).

    NaN cells are handled by keeping the greedy largest complete sub-table
    (``complete_subtable``); the dropped template and seed indices are reported. With two or
    more templates and seeds left: the crossed variance-components t-test (generalises to
    "templates and seeds"). With one seed: a one-sample t-test over templates ("templates,
    this seed only"); with one template: over seeds ("seeds, this template only"). With one
    cell: no test (p NaN, method "none").
    """
    level = check_level(confidence_level)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or y.size == 0:
        raise ValueError(f"y must be a non-empty (templates, seeds) table; got shape {y.shape}")
    y = np.where(np.isfinite(y), y, np.nan)
    rows, cols = complete_subtable(y)
    if len(rows) == 0 or len(cols) == 0:
        raise ValueError("y has no finite cell; nothing to test")
    dropped = (tuple(int(i) for i in np.setdiff1d(np.arange(y.shape[0]), rows)),
               tuple(int(i) for i in np.setdiff1d(np.arange(y.shape[1]), cols)))
    sub = y[np.ix_(rows, cols)]
    n_t, n_s = sub.shape
    est = float(sub.mean())
    nan3 = (math.nan, math.nan, math.nan)
    if n_t >= 2 and n_s >= 2:
        v, df, method, comps = _crossed_variance(sub)
        scope = "templates and seeds"
    elif n_t >= 2 or n_s >= 2:  # one factor has one level: one-sample t over the other
        flat = sub.ravel()
        v, df, comps = float(np.var(flat, ddof=1)), float(len(flat) - 1), nan3
        if n_s == 1:
            method, scope = "one-way over templates", "templates (this seed only)"
        else:
            method, scope = "one-way over seeds", "seeds (this template only)"
    else:
        return CrossedTest(est, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan,
                           level, math.nan, False, 0, "none", "nothing (one cell)", 1, 1,
                           *dropped, *nan3)
    if np.ptp(sub) == 0:
        v = 0.0  # constant table (rounding would otherwise leave a spurious tiny variance)
    se, t, p, low, high = _t_result(est, v / (n_t * n_s), df, level)
    return CrossedTest(est, se, df, t, p, low, high, level, 0.0, False, 0, method, scope,
                       n_t, n_s, *dropped, *(float(c) for c in comps))


# ----------------------------------------------------------------------------- sign flip


def sign_flip_test(
    d, *, n_resamples: int = 9999, random_state=None, max_enumerate: int | None = None
) -> SignFlipTest:
    """Two-sided paired sign-flip test of mean(d) = 0 over the given pairs (NaNs dropped).

    |mean(s·d)| >= |mean(d)| counted over sign patterns s. s and −s give the same value, so
    there are 2**(n−1) distinct patterns; they are enumerated (first sign fixed at +1) when
    ``choose_exact`` allows, e.g. a 4 × 4 table (32,768 patterns). Generalises only to
    these templates and seeds: it conditions on them.
    """
    d = np.asarray(d, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    if len(d) == 0:
        raise ValueError("sign_flip_test: no finite differences")
    n = len(d)
    n_resamples = check_resamples(n_resamples)
    observed = float(d.mean())
    threshold = abs(observed) - TIE_RTOL * max(float(np.abs(d).mean()), 1e-300)
    exact = choose_exact(2 ** (n - 1), max_enumerate=max_enumerate)
    k = 0
    if exact:
        for start in range(0, 2 ** (n - 1), CHUNK):
            codes = np.arange(start, min(start + CHUNK, 2 ** (n - 1)))
            signs = 1 - 2 * ((codes[:, None] >> np.arange(n - 1)) & 1).astype(np.float64)
            k += int(np.count_nonzero(np.abs(signs @ d[1:] + d[0]) / n >= threshold))
        total = 2 ** (n - 1)
    else:
        rng = np.random.default_rng(random_state)
        for start in range(0, n_resamples, CHUNK):
            rows = min(CHUNK, n_resamples - start)
            signs = 1.0 - 2.0 * rng.integers(0, 2, size=(rows, n))
            k += int(np.count_nonzero(np.abs(signs @ d) / n >= threshold))
        total = n_resamples
    p, min_p = perm_p(k, total, exact)
    return SignFlipTest(observed, p, min_p, exact, total, "these templates and seeds")
