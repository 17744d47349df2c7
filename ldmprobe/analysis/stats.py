"""Statistics of drift, probe shift and association (pure numpy/scipy).

All inputs are plain numpy arrays. Embedding rows are L2-normalised defensively where a
function needs unit vectors. Randomised tests draw from ``numpy.random.default_rng(seed)``
and report ``seed``, ``n_resamples`` (the number of null draws or patterns the p-value is
computed over), ``exact`` and ``min_p`` (the smallest p-value the test can return).

Permutation p-values count ties as exceedances with a relative float tolerance of
``1e-12 * scale`` (scale: a natural magnitude of the statistic). Sampled p-values are
``(k + 1) / (B + 1)``; exact ones are ``k / N`` over all N patterns, identity included, so
no p-value is ever 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ldmprobe.records import Record, jsonable  # noqa: F401  (jsonable: re-exported)
from ldmprobe.analysis.inference_core import CHUNK, TIE_RTOL, sign_chunks
from ldmprobe.analysis.inference_core import check_resamples as _check_resamples

__all__ = [
    "DirectionNeighbours",
    "DriftTest",
    "ProbeShift",
    "baseline_spread",
    "benjamini_hochberg",
    "centroid_drift",
    "direction_neighbours",
    "drift_permutation_test",
    "paired_drift",
    "probe_shift",
    "sequence_drift",
    "text_drift",
    "text_shift",
]

_TIE_RTOL = TIE_RTOL  # float ties: values within 1e-12 * scale of the observed count as ties
_CHUNK = CHUNK  # rows of sign / partition matrices processed at once


# ----------------------------------------------------------------------------- results


_Result = Record  # every statistics result is a typed, JSON-convertible record


@dataclass(frozen=True)
class DriftTest(_Result):
    """Paired label-swap permutation test of image drift (see drift_permutation_test)."""

    statistic: float
    p_value: float
    exact: bool
    n_resamples: int
    seed: int
    min_p: float
    method: str = "centroid"


@dataclass(frozen=True)
class ProbeShift(_Result):
    """Shift of image–probe cosine from baseline to term, with CI and sign-flip p."""

    probe_index: int
    shift: float
    ci_low: float
    ci_high: float
    p_value: float
    exact: bool
    n_resamples: int
    n_boot: int
    seed: int
    min_p: float


@dataclass(frozen=True)
class DirectionNeighbours(_Result):
    """Words most aligned (toward) and anti-aligned (away) with a drift vector."""

    toward: tuple[tuple[str, float], ...]
    away: tuple[tuple[str, float], ...]


# ----------------------------------------------------------------------------- helpers


def _unit(x) -> np.ndarray:
    """Rows scaled to unit L2 norm robustly (÷ max |x| first: 1e155 or 1e-170 rows give the
    unit row); zero rows stay zero, rows with a non-finite value are NaN."""
    from ldmprobe.analysis.inference_core import unit_rows

    return unit_rows(x)[0]


def _pairs(term_emb, base_emb) -> tuple[np.ndarray, np.ndarray]:
    m, b = _unit(np.atleast_2d(term_emb)), _unit(np.atleast_2d(base_emb))
    if m.shape != b.shape or m.ndim != 2 or len(m) == 0:
        raise ValueError(
            f"term and base embeddings must be non-empty (n, d) arrays of the same shape; "
            f"got {m.shape} and {b.shape}"
        )
    return m, b


def _group_index(groups, n: int) -> list[np.ndarray]:
    """Row indices of each group, in sorted label order; None means a single group."""
    if groups is None:
        return [np.arange(n)]
    labels = np.asarray(groups)
    if labels.shape != (n,):
        raise ValueError(f"groups must have one label per row ({n}); got shape {labels.shape}")
    _, inverse = np.unique(labels, return_inverse=True)
    return [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else math.nan


def _sign_chunks(n: int, n_resamples: int, rng, exact: bool):
    """±1 sign matrices: all 2**n patterns if exact, else n_resamples random rows
    (inference_core.sign_chunks, the one sign-flip engine)."""
    return sign_chunks(n, exact=exact, n_resamples=n_resamples, rng=rng, dtype=np.int8)


# ----------------------------------------------------------------------------- drift


def centroid_drift(term_emb, base_emb) -> float:
    """1 − cos between the mean term embedding and the mean baseline embedding."""
    m, b = _unit(np.atleast_2d(term_emb)), _unit(np.atleast_2d(base_emb))
    return 1.0 - _cos(m.mean(0), b.mean(0))  # 1 − cos(mean_i m_i, mean_j b_j)


def paired_drift(term_emb, base_emb) -> float:
    """Mean over (template, seed) pairs of 1 − cos(term_i, base_i)."""
    m, b = _pairs(term_emb, base_emb)
    return float(np.mean(1.0 - np.einsum("ij,ij->i", m, b)))  # mean_i (1 − m_i·b_i)


def baseline_spread(base_emb, groups) -> float:
    """Baseline seed-to-seed spread: mean of 1 − cos over distinct row pairs in a group.

    Every within-group pair counts once (pooled over groups). NaN if no group has 2 rows.
    """
    b = _unit(np.atleast_2d(base_emb))
    total, count = 0.0, 0
    for idx in _group_index(groups, len(b)):
        n = len(idx)
        if n < 2:
            continue
        rows = b[idx]
        s = rows.sum(0)
        pairs = n * (n - 1) // 2
        cross = (s @ s - np.einsum("ij,ij->", rows, rows)) / 2  # Σ_{i<j} b_i·b_j without the n × n Gram
        total += float(pairs - cross)  # Σ_{i<j in g} (1 − b_i·b_j)
        count += pairs
    return total / count if count else math.nan


def _drift_stats(signs, parts) -> np.ndarray:
    """Pair-weighted mean over groups of centroid drift, for each row of ±1 signs.

    With mid_i = (m_i + b_i)/2 and h_i = (m_i − b_i)/2, a swap pattern s gives term sum
    P + Σ s_i h_i and base sum P − Σ s_i h_i (P = Σ mid_i), so only the per-group Gram
    matrix of h, q = h·P and |P|² are needed.
    """
    out = np.zeros(len(signs))
    for idx, gram, q, pp, weight in parts:
        s = signs[:, idx]
        quad = np.einsum("ij,ij->i", s @ gram, s)  # |Σ s_i h_i|² = sᵀ G s
        lin = s @ q  # P·Σ s_i h_i
        cross = pp - quad  # <P + sH, P − sH> = |P|² − |sH|²
        norm2 = (pp + quad + 2 * lin) * (pp + quad - 2 * lin)  # |P + sH|² |P − sH|²
        with np.errstate(invalid="ignore", divide="ignore"):
            out += weight * (1.0 - cross / np.sqrt(norm2))  # w_g (1 − cos(c̄_m, c̄_b))
    return out


def drift_permutation_test(
    term_emb,
    base_emb,
    groups,
    *,
    n_resamples: int = 9999,
    seed: int = 0,
    statistic: str = "centroid",
) -> DriftTest:
    """Paired permutation test of image drift: swap term/base labels within each pair.

    ``statistic="centroid"`` (default): the centroid drift computed within each template
    group and averaged over groups weighted by their number of pairs (templates differ in
    content, so pooling them would mix content spread into the centroids).
    ``statistic="pooled"``: the centroid drift of all pairs pooled. Paired drift cannot be
    used: it is invariant under swaps. Exact when 2**n_pairs <= n_resamples.

    Swapping every pair of a group leaves that group's drift unchanged, so with
    ``"centroid"`` the exact min_p is 2**(n_groups − n_pairs) (2**(1 − n_pairs) pooled).
    """
    m, b = _pairs(term_emb, base_emb)
    n = len(m)
    n_resamples = _check_resamples(n_resamples)
    if statistic == "centroid":
        index = _group_index(groups, n)
    elif statistic == "pooled":
        index = _group_index(None, n)
    else:
        raise ValueError(
            f"statistic must be 'centroid' or 'pooled'; got {statistic!r} "
            "(paired drift is invariant under label swaps, so it cannot be tested this way)"
        )
    parts = []
    for idx in index:
        h = (m[idx] - b[idx]) / 2
        p = ((m[idx] + b[idx]) / 2).sum(0)
        parts.append((idx, h @ h.T, h @ p, float(p @ p), len(idx) / n))
    observed = float(_drift_stats(np.ones((1, n)), parts)[0])
    tol = _TIE_RTOL * max(1.0, abs(observed))
    exact = 2**n <= n_resamples
    rng = np.random.default_rng(seed)
    k = sum(
        int(np.count_nonzero(_drift_stats(s, parts) >= observed - tol))
        for s in _sign_chunks(n, n_resamples, rng, exact)
    )
    if exact:
        total = 2**n
        p_value, min_p = k / total, 2.0 ** (len(index) - n)
    else:
        total = n_resamples
        p_value, min_p = (k + 1) / (total + 1), 1.0 / (total + 1)
    return DriftTest(observed, p_value, exact, total, int(seed), min_p, statistic)


# ----------------------------------------------------------------------------- probes


def _hier_bootstrap(d: np.ndarray, index: list[np.ndarray], n_boot: int, rng) -> np.ndarray:
    """Bootstrap means of rows of d: resample groups, then rows within each drawn group.

    Drawing G groups with replacement gives counts C_g ~ Multinomial(G, 1/G); drawing n_g
    rows with replacement in each of the C_g copies of group g gives row counts
    ~ Multinomial(C_g n_g, 1/n_g). Each bootstrap mean weights rows by those counts.
    """
    n_groups = len(index)
    weights = np.zeros((n_boot, len(d)))
    c = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot)
    for g, idx in enumerate(index):
        weights[:, idx] = rng.multinomial(c[:, g] * len(idx), np.full(len(idx), 1.0 / len(idx)))
    return (weights @ d) / weights.sum(1, keepdims=True)  # Σ_i w_i d_i / Σ_i w_i


def probe_shift(
    term_emb,
    base_emb,
    probe_emb,
    groups,
    *,
    n_resamples: int = 9999,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> list[ProbeShift]:
    """Per probe p: shift = mean_i [cos(m_i, τ_p) − cos(b_i, τ_p)] over pairs i.

    CI: hierarchical percentile bootstrap (templates, then pairs within templates).
    p: two-sided paired sign-flip test, |mean(s·d)| >= |mean(d)|; exact (all 2**n sign
    patterns, min_p = 2/2**n since s and −s tie) when 2**n <= n_resamples.
    The sign flips and the bootstrap use independent streams spawned from ``seed``.
    """
    m, b = _pairs(term_emb, base_emb)
    probes = _unit(np.atleast_2d(probe_emb))
    if probes.shape[1] != m.shape[1]:
        raise ValueError(f"probe dim {probes.shape[1]} != embedding dim {m.shape[1]}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci}")
    n = len(m)
    n_resamples, n_boot = _check_resamples(n_resamples), _check_resamples(n_boot, "n_boot")
    index = _group_index(groups, n)
    d = (m - b) @ probes.T  # d_ip = cos(m_i, τ_p) − cos(b_i, τ_p)   (n, P)
    observed = d.mean(0)  # Δ_p = mean_i d_ip

    perm_rng, boot_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    exact = 2**n <= n_resamples
    threshold = np.abs(observed) - _TIE_RTOL * np.maximum(np.abs(d).mean(0), 1e-300)
    k = np.zeros(len(probes), dtype=np.int64)
    for s in _sign_chunks(n, n_resamples, perm_rng, exact):
        k += np.count_nonzero(np.abs(s @ d / n) >= threshold, axis=0)  # |mean_i s_i d_ip|
    if exact:
        total = 2**n
        p_values, min_p = k / total, 2.0 / total
    else:
        total = n_resamples
        p_values, min_p = (k + 1) / (total + 1), 1.0 / (total + 1)

    boot = _hier_bootstrap(d, index, n_boot, boot_rng)
    low, high = np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2], axis=0)  # percentile CI
    return [
        ProbeShift(
            j, float(observed[j]), float(low[j]), float(high[j]), float(p_values[j]),
            exact, total, n_boot, int(seed), min_p,
        )
        for j in range(len(probes))
    ]


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values in input order; NaNs stay NaN, not counted in m.

    adjusted p_(i) = min_{j>=i} p_(j) m / j, clipped to [0, 1] (as scipy.stats'
    ``false_discovery_control(method="bh")``, without importing scipy.stats).
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    kept = p[ok]
    if len(kept) <= 1:
        out[ok] = kept
        return out
    if not ((kept >= 0) & (kept <= 1)).all():
        raise ValueError("p-values must lie between 0 and 1")
    order = np.argsort(kept, kind="stable")
    m = len(kept)
    adjusted = kept[order] * (m / np.arange(1, m + 1, dtype=np.float64))
    np.minimum.accumulate(adjusted[::-1], out=adjusted[::-1])
    ranked = np.empty(m)
    ranked[order] = adjusted
    out[ok] = np.clip(ranked, 0.0, 1.0)
    return out


# ----------------------------------------------------------------------------- text


def text_shift(prompt_m_emb, prompt_b_emb, probe_emb) -> np.ndarray:
    """Per probe: mean over templates of cos(τ(prompt_m), τ_p) − cos(τ(prompt_b), τ_p)."""
    m, b = _pairs(prompt_m_emb, prompt_b_emb)
    probes = _unit(np.atleast_2d(probe_emb))
    return ((m - b) @ probes.T).mean(0)  # mean_t (τ_mt − τ_bt)·τ_p


def text_drift(prompt_m_emb, prompt_b_emb) -> float:
    """Mean over templates of 1 − cos(τ(prompt_m), τ(prompt_b))."""
    return paired_drift(prompt_m_emb, prompt_b_emb)


def sequence_drift(cond_m, cond_b, *, how: str = "token") -> float:
    """Drift of the generator's conditioning sequences, shape (n_templates, tokens, d).

    ``how="token"`` (default): mean over templates of 1 − (mean over token positions of
    cos). Every position counts equally; flattening instead weights positions by their
    norm, and in SD's CLIP text encoder the start token has a much larger norm than the
    rest while being identical for every prompt (causal attention), which would swamp the
    drift. ``how="flat"``: mean over templates of 1 − cos of the flattened sequences.
    """
    m, b = np.asarray(cond_m, dtype=np.float64), np.asarray(cond_b, dtype=np.float64)
    if m.shape != b.shape or m.ndim != 3:
        raise ValueError(
            f"conditioning must be two (n, tokens, d) arrays of one shape; got {m.shape}, {b.shape}"
        )
    if how == "token":
        cos = np.einsum("ntd,ntd->nt", _unit(m), _unit(b)).mean(1)  # mean_tok cos(m_tok, b_tok)
    elif how == "flat":
        flat_m, flat_b = _unit(m.reshape(len(m), -1)), _unit(b.reshape(len(b), -1))
        cos = np.einsum("nk,nk->n", flat_m, flat_b)  # cos(vec(m), vec(b))
    else:
        raise ValueError(f"how must be 'token' or 'flat'; got {how!r}")
    return float(np.mean(1.0 - cos))  # mean over templates of 1 − cos


# ----------------------------------------------------------------------------- neighbours


def direction_neighbours(
    term_centroid, base_centroid, word_emb, words: Sequence[str], k: int = 10
) -> DirectionNeighbours:
    """Rank words by cos(c̄(m) − c̄(b), w̃), w̃ = unit(unit(w) − mean over vocabulary).

    toward: the k highest (descending); away: the k lowest (ascending). Empty lists when
    the drift vector is zero (no direction).
    """
    w = _unit(np.atleast_2d(word_emb))
    if len(w) != len(words):
        raise ValueError(f"{len(w)} word embeddings but {len(words)} words")
    v = np.asarray(term_centroid, dtype=np.float64) - np.asarray(base_centroid, dtype=np.float64)
    norm = np.linalg.norm(v)
    if norm == 0 or len(w) == 0:
        return DirectionNeighbours((), ())
    centred = _unit(w - w.mean(0))  # w̃ = unit(w − mean_vocab w)
    score = centred @ (v / norm)  # cos(v, w̃)
    order = np.argsort(-score, kind="stable")
    k = max(0, min(int(k), len(w)))
    toward = tuple((str(words[i]), float(score[i])) for i in order[:k])
    away = tuple((str(words[i]), float(score[i])) for i in order[::-1][:k])
    return DirectionNeighbours(toward, away)
