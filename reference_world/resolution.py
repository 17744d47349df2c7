"""How finely an evaluation of the world can judge its "within 10 points" targets.

A target of issue 27 says a share drawn by the generator lies within ``tolerance`` of the
story's rate. Even a generator that draws the story exactly misses such a target now and then,
by sampling error alone, and how often depends on how many pictures the share rests on. A card
that lists misses without that chance cannot say whether a miss is the generator's or the
evaluation's. For each target this module gives the chance that an exact generator meets it at
the evaluation's own sample size; their complements summed give the number of targets an exact
generator would miss on average (a sum of expectations, so it holds whatever the dependence
between targets: every word is drawn from the same seeds).

Pictures of one word come from distinct seeds, so an exact generator's pictures of one word are
independent draws from the story: the chance of one rate is binomial (computed exactly with
scipy), that of "every option of every attribute" the product over attributes of a multinomial
chance (simulated, seeded; its Monte Carlo standard error is below 0.004 at the default draws).
"""

from __future__ import annotations

import math

import numpy as np


def rate_chance(rate: float, n: int, tolerance: float) -> float:
    """P(|X/n - rate| <= tolerance) for X ~ Binomial(n, rate)."""
    from scipy.stats import binom

    if n < 1:
        raise ValueError("n must be at least 1")
    low = max(0, math.ceil(n * (rate - tolerance) - 1e-9))
    high = min(n, math.floor(n * (rate + tolerance) + 1e-9))
    if high < low:
        return 0.0
    return float(binom.cdf(high, n, rate) - (binom.cdf(low - 1, n, rate) if low > 0 else 0.0))


def options_chance(groups: dict[str, dict[str, float]], n: int, tolerance: float, *,
                   draws: int = 20_000, seed: int = 0) -> float:
    """P(every option of every group lies within ``tolerance`` of its probability) for ``n``
    independent pictures, each group's option drawn from its own distribution (the groups
    independent of each other, as in the story)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    rng = np.random.default_rng(seed)
    chance = 1.0
    for name in sorted(groups):
        p = np.array(list(groups[name].values()), dtype=float)
        p = p / p.sum()
        if len(p) == 2:
            chance *= rate_chance(float(p[0]), n, tolerance)
            continue
        shares = rng.multinomial(n, p, size=draws) / n
        chance *= float(np.mean(np.abs(shares - p).max(axis=1) <= tolerance))
    return chance


def summary(chances: dict[str, float], met: dict[str, bool]) -> dict:
    """The evaluation's resolution: per target its chance, the expected misses of an exact
    generator, and for each missed target how often an exact generator would miss it too."""
    expected = sum(1 - c for c in chances.values())
    return {"chance_exact_generator_meets": {k: round(v, 4) for k, v in chances.items()},
            "expected_misses_exact_generator": round(expected, 2),
            "targets_judged": len(chances),
            "missed": {k: round(1 - chances[k], 4) for k in chances if not met.get(k, True)},
            "meaning": "chance that a generator drawing the story exactly meets each 'within 10 points' "
                       "target at this evaluation's sample sizes (pictures of a word are independent "
                       "draws); 'missed' gives, for each missed target, how often such a generator misses "
                       "it too: a miss an exact generator makes under 0.05 of the time is the generator's"}
