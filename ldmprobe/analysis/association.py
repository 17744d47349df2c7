"""Embedding association tests: WEAT (Caliskan et al. 2017) and iEAT (Steed & Caliskan 2021).

s(w,A,B) = mean_a cos(w,a) − mean_b cos(w,b); S = Σ_X s − Σ_Y s;
d = (mean_X s − mean_Y s) / sd_{X∪Y} s; one-sided p over re-partitions of X∪Y.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ldmprobe.analysis.stats import _CHUNK, _TIE_RTOL, _Result, _check_resamples, _unit
from ldmprobe.records import Count, schema

_P = schema(type="number", exclusiveMinimum=0, maximum=1)  # a permutation p is never 0
_SIZE = schema(minimum=1)


@dataclass(frozen=True)
class WeatResult(_Result):
    """WEAT effect size d, test statistic S and one-sided permutation p."""

    effect_size: float
    statistic: float
    p_value: float = field(metadata=_P)
    exact: bool
    n_partitions: int = field(metadata=_SIZE)
    n_resamples: int = field(metadata=_SIZE)
    seed: Count
    ddof: Literal[0, 1]
    min_p: float = field(metadata=_P)
    n_x: int = field(metadata=_SIZE)
    n_y: int = field(metadata=_SIZE)
    n_a: int = field(metadata=_SIZE)
    n_b: int = field(metadata=_SIZE)
    unit: Literal["prompt", "image", "word", "item"] = field(default="word", metadata=schema(
        "what the test re-partitions: prompts as blocks (a prompt's images, or a file's rows of one prompt "
        "column value, stay together), single images (opt-in, anti-conservative), words, or items (each "
        "row of a file or image of a folder alone)"))
    generalises_to: str = "words like these"
    n_blocks_x: Count | None = None
    n_blocks_y: Count | None = None
    n_dropped: Count = field(default=0, metadata=schema("rows of X, Y, A, B left out as non-finite or zero-norm"))


def _weat_s(W, A, B) -> np.ndarray:
    return (W @ A.T).mean(1) - (W @ B.T).mean(1)  # s(w,A,B) = mean_a cos(w,a) − mean_b cos(w,b)


def weat(
    X, Y, A, B, *, ddof: int = 1, permutations: int = 100_000, seed: int = 0
) -> WeatResult:
    """WEAT (Caliskan et al. 2017) with an exact or sampled one-sided permutation p.

    S = Σ_X s − Σ_Y s; d = (mean_X s − mean_Y s) / std_{X∪Y}(s, ddof).
    p = share of re-partitions (X_i, Y_i) of X∪Y with |X_i| = |X| and S_i >= S (ties count).
    Exact over all comb(n, |X|) partitions when that is <= ``permutations``
    (n_resamples = n_partitions, min_p = 1/n_partitions); else ``permutations`` random
    permutations, p = (k+1)/(B+1). Since S_i = 2 Σ_{X_i} s − Σ s, partitions are compared
    by Σ_{X_i} s.
    """
    X, Y, A, B = (_unit(np.atleast_2d(v)) for v in (X, Y, A, B))
    for name, arr in (("X", X), ("Y", Y), ("A", A), ("B", B)):
        if arr.size == 0:
            raise ValueError(f"WEAT set {name} is empty")
    n_x, n_y = len(X), len(Y)
    s = _weat_s(np.vstack([X, Y]), A, B)
    s_x, s_y = s[:n_x], s[n_x:]
    statistic = float(s_x.sum() - s_y.sum())  # S = Σ_X s − Σ_Y s
    sd = float(np.std(s, ddof=ddof)) if len(s) > ddof else math.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        effect = float((s_x.mean() - s_y.mean()) / np.float64(sd))  # d = Δmean / sd(s)

    n = n_x + n_y
    n_partitions = math.comb(n, n_x)
    permutations = _check_resamples(permutations, "permutations")
    threshold = s_x.sum() - _TIE_RTOL * max(float(np.abs(s).sum()), 1e-300)
    exact = n_partitions <= permutations
    k = 0
    if exact:
        combos = itertools.combinations(range(n), n_x)
        for start in range(0, n_partitions, _CHUNK):
            rows = min(_CHUNK, n_partitions - start)
            flat = itertools.chain.from_iterable(itertools.islice(combos, rows))
            idx = np.fromiter(flat, dtype=np.intp, count=rows * n_x).reshape(rows, n_x)
            k += int(np.count_nonzero(s[idx].sum(1) >= threshold))  # Σ_{X_i} s >= Σ_X s
        total = n_partitions
        p_value, min_p = k / total, 1.0 / total
    else:
        rng = np.random.default_rng(seed)
        base = np.arange(n)
        for start in range(0, permutations, _CHUNK):
            rows = min(_CHUNK, permutations - start)
            perm = rng.permuted(np.broadcast_to(base, (rows, n)), axis=1)
            k += int(np.count_nonzero(s[perm[:, :n_x]].sum(1) >= threshold))
        total = permutations
        p_value, min_p = (k + 1) / (total + 1), 1.0 / (total + 1)
    return WeatResult(
        effect, statistic, p_value, exact, n_partitions, total, int(seed), int(ddof), min_p,
        n_x, n_y, len(A), len(B),
    )


_SCOPE = {"word": "words like these", "prompt": "prompts like these (and their seeds)",
          "image": "these prompts' images (treats images of one prompt as independent)"}


def association_test(
    X, Y, A, B, *, x_blocks=None, y_blocks=None, unit: str = "word", ddof: int = 1,
    permutations: int = 100_000, seed: int = 0,
) -> WeatResult:
    """WEAT with input hygiene and the right unit of permutation.

    Non-finite and zero-norm rows are dropped first (counted in ``n_dropped``; an empty set
    is an error). ``unit="word"`` or ``"image"``: every row is re-partitioned alone
    (:func:`weat`). ``unit="prompt"``: X ∪ Y is re-partitioned by prompt (``x_blocks`` /
    ``y_blocks`` label each row with its prompt), so a prompt's images stay together
    (:func:`~ldmprobe.analysis.inference.block_weat`); exact when there are at most
    ``permutations`` re-partitions. The effect size and S are those of :func:`weat`.
    """
    from ldmprobe.analysis.inference import block_weat, clean_rows

    if unit not in _SCOPE:
        raise ValueError(f"unit must be 'word', 'prompt' or 'image'; got {unit!r}")
    cleaned = [clean_rows(v, name=f"WEAT set {n}") for v, n in zip((X, Y, A, B), "XYAB")]
    n_dropped = sum(c.n_dropped for c in cleaned)
    base = weat(*(c.rows for c in cleaned), ddof=ddof, permutations=permutations, seed=seed)
    blocks = (len(cleaned[0].rows), len(cleaned[1].rows))
    if unit == "prompt":
        test = block_weat(X, Y, A, B, x_blocks=x_blocks, y_blocks=y_blocks, unit="prompt", ddof=ddof,
                          n_resamples=permutations, seed=seed, max_enumerate=permutations)
        base = dataclasses.replace(base, p_value=test.p_value, exact=test.exact, n_partitions=test.n_partitions,
                                   n_resamples=test.n_resamples, min_p=test.min_p)
        blocks = (test.n_blocks_x, test.n_blocks_y)
    return dataclasses.replace(base, unit=unit, generalises_to=_SCOPE[unit], n_blocks_x=blocks[0],
                               n_blocks_y=blocks[1], n_dropped=n_dropped)
