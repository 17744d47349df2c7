"""Coverage of the attribute-rate intervals on simulated data where the truth is planted.

    python benchmarks/bench_rates_coverage.py [--sims 300] [--seed 0]

Each image's label is drawn with template and seed effects on the logit scale (templates and
seeds are random factors, as in a sweep); the planted population share is the mean share over
new templates and seeds. Reported per scenario: how often the 95 % rate interval holds the
planted share (coverage), how often the difference from a baseline with the same share is called
significant at 0.05 (false positives), and how often a planted difference is found (power).
Corrected rates: labels pass through a known confusion matrix and are corrected from a
simulated calibration set of 100 images per option, whose own uncertainty enters the interval.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import special

from ldmprobe.analysis import rates


def population_share(rate: float, sd_t: float, sd_s: float) -> float:
    z = np.random.default_rng(12345).normal(0, np.hypot(sd_t, sd_s), 400_000)
    return float(special.expit(special.logit(rate) + z).mean())


def labels(rng, rate, n_t, n_s, sd_t, sd_s) -> np.ndarray:
    """1 where the image has the option (label 0 in a two-option group), else 0."""
    logit = special.logit(rate) + rng.normal(0, sd_t, n_t)[:, None] + rng.normal(0, sd_s, n_s)[None, :]
    return (rng.random((n_t, n_s)) < special.expit(logit)).astype(int)


SCENARIOS = (  # (name, share, templates, seeds, sd template, sd seed, confusion or None)
    ("10 x 10, share 0.3", 0.3, 10, 10, 0.5, 0.3, None),
    ("8 x 4, share 0.1", 0.1, 8, 4, 0.5, 0.3, None),
    ("4 x 16, share 0.5, templates dominate", 0.5, 4, 16, 1.0, 0.2, None),
    ("10 x 10, share 0.8", 0.8, 10, 10, 0.8, 0.3, None),
    ("10 x 10, share 0.3, corrected (sens 0.85, spec 0.9)", 0.3, 10, 10, 0.5, 0.3, ((0.85, 0.15), (0.1, 0.9))),
)


def run(scenario, sims: int, rng) -> dict:
    name, share, n_t, n_s, sd_t, sd_s, confusion = scenario
    truth = population_share(share, sd_t, sd_s)
    covered = false_pos = found = 0
    for _ in range(sims):
        term = 1 - labels(rng, share, n_t, n_s, sd_t, sd_s)  # label 0 = has the option
        base = 1 - labels(rng, share, n_t, n_s, sd_t, sd_s)
        shifted = 1 - labels(rng, min(0.95, share + 0.25), n_t, n_s, sd_t, sd_s)
        correction = None
        if confusion is not None:
            conf = np.array(confusion)
            flip = lambda lab: np.where(rng.random(lab.shape) < conf[lab, 1 - lab], 1 - lab, lab)  # noqa: E731
            term, base, shifted = flip(term), flip(base), flip(shifted)
            true_cal = np.repeat([0, 1], 100)
            correction = rates.correction_from_labels(true_cal, flip(true_cal), 2, n_boot=200,
                                                      seed=int(rng.integers(1 << 30)))
        row = rates.group_rates(term, base, "g", ("yes", "no"), correction=correction)[0]
        covered += row.ci_low <= truth <= row.ci_high
        false_pos += row.p_value is not None and row.p_value < 0.05
        found += (rates.group_rates(shifted, base, "g", ("yes", "no"), correction=correction)[0].p_value or 1) < 0.05
    return {"scenario": name, "planted": round(truth, 3), "coverage": covered / sims,
            "false_positive_rate": false_pos / sims, "power_+0.25": found / sims}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"{'scenario':55} {'share':>6} {'cover':>6} {'FPR':>6} {'power':>6}")
    for scenario in SCENARIOS:
        r = run(scenario, args.sims, rng)
        print(f"{r['scenario']:55} {r['planted']:6.3f} {r['coverage']:6.3f} {r['false_positive_rate']:6.3f} "
              f"{r['power_+0.25']:6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
