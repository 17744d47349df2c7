"""Where the crossed test's generalised p is conservative, and by how much (issue 29).

The generalised p of ``crossed_test`` replaces each mean square λ by its fiducial draw
λ·ν/χ²_ν and tests with W = λ_T* + λ_S* − λ_E*. When the template and seed components are
small against the residual, λ_T ≈ λ_S ≈ λ_E and W is a difference of three noisy terms: its
fiducial spread is far wider than the spread of n·Var(ȳ) = λ_T + λ_S − λ_E itself, and the
p rejects less often than α (8 × 4, residual only: 0.027 at 0.05; docs/CALIBRATION.md). When
one factor dominates, W tends to that factor's mean square and the p to the exact t; when
both dominate, to a Behrens–Fisher-type generalised p, conservative again.

The level of the test depends on the truth only through λ_T : λ_S : λ_E and the df, so it
can be computed for any components: on a complete table ȳ is independent of the mean
squares, ȳ·√n ~ N(0, λ_T + λ_S − λ_E) under no shift, and the generalised p falls to α at a
critical |ȳ|·√n = x*(MS) = √MS_E · g(MS_T/MS_E, MS_S/MS_E) (the p is scale-free). So

    level(λ) = E over MS_k ~ λ_k·χ²_ν_k/ν_k of 2·Φ(−x*(MS) / √(λ_T + λ_S − λ_E)),

exact over ȳ; g is solved with the test's own fiducial draws on a grid of F ratios (once per
design) and interpolated, and the expectation is a product quadrature over equal-probability
strata of the three mean squares (deterministic). ``level_check`` evaluates it at the row's
own estimated components (negative ones set to 0: the nearest model that can be true) and
flags the row as conservative when that level is below ``LEVEL_FLOOR``, the lower end of the
95 % Monte Carlo interval of a rate of 0.05 measured over 2,000 tables (the calibration
tables' size). With missing cells the pseudo mean squares follow these distributions
approximately, as the test itself assumes.

The flag reads the estimates, so it is a statement about them, not a correction: it changes
no p. A table whose dominating factor is estimated small by chance is flagged although its
truth is not conservative (8 × 4 with seed SD 3: a few % of null tables), and such tables
reject more often than α, not less. Calibrated against simulated tables in
docs/CALIBRATION.md ("When the p is conservative: the flag").
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .inference_crossed import CrossedTest, _fiducial_factors, design_weights, variance_components

ALPHA = 0.05
LEVEL_TABLES = 2000  # the Monte Carlo size whose interval of nominal defines the floor
LEVEL_FLOOR = ALPHA - 1.96 * math.sqrt(ALPHA * (1 - ALPHA) / LEVEL_TABLES)  # 0.0404
GRID = np.geomspace(1e-4, 1e6, 51)  # F = MS/MS_E at which the critical value is solved
STRATA = 48  # equal-probability strata per mean square in the level's quadrature


@functools.lru_cache(maxsize=64)
def _critical(dfs: tuple[int, int, int], alpha: float) -> np.ndarray:
    """log g on GRID × GRID: the generalised p (the test's own fiducial draws) equals
    ``alpha`` at |ȳ|·√n = √MS_E · g(MS_T/MS_E, MS_S/MS_E); the p is scale-free, so this is
    every critical value of the design."""
    from scipy.special import ndtr

    u = _fiducial_factors(*dfs)
    f_t, f_s = (a.ravel() for a in np.meshgrid(GRID, GRID, indexing="ij"))
    x = np.zeros(len(f_t))
    for rows in np.array_split(np.arange(len(f_t)), max(1, len(f_t) // 64)):
        w = f_t[rows, None] * u[0] + f_s[rows, None] * u[1] - u[2]
        spread = w > 0  # W ≤ 0: a point mass at ȳ, never below 0 when ȳ > 0
        inv = np.where(spread, 1.0 / np.sqrt(np.where(spread, w, 1.0)), 0.0)
        xr = np.zeros(len(rows))
        for _ in range(60):  # Newton on p(x) − α: convex, decreasing in x > 0, so from 0 it
            z = xr[:, None] * inv  # climbs to the root without overshooting
            f = 2 * np.where(spread, ndtr(-z), 0.0).mean(1) - alpha
            slope = -2 * (np.exp(-z * z / 2) * inv).mean(1) / math.sqrt(2 * math.pi)
            step = np.where(f > 0, f / np.minimum(slope, -1e-300), 0.0)
            xr -= step
            if np.all(-step <= 1e-9 * xr):
                break
        x[rows] = xr
    out = np.log(np.maximum(x, 1e-300)).reshape(len(GRID), len(GRID))
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=64)
def _strata(df: int) -> np.ndarray:
    """χ²_df/df at the midpoints of STRATA equal-probability strata."""
    from scipy.special import chdtri

    return chdtri(df, 1.0 - (np.arange(STRATA) + 0.5) / STRATA) / df


def _interp(table: np.ndarray, f_t: np.ndarray, f_s: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``table`` in log F, F clamped to the grid (callers keep F
    below its top; below its bottom the residual term dominates W and g is flat)."""
    lg = np.log(GRID)
    step = lg[1] - lg[0]

    def where(f):
        pos = np.clip((np.log(f) - lg[0]) / step, 0, len(GRID) - 1)
        i = np.minimum(pos.astype(int), len(GRID) - 2)
        return i, pos - i

    (i, a), (j, b) = where(f_t), where(f_s)
    return ((1 - a) * (1 - b) * table[i, j] + a * (1 - b) * table[i + 1, j]
            + (1 - a) * b * table[i, j + 1] + a * b * table[i + 1, j + 1])


def generalised_level(lam, dfs, alpha: float = ALPHA) -> float:
    """Rejection rate at ``alpha`` of the generalised p under no shift when the mean squares
    have expectations ``lam`` = (λ_T, λ_S, λ_E) (any scale) and df ``dfs``: exact over ȳ,
    a product quadrature over the three mean squares. NaN when λ_E ≤ 0 or
    λ_T + λ_S − λ_E ≤ 0."""
    from scipy.special import ndtr

    lam = np.asarray(lam, dtype=np.float64)
    tau2 = float(lam[0] + lam[1] - lam[2])
    if not (tau2 > 0 and lam[2] > 0 and np.all(lam >= 0)):
        return math.nan
    dfs = tuple(int(d) for d in dfs)
    q_t, q_s, q_e = (lam[k] / lam[2] * _strata(dfs[k]) if k < 2 else _strata(dfs[k])
                     for k in range(3))
    ms_t, ms_s, ms_e = q_t[:, None, None], q_s[None, :, None], q_e[None, None, :]
    # a residual mean square below 1/GRID[-1] of the largest one is raised to it (the p is
    # scale-free; W changes by less than 1e-6 of itself), so every F lies within the grid
    ms_e = np.maximum(ms_e, np.maximum(ms_t, ms_s) / GRID[-1])
    g = np.exp(_interp(_critical(dfs, float(alpha)), ms_t / ms_e, ms_s / ms_e))
    x = np.sqrt(ms_e) * g
    return float(np.mean(2 * ndtr(-x / math.sqrt(tau2 / lam[2]))))


def plug_in(y, comps=None) -> tuple[tuple[float, float, float], tuple[int, int, int]] | None:
    """(λ_T, λ_S, λ_E) of the table's estimated components with negative ones set to 0, and
    the df the crossed test uses; None without two templates and two seeds. ``comps``: the
    components already estimated from ``y`` (a ``CrossedTest``'s), else estimated here."""
    y = np.asarray(y, dtype=np.float64)
    present = np.isfinite(y)
    keep = np.ix_(present.any(1), present.any(0))
    sub, ok = np.where(present, y, np.nan)[keep], present[keep]
    if min(ok.shape) < 2:
        return None
    comps = variance_components(sub) if comps is None else comps
    if not math.isfinite(comps[0]):
        return None
    var_a, var_b, var_e = (max(c, 0.0) for c in comps)
    k_t, k_s, dfs = design_weights(ok)
    return (var_e + k_t * var_a, var_e + k_s * var_b, var_e), dfs


def level_note(level: float) -> str:
    """What a conservative row means for a reader."""
    return (f"this p is conservative here: at this row's estimated variance components its true "
            f"level is about {level:.3f} at 0.05, so a non-significant p is weak evidence of no shift")


def level_check(y, test: CrossedTest) -> dict:
    """``level_05`` (the crossed p's rejection rate at 0.05 if the true components were the
    row's estimated ones; None where the p is not the crossed generalised p), ``conservative``
    (``level_05`` < ``LEVEL_FLOOR``) and ``level_note`` (what that means; None unless
    conservative) for one probe row."""
    crossed = test.method == "crossed" and math.isfinite(test.p_value)
    fit = plug_in(y, (test.var_template, test.var_seed, test.var_residual)) if crossed else None
    level = generalised_level(*fit) if fit else math.nan
    if not math.isfinite(level):
        return {"level_05": None, "conservative": False, "level_note": None}
    conservative = level < LEVEL_FLOOR
    return {"level_05": level, "conservative": conservative,
            "level_note": level_note(level) if conservative else None}
