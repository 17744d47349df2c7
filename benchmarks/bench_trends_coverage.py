"""Coverage of the guidance-trend intervals (analysis.trends) on simulated data with a planted slope.

    python benchmarks/bench_trends_coverage.py [--sims 300] [--seed 0]

Each image's option is drawn with probability p0 + a_t + b_s + (slope + u_t + v_s) (g − ḡ):
template and seed effects on the level and on the slope (templates and seeds are random
factors, as in a sweep), at the guidance levels g of the scenario; the population slope of the
rate over guidance is then exactly ``slope``. Reported per scenario: how often the 95 % slope
interval holds the planted slope (coverage), how often a zero slope is called significant at
0.05 (false positives), and how often the planted slope is found (power). Corrected trends:
labels pass through a known confusion matrix and are corrected from a simulated calibration
set of 100 images per option, whose own uncertainty enters the interval.
"""

from __future__ import annotations

import argparse

import numpy as np

from ldmprobe.analysis import rates
from ldmprobe.analysis.trends import option_trends


def labels(rng, slope, guidance, n_t, n_s, sd_t, sd_s, sd_slope) -> list[np.ndarray]:
    """Per level, 0 where the image has the option, else 1 (a two-option group)."""
    g = np.asarray(guidance, float) - np.mean(guidance)
    a, b = rng.normal(0, sd_t, n_t)[:, None], rng.normal(0, sd_s, n_s)[None, :]
    u, v = rng.normal(0, sd_slope, n_t)[:, None], rng.normal(0, sd_slope / 2, n_s)[None, :]
    return [(rng.random((n_t, n_s)) >= np.clip(0.5 + a + b + (slope + u + v) * x, 0.01, 0.99)).astype(int)
            for x in g]


SCENARIOS = (  # (name, slope, guidance levels, templates, seeds, sd template, sd seed, sd slope, confusion)
    ("10 x 10, guidance 3/5/7.5, slope 0.05", 0.05, (3, 5, 7.5), 10, 10, 0.08, 0.05, 0.01, None),
    ("8 x 6, guidance 1/3/5/7.5, slope 0.04", 0.04, (1, 3, 5, 7.5), 8, 6, 0.08, 0.05, 0.01, None),
    ("4 x 16, guidance 3/7.5, slope 0.05, templates dominate", 0.05, (3, 7.5), 4, 16, 0.15, 0.03, 0.015, None),
    ("10 x 10, guidance 3/5/7.5, slope 0.05, corrected (0.85/0.9)", 0.05, (3, 5, 7.5), 10, 10, 0.08, 0.05, 0.01,
     ((0.85, 0.15), (0.1, 0.9))),
)


def run(scenario, sims: int, rng) -> dict:
    name, slope, guidance, n_t, n_s, sd_t, sd_s, sd_slope, confusion = scenario
    covered = false_pos = found = 0
    for _ in range(sims):
        planted = labels(rng, slope, guidance, n_t, n_s, sd_t, sd_s, sd_slope)
        flat = labels(rng, 0.0, guidance, n_t, n_s, sd_t, sd_s, sd_slope)
        correction = None
        if confusion is not None:
            conf = np.array(confusion)

            def flip(lab):
                return np.where(rng.random(lab.shape) < conf[lab, 1 - lab], 1 - lab, lab)

            planted, flat = [flip(x) for x in planted], [flip(x) for x in flat]
            true_cal = np.repeat([0, 1], 100)
            correction = rates.correction_from_labels(true_cal, flip(true_cal), 2, n_boot=200,
                                                      seed=int(rng.integers(1 << 30)))
        up = option_trends(planted, guidance, term="t", group="g", options=("yes", "no"), correction=correction)[0]
        covered += up.ci_low <= slope <= up.ci_high
        found += up.p_value is not None and up.p_value < 0.05 and up.slope > 0
        zero = option_trends(flat, guidance, term="t", group="g", options=("yes", "no"), correction=correction)[0]
        false_pos += zero.p_value is not None and zero.p_value < 0.05
    return {"scenario": name, "planted": slope, "coverage": covered / sims, "false_positive_rate": false_pos / sims,
            "power": found / sims}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"{'scenario (slope interval, 95 %)':62} {'slope':>6} {'cover':>6} {'FPR':>6} {'power':>6}")
    for scenario in SCENARIOS:
        r = run(scenario, args.sims, rng)
        print(f"{r['scenario']:62} {r['planted']:6.3f} {r['coverage']:6.3f} {r['false_positive_rate']:6.3f} "
              f"{r['power']:6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
