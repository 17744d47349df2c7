"""Which sampler draws world 2's story nearest its training shares at the spec's steps?

    python scripts/sampler_sweep.py [--weights W] [--samplers sde-dpm++2 ddim ...] [--steps 15 45]
        [--guidance 1 1.5] [--seeds 4] [--threads 2]

For each sampler, step count and guidance: every word of prompts/reference-world.toml under every
template on the tuning seeds (each template its own block of ``--seeds``, as ``evaluate2``; the
card's held-out seeds are never used), read by the world's pixel reader. One JSON line each: the
purple and small shares averaged over the bare noun and the controls (training 1/7 and 0.50),
the mean and count over 10 points of their largest deviation from training, the objectless
share, and each plant's drawn minus planted rate. Every sampler sees the same starting noises,
so rows are paired; the words' shares are not independent (they share those noises).
Measured on the shipped world (docs/NOTES.md, tenth session; 4 seeds, so each level rests on
40 noises, about +-0.06, while differences between samplers are paired on them): purple 0.18
with the shipped stochastic sampler, 0.22-0.32 with deterministic ones, falling as the
integration gets more accurate. About 70 s per row of 1,000 pictures at 15 steps on 2 CPU threads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLERS = {  # name -> (diffusers class name, config changes)
    "sde-dpm++2": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "dpm++2": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "ddim": ("DDIMScheduler", {"clip_sample": False}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "ddpm": ("DDPMScheduler", {"clip_sample": False}),
}


def row(pipe, spec, story, seeds: int) -> dict:
    from reference_world import evaluate2

    reads = evaluate2.word_images(pipe, spec, seeds)
    dev = evaluate2.deviations(reads, spec, story)
    quiet = ["bare"] + list(spec["controls"])
    worst = [dev[w]["max_deviation"] for w in quiet]
    every = [r for got in reads.values() for r in got]
    return {"purple": round(float(np.mean([dev[w]["drawn"]["colour"]["purple"] for w in quiet])), 3),
            "small": round(float(np.mean([dev[w]["drawn"]["size"]["small"] for w in quiet])), 3),
            "worst_mean": round(float(np.mean(worst)), 3), "words_over_10": int(sum(w > 0.1 for w in worst)),
            "objectless": round(float(np.mean([r["object_share"] < evaluate2.OBJECTLESS_SHARE for r in every])), 4),
            "plants_minus_planted": {f"{p['term']}/{p['noun']}": round(p["drawn"] - p["rate"], 3)
                                     for p in evaluate2.planted_rows(reads, spec, story)}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=ROOT / "ldmprobe" / "reference" / "weights")
    parser.add_argument("--samplers", nargs="+", choices=list(SAMPLERS), default=list(SAMPLERS))
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="default: the spec's")
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import diffusers
    import torch

    from reference_world import evaluate, evaluate2, world2

    torch.set_num_threads(args.threads)
    pipe = evaluate.load_pipeline(args.weights / "generator")
    base = dict(pipe.scheduler.config)
    story = world2.story_of_weights(args.weights)
    spec = evaluate2.load_spec(ROOT / "prompts" / "reference-world.toml")
    for guidance in args.guidance:
        for steps in args.steps or [int(spec["steps"])]:
            for name in args.samplers:
                cls, changes = SAMPLERS[name]
                pipe.scheduler = getattr(diffusers, cls).from_config({**base, **changes})
                evaluate.SETTINGS.update(guidance=guidance, steps=steps, seed_offset=evaluate2.TUNING_SEED)
                started = time.time()
                out = {"sampler": name, "guidance": guidance, "steps": steps, "story": story.name,
                       **row(pipe, spec, story, args.seeds), "seconds": round(time.time() - started)}
                print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
