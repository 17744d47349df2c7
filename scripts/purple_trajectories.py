"""When along a sampling trajectory does world 2's generator settle an object's colour?

    python scripts/purple_trajectories.py [--weights W] [--seeds 6] [--steps 15] [--threads 2]

DDIM (trailing spacing, no clipping) at guidance 1 for the bare noun and the controls "nice" and
"plain" under every template of prompts/reference-world.toml, tuning seeds. Prints as JSON: the
final colour shares; per step, the share of clean-picture predictions (decoded, read by the
pixel reader) that read purple and that already read the final colour; and the purple share when
sampling skips the first 1, 2 or 3 steps (starting from pure noise at a later timestep), which
tests whether the zero-SNR first step (whose prediction is the mean picture, a big purple object)
is what tips pictures to purple. Measured (docs/NOTES.md, tenth session, 2 seeds, 60 pictures):
every first prediction reads purple, the share falls to the final 0.38 over steps 2-8, and
skipping 1-3 steps gives 0.35-0.38: the first step alone is not the cause.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=ROOT / "ldmprobe" / "reference" / "weights")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from diffusers import DDIMScheduler

    from reference_world import evaluate, evaluate2, world2

    torch.set_num_threads(args.threads)
    pipe = evaluate.load_pipeline(args.weights / "generator")
    sched = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing", clip_sample=False)
    spec = evaluate2.load_spec(ROOT / "prompts" / "reference-world.toml")
    prompts, seeds, _ = evaluate2.word_prompts(("", "nice", "plain"), spec["templates"], args.seeds)
    seeds = [evaluate2.TUNING_SEED + seed for seed in seeds]
    unet, vae = pipe.unet, pipe.vae
    shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)

    def colours(latents):
        with torch.no_grad():
            images = vae.decode(latents / vae.config.scaling_factor).sample
        images = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        return [world2.read_attributes(image)["colour"] for image in images]

    def sample(skip: int, record: bool):
        sched.set_timesteps(args.steps)
        finals, paths = [], []
        for start in range(0, len(prompts), 64):
            with torch.no_grad():
                text = pipe.encode_prompt(prompts[start:start + 64], "cpu", 1, False)[0]
            latents = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s))
                                   for s in seeds[start:start + 64]])
            per_step = []
            for t in sched.timesteps[skip:]:
                with torch.no_grad():
                    v = unet(latents, t, encoder_hidden_states=text).sample
                alpha = sched.alphas_cumprod[int(t)]
                if record:
                    per_step.append(colours(alpha.sqrt() * latents - (1 - alpha).sqrt() * v))
                latents = sched.step(v, t, latents).prev_sample
            finals += colours(latents)
            paths += list(zip(*per_step)) if record else []
        return finals, paths

    def share(values, colour="purple"):
        return round(float(np.mean([v == colour for v in values])), 3)

    finals, paths = sample(0, True)
    out = {"pictures": len(prompts), "final": {c: share(finals, c) for c in world2.ATTRIBUTE_VALUES["colour"]},
           "purple_by_step": [share([p[i] for p in paths]) for i in range(len(paths[0]))],
           "final_colour_by_step": [round(float(np.mean([p[i] == f for p, f in zip(paths, finals)])), 3)
                                    for i in range(len(paths[0]))]}
    for skip in (1, 2, 3):
        out[f"purple_skipping_{skip}"] = share(sample(skip, False)[0])
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
