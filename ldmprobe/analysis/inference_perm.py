"""Permutation tests with the right exchangeable unit: block WEAT and exact Spearman."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .inference_core import (
    CHUNK, TIE_RTOL, Result, check_resamples, choose_exact, clean_rows, perm_p,
    require_finite,
)


@dataclass(frozen=True)
class BlockWeat(Result):
    """WEAT / iEAT with target sets re-partitioned by block (prompt), one-sided p."""

    effect_size: float  # d = (mean_X s − mean_Y s) / sd_{X∪Y}(s, ddof)
    statistic: float  # mean_X s − mean_Y s (equals S / n_x·... for equal blocks)
    p_value: float
    min_p: float
    exact: bool
    n_resamples: int
    n_partitions: int  # distinct re-partitions of the blocks
    unit: str  # "prompt" (blocks), "image" or "word" (single rows)
    generalises_to: str
    ddof: int
    n_x: int
    n_y: int
    n_blocks_x: int
    n_blocks_y: int
    n_dropped: int  # rows of X, Y, A, B dropped as non-finite or zero-norm


def _blocks(labels, kept: np.ndarray, prefix: str) -> list:
    """Block key of each kept row: (prefix, label); no labels: every row its own block."""
    if labels is None:
        return [(prefix, int(i)) for i in np.flatnonzero(kept)]
    labels = list(labels)
    if len(labels) != len(kept):
        raise ValueError(f"{prefix}_blocks must have one label per row ({len(kept)}); "
                         f"got {len(labels)}")
    return [(prefix, labels[i]) for i in np.flatnonzero(kept)]


def _partition_stats(block_sum, block_n, chosen) -> np.ndarray:
    """mean over rows in chosen blocks − mean over the other blocks' rows, per row of chosen."""
    sx, nx = block_sum[chosen].sum(1), block_n[chosen].sum(1)
    return sx / nx - (block_sum.sum() - sx) / (block_n.sum() - nx)


def _count_block_partitions(s, bx, by, statistic, n_resamples, seed, max_enumerate):
    """(k, total, exact, n_blocks_x, n_blocks): re-partitions with a statistic >= observed."""
    keys = list(dict.fromkeys(bx + by))  # blocks in order of first appearance: X's first
    index = {k: i for i, k in enumerate(keys)}
    block_of = np.array([index[k] for k in bx + by])
    block_sum = np.bincount(block_of, weights=s, minlength=len(keys))
    block_n = np.bincount(block_of, minlength=len(keys)).astype(np.float64)
    n_bx, n_blocks = len(dict.fromkeys(bx)), len(keys)
    n_partitions = math.comb(n_blocks, n_bx)
    threshold = statistic - TIE_RTOL * max(float(np.abs(s).mean()), 1e-300)
    exact = choose_exact(n_partitions, max_enumerate=max_enumerate)
    k = 0
    if exact:  # identity (the first combination) included
        combos = itertools.combinations(range(n_blocks), n_bx)
        for start in range(0, n_partitions, CHUNK):
            rows = min(CHUNK, n_partitions - start)
            flat = itertools.chain.from_iterable(itertools.islice(combos, rows))
            chosen = np.fromiter(flat, dtype=np.intp, count=rows * n_bx).reshape(rows, n_bx)
            k += int(np.count_nonzero(_partition_stats(block_sum, block_n, chosen) >= threshold))
        return k, n_partitions, True, n_bx, n_blocks
    rng = np.random.default_rng(seed)
    base = np.arange(n_blocks)
    for start in range(0, n_resamples, CHUNK):
        rows = min(CHUNK, n_resamples - start)
        perm = rng.permuted(np.broadcast_to(base, (rows, n_blocks)), axis=1)
        stats = _partition_stats(block_sum, block_n, perm[:, :n_bx])
        k += int(np.count_nonzero(stats >= threshold))
    return k, n_resamples, False, n_bx, n_blocks


def block_weat(
    X, Y, A, B, *, x_blocks=None, y_blocks=None, unit: str | None = None, ddof: int = 1,
    n_resamples: int = 9999, seed=None, max_enumerate: int | None = None,
) -> BlockWeat:
    """Association test where X and Y are made of prompts × seeds.

    s(w) = mean_a cos(w, a) − mean_b cos(w, b). The test statistic is the difference of the
    mean s over X and over Y; the null re-partitions the *blocks* (``x_blocks``/``y_blocks``:
    one label per row, e.g. the prompt) of X ∪ Y into |blocks of X| and |blocks of Y|, so a
    prompt's images stay together. Exact over all comb(P, P_x) re-partitions when
    ``choose_exact`` allows, else ``n_resamples`` random ones. Without block labels every row
    is its own block (``unit`` "image" for image sets — anti-conservative when images of one
    prompt cluster — or "word" for text sets). Rows that are non-finite or zero-norm are
    dropped (counted in ``n_dropped``).
    """
    n_resamples = check_resamples(n_resamples)
    cleaned = [clean_rows(v, name=f"set {nm}") for v, nm in zip((X, Y, A, B), "XYAB")]
    bx = _blocks(x_blocks, cleaned[0].kept, "x")
    by = _blocks(y_blocks, cleaned[1].kept, "y")
    if unit is None:
        unit = "prompt" if x_blocks is not None or y_blocks is not None else "image"
    if unit not in ("prompt", "image", "word"):
        raise ValueError(f"unit must be 'prompt', 'image' or 'word'; got {unit!r}")
    Xu, Yu, Au, Bu = (c.rows for c in cleaned)
    W = np.vstack([Xu, Yu])
    s = (W @ Au.T).mean(1) - (W @ Bu.T).mean(1)
    n_x = len(Xu)
    statistic = require_finite(s[:n_x].mean() - s[n_x:].mean(), "WEAT statistic")
    sd = float(np.std(s, ddof=ddof)) if len(s) > ddof else math.nan
    effect = statistic / sd if sd > 0 else math.nan

    k, total, exact, n_bx, n_blocks = _count_block_partitions(
        s, bx, by, statistic, n_resamples, seed, max_enumerate)
    p, min_p = perm_p(k, total, exact)
    scope = {"prompt": "prompts like these (and their seeds)",
             "image": "these prompts' images (treats images of one prompt as independent)",
             "word": "words like these"}[unit]
    n_dropped = sum(c.n_dropped for c in cleaned)
    return BlockWeat(effect, statistic, p, min_p, exact, total,
                     math.comb(n_blocks, n_bx), unit, scope,
                     int(ddof), n_x, len(Yu), n_bx, n_blocks - n_bx, n_dropped)


# ----------------------------------------------------------------------------- Spearman


@dataclass(frozen=True)
class SpearmanTest(Result):
    """Spearman's ρ with an exact (all n! pairings) or sampled permutation p."""

    statistic: float
    p_value: float
    min_p: float
    exact: bool
    n_resamples: int
    alternative: str
    n: int
    n_dropped: int  # pairs with a non-finite value
    generalises_to: str


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (``scipy.stats.rankdata``'s "average",
    by its algorithm, without importing scipy.stats)."""
    order = np.argsort(x, kind="mergesort")
    inverse = np.empty(len(x), dtype=np.intp)
    inverse[order] = np.arange(len(x))
    sorted_x = x[order]
    first = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    dense = first.cumsum()[inverse]
    count = np.r_[np.nonzero(first)[0], len(first)]
    return 0.5 * (count[dense] + count[dense - 1] + 1)


def _pearson_rows(a: np.ndarray, b_rows: np.ndarray) -> np.ndarray:
    a = a - a.mean()
    b = b_rows - b_rows.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (b @ a) / (np.linalg.norm(a) * np.linalg.norm(b, axis=1))


def _exceed(values: np.ndarray, observed: float, alternative: str, tol: float) -> int:
    if alternative == "two-sided":
        return int(np.count_nonzero(np.abs(values) >= abs(observed) - tol))
    if alternative == "greater":
        return int(np.count_nonzero(values >= observed - tol))
    return int(np.count_nonzero(values <= observed + tol))


def spearman_test(
    x, y, *, alternative: str = "two-sided", n_resamples: int = 9999, seed=None,
    max_enumerate: int | None = None,
) -> SpearmanTest:
    """Spearman's ρ (average ranks for ties, as scipy.stats.spearmanr) with a permutation p.

    The null pairs x with every permutation of y: exact over all n! pairings when
    ``choose_exact(n!)`` allows (n <= 8 by default), else ``n_resamples`` random ones.
    ``alternative``: "two-sided" (|ρ*| >= |ρ|), "greater" or "less"; ties count as
    exceedances, so 3 items with ρ = 1 give p = 2/6 = 1/3 two-sided (1/6 "greater").
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be two-sided, greater or less; got {alternative!r}")
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    if n < 3:
        raise ValueError(f"Spearman needs at least 3 finite pairs; got {n}")
    n_resamples = check_resamples(n_resamples)
    rx, ry = average_ranks(x), average_ranks(y)
    rho = require_finite(_pearson_rows(rx, ry[None, :])[0], "Spearman's rho (constant input?)")
    tol = TIE_RTOL * 1.0
    exact = choose_exact(math.factorial(n), max_enumerate=max_enumerate)
    k = 0
    if exact:
        perms = itertools.permutations(range(n))
        total = math.factorial(n)
        for start in range(0, total, CHUNK):
            rows = min(CHUNK, total - start)
            flat = itertools.chain.from_iterable(itertools.islice(perms, rows))
            idx = np.fromiter(flat, dtype=np.intp, count=rows * n).reshape(rows, n)
            k += _exceed(_pearson_rows(rx, ry[idx]), rho, alternative, tol)
    else:
        rng = np.random.default_rng(seed)
        total = n_resamples
        for start in range(0, total, CHUNK):
            rows = min(CHUNK, total - start)
            idx = rng.permuted(np.broadcast_to(np.arange(n), (rows, n)), axis=1)
            k += _exceed(_pearson_rows(rx, ry[idx]), rho, alternative, tol)
    p, min_p = perm_p(k, total, exact)
    if exact and alternative == "two-sided":
        min_p = 2.0 / total  # a permutation and its reverse give ±ρ
    return SpearmanTest(rho, p, min_p, exact, total, alternative, n, int((~ok).sum()),
                        "these terms (the ranking of these items)")
