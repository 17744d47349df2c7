"""Run a small sweep through the Python API and print a table of drift per term.

    python examples/tiny_sweep.py [--out runs/example] [--seeds 2]

Uses the built-in tiny models (offline, random weights: the numbers mean nothing). Swap in
pipeline="sd15", measurer="ViT-L-14-quickgelu:openai" on a GPU machine for a real run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ldmprobe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("runs/example-tiny-sweep"))
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()

    spec = ldmprobe.load_spec("fancy-house", seeds=args.seeds)
    options = ldmprobe.SweepOptions(pipeline="tiny", measurer="tiny", out=args.out, replace=True,
                                    permutations=999, bootstrap=500)  # rerunning replaces the example's folder
    result = ldmprobe.run_sweep(spec, options)

    print(f"{'term':<10} {'pairs':>5} {'centroid':>10} {'p':>8}  top probe")
    for term in result.terms:
        drift = term["image_drift"]
        top = term["probes"][0] if term["probes"] else None
        top_text = f"{top['probe']} ({top['shift']:+.4f})" if top else "-"
        p = "-" if drift["p_value"] is None else f"{drift['p_value']:.4f}"  # no p when the design cannot give one
        print(f"{term['term']:<10} {term['n_pairs']:>5} {drift['centroid']:>10.2e} {p:>8}  {top_text}")
    print(f"run folder: {result.run_dir}")


if __name__ == "__main__":
    main()
