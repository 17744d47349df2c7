"""Shared pieces of ldmprobe.analysis.inference: results, input hygiene, honest precision.

Pure numpy; imports only ldmprobe.errors and ldmprobe.records (the one result base and
``jsonable``). Conventions (as in stats.py):

- Randomised tests take keyword-only ``n_resamples`` and ``seed`` (anything
  ``numpy.random.default_rng`` accepts: None, an int, a SeedSequence or a Generator).
- Permutation p-values count ties as exceedances with a relative float tolerance of
  ``1e-12 * scale``. Exact p-values are ``k / N`` over all N distinct patterns, identity
  included; sampled ones are ``(k + 1) / (B + 1)``. No p-value is ever 0.
- Every p-value result carries ``p_value``, ``min_p`` (the smallest p the test can return),
  ``exact`` (True: enumerated, no Monte Carlo error), ``n_resamples`` (patterns or draws
  the p is computed over; 0 for an analytic p) and ``generalises_to``.
- No function returns a p-value for a NaN statistic: non-finite input is removed with a
  count first (``clean_rows``/``clean_pairs``) or is an error.
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass

import numpy as np

from ldmprobe.errors import BadInputError
from ldmprobe.records import Record, jsonable  # noqa: F401  (jsonable: the one JSON converter)

TIE_RTOL = 1e-12  # values within 1e-12 * scale of the observed statistic count as ties
CHUNK = 4096  # rows of sign / permutation matrices processed at once
MAX_ENUMERATE = 2**17  # enumerate all distinct patterns when there are at most this many


Result = Record  # the one result base: typed, frozen, JSON-safe ``to_dict`` (ldmprobe.records)


# ----------------------------------------------------------------------------- hygiene


@dataclass(frozen=True)
class CleanRows(Result):
    """Rows kept after dropping non-finite and zero-norm ones (``rows`` are unit-normalised)."""

    rows: np.ndarray
    kept: np.ndarray  # boolean mask over the input rows
    n_nonfinite: int
    n_zero: int

    @property
    def n_dropped(self) -> int:
        return self.n_nonfinite + self.n_zero


class BadEmbeddingError(BadInputError, ValueError):
    """Embeddings that make no sense for the analysis (e.g. an all-zero probe); exit 2."""


def unit_rows(x) -> tuple[np.ndarray, np.ndarray]:
    """(rows scaled to unit L2 norm, mask of rows that could be) for a (..., d) array.

    Each row is divided by its largest |value| before its norm is taken, so rows scaled by
    1e155 (whose squares overflow) or 1e-170 (whose squares underflow) give the same unit
    row as the unscaled one. Rows with a non-finite value come back as NaN, all-zero rows as
    zero; both are False in the mask.
    """
    x = np.asarray(x)
    if x.ndim > 1 and len(x) > CHUNK:  # by blocks of rows: the same rows, a block's temporaries at a time
        out, ok = np.empty(x.shape), np.empty(x.shape[:-1], bool)
        for start in range(0, len(x), CHUNK):
            out[start: start + CHUNK], ok[start: start + CHUNK] = unit_rows(x[start: start + CHUNK])
        return out, ok
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x).all(axis=-1)
    peak = np.max(np.abs(np.where(np.isfinite(x), x, 0.0)), axis=-1, initial=0.0)
    ok = finite & (peak > 0)
    scaled = np.where(ok[..., None], x, 0.0) / np.where(ok, peak, 1.0)[..., None]
    norm = np.linalg.norm(scaled, axis=-1, keepdims=True)
    rows = scaled / np.where(norm > 0, norm, 1.0)
    return np.where(finite[..., None], rows, np.nan), ok


def _bad_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nonfinite = ~np.isfinite(x).all(axis=1)
    ok = ~nonfinite & (x != 0).any(axis=1)  # unit_rows' mask (finite, not all zero) without its rows
    return nonfinite, ~nonfinite & ~ok


def clean_rows(x, *, name: str = "embeddings", min_rows: int = 1) -> CleanRows:
    """Drop non-finite and zero-norm rows of a 2-d array, normalise the rest to unit length.

    Raises ValueError naming ``name`` when fewer than ``min_rows`` rows are left.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-d (n, d) array; got shape {x.shape}")
    nonfinite, zero = _bad_rows(x)
    kept = ~(nonfinite | zero)
    rows = x[kept]
    if len(rows) < min_rows:
        raise ValueError(
            f"{name}: {int(kept.sum())} usable rows of {len(x)} ({int(nonfinite.sum())} "
            f"non-finite, {int(zero.sum())} zero-norm); at least {min_rows} needed"
        )
    return CleanRows(unit_rows(rows)[0], kept, int(nonfinite.sum()), int(zero.sum()))


def clean_pairs(term, base, *, name: str = "pairs", min_rows: int = 1):
    """Drop a (term, base) pair when either row is non-finite or zero-norm.

    Returns (term_unit, base_unit, kept_mask, n_dropped). Raises ValueError when fewer than
    ``min_rows`` pairs are left or the shapes differ.
    """
    m, b, kept, dropped = pair_mask(term, base, name=name, min_rows=min_rows)
    if kept.all():  # the same rows, without a copy of each array
        return unit_rows(m)[0], unit_rows(b)[0], kept, 0
    return unit_rows(m[kept])[0], unit_rows(b[kept])[0], kept, dropped


def pair_mask(term, base, *, name: str = "pairs", min_rows: int = 1):
    """:func:`clean_pairs`' checks without its unit rows: (term, base as float64 arrays, the
    kept mask, n dropped), for a caller that normalises the kept rows a block at a time."""
    m = np.atleast_2d(np.asarray(term, dtype=np.float64))
    b = np.atleast_2d(np.asarray(base, dtype=np.float64))
    if m.shape != b.shape or m.ndim != 2:
        raise ValueError(f"{name}: term and base must be (n, d) arrays of one shape; "
                         f"got {m.shape} and {b.shape}")
    bad_m, bad_b = (np.logical_or(*_bad_rows(v)) for v in (m, b))
    kept = ~(bad_m | bad_b)
    if kept.sum() < min_rows:
        raise ValueError(f"{name}: {int(kept.sum())} usable pairs of {len(m)}; "
                         f"at least {min_rows} needed")
    return m, b, kept, int((~kept).sum())


def require_finite(value: float, what: str) -> float:
    """The value as a float; ValueError when it is NaN or infinite (no p for a NaN)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} is not finite ({value}); no p-value is computed for it")
    return value


def check_resamples(n_resamples: int, name: str = "n_resamples") -> int:
    n_resamples = int(n_resamples)
    if n_resamples < 1:
        raise ValueError(f"{name} must be at least 1; got {n_resamples}")
    return n_resamples


def check_level(confidence_level: float) -> float:
    confidence_level = float(confidence_level)
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must be in (0, 1); got {confidence_level}")
    return confidence_level


# ----------------------------------------------------------------------------- p-values


def choose_exact(n_distinct: int, *, max_enumerate: int | None = None) -> bool:
    """Enumerate when the number of *distinct* patterns is at most ``max_enumerate``.

    The count is of distinct values of the test statistic's pattern, e.g. 2**(n−1) sign
    flips for a two-sided mean (s and −s tie), Π_t 2**(n_t−1) for per-template
    sign-invariant statistics, comb(P, P_x) prompt re-partitions, n! rank pairings — not
    2**pairs. Enumeration cost is the count itself, so the default cap is a fixed budget
    (2**17), independent of the number of Monte Carlo draws that would replace it.
    """
    limit = MAX_ENUMERATE if max_enumerate is None else int(max_enumerate)
    return 0 < n_distinct <= limit


#: Elements (rows × columns) of one sign or weight matrix held at once: the memory a test
#: uses stays flat however many pairs it has.
CHUNK_ELEMENTS = 2**20  # 8 MB of float64


def chunk_rows(n: int, limit: int = CHUNK) -> int:
    """Rows of an n-column matrix per chunk: at most ``limit``, at most CHUNK_ELEMENTS elements."""
    return max(1, min(limit, CHUNK_ELEMENTS // max(n, 1)))


def _pcg_bits(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` draws of ``rng.integers(0, 2, dtype=np.int64)`` as uint8, from raw PCG64 output.

    numpy draws a bounded int64 below 2**32 by Lemire's method on one 32-bit draw, which for
    the range 2 never rejects and returns the draw's top bit; PCG64 serves 32-bit draws as the
    low then the high half of each 64-bit output, keeping an unused high half for the next
    call (``has_uint32``). Reading the raw outputs and that buffer the same way gives the same
    bits and leaves the generator in the same state, at a small part of the cost.
    """
    out = np.empty(count, dtype=np.uint8)
    if count == 0:
        return out
    bitgen = rng.bit_generator
    state = bitgen.state
    start = 0
    if state["has_uint32"]:
        out[0] = (state["uinteger"] >> 31) & 1
        start = 1
    rest = count - start
    words = bitgen.random_raw((rest + 1) // 2).view(np.uint32)  # low half first (little-endian)
    np.right_shift(words[:rest], 31, out=out[start:], casting="unsafe")
    state = bitgen.state
    state["has_uint32"] = rest % 2
    if rest:
        state["uinteger"] = int(words[-1])  # the last output's high half, used or not
    bitgen.state = state
    return out


@functools.lru_cache(maxsize=1)
def _pcg_bits_agree() -> bool:
    """Whether :func:`_pcg_bits` reproduces this numpy's ``integers`` (checked once per process)."""
    if sys.byteorder != "little":
        return False
    fast, slow = np.random.default_rng(20240611), np.random.default_rng(20240611)
    for count in (7, 1, 12, 5, 2, 33):
        if not np.array_equal(_pcg_bits(fast, count), slow.integers(0, 2, size=count, dtype=np.int64)):
            return False
    return fast.bit_generator.state == slow.bit_generator.state


def fair_bits(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """A (rows, n) uint8 matrix of fair 0/1 draws, equal to and consuming ``rng`` exactly as
    ``rng.integers(0, 2, size=(rows, n), dtype=np.int64)`` (the package's sign draws)."""
    if type(rng.bit_generator) is np.random.PCG64 and _pcg_bits_agree():
        return _pcg_bits(rng, rows * n).reshape(rows, n)
    return rng.integers(0, 2, size=(rows, n), dtype=np.int64).astype(np.uint8)


SIGNS = np.array([1.0, -1.0])  # SIGNS[bits] = 1 − 2·bits


def sign_chunks(n: int, *, exact: bool, n_resamples: int = 0, rng=None, first_fixed: bool = False,
                dtype=np.int64):
    """The package's one sign-flip engine: ±1 float matrices of n columns, a chunk of rows at a
    time (:func:`chunk_rows`; chunking never changes what is drawn).

    exact: every pattern in binary order (row 0 the identity): 2**n, or 2**(n−1) with
    ``first_fixed`` (first sign +1: s and −s give the same |mean| or quadratic form).
    Sampled: ``n_resamples`` rows of independent fair signs from ``rng`` (``dtype`` is the
    integer type drawn, kept per caller so seeded streams stay as they were).
    """
    free = n - 1 if first_fixed else n
    if exact:
        total = 2**free
        for start in range(0, total, CHUNK):
            codes = np.arange(start, min(start + CHUNK, total))
            signs = 1.0 - 2.0 * ((codes[:, None] >> np.arange(free)) & 1)
            yield np.hstack([np.ones((len(codes), 1)), signs]) if first_fixed else signs
        return
    step = chunk_rows(n)
    for start in range(0, n_resamples, step):
        rows = min(step, n_resamples - start)
        if np.dtype(dtype) == np.int64:
            yield SIGNS[fair_bits(rng, rows, n)]
        else:
            yield 1.0 - 2.0 * rng.integers(0, 2, size=(rows, n), dtype=dtype)


def perm_p(k: int, total: int, exact: bool) -> tuple[float, float]:
    """(p, min_p) from k exceedances: k/N exact (identity counted), (k+1)/(B+1) sampled."""
    if exact:
        return k / total, 1.0 / total
    return (k + 1) / (total + 1), 1.0 / (total + 1)


def mc_error(p: float, n_resamples: int) -> float:
    """Monte Carlo standard error sqrt(p(1 − p)/B) of a sampled p-value."""
    return math.sqrt(max(p * (1 - p), 0.0) / n_resamples)


def _sig(x: float, digits: int) -> str:
    if x >= 1e-3:
        decimals = max(digits - 1 - math.floor(math.log10(x)), 0)
        return f"{x:.{decimals}f}"
    return f"{x:.{max(digits - 1, 0)}e}"


def format_p(p, *, min_p: float, exact: bool, n_resamples: int) -> str:
    """A p-value printed to the precision it has.

    - NaN/None: "n/a".
    - At its floor (p <= min_p): "≤ floor" (the floor to 2 significant digits, rounded up).
    - Sampled (not exact, n_resamples > 0): rounded at the leading digit of its Monte Carlo
      standard error sqrt(p(1 − p)/B), so every printed digit is meaningful.
    - Exact or analytic: 2 significant digits.
    """
    if p is None or not math.isfinite(float(p)):
        return "n/a"
    p = float(p)
    if min_p > 0 and p <= min_p * (1 + 1e-9):
        floor = _sig(_round_up(min_p), 2)
        return f"≤ {floor}"
    if exact or n_resamples <= 0:
        return _sig(p, 2)
    se = mc_error(p, n_resamples)
    if se <= 0:
        return _sig(p, 2)
    place = math.floor(math.log10(se))  # round p at the leading digit of its MC error
    if p >= 1e-3:
        return f"{round(p, -place):.{max(-place, 0)}f}"
    digits = max(math.floor(math.log10(p)) - place + 1, 1)
    return f"{p:.{digits - 1}e}"


def format_p_adjusted(p) -> str:
    """An adjusted p, rounded up at 2 significant digits: never printed below the p it adjusts
    (a p at its floor 1/3 prints "≤ 0.34" by :func:`format_p`, so its adjusted 1/3 prints 0.34)."""
    if p is None or not math.isfinite(float(p)):
        return "n/a"
    if p <= 0:
        return "0"
    return _sig(min(1.0, _round_up(float(p))), 2)


def _round_up(x: float) -> float:
    place = math.floor(math.log10(x)) - 1
    return math.ceil(x / 10.0**place - 1e-9) * 10.0**place


# ----------------------------------------------------------------------------- design


@dataclass(frozen=True)
class DesignCheck(Result):
    """Whether each test of a design can reach α at all, with the reason when not."""

    alpha: float
    reachable: bool
    min_p: dict  # test name -> smallest attainable p (0.0 for an analytic test)
    messages: tuple[str, ...]


def design_check(
    alpha: float = 0.05, *, n_templates: int, n_seeds: int, n_controls: int = 0,
    n_resamples: int = 9999, n_terms: int = 1,
) -> DesignCheck:
    """Can a (templates × seeds [+ controls]) design reach ``alpha``?

    - Crossed t-test: always reachable in principle when T·S >= 2 and max(T, S) >= 2, but
      with few templates its worst-case df is T − 1 (its one-way floor), and the critical
      |t| is reported when that df is below 3 (critical |t| > 3.2 at α = 0.05).
    - Sign-flip p over the T·S pairs ("these templates and seeds only"): floor 2 / 2**(T·S)
      when enumerated, 1/(B+1) sampled.
    - Control rank p: floor 1/(K+1); needs K >= 1/α − 1 controls (19 at α = 0.05) for one
      term. With m terms adjusted by Benjamini–Hochberg, one term beyond every control has
      adjusted p = m/(K+1), so it reaches α only with K >= m/α − 1 (20·m − 1 at 0.05); with
      fewer, a term beyond every control is reported by its own rank p (p_controls), as a
      ranking against these controls, not as a discovery across the run.
    """
    n = n_templates * n_seeds
    floors, messages = {}, []
    if n < 2 or max(n_templates, n_seeds) < 2:
        floors["crossed"] = 1.0
        messages.append("one template and one seed: no test of a shift is possible")
    else:
        floors["crossed"] = 0.0
        df = (n_templates - 1) if n_templates > 1 else (n_seeds - 1)
        if min(n_templates, n_seeds) == 2:
            which = "templates" if n_templates == 2 else "seeds"
            messages.append(f"only 2 {which}: their variance rests on 1 degree of freedom; the "
                            "crossed test stays valid but finds little when it dominates; "
                            "use >= 4 seeds and >= 8 templates")
        if df < 3:
            from scipy import stats as sps  # only here: scipy.stats costs a second to import

            crit = float(sps.t.ppf(1 - alpha / 2, df))
            messages.append(f"only {n_templates} template(s): worst-case df {df}, a shift needs "
                            f"|t| > {crit:.1f}; add templates (>= 8 recommended)")
    n_distinct = 2 ** max(n - 1, 0)
    floors["sign_flip"] = (1.0 / n_distinct if choose_exact(n_distinct)
                           else 1.0 / (n_resamples + 1))
    floors["controls"] = 1.0 / (n_controls + 1) if n_controls > 0 else 1.0
    if n_controls == 0:
        messages.append("no controls: drift significance only means the wording changed the images")
    elif floors["controls"] > alpha:
        need = math.ceil(1 / alpha - 1)
        messages.append(f"{n_controls} controls: rank p floor {floors['controls']:.3g} > α; "
                        f"needs >= {need} controls")
    if n_controls > 0 and n_terms > 1:
        floors["controls_bh"] = min(1.0, n_terms / (n_controls + 1))
        need_bh = math.ceil(n_terms / alpha - 1 - 1e-9)
        if floors["controls_bh"] > alpha:
            messages.append(
                f"{n_terms} terms, {n_controls} controls: a single term beyond every control has "
                f"BH-adjusted drift p {floors['controls_bh']:.3g} > α; reaching α after adjustment "
                f"needs >= {need_bh} controls (m/α − 1). With fewer, read each term's p_controls "
                "(its rank among these controls) as a ranking, not as a discovery across the run")
    for name in ("crossed", "sign_flip"):
        if floors[name] > alpha:
            messages.append(f"{name}: floor {floors[name]:.3g} > α = {alpha}")
    reachable = floors["crossed"] <= alpha and (n_controls == 0 or floors["controls"] <= alpha)
    return DesignCheck(float(alpha), bool(reachable), floors, tuple(messages))
