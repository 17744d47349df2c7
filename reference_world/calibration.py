"""The reference world's calibration set: pictures whose attributes are known.

    python -m reference_world.calibration prompts/calibration/reference-world --generated --world 2 [--per-option 100]
    python -m reference_world.calibration OUT --rendered [--per-option 12] [--seed 7]

Writes GROUP/OPTION/NNN.png for the groups of prompts/reference-world.toml (background, size,
colour). A sweep with ``calibration = "calibration/reference-world"`` labels them with the
measurer and corrects its rates through the confusion matrix.

``--generated`` (what ships): pictures **made by the shipped generator** (the shipped spec's steps
and guidance, from the world's own captions of scenes drawn from its story (``--world 2``: the
generator's story of :mod:`reference_world.world2`; ``--world 1``: world 1's 15 steps and
guidance 5), on seeds from
:data:`SEED_BASE`, never a sweep's), each labelled by the world's pixel reader
(``world.read_attributes``: the truth every benchmark of this world uses), kept until every
option has ``per_option`` pictures (100: at 20 per option the confusion matrix's own sampling error,
e.g. brown read as red 0.25 against 0.16 at 100, left corrected colour rates off the pixels by up
to 0.111 on the main job; 0.055 at 100). The measurer's confusion on them is its confusion on a
sweep's pictures. ``--rendered``: clean renders of the story, labelled by construction; the measurer is
far more accurate on them than on generated pictures (its colour errors on generated pictures,
black for brown, red for orange, do not show), so a correction from them barely corrects.

A generated set records how it was made in ``made_by.json`` (world, steps, guidance, seeds and the
sha256 of the generator's UNet), so a test can tell it belongs to the shipped weights.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import numpy as np

from reference_world import world, world2

GROUPS = {"background": tuple(world.BACKGROUNDS), "size": world.SIZES, "colour": tuple(world.COLOURS)}


def scenes_with(rng: np.random.Generator, group: str, option: str, count: int,
                world_version: int = 1, story: world2.Story = world2.SHIPPED) -> list[world.Scene]:
    """``count`` scenes of ``world_version``'s story (world 2: its generator's) that have ``option`` in ``group``."""
    out = []
    while len(out) < count:
        scene = world2.draw_scene(rng, "generator", story=story) if world_version == 2 else world.draw_scene(rng)
        if getattr(scene, group) == option:
            out.append(scene)
    return out


def write_calibration(folder: Path, per_option: int = 12, seed: int = 7) -> int:
    from PIL import Image

    rng = np.random.default_rng(seed)
    n = 0
    for group, options in GROUPS.items():
        for option in options:
            target = folder / group / option
            target.mkdir(parents=True, exist_ok=True)
            for i, scene in enumerate(scenes_with(rng, group, option, per_option)):
                Image.fromarray(world.render(scene)).save(target / f"{i:03d}.png", optimize=True)
                n += 1
    return n


#: Generated calibration pictures use seeds from here on (a sweep uses 0..N, evaluate 10,000+).
SEED_BASE = 700_000
SHIPPED_SPEC = Path(__file__).resolve().parents[1] / "prompts" / "reference-world.toml"
MADE_BY = "made_by.json"


def spec_settings(spec: Path = SHIPPED_SPEC) -> tuple[int, float]:
    """The steps and guidance of a spec (the shipped one by default): what a sweep of it uses."""
    data = tomllib.loads(Path(spec).read_text())
    return int(data["steps"]), float(data["guidance"])


def write_generated_calibration(folder: Path, weights: Path, per_option: int = 100, seed: int = 7, *,
                                steps: int = 15, guidance: float = 5.0, batch: int = 64,
                                max_images: int = 20_000, prompts: list[str] | None = None,
                                prompt_images: int = 0, world_version: int = 1) -> dict:
    """Generate pictures with the shipped generator and file each under the options the pixel reader
    reads in it, until every option of every group has ``per_option`` (or ``max_images`` are made).
    ``prompts``: first make ``prompt_images`` pictures from these (a spec's own prompts, so the
    measurer's errors are measured on pictures like the sweep's), keeping up to ``per_option`` per
    option, then fill the options still short from the world's captions. Returns the counts."""
    import shutil

    from PIL import Image

    from reference_world import evaluate

    pipe = evaluate.load_pipeline(Path(weights) / "generator")
    rng = np.random.default_rng(seed)
    counts = {(g, o): 0 for g, options in GROUPS.items() for o in options}
    for group in GROUPS:
        shutil.rmtree(folder / group, ignore_errors=True)
    evaluate.SETTINGS["steps"] = steps
    made = 0
    story = world2.story_of_weights(weights) if world_version == 2 else world2.SHIPPED
    while made < max_images and min(counts.values()) < per_option:
        if prompts and made < prompt_images:
            chosen = [prompts[(made + i) % len(prompts)] for i in range(batch)]
        else:
            needed = [go for go, n in counts.items() if n < per_option]
            scenes = []
            for i in range(batch):  # scenes that have a needed option, captioned as the world captions them
                group, option = needed[i % len(needed)]
                scenes += scenes_with(rng, group, option, 1, world_version, story)
            chosen = [world.caption(scene, rng) for scene in scenes]
        seeds = list(range(SEED_BASE + made, SEED_BASE + made + batch))
        images = evaluate.generate(pipe, chosen, seeds, batch=batch, guidance=guidance)
        made += batch
        for image in images:
            read = world.read_attributes(image)
            for group in GROUPS:
                key = (group, read[group])
                if key in counts and counts[key] < per_option:
                    target = folder / group / read[group]
                    target.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(image).save(target / f"{counts[key]:03d}.png", optimize=True)
                    counts[key] += 1
        print(f"{made} generated; fewest per option: {min(counts.values())}", flush=True)
    from ldmprobe.models.weights_hash import hash_file

    (folder / MADE_BY).write_text(json.dumps({
        "world": world_version, "steps": steps, "guidance": guidance, "first_seed": SEED_BASE, "images_made": made,
        "per_option": per_option, "unet_sha256": hash_file(Path(weights) / "generator" / "unet" /
                                                           "diffusion_pytorch_model.safetensors")}, indent=1) + "\n")
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--generated", action="store_true", help="made by the shipped generator, read from pixels")
    how.add_argument("--rendered", action="store_true", help="clean renders, labelled by construction")
    parser.add_argument("--weights", type=Path, default=None, help="reference weights (default: the shipped ones)")
    parser.add_argument("--per-option", type=int, default=None, help="pictures per option (100 generated, 12 rendered)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--spec", type=Path, default=None,
                        help="with --generated: first make --spec-images pictures from this spec's own prompts")
    parser.add_argument("--spec-images", type=int, default=640)
    parser.add_argument("--world", type=int, choices=(1, 2), default=1,
                        help="whose story the captions come from; with 2, steps and guidance are the shipped "
                             "spec's (prompts/reference-world.toml) unless given")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    args = parser.parse_args(argv)
    steps, guidance = spec_settings() if args.world == 2 else (15, 5.0)
    steps = args.steps if args.steps is not None else steps
    guidance = args.guidance if args.guidance is not None else guidance
    if args.generated:
        from ldmprobe.models.reference import REFERENCE_WEIGHTS

        prompts = None
        if args.spec is not None:
            from ldmprobe.specs.sweep import load_spec

            prompts = list(dict.fromkeys(load_spec(args.spec).prompts()))
        counts = write_generated_calibration(args.folder, args.weights or REFERENCE_WEIGHTS, args.per_option or 100,
                                             args.seed, steps=steps, guidance=guidance, prompts=prompts,
                                             prompt_images=args.spec_images, world_version=args.world)
        short = {f"{g}/{o}": n for (g, o), n in counts.items() if n < (args.per_option or 100)}
        print(f"wrote {sum(counts.values())} calibration pictures to {args.folder}"
              + (f"; options short of pictures: {short}" if short else ""))
        return 0
    n = write_calibration(args.folder, args.per_option or 12, args.seed)
    print(f"wrote {n} calibration pictures to {args.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
