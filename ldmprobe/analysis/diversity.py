"""Narrowing: how many distinct kinds of picture a term's images hold.

* The **Vendi score** (Friedman & Dieng 2023) of unit image embeddings X (n × d): with
  K = X Xᵀ / n (cosine similarities over n, trace 1) and its eigenvalues λ, exp(−Σ λ log λ):
  1 when every image is alike, n when all are orthogonal. The nonzero eigenvalues of X Xᵀ / n
  are those of Xᵀ X / n, so the smaller of the two matrices is used; images with weights w
  (a resample's multiplicities) give Xᵀ diag(w) X.
* Per attribute group, the **effective number of options** exp(entropy) of the term's
  (corrected) rates: 1 when every image has one option, k when all k are equally common.

Intervals resample templates and seeds (both with replacement, the same draws for the term
and the baseline, so the difference is paired); "narrows" / "widens" is said only where the
interval of the difference (or, against a reference, the interval itself) excludes no change.
"""

from __future__ import annotations

import math

import numpy as np

from ldmprobe.analysis.rates_results import Diversity, GroupDiversity


def entropy_exp(p) -> float:
    """exp of the Shannon entropy (natural log) of shares p (negatives clipped, renormalised)."""
    p = np.clip(np.asarray(p, np.float64), 0, None)
    total = p.sum()
    if total <= 0:
        return float("nan")
    p = p[p > 0] / total
    return float(math.exp(-(p * np.log(p)).sum()))


def vendi(x, weights=None) -> float:
    """Vendi score of unit rows ``x`` (optionally weighted: weights sum to anything > 0)."""
    x = np.asarray(x, np.float64)
    n = len(x)
    if n == 0:
        return float("nan")
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, np.float64) / np.sum(weights)
    if n <= x.shape[1]:
        root = np.sqrt(w)
        k = (x * root[:, None]) @ (x * root[:, None]).T
    else:
        k = (x * w[:, None]).T @ x
    lam = np.linalg.eigvalsh(k)
    lam = lam[lam > 1e-12]
    lam = lam / lam.sum()
    return float(math.exp(-(lam * np.log(lam)).sum()))


def _cells(table: np.ndarray, t_idx, s_idx) -> tuple[np.ndarray, np.ndarray]:
    """Rows and multiplicities of the usable images in a template × seed resample."""
    t_count = np.bincount(t_idx, minlength=table.shape[0])
    s_count = np.bincount(s_idx, minlength=table.shape[1])
    mult = np.outer(t_count, s_count)
    ok = np.isfinite(table).all(axis=-1) & (mult > 0)
    return table[ok], mult[ok].astype(np.float64)


def _group_rates(labels, weights: np.ndarray, t_count, s_count) -> np.ndarray:
    mult = np.outer(t_count, s_count).astype(np.float64)
    ok = (labels >= 0) & (mult > 0)
    if not ok.any():
        return np.full(weights.shape[1], np.nan)
    return (weights[labels[ok]] * mult[ok][:, None]).sum(0) / mult[ok].sum()


def _interval(values, level: float, point=None, bounds=(-np.inf, np.inf)) -> tuple[float | None, float | None]:
    """The resamples' central ``level`` range, moved so their median sits on ``point``.

    A resample repeats templates and seeds, and repeated images make a set look less diverse
    (a Vendi score falls with duplicates), so the plain percentile interval sits below the
    point estimate; the spread is what the resampling measures, the centre is the estimate's.
    """
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 10:
        return None, None
    a = (1 - level) / 2
    low, high = float(np.quantile(values, a)), float(np.quantile(values, 1 - a))
    if point is not None and np.isfinite(point):
        shift = float(point) - float(np.median(values))
        low, high = low + shift, high + shift
    return float(max(bounds[0], low)), float(min(bounds[1], high))


def _verdict(low, high, against: float = 0.0) -> str | None:
    if low is None or high is None:
        return None
    tol = 1e-9 * max(1.0, abs(against))  # an interval clipped at k holds a reference of k
    if high < against - tol:
        return "narrows"
    if low > against + tol:
        return "widens"
    return None


# The smallest designs on which the resampling intervals' verdicts hold their level
# (benchmarks/bench_diversity_coverage.py: share of "narrows"/"widens" verdicts when the term
# and the baseline draw from one distribution, 95 % intervals, 150-200 simulated runs each):
# Vendi 0.53 at 3 x 2, 0.41 at 4 x 4, 0.085 at 8 x 4, 0.047 at 5 x 10, 0.027 at 8 x 8 and
# 16 x 4, 0.010 at 10 x 10; effective number 0.37 at 3 x 2, 0.085 at 4 x 4, 0.010 at 8 x 4
# (its interval's coverage 0.45 / 0.76 / 0.95 there). Below these, intervals are shown and no
# verdict is said.
MIN_LEVELS = 4  # templates and seeds each
MIN_CELLS_VENDI = 48
MIN_CELLS_OPTIONS = 24


def verdict_note(n_t: int, n_s: int, cells: int, *, min_levels: int = MIN_LEVELS,
                 min_vendi: int = MIN_CELLS_VENDI, min_options: int = MIN_CELLS_OPTIONS) -> tuple[bool, bool, str | None]:
    """(Vendi verdicts allowed, effective-number verdicts allowed, why not) for a design of
    ``n_t`` templates × ``n_s`` seeds with ``cells`` usable template × seed cells."""
    levels_ok = n_t >= min_levels and n_s >= min_levels
    vendi_ok, options_ok = levels_ok and cells >= min_vendi, levels_ok and cells >= min_options
    if vendi_ok and options_ok:
        return True, True, None
    what = "any narrows/widens verdict" if not options_ok else "a narrows/widens verdict on the Vendi score"
    return vendi_ok, options_ok, (
        f"{n_t} templates x {n_s} seeds ({cells} cells): too few for {what} (the resampling intervals "
        f"hold their level from {min_levels} templates and {min_levels} seeds, {min_options} cells for "
        f"effective numbers and {min_vendi} for the Vendi score); the intervals are shown")


def _boot_p(diffs, point=None) -> float | None:
    """Two-sided bootstrap p of a difference: twice the smaller tail share at 0 (+1 rule), the
    resamples centred on ``point`` as the interval is (so p < alpha exactly when it excludes 0)."""
    d = np.asarray(diffs, np.float64)
    d = d[np.isfinite(d)]
    if len(d) < 10:
        return None
    if point is not None and np.isfinite(point):
        d = d + (float(point) - float(np.median(d)))
    below, above = np.sum(d <= 0), np.sum(d >= 0)
    return float(min(1.0, 2 * (min(below, above) + 1) / (len(d) + 1)))


def run_stats(emb, labels, weights, t_idx, s_idx) -> list[float]:
    """[Vendi, effective number of each group] of one set's (T, S, d) images in a template × seed
    resample (``t_idx`` / ``s_idx``: the drawn templates and seeds, repeats allowed)."""
    tc, sc = np.bincount(t_idx, minlength=emb.shape[0]), np.bincount(s_idx, minlength=emb.shape[1])
    rows, mult = _cells(emb, t_idx, s_idx)
    out = [vendi(rows, mult) if len(rows) else np.nan]
    return out + [entropy_exp(_group_rates(lab, w, tc, sc)) for lab, w in zip(labels, weights)]


def term_diversity(emb, labels, base_emb, base_labels, attrs, *, term: str, baseline: str, is_baseline: bool,
                   n_resamples: int, seed: int, level: float = 0.95, min_cells: tuple[int, int, int] | None = None
                   ) -> Diversity:
    """Vendi score and per-group effective numbers of one term, against the baseline's.

    ``min_cells``: (levels, Vendi cells, effective-number cells) below which no verdict is said
    (default :data:`MIN_LEVELS`, :data:`MIN_CELLS_VENDI`, :data:`MIN_CELLS_OPTIONS`)."""
    n_t, n_s = emb.shape[:2]
    limits = min_cells or (MIN_LEVELS, MIN_CELLS_VENDI, MIN_CELLS_OPTIONS)
    vendi_ok, options_ok, note = verdict_note(n_t, n_s, int(np.isfinite(emb).all(axis=-1).sum()),
                                              min_levels=limits[0], min_vendi=limits[1], min_options=limits[2])
    full_t, full_s = np.arange(n_t), np.arange(n_s)
    weights = [attrs.corrections[g].weights if g in attrs.corrections else np.eye(len(opts))
               for g, opts in attrs.groups]

    def stats_of(t_idx, s_idx):
        out = run_stats(emb, labels, weights, t_idx, s_idx)
        if not is_baseline:
            out += run_stats(base_emb, base_labels, weights, t_idx, s_idx)
        return np.array(out)

    point = stats_of(full_t, full_s)
    rng = np.random.default_rng(seed)
    boots = np.array([stats_of(rng.integers(0, n_t, n_t), rng.integers(0, n_s, n_s))
                      for _ in range(n_resamples)]) if n_resamples and n_t * n_s > 1 else np.zeros((0, len(point)))
    n_g = len(attrs.groups)

    def col(i):
        return boots[:, i] if len(boots) else np.array([])

    low, high = _interval(col(0), level, point[0], (1.0, np.inf))
    base_vendi, p, d_low, d_high = None, None, None, None
    if not is_baseline:
        base_vendi = _num(point[1 + n_g])
        diffs = col(0) - col(1 + n_g)
        d_low, d_high = _interval(diffs, level, point[0] - point[1 + n_g])
        p = _boot_p(diffs, point[0] - point[1 + n_g])
    groups = []
    for g, (group, _) in enumerate(attrs.groups):
        k = len(attrs.groups[g][1])
        g_low, g_high = _interval(col(1 + g), level, point[1 + g], (1.0, float(k)))
        ref = attrs.reference.get((term, group))
        ref_eff = _reference_effective(ref, attrs.groups[g][1])
        entry = dict(group=group, effective_number=_num(point[1 + g]), ci_low=g_low, ci_high=g_high,
                     baseline_effective_number=None, reference_effective_number=ref_eff,
                     versus_reference=_verdict(g_low, g_high, ref_eff) if ref_eff is not None and options_ok else None)
        if not is_baseline:
            gd_low, gd_high = _interval(col(1 + g) - col(2 + n_g + g), level, point[1 + g] - point[2 + n_g + g])
            entry.update(baseline_effective_number=_num(point[2 + n_g + g]), difference_ci_low=gd_low,
                         difference_ci_high=gd_high, versus_baseline=_verdict(gd_low, gd_high) if options_ok else None)
        groups.append(GroupDiversity(**entry))
    return Diversity(vendi=_num(point[0]), ci_low=low, ci_high=high, baseline_vendi=base_vendi, p_value=p,
                     groups=tuple(groups), difference_ci_low=d_low, difference_ci_high=d_high,
                     verdict=_verdict(d_low, d_high) if vendi_ok else None, n_resamples=len(boots),
                     verdict_note=note)


def _reference_effective(ref, options) -> float | None:
    """exp(entropy) of a reference's rates when they cover the group (sum to 1 within 0.01)."""
    if not ref:
        return None
    p = np.array([ref.get(o, 0.0) for o in options])
    return min(float(len(options)), entropy_exp(p)) if abs(p.sum() - 1) <= 0.01 else None


def _num(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None
