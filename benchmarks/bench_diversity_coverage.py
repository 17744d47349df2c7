"""How often the diversity verdicts ("narrows" / "widens") are wrong, by design size (issue 26).

    OMP_NUM_THREADS=1 python benchmarks/bench_diversity_coverage.py [--sims 200] [--resamples 400]

Simulated sweeps, one image per template × seed cell, as ``analysis.diversity.term_diversity``
receives them (the sweep calls it with min(--bootstrap, 400) resamples):
- each image's option in a 5-option group is drawn from softmax(log p + a_t + b_s), a_t and b_s
  per-option template and seed effects (normal, SD 0.5 on the logit scale), p the planted shares;
- its embedding is the option's prototype (orthogonal unit vectors in 16 dimensions) plus
  noise (SD 0.35 per dimension), renormalised, so Vendi follows the options.
Scenarios, per design (templates × seeds):
- **null vs baseline**: the term and the baseline drawn from the same shares (0.4, 0.3, 0.15,
  0.1, 0.05), independently: a verdict on the Vendi difference or on the group's effective
  number difference is a false positive (target: near 0.05 or below);
- **null vs reference**: the term's population shares equal the reference rates given in the
  spec (uniform, 0.2 each; the effects are symmetric across options, so the population shares
  stay uniform): "narrows"/"widens" against the reference is a false positive. The population
  effective number is checked by 200,000 draws;
- **coverage**: the share of the effective number's interval that holds the population value;
- **planted narrowing**: the term's shares (0.7, 0.2, 0.05, 0.03, 0.02) against the baseline's
  (0.4, 0.3, 0.15, 0.1, 0.05): the share of runs called "narrows" (power).
Rates with 95 % Wilson intervals over the simulated runs. By default the sweep's own rule
applies (no verdict below ``diversity.MIN_LEVELS`` templates and seeds, ``MIN_CELLS_VENDI`` /
``MIN_CELLS_OPTIONS`` cells); ``--raw`` says verdicts on every design, which is how those
minimums were chosen.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ldmprobe.analysis.diversity import entropy_exp, term_diversity  # noqa: E402
from ldmprobe.analysis.rates import AttributeInput  # noqa: E402

K, DIM, NOISE, EFFECT_SD = 5, 16, 0.35, 0.5
BASE = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
NARROW = np.array([0.7, 0.2, 0.05, 0.03, 0.02])
UNIFORM = np.full(K, 0.2)
OPTIONS = tuple(f"o{i}" for i in range(K))
DESIGNS = ((3, 2), (4, 4), (8, 4), (10, 10))


def draw(rng, shares, n_t, n_s) -> tuple[np.ndarray, np.ndarray]:
    logits = (np.log(shares)[None, None, :] + EFFECT_SD * rng.normal(size=(n_t, 1, K))
              + EFFECT_SD * rng.normal(size=(1, n_s, K)))
    p = np.exp(logits)
    p /= p.sum(-1, keepdims=True)
    u = rng.random((n_t, n_s, 1))
    labels = (u > np.cumsum(p, -1)).sum(-1)
    labels = np.minimum(labels, K - 1)
    emb = np.eye(DIM)[labels][..., :DIM] + NOISE * rng.normal(size=(n_t, n_s, DIM))
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    return emb, labels


def population_effective(rng, shares, draws: int = 200_000) -> float:
    """exp(entropy) of the population shares a run estimates: the options' mean probability over
    template and seed effects (each image's own cell effects)."""
    logits = np.log(shares)[None, :] + EFFECT_SD * rng.normal(size=(draws, K)) + EFFECT_SD * rng.normal(size=(draws, K))
    p = np.exp(logits)
    p /= p.sum(-1, keepdims=True)
    return entropy_exp(p.mean(0))


def wilson(k: int, n: int) -> str:
    if n == 0:
        return "-"
    z, ph = 1.96, k / n
    centre = (ph + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{ph:.3f} [{max(0, centre - half):.3f}, {min(1, centre + half):.3f}]"


def run(rng, sims: int, resamples: int, n_t: int, n_s: int, truth_uniform: float, raw: bool) -> dict:
    limits = {"min_cells": (0, 0, 0)} if raw else {}
    attrs_ref = AttributeInput(groups=(("g", OPTIONS),), option_embeddings=(np.eye(K),), logit_scale=100.0,
                               reference={("t", "g"): dict(zip(OPTIONS, UNIFORM))})
    attrs = AttributeInput(groups=(("g", OPTIONS),), option_embeddings=(np.eye(K),), logit_scale=100.0)
    counts = dict(vendi_fp=0, eff_fp=0, ref_fp=0, ref_cover=0, narrow=0, narrow_vendi=0, n=0, n_ref=0)
    for i in range(sims):
        seed = int(rng.integers(2**31))
        e_b, l_b = draw(rng, BASE, n_t, n_s)
        e_t, l_t = draw(rng, BASE, n_t, n_s)
        d = term_diversity(e_t, [l_t], e_b, [l_b], attrs, term="t", baseline="", is_baseline=False,
                           n_resamples=resamples, seed=seed, **limits)
        counts["n"] += 1
        counts["vendi_fp"] += d.verdict is not None
        counts["eff_fp"] += d.groups[0].versus_baseline is not None
        e_u, l_u = draw(rng, UNIFORM, n_t, n_s)
        d = term_diversity(e_u, [l_u], e_b, [l_b], attrs_ref, term="t", baseline="", is_baseline=False,
                           n_resamples=resamples, seed=seed, **limits)
        g = d.groups[0]
        counts["n_ref"] += 1
        counts["ref_fp"] += g.versus_reference is not None
        counts["ref_cover"] += g.ci_low is not None and g.ci_low <= truth_uniform <= g.ci_high
        e_n, l_n = draw(rng, NARROW, n_t, n_s)
        d = term_diversity(e_n, [l_n], e_b, [l_b], attrs, term="t", baseline="", is_baseline=False,
                           n_resamples=resamples, seed=seed, **limits)
        counts["narrow"] += d.groups[0].versus_baseline == "narrows"
        counts["narrow_vendi"] += d.verdict == "narrows"
    return counts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sims", type=int, default=200)
    ap.add_argument("--resamples", type=int, default=400)
    ap.add_argument("--seed", type=int, default=26)
    ap.add_argument("--raw", action="store_true",
                    help="say verdicts on every design (the minimum design sizes off): the rates that set them")
    ap.add_argument("--designs", default=",".join(f"{t}x{s}" for t, s in DESIGNS))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    truth = population_effective(rng, UNIFORM)
    print(f"# {args.sims} simulated runs per design, {args.resamples} resamples; reference effective number "
          f"{entropy_exp(UNIFORM):.3f}, population with template and seed effects {truth:.3f}\n")
    print("| design | false verdict, Vendi vs baseline | false verdict, effective number vs baseline "
          "| false verdict vs reference | effective-number interval covers | narrowing found (effective number) "
          "| narrowing found (Vendi) |")
    print("|---|---|---|---|---|---|---|")
    for design in args.designs.split(","):
        n_t, n_s = (int(v) for v in design.split("x"))
        c = run(rng, args.sims, args.resamples, n_t, n_s, truth, args.raw)
        print(f"| {n_t} x {n_s} | {wilson(c['vendi_fp'], c['n'])} | {wilson(c['eff_fp'], c['n'])} "
              f"| {wilson(c['ref_fp'], c['n_ref'])} | {wilson(c['ref_cover'], c['n_ref'])} "
              f"| {wilson(c['narrow'], c['n'])} | {wilson(c['narrow_vendi'], c['n'])} |", flush=True)
    print(f"\n# {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
