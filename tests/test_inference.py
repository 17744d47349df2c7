"""Tests of ldmprobe.analysis.inference against independent computations and small,
deterministic calibration runs (fixed seeds, so never flaky; bands are binomial: with 300
replications at a true rate of 0.05 the standard error is 0.0126, so <= 0.09 is 3 SE)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from ldmprobe.analysis import inference as I

ALPHA = 0.05
UPPER = 0.09  # 0.05 + 3.2 binomial SE at 300 reps


def unit(x):
    x = np.asarray(x, dtype=float)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ------------------------------------------------------------------------ crossed test


def anova_by_least_squares(y):
    """Sums of squares of the two-way additive model by explicit design-matrix fits."""
    n_t, n_s = y.shape
    t_idx, s_idx = np.meshgrid(np.arange(n_t), np.arange(n_s), indexing="ij")
    t_idx, s_idx, v = t_idx.ravel(), s_idx.ravel(), y.ravel()
    one = np.ones((len(v), 1))
    tmat = (t_idx[:, None] == np.arange(n_t)).astype(float)
    smat = (s_idx[:, None] == np.arange(n_s)).astype(float)

    def rss(x):
        beta = np.linalg.lstsq(x, v, rcond=None)[0]
        return float(np.sum((v - x @ beta) ** 2))

    full = rss(np.hstack([one, tmat[:, 1:], smat[:, 1:]]))
    ss_t = rss(np.hstack([one, smat[:, 1:]])) - full
    ss_s = rss(np.hstack([one, tmat[:, 1:]])) - full
    return ss_t / (n_t - 1), ss_s / (n_s - 1), full / ((n_t - 1) * (n_s - 1))


def fiducial_p_by_monte_carlo(y, draws=400_000, seed=9):
    """Independent generalised p of a complete table: plain Monte Carlo of
    R = ȳ − Z·sqrt((MS_T ν_T/χ²_T + MS_S ν_S/χ²_S − MS_E ν_E/χ²_E) / TS)."""
    n_t, n_s = y.shape
    ms = anova_by_least_squares(y)
    dfs = (n_t - 1, n_s - 1, (n_t - 1) * (n_s - 1))
    rng = np.random.default_rng(seed)
    w = sum(sign * m * d / rng.chisquare(d, draws) for sign, m, d in zip((1, 1, -1), ms, dfs))
    r = y.mean() - rng.normal(size=draws) * np.sqrt(np.maximum(w, 0) / y.size)
    below = np.mean(r <= 0)
    return 2 * min(below, 1 - below), np.quantile(r, [0.05, 0.95])


def test_crossed_test_components_are_anova_and_p_is_the_generalised_p():
    rng = np.random.default_rng(3)
    y = 1.5 + 0.5 * rng.normal(size=(6, 1)) + rng.normal(size=(1, 5)) + 0.5 * rng.normal(size=(6, 5))
    r = I.crossed_test(y, confidence_level=0.9)
    ms_t, ms_s, ms_e = anova_by_least_squares(y)
    v = ms_t + ms_s - ms_e
    assert (r.var_template, r.var_seed, r.var_residual) == pytest.approx(
        ((ms_t - ms_e) / 5, (ms_s - ms_e) / 6, ms_e), rel=1e-10)
    assert r.df == pytest.approx(v**2 / (ms_t**2 / 5 + ms_s**2 / 4 + ms_e**2 / 20), rel=1e-10)
    assert r.se == pytest.approx(math.sqrt(v / 30), rel=1e-10)
    assert r.method == "crossed" and r.generalises_to == "templates and seeds"
    assert r.estimate == pytest.approx(y.mean(), abs=1e-12) and r.n_cells == 30
    p, (low, high) = fiducial_p_by_monte_carlo(y)
    assert 0.005 < p < 0.5  # a p where relative agreement means something
    assert r.p_value == pytest.approx(p, rel=0.05)
    assert (r.ci_low, r.ci_high) == pytest.approx((low, high), rel=0.02)
    assert (r.exact, r.n_resamples, r.min_p) == (False, 0, 0.0)
    json.dumps(r.to_dict())
    again = I.crossed_test(y, confidence_level=0.9, interval=False)
    assert again.p_value == r.p_value and math.isnan(again.ci_low)  # deterministic


def pair_moments_by_double_loop(y):
    """σ_a², σ_b², σ_e² from every ordered pair of present cells, one pair at a time."""
    cells = [(t, s, y[t, s]) for t in range(y.shape[0]) for s in range(y.shape[1])
             if np.isfinite(y[t, s])]
    sums = {"t": [], "s": [], "b": []}
    for (t1, s1, v1), (t2, s2, v2) in itertools.permutations(cells, 2):
        kind = "t" if t1 == t2 else "s" if s1 == s2 else "b"
        sums[kind].append((v1 - v2) ** 2 / 2)
    e_t, e_s, e_b = (np.mean(sums[k]) for k in "tsb")
    return e_b - e_t, e_b - e_s, e_t + e_s - e_b


def test_crossed_uses_every_cell_with_unbiased_moments():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(6, 1)) + 0.5 * rng.normal(size=(1, 5)) + rng.normal(size=(6, 5))
    y[rng.random(y.shape) < 0.2] = np.nan
    y[0, 0] = np.nan
    r = I.crossed_test(y)
    assert r.n_cells == int(np.isfinite(y).sum()) and r.estimate == pytest.approx(np.nanmean(y))
    assert (r.var_template, r.var_seed, r.var_residual) == pytest.approx(
        pair_moments_by_double_loop(y), rel=1e-9)
    # unbiased under a missing-cell pattern that ignores the values: mean over tables
    sums = np.zeros(3)
    reps = 2000
    for _ in range(reps):
        y = 1.0 * rng.normal(size=(8, 1)) + 0.5 * rng.normal(size=(1, 6)) + rng.normal(size=(8, 6))
        y[rng.random(y.shape) < 0.15] = np.nan
        sums += I.variance_components(y)
    assert sums / reps == pytest.approx((1.0, 0.25, 1.0), abs=0.1)


def test_crossed_degenerate_and_missing_cells():
    rng = np.random.default_rng(0)
    col = rng.normal(size=(6, 1)) + 0.2
    r = I.crossed_test(col)
    assert r.method == "one-way over templates" and "this seed only" in r.generalises_to
    assert r.p_value == pytest.approx(sps.ttest_1samp(col.ravel(), 0).pvalue, rel=1e-9)
    row = rng.normal(size=(1, 5))
    assert I.crossed_test(row).method == "one-way over seeds"
    one = I.crossed_test([[0.3]])
    assert one.method == "none" and math.isnan(one.p_value)
    diagonal = np.full((3, 3), np.nan)
    np.fill_diagonal(diagonal, [0.1, 0.4, 0.2])  # no two cells share a template or a seed
    assert I.crossed_test(diagonal).method == "none"

    y = rng.normal(size=(6, 5))
    y[2, :] = np.nan  # a failed template
    y[:, 4] = np.nan  # a seed lost everywhere
    y[0, 1] = np.inf  # one lost cell: the rest of template 0 and seed 1 still count
    r = I.crossed_test(y)
    assert r.dropped_templates == (2,) and r.dropped_seeds == (4,)
    assert (r.n_templates, r.n_seeds, r.n_cells) == (5, 4, 19)
    assert r.estimate == pytest.approx(np.mean(y[np.isfinite(y)])) and np.isfinite(r.p_value)
    with pytest.raises(ValueError):
        I.crossed_test(np.full((3, 3), np.nan))


def test_complete_subtable_drops_whole_missing_rows_and_columns_only():
    y = np.ones((5, 4))
    y[3, :] = np.nan
    y[:, 1] = np.nan
    rows, cols = I.complete_subtable(y)
    assert list(rows) == [0, 1, 2, 4] and list(cols) == [0, 2, 3]


def _crossed_rejections(reps, n_t, n_s, sd_t, sd_s, sd_e, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    crossed = fixed = 0
    for _ in range(reps):
        y = (shift + sd_t * rng.normal(size=(n_t, 1)) + sd_s * rng.normal(size=(1, n_s))
             + sd_e * rng.normal(size=(n_t, n_s)))
        crossed += I.crossed_test(y).p_value < ALPHA
        fixed += I.sign_flip_test(y, n_resamples=199, seed=rng).p_value < ALPHA
    return crossed / reps, fixed / reps


@pytest.mark.slow
@pytest.mark.parametrize("name, sds", [
    ("pure null", (0.0, 0.0, 0.02)),
    ("template-specific zero-mean shift", (0.02, 0.0, 0.02)),
    ("seed-specific shift", (0.0, 0.02, 0.02)),
])
def test_crossed_test_calibrated_where_fixed_sign_flip_is_not(name, sds):
    crossed, fixed = _crossed_rejections(300, 8, 4, *sds, seed=11)
    assert crossed <= UPPER, name
    if sds[0] or sds[1]:
        assert fixed > 0.15, name  # the old fixed-effect test: language as fixed effect


@pytest.mark.slow
@pytest.mark.parametrize("n_t, n_s, sd_t, sd_s, missing", [
    (8, 4, 0.0, 1.0, 0.0),  # seeds carry the variance: floored Satterthwaite rejected 5× at 0.001
    (3, 32, 1.0, 0.0, 0.0),  # 3 templates carry it: 15× at 0.001
    (8, 4, 0.0, 1.0, 0.1),  # and with 10 % of the cells missing
])
def test_crossed_test_tail_holds_when_a_factor_with_few_levels_dominates(n_t, n_s, sd_t, sd_s,
                                                                          missing):
    rng = np.random.default_rng(21)
    p = []
    for _ in range(800):
        y = sd_t * rng.normal(size=(n_t, 1)) + sd_s * rng.normal(size=(1, n_s)) + rng.normal(
            size=(n_t, n_s))
        y[rng.random(y.shape) < missing] = np.nan
        p.append(I.crossed_test(y, interval=False).p_value)
    p = np.array(p)
    assert np.mean(p <= 0.05) <= 0.075 and np.mean(p <= 0.01) <= 0.022  # ~3 binomial SE
    assert np.mean(p <= 0.05) >= 0.02  # not bought by never rejecting


def test_crossed_test_finds_a_planted_shift_and_its_ci_agrees_with_p():
    rng = np.random.default_rng(2)
    y = 0.05 + 0.01 * rng.normal(size=(8, 1)) + 0.02 * rng.normal(size=(8, 4))
    r = I.crossed_test(y)
    assert r.p_value < 1e-3 and r.ci_low > 0
    for seed in range(20):
        y = np.random.default_rng(seed).normal(size=(4, 3)) + 0.6
        r = I.crossed_test(y)
        assert (r.p_value < 0.05) == (r.ci_low > 0 or r.ci_high < 0)


# ------------------------------------------------------------------------ sign flip


@pytest.mark.parametrize("seed", range(4))
def test_sign_flip_exact_equals_scipy_permutation_test(seed):
    """The one-level case scipy covers: a paired (one-sample) sign-flip test, exact."""
    d = np.random.default_rng(seed).normal(size=11) + 0.3
    want = sps.permutation_test((d,), np.mean, permutation_type="samples", alternative="two-sided",
                                n_resamples=np.inf).pvalue
    assert I.sign_flip_test(d).p_value == pytest.approx(want, rel=1e-12)


def test_sign_flip_exact_matches_brute_force_and_enumerates_4x4():
    rng = np.random.default_rng(4)
    d = rng.normal(size=7) + 0.4
    count = sum(abs(np.mean(np.array(s) * d)) >= abs(d.mean()) - 1e-12
                for s in itertools.product([1, -1], repeat=7))
    r = I.sign_flip_test(d)
    assert r.exact and r.n_resamples == 64 and r.p_value == pytest.approx(count / 128)
    assert r.min_p == pytest.approx(1 / 64)
    big = I.sign_flip_test(rng.normal(size=(4, 4)))  # 2**15 distinct patterns: enumerated
    assert big.exact and big.n_resamples == 2**15
    sampled = I.sign_flip_test(d, n_resamples=4000, max_enumerate=0, seed=1)
    assert not sampled.exact and abs(sampled.p_value - r.p_value) < 0.03
    assert sampled.generalises_to == "these templates and seeds"


# ------------------------------------------------------------------------ unbiased drift


def brute_u(m, b):
    m, b = unit(m), unit(b)
    n = len(m)
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += float((m[i] - b[i]) @ (m[j] - b[j]))
    return total / (n * (n - 1))


def test_unbiased_drift_equals_double_loop_and_skips_bad_pairs():
    rng = np.random.default_rng(8)
    m, b = rng.normal(size=(10, 6)), rng.normal(size=(10, 6))
    groups = np.array([0] * 4 + [1] * 3 + [2] * 3)
    r = I.unbiased_drift(m, b, groups, n_boot=50, n_resamples=99, seed=0)
    per = [brute_u(m[groups == g], b[groups == g]) for g in range(3)]
    assert r.per_template == pytest.approx(per, abs=1e-12)
    assert r.estimate == pytest.approx(np.mean(per), abs=1e-12)
    spread = np.mean([(np.var(unit(m[groups == g]), 0, ddof=1).sum()
                       + np.var(unit(b[groups == g]), 0, ddof=1).sum()) / 2 for g in range(3)])
    assert r.standardised == pytest.approx(r.estimate / spread, rel=1e-10)
    m2, b2 = m.copy(), b.copy()
    m2[1] = np.nan
    b2[5] = 0.0
    r2 = I.unbiased_drift(m2, b2, groups, n_boot=50, n_resamples=99, seed=0)
    keep = np.ones(10, bool)
    keep[[1, 5]] = False
    assert r2.n_dropped == 2 and r2.n_pairs == 8
    assert r2.estimate == pytest.approx(
        np.mean([brute_u(m[keep & (groups == g)], b[keep & (groups == g)]) for g in range(3)]))
    with pytest.raises(ValueError):
        I.unbiased_drift(np.full((3, 4), np.nan), b[:3])


def test_drift_sign_flip_p_matches_brute_force_enumeration():
    rng = np.random.default_rng(9)
    m, b = rng.normal(size=(6, 5)) + 0.3, rng.normal(size=(6, 5))
    groups = np.array([0, 0, 0, 1, 1, 1])
    r = I.unbiased_drift(m, b, groups, n_boot=20, seed=0)
    obs = r.estimate
    count, total = 0, 0
    for s in itertools.product([1, -1], repeat=6):  # all 64 swap patterns
        s = np.array(s)
        mm = np.where(s[:, None] > 0, m, b)
        bb = np.where(s[:, None] > 0, b, m)
        stat = np.mean([brute_u(mm[groups == g], bb[groups == g]) for g in (0, 1)])
        count += stat >= obs - 1e-12
        total += 1
    assert r.exact and r.n_resamples == 16  # 2**(3-1) * 2**(3-1) distinct
    assert r.p_value == pytest.approx(count / total)


@pytest.mark.slow
def test_unbiased_drift_is_zero_under_null_whatever_the_number_of_pairs():
    rng = np.random.default_rng(12)
    dim, reps = 24, 300
    means_u, means_biased = [], []
    for n in (2, 4, 8, 16):
        u, biased = [], []
        for _ in range(reps):
            shared = rng.normal(size=(n, dim)) + 2.0
            m = unit(shared + 0.5 * rng.normal(size=(n, dim)))
            b = unit(shared + 0.5 * rng.normal(size=(n, dim)))
            u.append(I.unbiased_drift(m, b, n_boot=1, n_resamples=1, max_enumerate=0,
                                      seed=0).estimate)
            biased.append(float(np.sum((m.mean(0) - b.mean(0)) ** 2)))
        u = np.array(u)
        assert abs(u.mean()) < 4 * u.std(ddof=1) / math.sqrt(reps), n
        means_u.append(u.mean())
        means_biased.append(np.mean(biased))
    assert means_biased[0] > 6 * means_biased[-1]  # the biased one shrinks like 1/n


def test_unbiased_drift_finds_a_planted_shift_with_ci():
    rng = np.random.default_rng(13)
    dim, n_t, n_s = 32, 4, 6
    centres = np.repeat(rng.normal(size=(n_t, dim)), n_s, 0)
    noise = rng.normal(size=(n_t * n_s, dim))
    delta = np.zeros(dim)
    delta[0] = 0.8
    m = unit(centres + noise + delta + 0.3 * rng.normal(size=noise.shape))
    b = unit(centres + noise + 0.3 * rng.normal(size=noise.shape))
    r = I.unbiased_drift(m, b, np.repeat(np.arange(n_t), n_s), n_boot=400, seed=1)
    assert r.ci_low > 0 and r.p_value < 0.01 and r.standardised > 0
    assert r.ci_low <= r.estimate <= r.ci_high


# ------------------------------------------------------------------------ controls


def test_control_comparison_like_with_like_term_values():
    r = I.control_comparison(3.0, [1.0, 4.0, 2.0], term_values=[0.5, 5.0, 3.0])
    assert r.rank == 1 and r.p_value == pytest.approx(2 / 4)  # only 1 >= 0.5; 4 < 5 and 2 < 3
    same = I.control_comparison(3.0, [1.0, 4.0, 2.0], term_values=[3.0, 3.0, 3.0])
    assert same.p_value == I.control_comparison(3.0, [1.0, 4.0, 2.0]).p_value
    with pytest.raises(ValueError, match="one value per control"):
        I.control_comparison(3.0, [1.0, 4.0], term_values=[1.0])


def test_control_comparison_rank_ratio_and_ties():
    r = I.control_comparison(3.0, [1.0, 3.0, 2.0, 5.0, np.nan])
    assert r.rank == 2 and r.p_value == pytest.approx(3 / 5) and r.min_p == pytest.approx(1 / 5)
    assert r.n_dropped == 1 and r.ratio == pytest.approx(3.0 / 2.5)
    top = I.control_comparison(99.0, np.arange(19.0))
    assert top.p_value == pytest.approx(1 / 20) == top.min_p
    two = I.control_comparison(-4.0, [1.0, -2.0, 3.0], alternative="two-sided")
    assert two.rank == 0 and two.p_value == pytest.approx(1 / 4)
    assert two.ratio == pytest.approx(4.0 / 2.0)  # magnitudes, as compared: |-4| over the median |c|
    # unbiased drifts of irrelevant controls can sit at or below 0: no ratio, not "-354x"
    assert math.isnan(I.control_comparison(0.4, [-0.002, -0.001, 0.0005]).ratio)
    assert I.control_comparison(0.4, [-0.002, -0.001, 0.0005]).p_value == pytest.approx(1 / 4)
    with pytest.raises(ValueError):
        I.control_comparison(np.nan, [1.0])
    with pytest.raises(ValueError):
        I.control_comparison(1.0, [np.nan])


# ------------------------------------------------------------------------ block WEAT


def brute_block_p(X, Y, A, B, bx, by):
    W = np.vstack([unit(X), unit(Y)])
    s = (W @ unit(A).T).mean(1) - (W @ unit(B).T).mean(1)
    labels = [("x", v) for v in bx] + [("y", v) for v in by]
    blocks = list(dict.fromkeys(labels))
    obs = s[: len(X)].mean() - s[len(X):].mean()
    n_bx = len(set(labels[: len(X)]))
    count = total = 0
    for chosen in itertools.combinations(blocks, n_bx):
        inx = np.array([lab in chosen for lab in labels])
        count += s[inx].mean() - s[~inx].mean() >= obs - 1e-12
        total += 1
    return count / total, obs


def test_block_weat_matches_brute_force_partitions():
    rng = np.random.default_rng(21)
    X, Y, A, B = (rng.normal(size=(n, 5)) for n in (6, 9, 4, 3))
    bx, by = [0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 1, 2, 2, 3]  # unequal blocks
    r = I.block_weat(X, Y, A, B, x_blocks=bx, y_blocks=by)
    p, obs = brute_block_p(X, Y, A, B, bx, by)
    assert r.exact and r.n_partitions == math.comb(7, 3) and r.unit == "prompt"
    assert r.p_value == pytest.approx(p) and r.statistic == pytest.approx(obs)
    W = np.vstack([unit(X), unit(Y)])
    s = (W @ unit(A).T).mean(1) - (W @ unit(B).T).mean(1)
    assert r.effect_size == pytest.approx(obs / np.std(s, ddof=1))
    img = I.block_weat(X, Y, A, B)
    p_img, _ = brute_block_p(X, Y, A, B, range(6), range(9))
    assert img.unit == "image" and img.p_value == pytest.approx(p_img)
    assert I.block_weat(X, Y, A, B, unit="word").generalises_to == "words like these"
    samp = I.block_weat(X, Y, A, B, x_blocks=bx, y_blocks=by, max_enumerate=0,
                        n_resamples=3000, seed=0)
    assert not samp.exact and abs(samp.p_value - p) < 0.04


def test_block_weat_drops_bad_rows():
    rng = np.random.default_rng(22)
    X, Y, A, B = (rng.normal(size=(n, 5)) for n in (4, 4, 3, 3))
    X[1] = np.nan
    A[0] = 0.0
    r = I.block_weat(X, Y, A, B, x_blocks=[0, 0, 1, 1], y_blocks=[0, 0, 1, 1])
    assert r.n_dropped == 2 and r.n_x == 3 and np.isfinite(r.p_value)
    X[:] = np.nan
    with pytest.raises(ValueError):
        I.block_weat(X, Y, A, B)


def _clustered_sets(rng, n_prompts, n_seeds, dim=16):
    """Targets X, Y: prompts from one distribution (no effect), seeds cluster by prompt."""
    def make(n):
        prompt = np.repeat(rng.normal(size=(n, dim)), n_seeds, 0)
        return unit(prompt + 0.5 * rng.normal(size=prompt.shape))
    A = unit(rng.normal(size=(8, dim)))
    B = unit(rng.normal(size=(8, dim)))
    labels = np.repeat(np.arange(n_prompts), n_seeds)
    return make(n_prompts), make(n_prompts), A, B, labels


@pytest.mark.slow
def test_block_weat_calibrated_under_prompt_clustering_image_shuffle_is_not():
    rng = np.random.default_rng(23)
    reps, block, image = 300, 0, 0
    for _ in range(reps):
        X, Y, A, B, lab = _clustered_sets(rng, 4, 4)
        block += I.block_weat(X, Y, A, B, x_blocks=lab, y_blocks=lab).p_value < ALPHA
        image += I.block_weat(X, Y, A, B, n_resamples=199, seed=rng).p_value < ALPHA
    assert block / reps <= UPPER
    assert image / reps > 0.12


def test_block_weat_finds_a_planted_association():
    rng = np.random.default_rng(24)
    X, Y, A, B, lab = _clustered_sets(rng, 6, 4)
    X = unit(X + 3 * unit(A.mean(0)))
    Y = unit(Y + 3 * unit(B.mean(0)))
    r = I.block_weat(X, Y, A, B, x_blocks=lab, y_blocks=lab)
    assert r.p_value == pytest.approx(r.min_p) and r.effect_size > 1


# ------------------------------------------------------------------------ Spearman


def test_spearman_small_n_exact_values():
    r = I.spearman_test([1, 2, 3], [10, 20, 30])
    assert r.exact and r.statistic == pytest.approx(1.0)
    assert r.p_value == pytest.approx(1 / 3)  # two-sided: |rho*| >= 1 for 2 of 6 pairings
    assert I.spearman_test([1, 2, 3], [10, 20, 30], alternative="greater").p_value == \
        pytest.approx(1 / 6)
    r8 = I.spearman_test(np.arange(8), [1, 2, 3, 4, 5, 7, 6, 8])
    assert r8.statistic == pytest.approx(0.97619, abs=1e-5)
    assert r8.p_value == pytest.approx(16 / 40320) and r8.n_resamples == 40320


@pytest.mark.slow
@pytest.mark.parametrize("n, alternative", [(5, "two-sided"), (6, "greater"), (7, "less"),
                                            (6, "two-sided")])
def test_spearman_matches_scipy_permutation_test(n, alternative):
    rng = np.random.default_rng(n)
    x = rng.normal(size=n)
    y = np.round(x + rng.normal(size=n), 0)  # ties in y
    r = I.spearman_test(x, y, alternative=alternative)
    assert r.statistic == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)
    ref = sps.permutation_test((y,), lambda v: sps.spearmanr(x, v).statistic,
                               permutation_type="pairings", alternative=alternative,
                               n_resamples=np.inf)
    assert r.exact and r.p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_spearman_sampled_for_larger_n_and_drops_nan():
    rng = np.random.default_rng(30)
    x = rng.normal(size=12)
    y = x + rng.normal(size=12)
    y[3] = np.nan
    r = I.spearman_test(x, y, n_resamples=2000, seed=0)
    assert not r.exact and r.n == 11 and r.n_dropped == 1
    assert r.min_p == pytest.approx(1 / 2001)
    with pytest.raises(ValueError):
        I.spearman_test([1, 1, 1], [1, 2, 3])  # constant: rho is NaN, no p


# ------------------------------------------------------------------------ neighbours, z


def test_neighbour_null_threshold_calibrated_and_finds_planted_word():
    rng = np.random.default_rng(40)
    dim, n_words = 24, 150
    words = [f"w{i}" for i in range(n_words)]
    W = unit(rng.normal(size=(n_words, dim)))
    listed = 0
    reps = 150
    for _ in range(reps):
        shared = rng.normal(size=(8, dim))
        m = unit(shared + 0.4 * rng.normal(size=(8, dim)))
        b = unit(shared + 0.4 * rng.normal(size=(8, dim)))
        r = I.neighbour_null(m, b, W, words, n_resamples=199, seed=rng)
        listed += bool(r.toward or r.away)
    assert listed / reps <= 0.11  # 0.05 + 3.2 SE at 150 reps
    centred = W - W.mean(0)
    m = unit(shared + 0.4 * rng.normal(size=(8, dim)) + 1.0 * unit(centred[7]))
    r = I.neighbour_null(m, b, W, words, n_resamples=199, seed=0)
    assert r.toward and r.toward[0][0] == "w7" and r.toward[0][1] > r.threshold


def test_vocabulary_z_and_comparable_shifts():
    text = np.array([0.01, 0.02, 0.03, 0.10, np.nan])
    image = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    z = I.vocabulary_z(text)
    ok = text[:4]
    assert z[:4] == pytest.approx((ok - ok.mean()) / ok.std(ddof=1)) and np.isnan(z[4])
    c = I.comparable_shifts(text, image)
    assert c.difference[1] == pytest.approx(c.image_z[1] - c.text_z[1])
    with pytest.raises(ValueError):
        I.vocabulary_z([1.0, 1.0, 1.0])


# ------------------------------------------------------------------------ hygiene, precision


def test_clean_rows_counts_and_errors():
    x = np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, 0.0], [3.0, 4.0], [np.inf, 0.0]])
    c = I.clean_rows(x)
    assert (c.n_nonfinite, c.n_zero, c.n_dropped) == (2, 1, 3)
    assert c.rows == pytest.approx(np.array([[1, 0], [0.6, 0.8]]))
    assert list(c.kept) == [True, False, False, True, False]
    with pytest.raises(ValueError, match="usable"):
        I.clean_rows(np.zeros((3, 2)), name="term 'fancy'")
    with pytest.raises(ValueError):
        I.require_finite(np.nan, "statistic")


def test_format_p_precision_floor_and_nan():
    assert I.format_p(0.0312, min_p=1e-4, exact=False, n_resamples=9999) == "0.031"
    assert I.format_p(0.5, min_p=1e-3, exact=False, n_resamples=999) == "0.50"
    assert I.format_p(2e-4, min_p=1e-4, exact=False, n_resamples=9999) == "2e-04"
    assert I.format_p(1e-4, min_p=1e-4, exact=False, n_resamples=9999) == "≤ 1.0e-04"
    assert I.format_p(1 / 32768, min_p=1 / 32768, exact=True, n_resamples=32768) == "≤ 3.1e-05"
    assert I.format_p(16 / 40320, min_p=2 / 40320, exact=True, n_resamples=40320) == "4.0e-04"
    assert I.format_p(0.0123456, min_p=0.0, exact=False, n_resamples=0) == "0.012"
    assert I.format_p(float("nan"), min_p=0.0, exact=False, n_resamples=0) == "n/a"
    for p, b in [(0.2, 99), (0.01, 999), (0.0501, 100_000)]:  # printed digits fit the MC error
        text = I.format_p(p, min_p=1 / (b + 1), exact=False, n_resamples=b)
        assert abs(float(text) - p) <= I.mc_error(p, b)


def test_design_check_and_choose_exact():
    small = I.design_check(n_templates=3, n_seeds=4, n_controls=5)
    assert not small.reachable and small.min_p["controls"] == pytest.approx(1 / 6)
    assert any("19 controls" in m for m in small.messages)
    assert any("templates" in m for m in small.messages)
    good = I.design_check(n_templates=8, n_seeds=8, n_controls=19)
    assert good.reachable and good.messages == ()
    assert I.choose_exact(2**15) and not I.choose_exact(2**20)
    assert I.choose_exact(math.comb(16, 8))  # 4 + 4 prompts x ... : 12,870 partitions


def test_constant_table_gives_no_p():
    r = I.crossed_test(np.full((4, 3), 0.2))
    assert math.isnan(r.p_value) and r.estimate == pytest.approx(0.2)
    rounding = np.random.default_rng(1).normal(size=(4, 3)) * 1e-17  # differences at rounding level
    assert math.isnan(I.crossed_test(rounding, atol=1e-12).p_value)
    assert np.isfinite(I.crossed_test(rounding).p_value)  # atol=0: the caller says what is data


def test_design_check_warns_about_two_seeds():
    check = I.design_check(n_templates=8, n_seeds=2, n_controls=19)
    assert check.reachable and any("only 2 seeds" in m for m in check.messages)


def test_an_adjusted_p_is_never_printed_below_the_p_it_adjusts():
    """A p at its floor prints "≤ 0.34" (1/3 rounded up); its adjusted value 1/3 must not print
    0.33 beside it: adjusted p's are rounded up at 2 significant digits."""
    assert I.format_p(1 / 3, min_p=1 / 3, exact=True, n_resamples=3) == "≤ 0.34"
    assert I.format_p_adjusted(1 / 3) == "0.34"
    assert I.format_p_adjusted(0.05) == "0.050" and I.format_p_adjusted(1.0) == "1.0"
    assert I.format_p_adjusted(2.1e-4) == "2.1e-04" and I.format_p_adjusted(float("nan")) == "n/a"
