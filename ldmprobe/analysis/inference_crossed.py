"""Signed per-pair effects on a template × seed table: templates and seeds as random factors.

Model (crossed, no replication, cells may be missing): y[t, s] = μ + a_t + b_s + e_ts with
a_t ~ N(0, σ_a²), b_s ~ N(0, σ_b²), e_ts ~ N(0, σ_e²). The estimate is the mean ȳ of every
present cell; with n_t cells in template t, n_s in seed s and n in all,
    n·Var(ȳ) = k_T σ_a² + k_S σ_b² + σ_e²,   k_T = Σ_t n_t² / n,  k_S = Σ_s n_s² / n.
Variance components by the method of moments on pairs of cells (every cell used; Gao & Owen
2017): pairs in one template differ by 2(σ_b² + σ_e²) in expected square, pairs in one seed
by 2(σ_a² + σ_e²), pairs differing in both by 2(σ_a² + σ_b² + σ_e²). On a complete table
these are the two-way ANOVA estimates, and λ_T = σ_e² + k_T σ_a², λ_S = σ_e² + k_S σ_b²,
λ_E = σ_e² are its mean squares (df T − 1, S − 1, (T − 1)(S − 1)), with n·Var(ȳ) =
λ_T + λ_S − λ_E.

p and CI: a generalised (fiducial) test (Tsui & Weerahandi 1989; Hannig 2009), not a t with
Satterthwaite df. Each λ is replaced by its fiducial draw λ·ν/χ²_ν, W = λ_T* + λ_S* − λ_E*,
and F(m) = E[Φ((m − ȳ)·√n / √W)] is the fiducial distribution function of μ; p =
2·min(F(0), 1 − F(0)), the CI inverts F. The expectation is over a fixed Latin hypercube of 2**12 draws
(so the result is deterministic) and Φ is evaluated exactly, so p carries no resampling floor.
Satterthwaite with negative components floored kept too many df when a factor with few levels
carried the variance (P(p ≤ 0.001) was 5–15× nominal); the fiducial p holds the whole range
(docs/CALIBRATION.md). With missing cells the mean squares follow their complete-table
distributions approximately (checked at 10 % missing cells, docs/CALIBRATION.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from ldmprobe.records import Count, Probability, nan_to_none, schema
from .inference_core import (
    TIE_RTOL, Result, check_level, check_resamples, choose_exact, chunk_rows, fair_bits, perm_p,
    sign_chunks,
)

FIDUCIAL_DRAWS = 2**12
FIDUCIAL_SEED = 20240611


@dataclass(frozen=True)
class CrossedTest(Result):
    """Templates and seeds as crossed random factors: estimate, generalised p and CI."""

    json_schema = {"required": ("estimate", "p_value", "ci_low", "ci_high", "method"), "additionalProperties": True}

    estimate: float = field(metadata=schema("mean of every usable cell"))
    se: float = field(metadata=schema("sqrt(V/n), V = max(lambda_T + lambda_S - lambda_E, lambda_T, lambda_S, "
                                      "lambda_E): for reading; p does not use it"))
    df: float = field(metadata=schema("Satterthwaite df of lambda_T + lambda_S - lambda_E (descriptive; p is "
                                      "not a t-test)"))
    statistic: float = field(metadata=schema("estimate / se"))
    p_value: Probability = field(metadata=schema("two-sided generalised p"))
    ci_low: float
    ci_high: float
    confidence_level: float
    min_p: Probability
    exact: bool = field(metadata=schema("false: an approximation, no resampling floor"))
    n_resamples: Count = field(metadata=schema("0: no resampling"))
    method: str = field(metadata=schema(enum=["crossed", "one-way over templates", "one-way over seeds", "none"]))
    generalises_to: str
    n_templates: int = field(metadata=schema("templates with at least one usable cell"))
    n_seeds: Count = field(metadata=schema("seeds with at least one usable cell"))
    dropped_templates: tuple[int, ...] = field(metadata=schema("templates with no usable cell"))
    dropped_seeds: tuple[int, ...] = field(metadata=schema("seeds with no usable cell"))
    var_template: float = field(metadata=schema(
        "method-of-moments variance component of templates (may be negative; null if not estimable)"))
    var_seed: float = field(metadata=schema("the same for seeds"))
    var_residual: float = field(metadata=schema("the same for the residual"))
    n_cells: Count = field(default=0, metadata=schema("usable cells: estimate, p and CI all use exactly these"))


@dataclass(frozen=True)
class SignFlipTest(Result):
    """Two-sided paired sign-flip test of a mean ("these templates and seeds only")."""

    json_schema = {"required": ("estimate", "p_value"), "additionalProperties": True}

    estimate: float
    p_value: Probability
    min_p: Probability = field(metadata=schema("the smallest p this test can give"))
    exact: bool = field(metadata=schema("every sign pattern enumerated (else sampled)"))
    n_resamples: Count
    generalises_to: str = field(metadata=schema("what the p generalises to: these templates and seeds only"))


@dataclass(frozen=True, kw_only=True)
class CrossedRow(Result):
    """The test fields of a result row that reports a crossed headline beside a fixed-effects p.

    Sweep probe rows and compare's drift and probe changes carry these, filled from
    :func:`crossed_fields` and :func:`fixed_fields`. Keyword-only, so each row declares its own
    fields first and ``to_dict`` writes them first. ``p_value``, ``ci_*``, ``df``: the crossed
    test (``generalises_to`` says to what); ``p_fixed``, ``min_p``, ``exact``, ``n_resamples``: the
    sign-flip test over these templates and seeds only (``fixed_generalises_to``);
    ``p_adjusted``: BH across the rows it is set for (None until then).
    """

    ci_low: float | None
    ci_high: float | None
    p_value: Probability
    p_adjusted: Probability = None
    df: float | None
    method: str
    generalises_to: str
    p_fixed: Probability
    min_p: Probability
    exact: bool
    n_resamples: Count
    fixed_generalises_to: str


def crossed_fields(crossed: CrossedTest | None) -> dict:
    """:class:`CrossedRow`'s crossed-test fields (None: too few usable cells, nothing tested)."""
    if crossed is None:
        return dict(ci_low=None, ci_high=None, p_value=None, df=None, method="none",
                    generalises_to="nothing (fewer than 2 usable cells)")
    return dict(ci_low=nan_to_none(crossed.ci_low), ci_high=nan_to_none(crossed.ci_high), p_value=nan_to_none(crossed.p_value),
                df=nan_to_none(crossed.df), method=crossed.method, generalises_to=crossed.generalises_to)


def fixed_fields(fixed: SignFlipTest | None, generalises_to: str) -> dict:
    """:class:`CrossedRow`'s sign-flip fields (None: no test), with what its p generalises to."""
    if fixed is None:
        return dict(p_fixed=None, min_p=None, exact=False, n_resamples=0, fixed_generalises_to=generalises_to)
    return dict(p_fixed=nan_to_none(fixed.p_value), min_p=fixed.min_p, exact=fixed.exact,
                n_resamples=fixed.n_resamples, fixed_generalises_to=generalises_to)


# ----------------------------------------------------------------------------- missing cells


def complete_subtable(y) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a large complete (NaN-free) sub-table of ``y`` (greedy).

    No longer used by ``crossed_test`` (which uses every cell); kept for callers that need
    a complete table. Drops the template or seed with the largest share of missing cells
    until none is missing; ties drop the one that loses fewer present cells, then a template.
    """
    present = np.isfinite(np.asarray(y, dtype=np.float64))
    rows, cols = np.arange(present.shape[0]), np.arange(present.shape[1])
    while len(rows) and len(cols):
        sub = present[np.ix_(rows, cols)]
        if sub.all():
            break
        row_miss, col_miss = 1 - sub.mean(1), 1 - sub.mean(0)
        r, c = int(np.argmax(row_miss)), int(np.argmax(col_miss))
        if (row_miss[r], -sub[r].sum()) >= (col_miss[c], -sub[:, c].sum()):
            rows = np.delete(rows, r)
        else:
            cols = np.delete(cols, c)
    return rows, cols


# ----------------------------------------------------------------------------- moments


def _pair_sums(values: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(Σ over ordered pairs i≠j sharing a label of (v_i − v_j)², number of such pairs)."""
    n = np.bincount(labels).astype(np.float64)
    s1 = np.bincount(labels, weights=values)
    s2 = np.bincount(labels, weights=values**2)
    return float(np.sum(2 * (n * s2 - s1**2))), float(np.sum(n * (n - 1)))


def variance_components(y) -> tuple[float, float, float]:
    """Method-of-moments (σ_a², σ_b², σ_e²) of a template × seed table, NaN cells missing.

    Unbiased for any missing-cell pattern that does not depend on the values; equal to the
    two-way ANOVA estimates on a complete table. NaN when a pair type is absent.
    """
    y = np.asarray(y, dtype=np.float64)
    t_idx, s_idx = np.nonzero(np.isfinite(y))
    v = y[t_idx, s_idx]
    v = v - v.mean() if len(v) else v  # centring leaves differences unchanged, helps rounding
    q_t, c_t = _pair_sums(v, t_idx)  # same template, different seeds: 2(σ_b² + σ_e²)
    q_s, c_s = _pair_sums(v, s_idx)  # same seed, different templates: 2(σ_a² + σ_e²)
    n = len(v)
    q_b = 2 * (n * np.sum(v**2) - np.sum(v) ** 2) - q_t - q_s  # both differ: 2(σ_a²+σ_b²+σ_e²)
    c_b = n * (n - 1) - c_t - c_s
    if min(c_t, c_s, c_b) <= 0:
        return math.nan, math.nan, math.nan
    e_t, e_s, e_b = q_t / c_t / 2, q_s / c_s / 2, q_b / c_b / 2
    return float(e_b - e_t), float(e_b - e_s), float(e_t + e_s - e_b)


@functools.lru_cache(maxsize=256)
def _fiducial_factors(df_t: int, df_s: int, df_e: int) -> np.ndarray:
    """(3, FIDUCIAL_DRAWS) draws of ν/χ²_ν for the three mean squares: a fixed Latin
    hypercube (each margin stratified into FIDUCIAL_DRAWS equal-probability strata)."""
    from scipy.special import chdtri  # χ² quantile (as scipy.stats.chi2.ppf) without scipy.stats

    rng = np.random.default_rng([FIDUCIAL_SEED, df_t, df_s, df_e])
    out = []
    for df in (df_t, df_s, df_e):
        u = (rng.permutation(FIDUCIAL_DRAWS) + rng.random(FIDUCIAL_DRAWS)) / FIDUCIAL_DRAWS
        out.append(df / chdtri(df, 1.0 - u))
    out = np.stack(out)
    out.flags.writeable = False
    return out


def _fiducial(est: float, lam: tuple[float, float, float], dfs: tuple[int, int, int], n: int,
              level: float, interval: bool = True) -> tuple[float, float, float]:
    """(p, ci_low, ci_high) of the generalised test of μ = 0 from the λ's and their df."""
    from scipy.special import ndtr

    u = _fiducial_factors(*dfs)
    w = lam[0] * u[0] + lam[1] * u[1] - lam[2] * u[2]
    scale = np.sqrt(np.maximum(w, 0.0) / n)  # W ≤ 0: no spread in that draw (a point mass)
    inv = 1.0 / scale[scale > 0]
    n_point = FIDUCIAL_DRAWS - len(inv)

    def cdf(m: float) -> float:  # F(m) = P*(μ ≤ m); a draw with no spread is a step at est
        step = n_point * (1.0 if m > est else 0.5 if m == est else 0.0)
        return float((ndtr((m - est) * inv).sum() + step) / FIDUCIAL_DRAWS)

    f0 = cdf(0.0) if est != 0 else 0.5
    p = max(min(1.0, 2 * min(f0, 1 - f0)), 1e-300)
    if not interval:
        return p, math.nan, math.nan
    typical = float(np.median(scale)) or float(scale.max()) or 1e-300
    z = np.random.default_rng(FIDUCIAL_SEED).standard_normal(FIDUCIAL_DRAWS)
    guesses = np.quantile(est + z * scale, [(1 - level) / 2, (1 + level) / 2])
    low, high = (_solve(cdf, q, g, typical) for q, g in zip(((1 - level) / 2, (1 + level) / 2),
                                                             guesses))
    return p, float(low), float(high)


def _solve(cdf, q: float, guess: float, typical: float) -> float:
    """m with cdf(m) = q, searched from a sampled guess outward (cdf is non-decreasing)."""
    from scipy.optimize import brentq

    step = 0.05 * typical
    lo, hi = guess - step, guess + step
    while cdf(lo) > q:
        lo -= (step := 4 * step)
    while cdf(hi) < q:
        hi += (step := 4 * step)
    return float(brentq(lambda m: cdf(m) - q, lo, hi, xtol=1e-7 * typical))


def _one_way(flat: np.ndarray, level: float, atol: float):
    """One-sample t over the cells (exact t): (se, df, t, p, low, high)."""
    from scipy import stats as sps

    df = len(flat) - 1
    se = float(np.std(flat, ddof=1) / math.sqrt(len(flat))) if flat.max() - flat.min() > atol else 0.0
    if se == 0:
        return 0.0, float(df), math.nan, math.nan, math.nan, math.nan
    est = float(flat.mean())
    t = est / se
    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    return se, float(df), t, float(2 * sps.t.sf(abs(t), df)), est - half, est + half


# ----------------------------------------------------------------------------- crossed test


def crossed_test(y, *, confidence_level: float = 0.95, atol: float = 0.0,
                 interval: bool = True) -> CrossedTest:
    """Headline test of a signed per-pair effect y[t, s] (template t, seed s).

    Every finite cell is used (NaN/inf: missing); templates or seeds with no usable cell are
    reported as dropped. With two or more templates and seeds: the crossed generalised test
    (generalises to "templates and seeds"). With one seed: a one-sample t-test over
    templates ("templates, this seed only"); with one template: over seeds. With one cell,
    or cells that share no template and no seed: no test (p NaN, method "none").
    ``atol``: cells whose range is at most ``atol`` are a constant (rounding-level
    differences are not data): no p, like a constant table. ``interval=False`` skips the
    crossed CI (NaN; the p is unchanged), for simulations that need only p.
    """
    level = check_level(confidence_level)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or y.size == 0:
        raise ValueError(f"y must be a non-empty (templates, seeds) table; got shape {y.shape}")
    present = np.isfinite(y)
    if not present.any():
        raise ValueError("y has no finite cell; nothing to test")
    rows, cols = np.flatnonzero(present.any(1)), np.flatnonzero(present.any(0))
    dropped = (tuple(int(i) for i in np.setdiff1d(np.arange(y.shape[0]), rows)),
               tuple(int(i) for i in np.setdiff1d(np.arange(y.shape[1]), cols)))
    sub = np.where(present, y, np.nan)[np.ix_(rows, cols)]
    n_t, n_s = sub.shape
    flat = sub[np.isfinite(sub)]
    n, est = len(flat), float(flat.mean())
    nan3 = (math.nan, math.nan, math.nan)

    def result(se, df, t, p, low, high, method, scope, comps=nan3):
        return CrossedTest(est, se, df, t, p, low, high, level, 0.0 if np.isfinite(p) else math.nan,
                           False, 0, method, scope, n_t, n_s, *dropped,
                           *(float(c) for c in comps), n)

    if n_t >= 2 and n_s >= 2:
        comps = variance_components(sub)
        if math.isfinite(comps[0]):
            return result(*_crossed(sub, flat, est, comps, level, atol, interval), "crossed",
                          "templates and seeds", comps)
    if n_s == 1 or n_t == 1:
        method, scope = (("one-way over templates", "templates (this seed only)") if n_s == 1
                         else ("one-way over seeds", "seeds (this template only)"))
        if n >= 2:
            return result(*_one_way(flat, level, atol), method, scope)
    return result(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, "none",
                  "nothing (one cell, or no two cells share a template or a seed)")


def design_weights(ok: np.ndarray) -> tuple[float, float, tuple[int, int, int]]:
    """For the usable-cell mask ``ok`` of a trimmed table: Σ n_t² / n and Σ n_s² / n (the
    weights of σ_a² and σ_b² in λ_T and λ_S; S and T on a complete table) and the df of the
    three mean squares."""
    n_t, n_s = ok.shape
    n = int(ok.sum())
    return (float(np.sum(ok.sum(1) ** 2) / n), float(np.sum(ok.sum(0) ** 2) / n),
            (n_t - 1, n_s - 1, max(n - n_t - n_s + 1, 1)))


def _crossed(sub: np.ndarray, flat: np.ndarray, est: float, comps, level: float, atol: float,
             interval: bool):
    n = len(flat)
    k_t, k_s, dfs = design_weights(np.isfinite(sub))
    var_a, var_b, var_e = comps
    lam = (max(var_e + k_t * var_a, 0.0), max(var_e + k_s * var_b, 0.0), max(var_e, 0.0))
    if flat.max() - flat.min() <= atol:  # a constant table: no variance to test against (never p = 0)
        return 0.0, math.nan, math.nan, math.nan, math.nan, math.nan
    v = lam[0] + lam[1] - lam[2]
    denom = sum(x**2 / d for x, d in zip(lam, dfs))
    df = v**2 / denom if v > 0 and denom > 0 else math.nan  # Satterthwaite (descriptive)
    se = math.sqrt(max(v, *lam) / n)
    p, low, high = _fiducial(est, lam, dfs, n, level, interval)
    return se, df, est / se if se > 0 else math.nan, p, low, high


# ----------------------------------------------------------------------------- sign flip


def _byte_sums(d: np.ndarray) -> np.ndarray:
    """(⌈n/8⌉, 256) table: entry [g, c] is the sum of d over the members of group g (values
    8g … 8g + 7) whose bit is set in byte c (least significant bit first)."""
    groups = -(-len(d) // 8)
    padded = np.zeros(8 * groups)
    padded[: len(d)] = d
    bits = (np.arange(256)[None, :] >> np.arange(8)[:, None]) & 1  # (8, 256)
    return padded.reshape(groups, 8) @ bits


def flipped_sums(d: np.ndarray, n_resamples: int, rng):
    """Σ_i s_i d_i for ``n_resamples`` rows of fair signs s = 1 − 2·bits drawn from ``rng`` as
    ``sign_chunks`` draws them, a bounded block at a time. The bits are packed eight to a byte
    and each byte looks its partial sum up in :func:`_byte_sums`, so a row costs n/8 additions."""
    n = len(d)
    table = _byte_sums(d).ravel()
    offsets = 256 * np.arange(table.size // 256)
    total = float(d.sum())
    step = chunk_rows(n)
    for start in range(0, n_resamples, step):
        rows = min(step, n_resamples - start)
        packed = np.packbits(fair_bits(rng, rows, n), axis=1, bitorder="little")
        yield total - 2.0 * table[packed + offsets].sum(1)



def sign_flip_test(
    d, *, n_resamples: int = 9999, seed=None, max_enumerate: int | None = None
) -> SignFlipTest:
    """Two-sided paired sign-flip test of mean(d) = 0 over the given pairs (NaNs dropped).

    |mean(s·d)| >= |mean(d)| counted over sign patterns s. s and −s give the same value, so
    there are 2**(n−1) distinct patterns; they are enumerated (first sign fixed at +1) when
    ``choose_exact`` allows, e.g. a 4 × 4 table (32,768 patterns). Generalises only to
    these templates and seeds: it conditions on them. ``seed``: anything
    ``numpy.random.default_rng`` accepts (None, an int, a SeedSequence or a Generator).
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
    if exact:
        k = sum(int(np.count_nonzero(np.abs(signs @ d) / n >= threshold))
                for signs in sign_chunks(n, exact=True, first_fixed=True))
    else:
        k = sum(int(np.count_nonzero(np.abs(sums) / n >= threshold))
                for sums in flipped_sums(d, n_resamples, np.random.default_rng(seed)))
    total = 2 ** (n - 1) if exact else n_resamples
    p, min_p = perm_p(k, total, exact)
    return SignFlipTest(observed, p, min_p, exact, total, "these templates and seeds")
