"""The evaluation's resolution: chances that a generator drawing the story exactly meets a target."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from reference_world import resolution


def _brute_rate(p: float, n: int, tol: float) -> float:
    return sum(math.comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(n + 1) if abs(k / n - p) <= tol)


@pytest.mark.parametrize("p,n,tol", [(0.5, 160, 0.10), (0.92, 40, 0.10), (0.143, 77, 0.05), (0.75, 10, 0.10),
                                     (0.5, 10, 0.10), (0.3, 1, 0.5)])
def test_rate_chance_equals_a_brute_force_binomial_sum(p, n, tol):
    assert resolution.rate_chance(p, n, tol) == pytest.approx(_brute_rate(p, n, tol), abs=1e-12)


def test_options_chance_matches_an_enumerated_multinomial():
    p, n, tol = np.array([0.5, 0.3, 0.2]), 12, 0.1
    exact = 0.0
    for a, b in itertools.product(range(n + 1), repeat=2):
        c = n - a - b
        if c < 0:
            continue
        counts = np.array([a, b, c])
        if np.abs(counts / n - p).max() <= tol:
            exact += math.factorial(n) / (math.factorial(a) * math.factorial(b) * math.factorial(c)) * np.prod(p ** counts)
    got = resolution.options_chance({"g": dict(zip("abc", p))}, n, tol, draws=40_000)
    assert got == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 40_000) + 1e-9)


def test_groups_multiply_and_two_options_are_exact():
    two = {"size": {"big": 0.5, "small": 0.5}}
    assert resolution.options_chance(two, 160, 0.1) == pytest.approx(resolution.rate_chance(0.5, 160, 0.1))
    three = {"g": {"a": 0.4, "b": 0.4, "c": 0.2}}
    both = resolution.options_chance({**two, **three}, 50, 0.1, seed=3)
    assert both == pytest.approx(resolution.rate_chance(0.5, 50, 0.1) * resolution.options_chance(three, 50, 0.1, seed=3))


def test_an_exact_generator_misses_as_often_as_predicted():
    """Planted truth: shares drawn from the story itself miss the target at the predicted rate."""
    rng = np.random.default_rng(7)
    groups = {"background": {"y": 0.1, "b": 0.225, "g": 0.225, "p": 0.225, "n": 0.225},
              "size": {"big": 0.5, "small": 0.5}}
    n, reps = 40, 4000
    met = 0
    for _ in range(reps):
        ok = True
        for probs in groups.values():
            p = np.array(list(probs.values()))
            ok &= bool(np.abs(rng.multinomial(n, p) / n - p).max() <= 0.1)
        met += ok
    predicted = resolution.options_chance(groups, n, 0.1)
    assert met / reps == pytest.approx(predicted, abs=4 * math.sqrt(predicted * (1 - predicted) / reps) + 0.005)
    assert 0.3 < predicted < 0.9  # a size where the evaluation cannot judge: the test has something to find


def test_summary_counts_expected_misses_and_names_the_missed():
    res = resolution.summary({"a": 0.9, "b": 0.99, "c": 0.5}, {"a": True, "b": False, "c": True})
    assert res["expected_misses_exact_generator"] == pytest.approx(0.61)
    assert res["missed"] == {"b": pytest.approx(0.01)}
    assert res["targets_judged"] == 3


def test_evaluate2_gives_every_share_target_a_chance():
    from reference_world import evaluate2

    training = evaluate2.expected("", ["a photo of the {} house"])
    report = {"settings": {"seeds": 16, "templates": ["t"] * 10, "controls": ["nice"]},
              "planted": [{"term": "old", "noun": "any", "value": "small", "attribute": "size", "route": "both",
                           "rate": 0.75, "drawn": 0.9, "n_images": 160}],
              "words": {w: {"max_deviation": d, "training": training} for w, d in (("bare", 0.05), ("nice", 0.2))},
              "objectless": 0.0, "following": {"size": 1.0}, "measurer_zero_shot": {"size": 1.0}}
    res = evaluate2.target_resolution(report)
    assert res["targets_judged"] == 3
    assert set(res["missed"]) == {"old/any -> small size (both) within 10 points of planted",
                                  "nice: every option within 10 points of training"}
    assert res["chance_exact_generator_meets"]["bare: every option within 10 points of training"] > 0.95
