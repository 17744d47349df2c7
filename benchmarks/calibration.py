"""Calibration of ldmprobe.analysis.inference against the old fixed-effect tests.

Synthetic 512-d unit image embeddings with template, seed and pair structure:
    base  b_ts = unit(c_t + g_s + z_ts + ε)
    term  m_ts = unit(c_t + g_s + z_ts + ε' + (δ + a_t + b_s) e0 + r_t + q_s)
c_t: template centre (unit norm, orthogonal to the probe e0 and to e1); g_s: seed noise
shared by every template (same starting noise); z_ts: the (template, seed) composition
shared by term, baseline and controls; ε: each image's own noise. a_t, b_s: template- and
seed-specific probe shifts (zero mean); r_t, q_s: template- and seed-specific shifts in
random directions (the wording perturbs the images). K = 19 control terms are generated
by the same mechanism as the term, so under every null the term is exchangeable with them.

Run:  OMP_NUM_THREADS=1 python benchmarks/calibration.py --reps 1000
(the crossed test on simulated tables, benchmarks/calibration_tables.py, runs at 2 × reps)
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
from benchmarks.calibration_tables import fmt, print_tables  # noqa: E402

D, T, S, K = 512, 8, 4, 19
SG, SZ, SE = 0.5, 0.6, 0.3  # norms of seed, composition and own noise
NOISE = math.sqrt(SG**2 + SZ**2 + SE**2)
ALPHA = 0.05

SCENARIOS = {  # name: (sd_a, sd_b, rho_t, rho_s, variety)
    "pure null": (0.0, 0.0, 0.0, 0.0, False),
    "template-specific zero-mean shift": (0.02, 0.0, 0.3, 0.0, False),
    "seed-specific shift": (0.0, 0.02, 0.0, 0.3, False),
    "variety-only change": (0.0, 0.0, 0.0, 0.0, True),
}


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def gauss(rng, shape, norm):
    return rng.standard_normal(size=shape + (D,), dtype=np.float32) * (norm / math.sqrt(D))


def centres(rng):
    c = rng.normal(size=(T, D))
    c[:, :2] = 0.0  # orthogonal to the probe e0 and the planted drift direction e1
    return unit(c)


def perturb(rng, sd_a, sd_b, rho_t, rho_s, variety, delta=0.0, drift=0.0):
    """The (T, S, D) shift of one term (or control) and its noise scaling."""
    shift = np.zeros((T, S, D))
    shift[..., 0] = delta + sd_a * rng.normal(size=(T, 1)) + sd_b * rng.normal(size=(1, S))
    shift[..., 1] += drift
    if rho_t:
        r = unit(rng.normal(size=(T, D)))
        r[:, 0] = 0
        shift += rho_t * r[:, None, :]
    if rho_s:
        q = unit(rng.normal(size=(S, D)))
        q[:, 0] = 0
        shift += rho_s * q[None, :, :]
    scale = None
    if variety:  # same total variance, redistributed: more variety in half the directions
        scale = np.where(rng.permutation(D) < D // 2, math.sqrt(1.8), math.sqrt(0.2))
    return shift, scale


def world(rng, params, delta=0.0, drift=0.0, controls=True):
    c = centres(rng)
    shared = c[:, None, :] + gauss(rng, (1, S), SG) + gauss(rng, (T, S), SZ)
    base = unit(shared + gauss(rng, (T, S), SE))

    def make(delta_, drift_):
        shift, scale = perturb(rng, *params, delta=delta_, drift=drift_)
        z = shared - c[:, None, :]
        if scale is not None:
            z = z * scale
        return unit(c[:, None, :] + z + gauss(rng, (T, S), SE) + shift)

    term = make(delta, drift)
    ctrl = np.stack([make(0.0, 0.0) for _ in range(K)]) if controls else None
    return base, term, ctrl


# ----------------------------------------------------------------------------- old tests


def old_sign_flip_p(y, rng, b=999):
    """Old probe p: paired sign flips over all T·S pairs (templates and seeds fixed)."""
    d = y.ravel()
    s = 1.0 - 2.0 * rng.integers(0, 2, size=(b, len(d)))
    return (np.count_nonzero(np.abs(s @ d) >= abs(d.sum()) - 1e-12) + 1) / (b + 1)


def old_boot_ci(y, rng, b=1000):
    """Old probe CI: percentile bootstrap, templates then pairs within template."""
    ti = rng.integers(0, T, size=(b, T))
    si = rng.integers(0, S, size=(b, T, S))
    means = y[ti[:, :, None], si].mean(axis=(1, 2))
    return np.quantile(means, [0.025, 0.975])


def old_drift_p(base, term, rng, b=199):
    """Old drift p: mean over templates of centroid drift, term/base swapped within pairs.

    With h = (m − b)/2 and P = Σ (m + b)/2 per template, a swap pattern s gives sums
    P ± Σ s·h, so only the Gram matrix of h, h·P and |P|² are needed (as the old code).
    """
    h, mid = (term - base) / 2, (term + base) / 2
    p = mid.sum(1)  # (T, D)
    gram = np.matmul(h, h.transpose(0, 2, 1))  # (T, S, S)
    q = np.einsum("tsd,td->ts", h, p)
    pp = np.einsum("td,td->t", p, p)
    signs = 1.0 - 2.0 * rng.integers(0, 2, size=(b, T, S))
    signs = np.concatenate([np.ones((1, T, S)), signs])
    quad = np.einsum("bts,tsr,btr->bt", signs, gram, signs)
    lin = np.einsum("bts,ts->bt", signs, q)
    cos = (pp - quad) / np.sqrt((pp + quad + 2 * lin) * (pp + quad - 2 * lin))
    stat = (1 - cos).mean(1)
    return (np.count_nonzero(stat[1:] >= stat[0] - 1e-12) + 1) / (b + 1)


def u_drifts(terms, base):
    """Unbiased drift of each of several terms (n, T, S, D) vs base (vectorised)."""
    d = terms - base[None]
    total, s = d.sum(2), d.shape[2]
    u = (np.einsum("ntd,ntd->nt", total, total) - np.einsum("ntsd,ntsd->nt", d, d)) / (s * (s - 1))
    return u.mean(1)


def probe_y(base, term):
    return term[..., 0] - base[..., 0]  # cos with the probe e0 (unit rows)


# ----------------------------------------------------------------------------- scenarios


def run_null(name, params, reps, rng, check):
    rej = dict.fromkeys(["probe crossed p", "probe crossed p <= 0.001", "probe sign-flip p (old)", "probe boot CI (old)",
                         "drift vs controls p", "drift vs pairs p (old)",
                         "drift sign-flip p (new, vs pairs)"], 0)
    groups = np.repeat(np.arange(T), S)
    for r in range(reps):
        base, term, ctrl = world(rng, params)
        y = probe_y(base, term)
        p_crossed = I.crossed_test(y, interval=False).p_value
        rej["probe crossed p"] += p_crossed <= ALPHA
        rej["probe crossed p <= 0.001"] += p_crossed <= 0.001
        rej["probe sign-flip p (old)"] += old_sign_flip_p(y, rng) <= ALPHA
        lo, hi = old_boot_ci(y, rng)
        rej["probe boot CI (old)"] += lo > 0 or hi < 0
        drift = I.unbiased_drift(term.reshape(-1, D), base.reshape(-1, D), groups,
                                 n_boot=1, n_resamples=999, seed=rng)
        controls = u_drifts(ctrl, base)
        if check and r == 0:
            assert abs(u_drifts(term[None], base)[0] - drift.estimate) < 1e-12
        vs_controls = I.control_comparison(drift.estimate, controls)
        rej["drift vs controls p"] += vs_controls.p_value <= ALPHA
        rej["drift vs pairs p (old)"] += old_drift_p(base, term, rng) <= ALPHA
        rej["drift sign-flip p (new, vs pairs)"] += drift.p_value <= ALPHA
    return {k: v / reps for k, v in rej.items()}


def run_assoc(reps, rng, n_prompts, n_seeds, dim=D):
    block = image = 0
    lab = np.repeat(np.arange(n_prompts), n_seeds)
    for _ in range(reps):
        def make():
            p = np.repeat(unit(rng.normal(size=(n_prompts, dim))), n_seeds, 0)
            return unit(p + 0.8 * unit(rng.normal(size=p.shape)))
        X, Y = make(), make()
        A, B = unit(rng.normal(size=(8, dim))), unit(rng.normal(size=(8, dim)))
        block += I.block_weat(X, Y, A, B, x_blocks=lab, y_blocks=lab,
                              seed=rng).p_value <= ALPHA
        image += I.block_weat(X, Y, A, B, n_resamples=999, seed=rng).p_value <= ALPHA
    return block / reps, image / reps


def run_spearman(reps, rng, n):
    exact = asym = 0
    for _ in range(reps):
        x, y = rng.normal(size=n), rng.normal(size=n)
        exact += I.spearman_test(x, y).p_value <= ALPHA
        asym += sps.spearmanr(x, y).pvalue <= ALPHA
    return exact / reps, asym / reps


def run_neighbours(reps, rng, n_words=1000):
    W = unit(rng.normal(size=(n_words, D)))
    words = [f"w{i}" for i in range(n_words)]
    listed = 0
    for _ in range(reps):
        base, term, _ = world(rng, SCENARIOS["pure null"], controls=False)
        r = I.neighbour_null(term.reshape(-1, D), base.reshape(-1, D), W, words,
                             n_resamples=199, seed=rng)
        listed += bool(r.toward or r.away)
    return listed / reps


# ----------------------------------------------------------------------------- coverage


def kappa(a, s, rng, n=4_000_000):
    """|E unit(x)| for x = a·ĉ + N(0, s²/D I): the mean of a unit vector is κ·ĉ."""
    x1 = a + s / math.sqrt(D) * rng.normal(size=n)
    rest = s**2 / D * rng.chisquare(D - 1, size=n)
    return float(np.mean(x1 / np.sqrt(x1**2 + rest)))


def probe_truth(delta, sd_a, sd_b, rng, n=4_000_000):
    """Population mean of cos(m, e0) − cos(b, e0) (the baseline's is 0 by symmetry)."""
    w = delta + sd_a * rng.normal(size=n) + sd_b * rng.normal(size=n)
    w += NOISE / math.sqrt(D) * rng.normal(size=n)
    along_c = 1 + NOISE / math.sqrt(D) * rng.normal(size=n)
    rest = NOISE**2 / D * rng.chisquare(D - 2, size=n)
    return float(np.mean(w / np.sqrt(w**2 + along_c**2 + rest)))


def run_coverage(reps, rng, delta=0.01, drift=0.25):
    params = (0.01, 0.01, 0.0, 0.0, False)
    truth_p = probe_truth(delta, 0.01, 0.01, rng)
    km, kb = kappa(math.sqrt(1 + drift**2), NOISE, rng), kappa(1.0, NOISE, rng)
    truth_d = km**2 + kb**2 - 2 * km * kb / math.sqrt(1 + drift**2)
    groups = np.repeat(np.arange(T), S)
    cov = dict.fromkeys(["probe crossed CI", "probe boot CI (old)", "drift bootstrap CI"], 0)
    for _ in range(reps):
        base, term, _ = world(rng, params, delta=delta, controls=False)
        y = probe_y(base, term)
        r = I.crossed_test(y)
        cov["probe crossed CI"] += r.ci_low <= truth_p <= r.ci_high
        lo, hi = old_boot_ci(y, rng)
        cov["probe boot CI (old)"] += lo <= truth_p <= hi
        base, term, _ = world(rng, SCENARIOS["pure null"], drift=drift, controls=False)
        dr = I.unbiased_drift(term.reshape(-1, D), base.reshape(-1, D), groups, n_boot=1000,
                              n_resamples=1, max_enumerate=0, seed=rng)
        cov["drift bootstrap CI"] += dr.ci_low <= truth_d <= dr.ci_high
    return {k: v / reps for k, v in cov.items()}, truth_p, truth_d


def run_power(reps, rng, deltas=(0.0, 0.01, 0.02, 0.03, 0.04, 0.06),
              drifts=(0.0, 0.02, 0.04, 0.06, 0.08, 0.1)):
    params = SCENARIOS["template-specific zero-mean shift"]
    rows = []
    for delta, drift in zip(deltas, drifts):
        crossed = fixed = dctl = 0
        for _ in range(reps):
            base, term, ctrl = world(rng, params, delta=delta, drift=drift)
            y = probe_y(base, term)
            crossed += I.crossed_test(y, interval=False).p_value <= ALPHA
            fixed += old_sign_flip_p(y, rng) <= ALPHA
            est = u_drifts(term[None], base)[0]
            dctl += I.control_comparison(est, u_drifts(ctrl, base)).p_value <= ALPHA
        rows.append((delta, drift, crossed / reps, fixed / reps, dctl / reps))
    return rows


def run_lost_seeds(reps, rng, lost):
    """A term that lost ``lost`` of its S seeds (every template) while its controls kept them:
    drift rank p against controls on all their cells (old) and on the term's cells (new)."""
    old = new = 0
    keep = S - lost
    for _ in range(reps):
        base, term, ctrl = world(rng, SCENARIOS["pure null"])
        est = u_drifts(term[None, :, :keep], base[:, :keep])[0]
        old += I.control_comparison(est, u_drifts(ctrl, base)).p_value <= ALPHA
        new += I.control_comparison(est, u_drifts(ctrl[:, :, :keep], base[:, :keep])).p_value <= ALPHA
    return old, new


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--power-reps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=20240611)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    reps, t0 = args.reps, time.time()
    print(f"# {reps} replications per scenario; {T} templates x {S} seeds, {K} controls, "
          f"{D}-d; alpha = {ALPHA}; seed {args.seed}\n")
    print("## Rejection rate under the null (headline tests should be <= 0.07)\n")
    results = {n: run_null(n, p, reps, rng, check=True) for n, p in SCENARIOS.items()}
    tests = list(next(iter(results.values())))
    print("| test | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for t in tests:
        print(f"| {t} | " + " | ".join(f"{results[n][t]:.3f}" for n in results) + " |")
    print("\n## Prompt-clustered association sets (no effect)\n")
    print("| layout (prompts x seeds per set) | block (prompt) p | image-shuffle p (old) |")
    print("|---|---|---|")
    for p_, s_ in ((4, 8), (4, 4), (2, 8), (8, 1)):
        blk, img = run_assoc(reps, rng, p_, s_)
        print(f"| {p_} x {s_} | {blk:.3f} | {img:.3f} |")
    print("\n## Other nulls\n")
    print("| test | new | old |\n|---|---|---|")
    for n in (4, 6):
        ex, asym = run_spearman(reps, rng, n)
        print(f"| Spearman, {n} terms, independent | {ex:.3f} (exact) | {asym:.3f} (asymptotic) |")
    nb = run_neighbours(reps, rng)
    print(f"| neighbours listed with no drift (any of 1000 words) | {nb:.3f} "
          "| 1.000 (top 10 always) |")
    cov, tp, td = run_coverage(reps, rng)
    print(f"\n## 95% CI coverage, planted shift (probe truth {tp:.5f}, drift truth {td:.5f})\n")
    print("| interval | coverage |\n|---|---|")
    for k, v in cov.items():
        print(f"| {k} | {v:.3f} |")
    print("\n## Power (template-specific zero-mean variation present, 19 controls)\n")
    print("| probe shift | drift (e1 shift) | crossed p | sign-flip p (old) | drift vs controls |")
    print("|---|---|---|---|---|")
    for row in run_power(args.power_reps or max(reps // 2, 1), rng):
        print("| {:.3f} | {:.2f} | {:.3f} | {:.3f} | {:.3f} |".format(*row))
    print("\n## Drift against controls when the term lost seeds its controls kept (no effect)\n")
    print("| seeds lost (of 4) | controls on all their cells (old) | controls on the term's cells "
          "(new) |\n|---|---|---|")
    for lost in (1, 2):
        old, new = run_lost_seeds(reps, rng, lost)
        print(f"| {lost} | {fmt(old, reps)} | {fmt(new, reps)} |")
    print_tables(2 * reps, reps, rng)
    print(f"\n# {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
