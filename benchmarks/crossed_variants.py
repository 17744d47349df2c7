"""Variants of the crossed test measured against the shipped one (docs/CALIBRATION.md,
"Variants tried").

    OMP_NUM_THREADS=1 python benchmarks/crossed_variants.py --reps 2000 --power-reps 2000

Same simulated tables as benchmarks/calibration_tables.py (y[t, s] = δ + a_t + b_s + e_ts,
residual SD 1) plus intermediate seed SDs at 8 x 4, where a rule that decides from the
estimated components is most often wrong, and seed SD 3, where the seeds carry nearly all of
the variance; power at benchmarks/power_bound.py's scenario
(8 x 4, template SD 0.02, seed SD 0.05, residual SD 0.04, shift 0.06). Every variant sees
the same tables. Variants:

- **shipped**: ``crossed_test`` (generalised p over the method-of-moments components);
- **cell t if both ≤ 0**: when the template and the seed component both estimate ≤ 0, a
  one-sample t over the cells (df n − 1); otherwise shipped;
- **pool factors ≤ 0**: a factor whose component estimates ≤ 0 is dropped from the model
  (the classic pooling rule): seed ≤ 0 gives a t on λ_T (df T − 1), template ≤ 0 a t on λ_S
  (df S − 1), both a t over the cells; otherwise shipped.

Rates with 95 % Wilson intervals; 'BH star' as in calibration_tables (runs of 20 tables).

With ``--calib-reps R`` (complete 8 x 4 tables; slow, about 0.3-0.7 s a table on one core):
the generalised p calibrated by a parametric bootstrap, p_cal = P(p* ≤ p) over tables drawn
from a model, against the uncalibrated p, with
- **plug-in**: the model at the estimated components (negative ones set to 0);
- **fiducial-averaged**: each bootstrap table's model drawn from the fiducial distribution of
  the λ's (then negative components set to 0).
On a complete table the p depends on the data only through ȳ and the three mean squares,
so both are computed from these (exact for the model): B = 512 fixed Latin-hypercube draws
of the mean squares, for each the |ȳ| at which the generalised p equals p (on a grid), and
P(|ȳ*| ≥ that) exactly. Rejection rates are Rao-Blackwellised the same way (for R mean-square
triples from the truth, P(p_cal ≤ α) given them, exactly over ȳ), so they are precise with a
few hundred tables: printed as mean ± its standard error. The generalised p here uses 256
Latin-hypercube draws (the shipped test 4,096).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps
from scipy.special import chdtri, log_ndtr, ndtr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ldmprobe.analysis import inference as I  # noqa: E402
from ldmprobe.analysis.stats import benjamini_hochberg  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration_tables import M_TESTS, SCENARIOS, fmt, table  # noqa: E402
from power_bound import SHIFT, tables  # noqa: E402

EXTRA = {  # intermediate seed components at 8 x 4: (templates, seeds, sd_t, sd_s, missing)
    "8 x 4, seed SD 0.3": (8, 4, 0.0, 0.3, 0.0),
    "8 x 4, seed SD 0.5": (8, 4, 0.0, 0.5, 0.0),
    "8 x 4, seed SD 3": (8, 4, 0.0, 3.0, 0.0),  # nearly one factor: the shipped p tends to a t
}


def _t_p(est: float, var_n: float, n: int, df: float) -> float:
    if not var_n > 0:
        return 1.0
    return float(2 * sps.t.sf(abs(est) / math.sqrt(var_n / n), df))


def variant_ps(y) -> dict[str, float]:
    """p of every variant on one table (NaN cells missing)."""
    r = I.crossed_test(y, interval=False)
    out = {"shipped": r.p_value}
    if r.method != "crossed":
        return dict.fromkeys(("shipped", "cell t if both <= 0", "pool factors <= 0"), r.p_value)
    ok = np.isfinite(y)
    flat = y[ok]
    n = len(flat)
    k_t = float(np.sum(ok.sum(1) ** 2) / n)
    k_s = float(np.sum(ok.sum(0) ** 2) / n)
    va, vb, ve = r.var_template, r.var_seed, r.var_residual
    cell = _t_p(r.estimate, float(np.var(flat, ddof=1)), n, n - 1)
    out["cell t if both <= 0"] = cell if va <= 0 and vb <= 0 else r.p_value
    if va <= 0 and vb <= 0:
        out["pool factors <= 0"] = cell
    elif vb <= 0:
        out["pool factors <= 0"] = _t_p(r.estimate, ve + k_t * va, n, r.n_templates - 1)
    elif va <= 0:
        out["pool factors <= 0"] = _t_p(r.estimate, ve + k_s * vb, n, r.n_seeds - 1)
    else:
        out["pool factors <= 0"] = r.p_value
    return out


# ----------------------------------------------------------------------------- calibration


CAL_T, CAL_S = 8, 4
CAL_DFS = (CAL_T - 1, CAL_S - 1, (CAL_T - 1) * (CAL_S - 1))
CAL_N = CAL_T * CAL_S
M_GRID = np.concatenate([[0.0], np.geomspace(0.01, 60, 110)])  # |ȳ|·√n in units of √W
P_GRID = np.geomspace(1e-8, 1, 100)
CAL_CASES = (  # name, (λ_T, λ_S, λ_E) of the truth, shift·√n
    ("8 x 4, residual only", (1, 1, 1), 0.0),
    ("8 x 4, template SD 1", (5, 1, 1), 0.0),
    ("8 x 4, seed SD 0.5", (1, 3, 1), 0.0),
    ("8 x 4, seed SD 1", (1, 9, 1), 0.0),
    ("power scenario, no shift", (0.0032, 0.0216, 0.0016), 0.0),
    ("power scenario, shift 0.06", (0.0032, 0.0216, 0.0016), 0.06 * math.sqrt(CAL_N)),
)


class Calibration:
    """Fixed draws (seed 7): fiducial factors ν/χ²_ν (D), mean-square factors χ²_ν/ν (B) and
    fiducial factors for the fiducial-averaged model (B)."""

    def __init__(self, d: int = 256, b: int = 512, seed: int = 7):
        rng = np.random.default_rng(seed)

        def lhs(size, df):
            u = (rng.permutation(size) + rng.random(size)) / size
            return chdtri(df, 1 - u) / df

        self.u = np.stack([1 / lhs(d, df) for df in CAL_DFS])
        self.v = np.stack([lhs(b, df) for df in CAL_DFS])
        self.g = np.stack([1 / lhs(b, df) for df in CAL_DFS])

    def log_half_p(self, ms: np.ndarray) -> np.ndarray:
        """log(p/2) of the generalised p at |ȳ|·√n = M_GRID, for mean squares ms (..., 3)."""
        w = (ms[..., 0, None] * self.u[0] + ms[..., 1, None] * self.u[1]
             - ms[..., 2, None] * self.u[2])
        lp = log_ndtr(-M_GRID[:, None] / np.sqrt(np.maximum(w, 1e-300))[..., None, :])
        top = lp.max(-1, keepdims=True)
        return top[..., 0] + np.log(np.exp(lp - top).mean(-1))

    def calibrated(self, ms: np.ndarray, mode: str) -> np.ndarray:
        """p_cal on P_GRID (as a function of the generalised p) for observed mean squares."""
        if mode == "plug-in":
            lam = np.broadcast_to([max(ms[0], ms[2]), max(ms[1], ms[2]), ms[2]], self.v.T.shape)
        else:
            f = ms[None, :] * self.g.T
            lam = np.stack([np.maximum(f[:, 0], f[:, 2]), np.maximum(f[:, 1], f[:, 2]), f[:, 2]], 1)
        w = lam[:, 0] + lam[:, 1] - lam[:, 2]
        lh = self.log_half_p(lam * self.v.T / w[:, None])  # units with n·Var(ȳ) = 1
        q = np.log(P_GRID / 2)
        m = np.stack([np.interp(-q, -row, M_GRID) for row in lh])
        return np.maximum.accumulate(np.minimum(np.mean(2 * ndtr(-m), 0), 1.0))


def calibration_rates(cal: Calibration, lam, shift: float, reps: int, modes, seed: int = 0,
                      alphas=(0.05, 0.001)) -> dict:
    """{method: (rates, standard errors)} at ``alphas`` (Rao-Blackwellised over ȳ)."""
    rng = np.random.default_rng(seed)
    ms = np.stack([lam[i] * rng.chisquare(CAL_DFS[i], reps) / CAL_DFS[i] for i in range(3)], 1)
    sd = math.sqrt(lam[0] + lam[1] - lam[2])
    out = {k: np.zeros((reps, len(alphas))) for k in ("generalised p", *modes)}
    for i in range(reps):
        lh = cal.log_half_p(ms[i])

        def reject(a):  # P(generalised p ≤ a | mean squares)
            m = np.interp(-math.log(a / 2), -lh, M_GRID)
            return ndtr(-(m - shift) / sd) + ndtr(-(m + shift) / sd)

        for j, a in enumerate(alphas):
            out["generalised p"][i, j] = reject(a)
        for mode in modes:
            g = np.log(np.maximum(cal.calibrated(ms[i], mode), 1e-300))
            for j, a in enumerate(alphas):
                out[mode][i, j] = reject(math.exp(np.interp(math.log(a), g, np.log(P_GRID))))
    return {k: (v.mean(0), v.std(0) / math.sqrt(reps)) for k, v in out.items()}


def print_calibration(reps: int, only=None, modes=("plug-in", "fiducial-averaged")) -> None:
    cal = Calibration()
    names = ("generalised p", *modes)
    print(f"\n# parametric calibration, complete 8 x 4, {reps} mean-square triples per row; "
          "cells: P(p <= 0.05) / P(p <= 0.001), each ± its standard error\n")
    print("| truth | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for name, lam, shift in CAL_CASES:
        if only and not any(o in name for o in only):
            continue
        r = calibration_rates(cal, lam, shift, reps, modes)
        print(f"| {name} | " + " | ".join(
            f"{r[k][0][0]:.4f} ± {r[k][1][0]:.4f} / {r[k][0][1]:.5f} ± {r[k][1][1]:.5f}"
            for k in names) + " |", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--power-reps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=29)
    ap.add_argument("--only", action="append", help="run only scenarios whose name contains this")
    ap.add_argument("--calib-reps", type=int, default=0,
                    help="mean-square triples per truth for the parametric calibration (0: skip)")
    ap.add_argument("--calib-mode", action="append", choices=("plug-in", "fiducial-averaged"),
                    help="calibration(s) to run (default both)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    names = ("shipped", "cell t if both <= 0", "pool factors <= 0")
    if args.reps:
        print(f"# {args.reps} null tables per scenario, seed {args.seed}; cells: p <= 0.05 / "
              f"p <= 0.001 / share of runs of {M_TESTS} with a BH star\n")
        print("| scenario | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for name, (n_t, n_s, sd_t, sd_s, miss) in {**SCENARIOS, **EXTRA}.items():
            if args.only and not any(o in name for o in args.only):
                continue
            ps = {k: [] for k in names}
            for _ in range(args.reps):
                for k, p in variant_ps(table(rng, n_t, n_s, sd_t, sd_s, miss)).items():
                    ps[k].append(p)
            cells = []
            for k in names:
                v = np.asarray(ps[k])
                runs = v[: len(v) // M_TESTS * M_TESTS].reshape(-1, M_TESTS)
                star = sum(bool(np.any(benjamini_hochberg(r) <= 0.05)) for r in runs)
                cells.append(f"{fmt(int(np.sum(v <= 0.05)), len(v))} / "
                             f"{fmt(int(np.sum(v <= 0.001)), len(v), 4)} / {fmt(star, len(runs))}")
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    if args.power_reps:
        k = dict.fromkeys(names, 0)
        for y in tables(rng, args.power_reps, SHIFT):
            for name, p in variant_ps(y).items():
                k[name] += p <= 0.05
        print(f"\n| power, 8 x 4 seed-dominated, shift {SHIFT} | "
              + " | ".join(fmt(k[n], args.power_reps) for n in names) + " |")
    if args.calib_reps:
        print_calibration(args.calib_reps, args.only,
                          tuple(args.calib_mode or ("plug-in", "fiducial-averaged")))
    print(f"\n# {time.time() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
