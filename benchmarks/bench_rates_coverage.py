"""Coverage of the attribute-rate intervals on simulated data where the truth is planted.

    python benchmarks/bench_rates_coverage.py [--sims 300] [--seed 0]

Each image's label is drawn with template and seed effects on the logit scale (templates and
seeds are random factors, as in a sweep); the planted population share is the mean share over
new templates and seeds. Reported per scenario: how often the 95 % rate interval holds the
planted share (coverage), how often the difference from a baseline with the same share is called
significant at 0.05 (false positives), and how often a planted difference is found (power).
Corrected rates: labels pass through a known confusion matrix and are corrected from a
simulated calibration set of 100 images per option, whose own uncertainty enters the interval.

Then ``compare``'s rate difference B − A between two runs (analysis.compare_rates): paired runs
share their template and seed effects (same prompts, same seeds), unpaired runs share the
templates but draw other seeds; reported: coverage of the planted population difference, the
false-positive rate when both runs draw the same share, and the power for a planted +0.2.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import special

from ldmprobe.analysis import compare_rates, rates


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


COMPARE_SCENARIOS = (  # (name, share A, templates, seeds A, seeds B, sd template, sd seed, paired, confusion)
    ("paired 10 x 10, 0.3", 0.3, 10, 10, 10, 0.5, 0.3, True, None),
    ("paired 8 x 4, 0.1", 0.1, 8, 4, 4, 0.5, 0.3, True, None),
    ("paired 4 x 16, 0.5, templates dominate", 0.5, 4, 16, 16, 1.0, 0.2, True, None),
    ("paired 10 x 10, 0.3, corrected", 0.3, 10, 10, 10, 0.5, 0.3, True, ((0.85, 0.15), (0.1, 0.9))),
    ("unpaired 10 x 10 vs 10 x 6, 0.3", 0.3, 10, 10, 6, 0.5, 0.3, False, None),
    ("unpaired 8 x 4 vs 8 x 8, 0.1", 0.1, 8, 4, 8, 0.5, 0.3, False, None),
    ("unpaired 4 x 5 vs 4 x 5 (other seeds), 0.3", 0.3, 4, 5, 5, 0.5, 0.3, False, None),
)


def _difference_truth(a: float, b: float, sd_t: float, sd_s: float) -> float:
    z = np.random.default_rng(12345).normal(0, np.hypot(sd_t, sd_s), 400_000)
    return float(special.expit(special.logit(b) + z).mean() - special.expit(special.logit(a) + z).mean())


def _run_labels(rng, rate, tmpl, seeds, confusion):
    logit = special.logit(rate) + tmpl[:, None] + seeds[None, :]
    lab = 1 - (rng.random(logit.shape) < special.expit(logit)).astype(int)  # label 0 = has the option
    if confusion is not None:
        conf = np.array(confusion)
        lab = np.where(rng.random(lab.shape) < conf[lab, 1 - lab], 1 - lab, lab)
    return lab


def run_compare(scenario, sims: int, rng) -> dict:
    name, share, n_t, s_a, s_b, sd_t, sd_s, paired, confusion = scenario
    shifted = min(0.95, share + 0.2)
    truth = _difference_truth(share, shifted, sd_t, sd_s)
    covered = false_pos = found = 0
    for _ in range(sims):
        tmpl, seeds_a = rng.normal(0, sd_t, n_t), rng.normal(0, sd_s, s_a)
        seeds_b = seeds_a if paired else rng.normal(0, sd_s, s_b)
        correction = None
        if confusion is not None:
            true_cal = np.repeat([0, 1], 100)
            conf = np.array(confusion)
            seen = np.where(rng.random(200) < conf[true_cal, 1 - true_cal], 1 - true_cal, true_cal)
            correction = rates.correction_from_labels(true_cal, seen, 2, n_boot=200, seed=int(rng.integers(1 << 30)))
        a = _run_labels(rng, share, tmpl, seeds_a, confusion)

        def change(b):
            return compare_rates.group_rate_changes("m", a, b, "g", ("yes", "no"), correction=correction,
                                                    paired=paired)[0]

        row = change(_run_labels(rng, shifted, tmpl, seeds_b, confusion))
        covered += row.ci_low is not None and row.ci_low <= truth <= row.ci_high
        found += (row.p_value or 1) < 0.05
        false_pos += (change(_run_labels(rng, share, tmpl, seeds_b, confusion)).p_value or 1) < 0.05
    return {"scenario": name, "planted": round(truth, 3), "coverage": covered / sims,
            "false_positive_rate": false_pos / sims, "power_+0.2": found / sims}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare-only", action="store_true", help="only compare's table (B - A)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    if not args.compare_only:
        print(f"{'scenario':55} {'share':>6} {'cover':>6} {'FPR':>6} {'power':>6}")
    for scenario in () if args.compare_only else SCENARIOS:
        r = run(scenario, args.sims, rng)
        print(f"{r['scenario']:55} {r['planted']:6.3f} {r['coverage']:6.3f} {r['false_positive_rate']:6.3f} "
              f"{r['power_+0.25']:6.3f}")
    print(f"\n{'compare: B - A':55} {'diff':>6} {'cover':>6} {'FPR':>6} {'power':>6}")
    for scenario in COMPARE_SCENARIOS:
        r = run_compare(scenario, args.sims, rng)
        print(f"{r['scenario']:55} {r['planted']:6.3f} {r['coverage']:6.3f} {r['false_positive_rate']:6.3f} "
              f"{r['power_+0.2']:6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
