"""How much power a valid test can have at 8 x 4 with seed-specific variation (issue 29).

    OMP_NUM_THREADS=1 python benchmarks/power_bound.py [--reps 2000] [--oracle-reps 400000]

The scenario is benchmarks/calibration_tables.py's power scenario: y[t, s] = shift + a_t + b_s
+ e_ts, 8 templates x 4 seeds, template SD 0.02, seed SD 0.05, residual SD 0.04 (cosine
units), a shift of 0.06. The seed component dominates the variance of the mean, and the data
hold only 3 degrees of freedom about it (4 seeds).

Rows, all at alpha = 0.05, two-sided, in one run:
- **known variances**: a z-test that knows all three components (no valid test can beat it);
- **oracle**: a test that knows the template and residual SDs and estimates only the seed
  component from the seed mean square (3 df): statistic mean / sqrt((MS_S + lambda_T -
  lambda_E) / n), its critical value taken from null simulation so that its level is exactly
  0.05. A real test must estimate all three components, so it has at most about this power
  (this is the usual bound, not a proof over every conceivable test);
- **t with 3 df**: the analytic power of a t-test whose variance estimate has the seed
  mean square's 3 df;
- **crossed (current)** and **old**: ldmprobe's crossed generalised test and the previous
  Satterthwaite-with-floors test, on the same simulated tables, each with its null rejection
  rate at 0.05 and 0.001 in the same scenario (the old test's power comes partly from its
  excess rejections under the null).
Figures are rates with 95 % Wilson intervals; the ratio column is each row's power over the
oracle's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ldmprobe.analysis import inference as I  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration_tables import fmt, old_crossed_p  # noqa: E402

N_T, N_S = 8, 4
SD_T, SD_S, SD_E = 0.02, 0.05, 0.04
SHIFT = 0.06


def tables(rng, reps: int, shift: float) -> np.ndarray:
    return (shift + SD_T * rng.normal(size=(reps, N_T, 1)) + SD_S * rng.normal(size=(reps, 1, N_S))
            + SD_E * rng.normal(size=(reps, N_T, N_S)))


def lambdas() -> tuple[float, float, float]:
    lam_t = SD_E**2 + N_S * SD_T**2
    lam_s = SD_E**2 + N_T * SD_S**2
    return lam_t, lam_s, SD_E**2


def oracle_stat(y: np.ndarray) -> np.ndarray:
    lam_t, _, lam_e = lambdas()
    n = N_T * N_S
    ms_s = N_T * y.mean(1).var(1, ddof=1)
    return y.mean((1, 2)) / np.sqrt((ms_s + lam_t - lam_e) / n)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=2000, help="tables per row for the real tests")
    ap.add_argument("--oracle-reps", type=int, default=400_000)
    ap.add_argument("--seed", type=int, default=29)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    lam_t, lam_s, lam_e = lambdas()
    n = N_T * N_S
    se = np.sqrt((lam_t + lam_s - lam_e) / n)
    z = SHIFT / se
    known = sps.norm.sf(1.96 - z) + sps.norm.cdf(-1.96 - z)
    t3c = sps.t.ppf(0.975, N_S - 1)
    t3 = sps.nct.sf(t3c, N_S - 1, z) + sps.nct.cdf(-t3c, N_S - 1, z)

    crit = float(np.quantile(np.abs(oracle_stat(tables(rng, args.oracle_reps, 0.0))), 0.95))
    k_oracle = int(np.sum(np.abs(oracle_stat(tables(rng, args.oracle_reps, SHIFT))) > crit))
    oracle = k_oracle / args.oracle_reps

    counts = {"crossed (current)": [0, 0, 0], "old": [0, 0, 0]}
    for shift, slot in ((SHIFT, 0), (0.0, 1)):
        for y in tables(rng, args.reps, shift):
            for name, p in (("crossed (current)", I.crossed_test(y, interval=False).p_value),
                            ("old", old_crossed_p(y))):
                if slot == 0:
                    counts[name][0] += p <= 0.05
                else:
                    counts[name][1] += p <= 0.05
                    counts[name][2] += p <= 0.001

    print(f"# 8 x 4, template SD {SD_T}, seed SD {SD_S}, residual SD {SD_E}, shift {SHIFT}; "
          f"SE of the mean {se:.4f} (shift / SE = {z:.2f})\n")
    print("| test | power at 0.05 | ratio to oracle | null p <= 0.05 | null p <= 0.001 |")
    print("|---|---|---|---|---|")
    print(f"| known variances (z) | {known:.3f} (exact) | {known / oracle:.2f} | 0.05 | 0.001 |")
    print(f"| oracle: template and residual SDs known | {fmt(k_oracle, args.oracle_reps)} | 1.00 "
          f"| 0.05 (critical value {crit:.3f} by simulation) | - |")
    print(f"| t with 3 df | {t3:.3f} (exact) | {t3 / oracle:.2f} | 0.05 | 0.001 |")
    for name, (k_pow, k05, k001) in counts.items():
        print(f"| {name} | {fmt(k_pow, args.reps)} | {k_pow / args.reps / oracle:.2f} "
              f"| {fmt(k05, args.reps)} | {fmt(k001, args.reps, 4)} |")
    print(f"\n# {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
