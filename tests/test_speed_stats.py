"""The sweep statistics' fast paths against the direct computations they replace (issue 32).

Each fast path must give what the plain computation gives with the same seed: the same random
draws (bit for bit), the same counts and p-values, and sums equal to rounding. The plain
computations are written out here, independently of the package.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from ldmprobe.analysis import inference_core
from ldmprobe.analysis.inference_core import TIE_RTOL, chunk_rows, fair_bits, sign_chunks
from ldmprobe.analysis.inference_crossed import flipped_sums, sign_flip_test
from ldmprobe.analysis.inference_drift import PairGram, boot_drift, unbiased_drift
from ldmprobe.analysis.inference_perm import average_ranks
from ldmprobe.analysis.stats import baseline_spread, benjamini_hochberg


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of a few dozen elements, so every chunked loop runs many times."""
    monkeypatch.setattr(inference_core, "CHUNK_ELEMENTS", 37)


# ------------------------------------------------------------------------ random bits


@pytest.mark.parametrize("shapes", [[(3, 5), (1, 1), (0, 4), (2, 3), (7, 1)], [(1, 7), (4, 4)], [(100, 33)]])
def test_fair_bits_are_the_draws_of_integers_and_leave_the_same_state(shapes):
    fast, plain = np.random.default_rng(3), np.random.default_rng(3)
    for rows, n in shapes:
        assert np.array_equal(fair_bits(fast, rows, n), plain.integers(0, 2, size=(rows, n), dtype=np.int64))
        # other draws in between see the generator exactly where integers() leaves it
        assert fast.random() == plain.random()
        assert np.array_equal(fast.integers(0, 5, size=3), plain.integers(0, 5, size=3))
    assert fast.bit_generator.state == plain.bit_generator.state


def test_fair_bits_after_an_odd_32_bit_draw():
    fast, plain = np.random.default_rng(9), np.random.default_rng(9)
    for g in (fast, plain):
        g.integers(0, 2**31, size=1, dtype=np.int64)  # leaves half of a 64-bit output buffered
    assert fast.bit_generator.state["has_uint32"] == 1
    assert np.array_equal(fair_bits(fast, 2, 3), plain.integers(0, 2, size=(2, 3), dtype=np.int64))
    assert fast.bit_generator.state == plain.bit_generator.state


def test_fair_bits_from_another_bit_generator_fall_back_to_integers():
    fast, plain = (np.random.Generator(np.random.MT19937(4)) for _ in range(2))
    assert np.array_equal(fair_bits(fast, 5, 6), plain.integers(0, 2, size=(5, 6), dtype=np.int64))


def test_sign_chunks_draw_the_same_rows_however_they_are_chunked(small_chunks):
    assert chunk_rows(10) == 3 and chunk_rows(1000) == 1
    got = np.vstack(list(sign_chunks(10, exact=False, n_resamples=25, rng=np.random.default_rng(5))))
    plain = 1.0 - 2.0 * np.random.default_rng(5).integers(0, 2, size=(25, 10), dtype=np.int64)
    assert np.array_equal(got, plain)


# ------------------------------------------------------------------------ probe sign flips


def test_flipped_sums_are_the_signed_sums(small_chunks):
    d = np.random.default_rng(0).normal(size=21)
    got = np.concatenate(list(flipped_sums(d, 50, np.random.default_rng(8))))
    signs = 1.0 - 2.0 * np.random.default_rng(8).integers(0, 2, size=(50, 21), dtype=np.int64)
    np.testing.assert_allclose(got, signs @ d, rtol=0, atol=1e-13)


@pytest.mark.parametrize("n", [19, 40, 300])
def test_sampled_sign_flip_p_is_the_plain_count(n):
    d = np.random.default_rng(n).normal(0.1, 1.0, size=n)
    test = sign_flip_test(d, n_resamples=999, seed=11)
    signs = 1.0 - 2.0 * np.random.default_rng(11).integers(0, 2, size=(999, n), dtype=np.int64)
    threshold = abs(d.mean()) - TIE_RTOL * np.abs(d).mean()
    k = int(np.count_nonzero(np.abs(signs @ d) / n >= threshold))
    assert not test.exact and test.p_value == (k + 1) / 1000


# ------------------------------------------------------------------------ drift


def _gram_u(g):
    n = len(g)
    return (g.sum() - np.trace(g)) / (n * (n - 1))


@pytest.mark.parametrize("n,d", [(5, 8), (40, 6)])
def test_pair_gram_forms_from_differences_equal_the_gram_matrix(n, d):
    diffs = np.random.default_rng(n).normal(size=(n, d))
    gram = diffs @ diffs.T
    held = PairGram.of_differences(diffs)
    assert held.is_gram == (n <= d)
    w = np.random.default_rng(1).integers(0, 3, size=(7, n)).astype(float)
    np.testing.assert_allclose(held.forms(w), np.einsum("ki,ij,kj->k", w, gram, w), rtol=1e-12)
    flips = 1.0 - 2.0 * np.random.default_rng(2).integers(0, 2, size=(6, n - 1))
    s = np.hstack([np.ones((6, 1)), flips])
    np.testing.assert_allclose(held.forms_first_fixed(flips), np.einsum("ki,ij,kj->k", s, gram, s), rtol=1e-12)
    bits = ((1.0 - flips) / 2).astype(np.uint8)
    np.testing.assert_allclose(held.forms_first_fixed(bits), np.einsum("ki,ij,kj->k", s, gram, s), rtol=1e-12)
    assert held.u == pytest.approx(_gram_u(gram), rel=1e-12)
    np.testing.assert_allclose(held.diag, np.diag(gram), rtol=1e-14)


def _plain_boot(grams, n_boot, rng):
    """The templates-then-pairs bootstrap written out with whole Gram matrices, one multinomial call each."""
    n_t = len(grams)
    picks = rng.integers(0, n_t, size=(n_boot, n_t))
    values = np.empty((n_boot, n_t))
    for t, gram in enumerate(grams):
        slots = np.argwhere(picks == t)
        if not len(slots):
            continue
        n = len(gram)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=len(slots)).astype(float)
        num = np.einsum("ki,ij,kj->k", w, gram, w) - (w**2) @ np.diag(gram)
        den = w.sum(1) ** 2 - (w**2).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            values[slots[:, 0], slots[:, 1]] = np.where(den > 0, num / np.where(den > 0, den, 1.0), _gram_u(gram))
    return values.mean(1)


def test_bootstrap_from_differences_in_chunks_is_the_plain_bootstrap(small_chunks):
    rng = np.random.default_rng(4)
    diffs = [rng.normal(0.05, 0.2, size=(n, 3)) for n in (2, 9, 12)]  # a Gram-held template and two held as D
    plain = _plain_boot([d @ d.T for d in diffs], 60, np.random.default_rng(21))
    fast = boot_drift([PairGram.of_differences(d) for d in diffs], 60, np.random.default_rng(21))
    np.testing.assert_allclose(fast, plain, rtol=1e-12, atol=1e-15)
    # Gram matrices as compare.py passes them give the same values
    np.testing.assert_allclose(boot_drift([d @ d.T for d in diffs], 60, np.random.default_rng(21)), plain,
                               rtol=1e-12, atol=1e-15)


def test_drift_sign_flip_p_is_the_plain_count(small_chunks):
    rng = np.random.default_rng(6)
    groups = np.repeat(np.arange(3), [30, 25, 40])
    m = rng.normal(size=(len(groups), 4)) + 0.15
    b = rng.normal(size=(len(groups), 4))
    result = unbiased_drift(m, b, groups, n_boot=10, n_resamples=400, seed=13)
    mu, bu = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (m, b))
    grams = [(mu[groups == g] - bu[groups == g]) @ (mu[groups == g] - bu[groups == g]).T for g in range(3)]
    perm_rng = np.random.default_rng(np.random.SeedSequence(13).spawn(2)[0])
    flips = 1.0 - 2.0 * perm_rng.integers(0, 2, size=(400, sum(len(g) - 1 for g in grams)), dtype=np.int64)
    stat, col = np.zeros(400), 0
    for g in grams:
        n = len(g)
        s = np.hstack([np.ones((400, 1)), flips[:, col:col + n - 1]])
        col += n - 1
        stat += (np.einsum("ki,ij,kj->k", s, g, s) - np.trace(g)) / (n * (n - 1)) / len(grams)
    observed = np.mean([_gram_u(g) for g in grams])
    threshold = observed - TIE_RTOL * np.mean([np.trace(g) / len(g) for g in grams])
    assert not result.exact and result.p_value == (int(np.count_nonzero(stat >= threshold)) + 1) / 401
    assert result.estimate == pytest.approx(observed, rel=1e-12)


# ------------------------------------------------------------------------ closed forms


def test_baseline_spread_is_the_mean_over_pairs():
    rng = np.random.default_rng(2)
    rows = rng.normal(size=(23, 5))
    groups = rng.integers(0, 3, size=23)
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    pairs = [1 - unit[i] @ unit[j] for i in range(23) for j in range(i + 1, 23) if groups[i] == groups[j]]
    assert baseline_spread(rows, groups) == pytest.approx(np.mean(pairs), rel=1e-12)
    assert math.isnan(baseline_spread(rows[:3], [0, 1, 2]))


def test_benjamini_hochberg_and_average_ranks_equal_scipy():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(2, 25))
        p = np.round(rng.random(n), int(rng.integers(1, 4)))  # ties
        assert np.array_equal(benjamini_hochberg(p), sps.false_discovery_control(p, method="bh"))
        x = rng.integers(0, 5, n).astype(float)
        assert np.array_equal(average_ranks(x), sps.rankdata(x))
    p = np.array([0.01, np.nan, 0.04, 0.03])
    out = benjamini_hochberg(p)
    assert np.isnan(out[1]) and np.array_equal(out[[0, 2, 3]], sps.false_discovery_control(p[[0, 2, 3]], method="bh"))


def test_fast_paths_in_use():
    """The fast bit path is live with this numpy (else every fast figure above is the fallback's)."""
    assert inference_core._pcg_bits_agree()
