"""The bare noun's background colours as a reference world draws them, per sampler (issue 27).

    python scripts/bare_noun_backgrounds.py [--weights ldmprobe/reference/weights]
        [--schedulers ddim,ddim-trailing,dpmsolver++,sde-dpmsolver++,euler-a] [--seeds 30] [--steps 15] [--guidance 5]
        [--leaked]

Prompts "a photo of the NOUN" for the world's five nouns, seeds from 10,000 on, attributes read
from the pixels. ``--leaked`` starts instead from what training shows the model at t = 999: a
fresh training picture's latent times sqrt(alpha_bar) plus noise, and reports how often the
drawn background is that picture's; if it mostly is while pure noise gives grey, the collapse
is the schedule's signal leak (Lin et al. 2023), not the sampler.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np


def scheduler(name: str, base):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if name == "ddim":
        return DDIMScheduler.from_config(base)
    if name == "ddim-trailing":
        return DDIMScheduler.from_config(base, timestep_spacing="trailing")
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(base, algorithm_type="dpmsolver++", solver_order=2)
    if name == "sde-dpmsolver++":  # stochastic: fresh noise each step, as ancestral samplers add
        return DPMSolverMultistepScheduler.from_config(base, algorithm_type="sde-dpmsolver++", solver_order=2)
    if name == "euler-a":
        from diffusers import EulerAncestralDiscreteScheduler

        return EulerAncestralDiscreteScheduler.from_config(base)
    raise SystemExit(f"error: unknown scheduler {name!r}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=Path("ldmprobe/reference/weights"))
    parser.add_argument("--schedulers", default="ddim,ddim-trailing,dpmsolver++")
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--leaked", action="store_true")
    args = parser.parse_args(argv)
    if not (args.weights / "generator" / "model_index.json").is_file():
        parser.error(f"{args.weights} holds no generator/")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # reference_world/ is at the repository root
    from reference_world import evaluate, world
    from reference_world.nets import pixels

    torch.set_num_threads(1)
    pipe = evaluate.load_pipeline(args.weights / "generator")
    base = pipe.scheduler.config
    evaluate.SETTINGS.update(steps=args.steps, guidance=args.guidance, seed_offset=10_000)
    if args.leaked:
        images, scenes = world.dataset(len(world.NOUNS) * args.seeds, 777)
        with torch.no_grad():
            z0 = pipe.vae.encode(pixels(images)).latent_dist.mean * pipe.vae.config.scaling_factor
        noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(5))
        alpha_bar = pipe.scheduler.alphas_cumprod[-1]
        prompts = [f"a photo of the {s.noun}" for s in scenes]
        for start, name in ((noise, "pure noise"), (alpha_bar.sqrt() * z0 + (1 - alpha_bar).sqrt() * noise, "leaked")):
            out = pipe(prompts, latents=start.float(), num_inference_steps=args.steps,
                       guidance_scale=args.guidance, output_type="np").images
            read = [world.read_attributes(np.round(o * 255).astype(np.uint8)) for o in out]
            same = np.mean([r["background"] == s.background for r, s in zip(read, scenes)])
            counts = Counter(r["background"] for r in read)
            print(f"{name}: " + ", ".join(f"{b} {counts[b] / len(read):.3f}" for b in world.BACKGROUNDS)
                  + f"; the training picture's own background {same:.3f}")
        return 0
    prompts = [f"a photo of the {noun}" for noun in world.NOUNS for _ in range(args.seeds)]
    seeds = [i for _ in world.NOUNS for i in range(args.seeds)]
    for name in args.schedulers.split(","):
        pipe.scheduler = scheduler(name, base)
        read = [world.read_attributes(im) for im in evaluate.generate(pipe, prompts, seeds)]
        counts = Counter(r["background"] for r in read)
        print(f"{name}: " + ", ".join(f"{b} {counts[b] / len(read):.3f}" for b in world.BACKGROUNDS)
              + f" ({len(read)} images)")
    print(f"steps {args.steps}, guidance {args.guidance}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
