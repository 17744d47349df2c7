"""Per-template small-object share of the shipped reference world's bare noun and one control.

    python scripts/size_shares.py SEEDS GUIDANCE

Tuning seeds (from reference_world.evaluate2.TUNING_SEED; never the card's held-out ones), every
template of prompts/reference-world.toml, each template its own block of SEEDS seeds; sizes read
from the pixels by the world's own reader. Prints one line per (word, template).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str]) -> int:
    import torch

    from reference_world import evaluate, evaluate2

    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    n, guidance = int(argv[0]), float(argv[1])
    torch.set_num_threads(2)
    spec = dict(evaluate2.load_spec(ROOT / "prompts" / "reference-world.toml"), controls=["nice"], terms=[])
    evaluate.SETTINGS.update(guidance=guidance, steps=int(spec["steps"]), seed_offset=evaluate2.TUNING_SEED)
    pipe = evaluate.load_pipeline(ROOT / "ldmprobe" / "reference" / "weights" / "generator")
    reads = evaluate2.word_images(pipe, spec, n)
    for word, got in reads.items():
        for t, template in enumerate(spec["templates"]):
            block = got[t * n:(t + 1) * n]
            print(f"guidance {guidance:g}  {word or 'bare':5s}  {template:28s}  small "
                  f"{np.mean([r['size'] == 'small' for r in block]):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
