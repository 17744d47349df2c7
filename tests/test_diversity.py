"""Narrowing: the Vendi score against a direct eigenvalue computation, effective numbers, and
a planted narrowing found (and none claimed where there is none)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import linalg, stats as sps

from ldmprobe.analysis import diversity
from ldmprobe.analysis.rates import AttributeInput


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _direct_vendi(x):
    k = x @ x.T / len(x)
    lam = linalg.eigh(k, eigvals_only=True)
    lam = lam[lam > 1e-12]
    return math.exp(sps.entropy(lam))


@pytest.mark.parametrize("n, d", [(6, 16), (40, 8)])  # both the n x n and the d x d route
def test_vendi_matches_a_direct_eigenvalue_computation(n, d):
    x = _unit(np.random.default_rng(n).normal(size=(n, d)))
    assert diversity.vendi(x) == pytest.approx(_direct_vendi(x), rel=1e-9)


def test_vendi_extremes_and_weights_equal_duplication():
    x = _unit(np.random.default_rng(0).normal(size=(5, 12)))
    assert diversity.vendi(np.repeat(x[:1], 7, axis=0)) == pytest.approx(1.0)
    assert diversity.vendi(np.eye(6)) == pytest.approx(6.0)
    w = np.array([1, 3, 1, 2, 1])
    assert diversity.vendi(x, w) == pytest.approx(_direct_vendi(np.repeat(x, w, axis=0)))


def test_effective_number_is_exp_entropy():
    p = np.array([0.5, 0.25, 0.25, 0.0])
    assert diversity.entropy_exp(p) == pytest.approx(math.exp(sps.entropy(p)))
    assert diversity.entropy_exp([1, 0, 0]) == pytest.approx(1.0)
    assert diversity.entropy_exp([0.2] * 5) == pytest.approx(5.0)


def _clustered(rng, n_t, n_s, centres, probs):
    """(T, S, d) embeddings around the given centres and (T, S) labels of which centre."""
    labels = rng.choice(len(centres), size=(n_t, n_s), p=probs)
    emb = _unit(centres[labels] + 0.15 * rng.normal(size=(n_t, n_s, centres.shape[1])))
    return emb, labels


def _run(term_probs, base_probs, seed, reference=None):
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(5, 32)))
    emb, lab = _clustered(rng, 8, 8, centres, term_probs)
    b_emb, b_lab = _clustered(rng, 8, 8, centres, base_probs)
    attrs = AttributeInput(groups=(("bg", tuple("abcde")),), option_embeddings=(centres,), logit_scale=100.0,
                           reference=reference or {})
    return diversity.term_diversity(emb, [lab], b_emb, [b_lab], attrs, term="t", baseline="", is_baseline=False,
                                    n_resamples=200, seed=seed)


def test_a_planted_narrowing_is_found():
    result = _run([0.9, 0.025, 0.025, 0.025, 0.025], [0.2] * 5, 1,
                  reference={("t", "bg"): dict(zip("abcde", [0.2] * 5))})
    assert result.verdict == "narrows" and result.vendi < result.baseline_vendi
    assert result.p_value < 0.05
    group = result.groups[0]
    assert group.versus_baseline == "narrows" and group.versus_reference == "narrows"
    assert group.effective_number == pytest.approx(group.effective_number)  # a number, not None
    assert group.reference_effective_number == pytest.approx(5.0)
    assert group.ci_low <= group.effective_number <= group.ci_high


@pytest.mark.slow
def test_no_narrowing_is_claimed_when_there_is_none():
    claims = sum(_run([0.2] * 5, [0.2] * 5, seed).verdict is not None for seed in range(20))
    assert claims <= 3  # 5 % expected; intervals from 200 resamples


@pytest.mark.slow
def test_the_vendi_p_agrees_with_the_interval_of_the_difference():
    for seed in range(6):
        result = _run([0.5, 0.2, 0.1, 0.1, 0.1], [0.2] * 5, seed)
        excludes = not result.difference_ci_low <= 0 <= result.difference_ci_high
        assert excludes == (result.p_value < 0.05) or abs(result.p_value - 0.05) < 0.02


def test_a_reference_at_the_most_options_is_not_narrowed_by_rounding():
    """Uniform reference rates give an effective number of k (5.000000000000001 in floats) and an
    interval clipped at k: a term drawn at the reference's rates is not "narrower" than it."""
    uniform = {("t", "bg"): dict(zip("abcde", [0.2] * 5))}
    results = [_run([0.2] * 5, [0.2] * 5, seed, reference=uniform).groups[0] for seed in range(8)]
    assert all(g.reference_effective_number <= 5.0 for g in results)
    assert sum(g.versus_reference == "narrows" for g in results) <= 1


def test_no_verdict_on_a_design_too_small_for_the_intervals():
    """Below 4 templates x 4 seeds (and 24 / 48 cells) the resampling intervals do not hold
    their level (benchmarks/bench_diversity_coverage.py --raw): intervals, no verdict, a note."""
    rng = np.random.default_rng(3)
    centres = _unit(rng.normal(size=(5, 32)))
    emb, lab = _clustered(rng, 3, 2, centres, [0.9, 0.025, 0.025, 0.025, 0.025])
    b_emb, b_lab = _clustered(rng, 3, 2, centres, [0.2] * 5)
    attrs = AttributeInput(groups=(("bg", tuple("abcde")),), option_embeddings=(centres,), logit_scale=100.0,
                           reference={("t", "bg"): dict(zip("abcde", [0.2] * 5))})
    result = diversity.term_diversity(emb, [lab], b_emb, [b_lab], attrs, term="t", baseline="", is_baseline=False,
                                      n_resamples=200, seed=0)
    assert result.verdict is None and "3 templates x 2 seeds" in result.verdict_note
    group = result.groups[0]
    assert group.versus_baseline is None and group.versus_reference is None
    assert group.ci_low is not None and result.difference_ci_low is not None  # the intervals are still shown
    assert diversity.verdict_note(8, 4, 32) == (False, True, diversity.verdict_note(8, 4, 32)[2])
    assert diversity.verdict_note(8, 8, 64) == (True, True, None)
    assert _run([0.9, 0.025, 0.025, 0.025, 0.025], [0.2] * 5, 1).verdict_note is None  # 8 x 8
