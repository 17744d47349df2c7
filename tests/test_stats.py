"""Tests of ldmprobe.analysis.stats against independent computations (loops, scipy)."""

from __future__ import annotations

import itertools
import json
import math
import sys

import numpy as np
import pytest
from scipy import stats as sps

from ldmprobe.analysis import stats as S
from ldmprobe.analysis.association import weat


def unit(x):
    x = np.asarray(x, dtype=float)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def paired_data(rng, n_groups, n_seeds, dim, effect=0.0, direction=None, noise=0.3, own=0.1):
    """Template centres + shared per-seed noise; the term adds `effect * direction`."""
    centres = rng.normal(size=(n_groups, dim))
    if direction is None:
        direction = np.zeros(dim)
    groups = np.repeat(np.arange(n_groups), n_seeds)
    shared = centres[groups] / math.sqrt(dim) * 3 + noise * rng.normal(size=(len(groups), dim))
    base = unit(shared + own * rng.normal(size=shared.shape))
    term = unit(shared + effect * direction + own * rng.normal(size=shared.shape))
    return term, base, groups, centres


# ---------------------------------------------------------------- brute-force references


def brute_centroid_drift(m, b):
    m, b = unit(m), unit(b)
    cm = [sum(m[i, j] for i in range(len(m))) / len(m) for j in range(m.shape[1])]
    cb = [sum(b[i, j] for i in range(len(b))) / len(b) for j in range(b.shape[1])]
    return 1 - cos(cm, cb)


def brute_group_stat(m, b, groups):
    total = 0.0
    for g in np.unique(groups):
        idx = [i for i in range(len(groups)) if groups[i] == g]
        total += len(idx) / len(groups) * brute_centroid_drift(m[idx], b[idx])
    return total


def brute_weat_s(w, A, B):
    return sum(cos(w, a) for a in A) / len(A) - sum(cos(w, b) for b in B) / len(B)


# ---------------------------------------------------------------- descriptive statistics


def test_drifts_and_spread_match_loops():
    rng = np.random.default_rng(1)
    m, b = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))  # not normalised on purpose
    groups = np.array([0, 0, 0, 1, 1, 2, 3])
    assert S.centroid_drift(m, b) == pytest.approx(brute_centroid_drift(m, b), abs=1e-12)
    assert S.paired_drift(m, b) == pytest.approx(
        sum(1 - cos(m[i], b[i]) for i in range(7)) / 7, abs=1e-12
    )
    pairs = [(i, j) for i in range(7) for j in range(i + 1, 7) if groups[i] == groups[j]]
    assert len(pairs) == 4
    expected = sum(1 - cos(b[i], b[j]) for i, j in pairs) / len(pairs)
    assert S.baseline_spread(b, groups) == pytest.approx(expected, abs=1e-12)
    assert S.baseline_spread(b, list("abcabcd")) == pytest.approx(
        np.mean([1 - cos(b[0], b[3]), 1 - cos(b[1], b[4]), 1 - cos(b[2], b[5])]), abs=1e-12
    )
    assert math.isnan(S.baseline_spread(b, np.arange(7)))


def test_text_and_sequence_drift():
    rng = np.random.default_rng(2)
    pm, pb, probes = rng.normal(size=(4, 6)), rng.normal(size=(4, 6)), rng.normal(size=(3, 6))
    assert S.text_drift(pm, pb) == pytest.approx(np.mean([1 - cos(pm[t], pb[t]) for t in range(4)]))
    shift = S.text_shift(pm, pb, probes)
    expected = [np.mean([cos(pm[t], probes[p]) - cos(pb[t], probes[p]) for t in range(4)])
                for p in range(3)]
    np.testing.assert_allclose(shift, expected, atol=1e-12)

    cm, cb = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 4))
    cm[:, 0] = cb[:, 0] = 50.0  # a huge, prompt-independent start token
    token = np.mean([1 - np.mean([cos(cm[t, k], cb[t, k]) for k in range(5)]) for t in range(3)])
    flat = np.mean([1 - cos(cm[t].ravel(), cb[t].ravel()) for t in range(3)])
    assert S.sequence_drift(cm, cb) == pytest.approx(token, abs=1e-12)
    assert S.sequence_drift(cm, cb, how="flat") == pytest.approx(flat, abs=1e-12)
    assert flat < token / 10  # why "token" is the default: the start token swamps "flat"


def test_direction_neighbours_matches_loop():
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(12)]
    W = unit(rng.normal(size=(12, 8)) + 2.0)  # shared offset: the "cone"
    cm, cb = rng.normal(size=8), rng.normal(size=8)
    mean = [sum(W[i, j] for i in range(12)) / 12 for j in range(8)]
    scores = {words[i]: cos(cm - cb, W[i] - mean) for i in range(12)}
    ranked = sorted(scores, key=scores.get, reverse=True)
    res = S.direction_neighbours(cm, cb, W, words, k=4)
    assert [w for w, _ in res.toward] == ranked[:4]
    assert [w for w, _ in res.away] == ranked[::-1][:4]
    for w, sc in res.toward + res.away:
        assert sc == pytest.approx(scores[w], abs=1e-12)
    assert len(S.direction_neighbours(cm, cb, W, words, k=50).toward) == 12
    json.dumps(res.to_dict())


# ---------------------------------------------------------------- drift permutation test


def test_drift_test_exact_matches_brute_force_over_all_swaps():
    rng = np.random.default_rng(4)
    u = unit(rng.normal(size=6))
    m, b, groups, _ = paired_data(rng, 3, [2, 3, 4], 6, effect=0.4, direction=u)  # unbalanced
    res = S.drift_permutation_test(m, b, groups, n_resamples=9999)
    observed = brute_group_stat(m, b, groups)
    k = 0
    for swaps in itertools.product([False, True], repeat=len(m)):
        mm = np.array([b[i] if sw else m[i] for i, sw in enumerate(swaps)])
        bb = np.array([m[i] if sw else b[i] for i, sw in enumerate(swaps)])
        k += brute_group_stat(mm, bb, groups) >= observed - 1e-12
    assert res.exact and res.n_resamples == 2**9
    assert res.statistic == pytest.approx(observed, abs=1e-12)
    assert res.p_value == k / 2**9
    assert res.min_p == 2.0 ** (3 - 9)
    pooled = S.drift_permutation_test(m, b, groups, statistic="pooled")
    assert pooled.statistic == pytest.approx(brute_centroid_drift(m, b), abs=1e-12)
    assert pooled.min_p == 2.0 ** (1 - 9) and pooled.method == "pooled"
    with pytest.raises(ValueError):
        S.drift_permutation_test(m, b, groups, statistic="paired")


def test_drift_test_sampled_converges_to_exact_and_is_deterministic():
    rng = np.random.default_rng(5)
    m, b, groups, _ = paired_data(rng, 2, 7, 10, effect=0.12, direction=unit(rng.normal(size=10)))
    exact = S.drift_permutation_test(m, b, groups, n_resamples=2**14)
    sampled = S.drift_permutation_test(m, b, groups, n_resamples=2**14 - 1, seed=7)
    assert exact.exact and not sampled.exact
    assert 0.02 < exact.p_value < 0.9
    assert abs(sampled.p_value - exact.p_value) < 0.015
    assert sampled.min_p == 1 / 2**14 and sampled.n_resamples == 2**14 - 1
    assert S.drift_permutation_test(m, b, groups, n_resamples=2**14 - 1, seed=7) == sampled
    assert S.drift_permutation_test(m, b, groups, n_resamples=999, seed=8) != sampled


def test_drift_test_attains_min_p_and_never_zero():
    rng = np.random.default_rng(6)
    u = unit(rng.normal(size=16))
    m, b, groups, _ = paired_data(rng, 2, 3, 16, effect=3.0, direction=u)
    exact = S.drift_permutation_test(m, b, groups)
    assert exact.p_value == exact.min_p == 2.0 ** (2 - 6)
    m, b, groups, _ = paired_data(rng, 4, 6, 16, effect=3.0, direction=u)
    sampled = S.drift_permutation_test(m, b, groups, n_resamples=199)
    assert sampled.p_value == sampled.min_p == 1 / 200


def _function_calls(fn) -> int:
    """How many Python and C function calls ``fn()`` makes: a count of work, not of seconds."""
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def test_drift_test_scores_resamples_in_arrays_not_one_by_one():
    """The drift test's work per resample is array arithmetic, not a Python step per resample: 39,000
    more resamples cost fewer than one function call per ten of them (speed figures: benchmarks/)."""
    rng = np.random.default_rng(7)
    m, b, groups, _ = paired_data(rng, 8, 25, 768)
    few = _function_calls(lambda: S.drift_permutation_test(m, b, groups, n_resamples=999))
    many = _function_calls(lambda: S.drift_permutation_test(m, b, groups, n_resamples=39999))
    assert 0 < many - few < (39999 - 999) // 10, (few, many)


# ---------------------------------------------------------------- probe shift


def test_probe_sign_flip_p_matches_scipy_exact():
    rng = np.random.default_rng(8)
    m, b, groups, _ = paired_data(rng, 2, 5, 12, effect=0.1, direction=unit(rng.normal(size=12)))
    probes = unit(rng.normal(size=(5, 12)))
    res = S.probe_shift(m, b, probes, groups, n_resamples=9999, n_boot=200)
    d = (m - b) @ probes.T
    for j, r in enumerate(res):
        ref = sps.permutation_test(
            (d[:, j],), np.mean, permutation_type="samples", n_resamples=np.inf,
            alternative="two-sided", vectorized=True, axis=0,
        )
        assert r.exact and r.n_resamples == 2**10 and r.probe_index == j
        assert r.shift == pytest.approx(d[:, j].mean(), abs=1e-14)
        assert r.p_value == pytest.approx(ref.pvalue, rel=1e-12)
        assert r.min_p == 2 / 2**10


def test_probe_sampled_p_and_min_p():
    rng = np.random.default_rng(9)
    angle = (rng.normal(size=30) + 0.4) / 4
    m = np.c_[np.cos(angle), np.sin(angle)]  # d_i = sin(angle_i) along the probe e1
    b = np.c_[np.ones(30), np.zeros(30)]
    probe = np.array([[0.0, 1.0]])
    dd = (m - b) @ probe.T
    res = S.probe_shift(m, b, probe, None, n_resamples=19999, n_boot=100, seed=1)[0]
    ref = sps.permutation_test((dd[:, 0],), np.mean, permutation_type="samples",
                               n_resamples=19999, vectorized=True, axis=0,
                               rng=np.random.default_rng(2))
    assert not res.exact and res.min_p == 1 / 20000
    assert res.p_value >= res.min_p
    assert abs(res.p_value - ref.pvalue) < 0.01
    strong = S.probe_shift(m, b + [0, -0.5], probe, None, n_resamples=99, n_boot=100)[0]
    assert strong.p_value == strong.min_p == 1 / 100


def test_bootstrap_ci_one_template_matches_scipy():
    rng = np.random.default_rng(10)
    m, b, _, _ = paired_data(rng, 1, 40, 8, effect=0.2, direction=unit(rng.normal(size=8)))
    probe = unit(rng.normal(size=(1, 8)))
    d = ((m - b) @ probe.T)[:, 0]
    res = S.probe_shift(m, b, probe, np.zeros(40), n_resamples=99, n_boot=40000, seed=3)[0]
    ref = sps.bootstrap((d,), np.mean, n_resamples=40000, method="percentile",
                        confidence_level=0.95, rng=np.random.default_rng(4)).confidence_interval
    se = d.std(ddof=1) / math.sqrt(len(d))
    assert res.ci_low == pytest.approx(ref.low, abs=0.1 * se)
    assert res.ci_high == pytest.approx(ref.high, abs=0.1 * se)


@pytest.mark.slow
def test_hierarchical_bootstrap_matches_naive_loop():
    rng = np.random.default_rng(11)
    groups = np.repeat(np.arange(4), [3, 5, 4, 6])
    d = rng.normal(size=(18, 1)) + np.array([0.0, 0.5, -0.3, 1.0])[groups][:, None]
    index = [np.flatnonzero(groups == g) for g in range(4)]
    fast = S._hier_bootstrap(d, index, 30000, np.random.default_rng(0))[:, 0]
    r = np.random.default_rng(1)
    naive = []
    for _ in range(30000):
        picked = [r.choice(index[g], size=len(index[g])) for g in r.integers(0, 4, size=4)]
        naive.append(d[np.concatenate(picked), 0].mean())
    q = [0.025, 0.5, 0.975]
    np.testing.assert_allclose(np.quantile(fast, q), np.quantile(naive, q), atol=0.03)
    assert fast.std() == pytest.approx(np.std(naive), rel=0.03)
    # resampling pairs only (ignoring templates) would be much narrower here
    assert fast.std() > 1.5 * d.std() / math.sqrt(18)


# ---------------------------------------------------------------- planted effect / null


def test_planted_effect_is_found_and_orthogonal_probe_is_not():
    rng = np.random.default_rng(12)
    dim, n_groups = 64, 8
    u = unit(rng.normal(size=dim))
    m, b, groups, centres = paired_data(rng, n_groups, 6, dim, effect=0.35, direction=u)
    basis, _ = np.linalg.qr(np.c_[u, centres.T])
    r = rng.normal(size=dim)
    v = unit(r - basis @ (basis.T @ r))  # orthogonal to u and to every template centre
    drift = S.drift_permutation_test(m, b, groups, n_resamples=999)
    assert drift.p_value < 0.01
    aligned, ortho = S.probe_shift(m, b, np.vstack([u, v]), groups, n_resamples=999, n_boot=1000)
    assert aligned.shift > 0 and aligned.p_value < 0.01 and aligned.ci_low > 0
    assert ortho.p_value > 0.05 and ortho.ci_low < 0 < ortho.ci_high


@pytest.mark.parametrize("test", ["drift", "probe"])
def test_null_false_positive_rate(test):
    rng = np.random.default_rng(13)
    probe = unit(rng.normal(size=(1, 16)))
    hits = 0
    for rep in range(200):
        m, b, groups, _ = paired_data(rng, 4, 5, 16)
        if test == "drift":
            p = S.drift_permutation_test(m, b, groups, n_resamples=499, seed=rep).p_value
        else:
            p = S.probe_shift(m, b, probe, groups, n_resamples=499, n_boot=10, seed=rep)[0].p_value
        hits += p <= 0.05
    assert 0.01 <= hits / 200 <= 0.10


# ---------------------------------------------------------------- BH


def test_benjamini_hochberg_matches_scipy():
    rng = np.random.default_rng(14)
    p = rng.uniform(size=50) ** 3
    np.testing.assert_allclose(
        S.benjamini_hochberg(p), sps.false_discovery_control(p, method="bh"), rtol=1e-14
    )
    with_nan = np.insert(p, [3, 10, 10], np.nan)
    out = S.benjamini_hochberg(with_nan)
    assert np.isnan(out[[3, 11, 12]]).all()
    np.testing.assert_allclose(out[~np.isnan(with_nan)], S.benjamini_hochberg(p), rtol=1e-14)
    assert S.benjamini_hochberg([]).shape == (0,)
    # hand check: m = 4
    np.testing.assert_allclose(S.benjamini_hochberg([0.01, 0.04, 0.03, 0.2]),
                               [0.04, 0.16 / 3, 0.16 / 3, 0.2])


# ---------------------------------------------------------------- WEAT


def weat_sets(rng, n_x, n_y, dim=10, effect=0.3):
    a_dir = rng.normal(size=dim)
    A = unit(rng.normal(size=(5, dim)) + a_dir)
    B = unit(rng.normal(size=(6, dim)) - a_dir)
    X = unit(rng.normal(size=(n_x, dim)) + effect * a_dir)
    Y = unit(rng.normal(size=(n_y, dim)) - effect * a_dir)
    return X, Y, A, B


def test_weat_exact_matches_hand_enumeration():
    rng = np.random.default_rng(15)
    X, Y, A, B = weat_sets(rng, 4, 4, effect=0.1)
    res = weat(X, Y, A, B)
    words = list(X) + list(Y)
    s = [brute_weat_s(w, A, B) for w in words]
    S_obs = sum(s[:4]) - sum(s[4:])
    mean_x, mean_y = sum(s[:4]) / 4, sum(s[4:]) / 4
    mu = sum(s) / 8
    sd1 = math.sqrt(sum((v - mu) ** 2 for v in s) / 7)
    k = 0
    for xi in itertools.combinations(range(8), 4):
        S_i = sum(s[i] for i in xi) - sum(s[i] for i in range(8) if i not in xi)
        k += S_i >= S_obs - 1e-12
    assert res.exact and res.n_partitions == res.n_resamples == 70
    assert res.statistic == pytest.approx(S_obs, abs=1e-12)
    assert res.effect_size == pytest.approx((mean_x - mean_y) / sd1, abs=1e-12)
    assert res.p_value == k / 70 and 0.05 < res.p_value < 0.95
    assert res.min_p == 1 / 70
    assert (res.n_x, res.n_y, res.n_a, res.n_b, res.ddof) == (4, 4, 5, 6, 1)
    pop = weat(X, Y, A, B, ddof=0)
    assert pop.effect_size == pytest.approx((mean_x - mean_y) / np.std(s), abs=1e-12)
    assert pop.p_value == res.p_value
    json.dumps(res.to_dict())


def test_weat_sign_symmetries_and_unequal_sizes():
    rng = np.random.default_rng(16)
    X, Y, A, B = weat_sets(rng, 5, 3)
    res = weat(X, Y, A, B)
    assert weat(X, Y, B, A).effect_size == pytest.approx(-res.effect_size)
    assert weat(Y, X, A, B).effect_size == pytest.approx(-res.effect_size)
    assert weat(Y, X, A, B).statistic == pytest.approx(-res.statistic)
    assert res.n_partitions == math.comb(8, 5)
    strong = weat(*weat_sets(rng, 5, 5, effect=3.0))
    assert strong.p_value == strong.min_p == 1 / 252


def test_weat_ties_count_as_exceedances():
    rng = np.random.default_rng(17)
    X, _, A, B = weat_sets(rng, 4, 4)
    Y = X[[2, 0, 3, 1]]  # same words: S = 0; 16 of 70 partitions tie it exactly
    res = weat(X, Y, A, B)
    assert res.statistic == pytest.approx(0, abs=1e-12)
    assert res.p_value == (16 + (70 - 16) / 2) / 70


def test_weat_sampled_converges_to_exact():
    rng = np.random.default_rng(18)
    X, Y, A, B = weat_sets(rng, 10, 10, effect=0.02)
    exact = weat(X, Y, A, B, permutations=200_000)
    sampled = weat(X, Y, A, B, permutations=100_000, seed=3)
    assert exact.exact and exact.n_partitions == 184756
    assert not sampled.exact and sampled.n_resamples == 100_000
    assert 0.05 < exact.p_value < 0.5
    assert abs(sampled.p_value - exact.p_value) < 0.01
    assert sampled.min_p == 1 / 100_001 and sampled.p_value > 0
    assert weat(X, Y, A, B, permutations=100_000, seed=3) == sampled


def test_to_dict_is_json_safe():
    res = S.DriftTest(np.float64("nan"), np.float64(0.5), np.bool_(True), np.int64(4), 0, 0.25)
    out = res.to_dict()
    assert out["statistic"] is None and type(out["p_value"]) is float
    assert type(out["exact"]) is bool and type(out["n_resamples"]) is int
    json.dumps(out, allow_nan=False)
