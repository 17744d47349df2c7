"""Compare two measurers on the same cached images of a sweep run.

    python examples/compare_measurers.py RUN_DIR MEASURER_A MEASURER_B

Reads the run's items.jsonl, embeds every image with both measurers (cached per measurer,
so nothing is generated), and prints each term's centroid drift under both, with the
Spearman rank correlation of the two term rankings: do two CLIPs agree on which words
move the images most? Measurers are open_clip specs (NAME:PRETRAINED, hf-hub:..., local-dir:...,
tiny). Offline, a second random measurer can be made with:

    python -c "from pathlib import Path; from ldmprobe.models.tiny import build_tiny_measurer; build_tiny_measurer(Path('tiny-b'), seed=1)"
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

import ldmprobe
from ldmprobe.analysis import stats
from ldmprobe.store.images import ImageStore
from ldmprobe.engine.generate import embed_stored_images


def term_drifts(run_dir: Path, measurer_spec: str) -> dict[str, float]:
    items = [json.loads(line) for line in (run_dir / "items.jsonl").read_text().splitlines()]
    usable = [i for i in items if not i["flags"]["failed"]]
    measurer = ldmprobe.load_measurer(ldmprobe.resolve_measurer(measurer_spec))
    vectors = embed_stored_images(measurer, [i["key"] for i in usable], ImageStore())
    by_term: dict[str, list[np.ndarray]] = defaultdict(list)
    baseline = None
    for item in usable:
        by_term[item["term"]].append(vectors[item["key"]])
        if item["is_baseline"]:
            baseline = item["term"]
    base = np.stack(by_term.pop(baseline))
    return {term: stats.centroid_drift(np.stack(rows), base) for term, rows in by_term.items()}


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    run_dir, first, second = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    a, b = term_drifts(run_dir, first), term_drifts(run_dir, second)
    terms = sorted(a, key=a.get, reverse=True)
    print(f"{'term':<12} {'drift A':>10} {'drift B':>10}")
    for term in terms:
        print(f"{term:<12} {a[term]:>10.3e} {b[term]:>10.3e}")
    rho = spearmanr([a[t] for t in terms], [b[t] for t in terms])
    print(f"Spearman rank correlation of term drift (A={first}, B={second}): "
          f"rho = {rho.statistic:.3f}, p = {rho.pvalue:.3g}, {len(terms)} terms")


if __name__ == "__main__":
    main()
