"""Crossed test on simulated template × seed tables of per-pair effects (issue 29).

y[t, s] = δ + a_t + b_s + e_ts with a_t ~ N(0, sd_t²), b_s ~ N(0, sd_s²), e_ts ~ N(0, 1)
(residual SD 1; only ratios matter). Each scenario reports, for the current crossed test
(generalised p, every cell) and the previous one (Satterthwaite df with negative components
floored, on the greedy complete sub-table), the rejection rate at α = 0.05 and at 0.001 with
95 % Wilson intervals, and the share of null "runs" (m = 20 independent tables, as 4 terms ×
5 probes) with at least one Benjamini–Hochberg star (adjusted p ≤ 0.05). Then, on fresh null
tables (FLAG_EXTRA adds seed SDs at 8 x 4), the share the probe rows' conservative flag
(``inference_level.level_check``) marks, and the rejection rate among flagged and unflagged
tables. Used by benchmarks/calibration.py; run alone:
python benchmarks/calibration_tables.py --reps 2000
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ldmprobe.analysis import inference as I  # noqa: E402
from ldmprobe.analysis.inference_level import LEVEL_FLOOR, generalised_level, level_check  # noqa: E402
from ldmprobe.analysis.stats import benjamini_hochberg  # noqa: E402

M_TESTS = 20  # p-values per simulated run for the BH share (4 terms × 5 probes)

# name: (templates, seeds, sd_t, sd_s, missing share)
SCENARIOS = {
    "8 x 4, residual only": (8, 4, 0.0, 0.0, 0.0),
    "8 x 4, seed-specific (seed SD 1)": (8, 4, 0.0, 1.0, 0.0),
    "8 x 4, template-specific (template SD 1)": (8, 4, 1.0, 0.0, 0.0),
    "3 x 32, 3 templates dominate (SD 1)": (3, 32, 1.0, 0.0, 0.0),
    "3 x 32, template SD 0.3": (3, 32, 0.3, 0.0, 0.0),
    "2 x 8, 2 templates dominate (SD 1)": (2, 8, 1.0, 0.0, 0.0),
    "8 x 2, 2 seeds dominate (SD 1)": (8, 2, 0.0, 1.0, 0.0),
    "8 x 4, seed SD 1, 10 % cells missing": (8, 4, 0.0, 1.0, 0.1),
    "8 x 32, SDs 0.5/0.5, 10 % cells missing": (8, 32, 0.5, 0.5, 0.1),
}

FLAG_EXTRA = {  # intermediate and dominating seed components at 8 x 4, for the flag table
    "8 x 4, seed SD 0.3": (8, 4, 0.0, 0.3, 0.0),
    "8 x 4, seed SD 0.5": (8, 4, 0.0, 0.5, 0.0),
    "8 x 4, seed SD 2": (8, 4, 0.0, 2.0, 0.0),
    "8 x 4, seed SD 3": (8, 4, 0.0, 3.0, 0.0),
}
LEVEL_BINS = (0.0, 0.030, 0.035, LEVEL_FLOOR, 0.045, 0.048, 1.0)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a binomial proportion k / n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def fmt(k: int, n: int, digits: int = 3) -> str:
    lo, hi = wilson(k, n)
    return f"{k / n:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def old_crossed_p(y) -> float:
    """The previous headline p: greedy complete sub-table, MS_T + MS_S − MS_E floored at
    max(MS_T, MS_S, MS_E) with the one-way df when floored, else Satterthwaite df."""
    rows, cols = I.complete_subtable(y)
    y = y[np.ix_(rows, cols)]
    n_t, n_s = y.shape
    if n_t < 2 or n_s < 2:
        return math.nan
    g, row, col = y.mean(), y.mean(1), y.mean(0)
    ms = (n_s * np.sum((row - g) ** 2) / (n_t - 1), n_t * np.sum((col - g) ** 2) / (n_s - 1),
          np.sum((y - row[:, None] - col[None] + g) ** 2) / ((n_t - 1) * (n_s - 1)))
    dfs = (n_t - 1, n_s - 1, (n_t - 1) * (n_s - 1))
    v = ms[0] + ms[1] - ms[2]
    if v >= max(ms):
        df = v**2 / sum(m**2 / d for m, d in zip(ms, dfs))
    else:
        v, df = max(zip(ms, dfs))
    return float(2 * sps.t.sf(abs(g) / math.sqrt(v / y.size), df))


def table(rng, n_t, n_s, sd_t, sd_s, missing, shift=0.0):
    y = (shift + sd_t * rng.normal(size=(n_t, 1)) + sd_s * rng.normal(size=(1, n_s))
         + rng.normal(size=(n_t, n_s)))
    if missing:
        y[rng.random(y.shape) < missing] = np.nan
    return y


def null_rows(reps: int, rng, only=None) -> list[tuple]:
    """Per scenario: (name, {method: (k05, k001, n)}, {method: (k_star, runs)})."""
    out = []
    for name, (n_t, n_s, sd_t, sd_s, miss) in SCENARIOS.items():
        if only and not any(o in name for o in only):
            continue
        p = {"new": [], "old": []}
        for _ in range(reps):
            y = table(rng, n_t, n_s, sd_t, sd_s, miss)
            p["new"].append(I.crossed_test(y, interval=False).p_value)
            p["old"].append(old_crossed_p(y))
        rates, stars = {}, {}
        for method, values in p.items():
            v = np.asarray(values)
            rates[method] = (int(np.sum(v <= 0.05)), int(np.sum(v <= 0.001)), len(v))
            runs = v[: len(v) // M_TESTS * M_TESTS].reshape(-1, M_TESTS)
            star = sum(bool(np.any(benjamini_hochberg(r) <= 0.05)) for r in runs)
            stars[method] = (star, len(runs))
        out.append((name, rates, stars))
    return out


def power_rows(reps: int, rng, shifts=(0.02, 0.04, 0.06, 0.08), sd_s=0.05, sd_t=0.02, sd_e=0.04):
    """Power at 8 × 4 with seed-specific variation (seed SD 0.05, template SD 0.02, residual
    SD 0.04 in cosine units), chosen so that the old test's power at a shift of 0.06 is near
    the 0.43 the issue-29 audit measured with its own generator (here 0.39)."""
    rows = []
    for shift in shifts:
        k = {"new": 0, "old": 0}
        for _ in range(reps):
            y = (shift + sd_t * rng.normal(size=(8, 1)) + sd_s * rng.normal(size=(1, 4))
                 + sd_e * rng.normal(size=(8, 4)))
            k["new"] += I.crossed_test(y, interval=False).p_value <= 0.05
            k["old"] += old_crossed_p(y) <= 0.05
        rows.append((shift, k["new"], k["old"], reps))
    return rows


def flag_rows(reps: int, rng, only=None):
    """Per scenario (SCENARIOS, then FLAG_EXTRA): null tables, each with its crossed p and the
    row flag of ``inference_level.level_check``: (name, p's, level_05's, flags)."""
    out = []
    for name, (n_t, n_s, sd_t, sd_s, miss) in {**SCENARIOS, **FLAG_EXTRA}.items():
        if only and not any(o in name for o in only):
            continue
        p, level, flag = [], [], []
        for _ in range(reps):
            y = table(rng, n_t, n_s, sd_t, sd_s, miss)
            r = I.crossed_test(y, interval=False)
            check = level_check(y, r)
            p.append(r.p_value)
            level.append(math.nan if check["level_05"] is None else check["level_05"])
            flag.append(check["conservative"])
        out.append((name, np.asarray(p), np.asarray(level), np.asarray(flag)))
    return out


def print_flags(reps: int, rng, only=None) -> None:
    rows = flag_rows(reps, rng, only)
    print(f"\n## The conservative flag (level_05 < {LEVEL_FLOOR:.4f}) on null tables\n")
    print(f"{reps} null tables per scenario (95 % Wilson intervals). level_05: the crossed p's "
          "rejection rate at 0.05 if the truth were the table's estimated components.\n")
    print("| scenario | flagged | p ≤ 0.05, flagged | p ≤ 0.05, not flagged | level_05 of flagged "
          "(median) |\n|---|---|---|---|---|")
    for name, p, level, flag in rows:
        rej = p <= 0.05
        on, off = int(flag.sum()), int((~flag).sum())
        med = f"{np.median(level[flag]):.3f}" if on else "–"
        print(f"| {name} | {fmt(on, len(p))} | {fmt(int(rej[flag].sum()), on) if on else '–'} | "
              f"{fmt(int(rej[~flag].sum()), off) if off else '–'} | {med} |")
    pooled = [(p, level) for name, p, level, _ in rows if name.startswith("8 x 4") and "missing" not in name]
    if not pooled:
        return
    p = np.concatenate([a for a, _ in pooled])
    level = np.concatenate([b for _, b in pooled])
    print(f"\nThe complete 8 x 4 scenarios above pooled ({len(p)} tables): actual p ≤ 0.05 by the "
          "rule's level_05\n\n| level_05 | tables | p ≤ 0.05 |\n|---|---|---|")
    for lo, hi in zip(LEVEL_BINS[:-1], LEVEL_BINS[1:]):
        inside = (level >= lo) & (level < hi)
        k = int(inside.sum())
        if k:
            print(f"| [{lo:.4f}, {hi:.4f}) | {k} | {fmt(int((p[inside] <= 0.05).sum()), k)} |")


def print_surface(n_t: int = 8, n_s: int = 4, ratios=(1, 1.5, 2, 3, 5, 9, 20, 73, 1000)) -> None:
    """The rule's level_05 on a complete n_t x n_s table at λ_T/λ_E (rows) × λ_S/λ_E (columns),
    the mean squares' expectations over the residual's (λ/λ_E = 1 + n_s·σ_a²/σ_e² for
    templates); * marks where the flag is set."""
    dfs = (n_t - 1, n_s - 1, (n_t - 1) * (n_s - 1))
    print(f"\n## The rule's level at 0.05, {n_t} x {n_s} (* below {LEVEL_FLOOR:.4f}: flagged)\n")
    print("| λ_T/λ_E \\ λ_S/λ_E | " + " | ".join(str(r) for r in ratios) + " |")
    print("|---" * (len(ratios) + 1) + "|")
    for r_t in ratios:
        cells = []
        for r_s in ratios:
            level = generalised_level((r_t, r_s, 1.0), dfs)
            cells.append(f"{level:.3f}{'*' if level < LEVEL_FLOOR else ''}")
        print(f"| {r_t} | " + " | ".join(cells) + " |")


def print_tables(reps: int, power_reps: int, rng, only=None, flag_reps: int | None = None) -> None:
    print("\n## Crossed test on simulated tables: level at α = 0.05 and 0.001, BH stars\n")
    print(f"{reps} tables per scenario (95 % Wilson intervals); 'BH star' = share of null runs "
          f"of {M_TESTS} tables with any BH-adjusted p ≤ 0.05 (target ≤ 0.06).\n")
    print("| scenario | new p ≤ 0.05 | new p ≤ 0.001 | new BH star | old p ≤ 0.05 "
          "| old p ≤ 0.001 | old BH star |")
    print("|---|---|---|---|---|---|---|")
    for name, rates, stars in null_rows(reps, rng, only):
        cells = []
        for method in ("new", "old"):
            k05, k001, n = rates[method]
            cells += [fmt(k05, n), fmt(k001, n, 4), fmt(*stars[method])]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if power_reps:
        print_power(power_reps, rng)
    if flag_reps is None or flag_reps:
        print_flags(reps if flag_reps is None else flag_reps, rng, only)


def print_power(power_reps: int, rng) -> None:
    print("\n## Power at 8 x 4, seed-specific variation (seed SD 0.05, template SD 0.02, "
          "residual SD 0.04)\n")
    print("| shift | new crossed p | old crossed p |\n|---|---|---|")
    for shift, k_new, k_old, n in power_rows(power_reps, rng):
        print(f"| {shift:.2f} | {fmt(k_new, n)} | {fmt(k_old, n)} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--power-reps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--flag-reps", type=int, default=None,
                    help="null tables per scenario for the conservative-flag table (default --reps; 0: none)")
    ap.add_argument("--only", action="append", help="run only scenarios whose name contains this")
    ap.add_argument("--surface", action="store_true",
                    help="print only the rule's level_05 over component ratios at 8 x 4")
    args = ap.parse_args(argv)
    t0 = time.time()
    if args.surface:
        print_surface()
        return
    print_tables(args.reps, args.power_reps, np.random.default_rng(args.seed), args.only, args.flag_reps)
    print(f"\n# {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
