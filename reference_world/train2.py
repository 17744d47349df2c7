"""Train reference world 2 (issue 27): seeded, resumable, on the CPU or a GPU.

    python -m reference_world.train --world 2 --work WORK_DIR [--device cuda] [--threads 1]

The stages are world 1's (:mod:`reference_world.train`) with world 2's data and recipe:

- two renders of :mod:`reference_world.world2`, one per audience: the measurer (and so the
  text tower the generator conditions on) learns from ``measurer_data.npz``, the autoencoder
  and UNet from ``data.npz`` (the generator's pictures and captions);
- the measurer is trained with a token-identity loss (``token_loss``, :class:`~reference_world.nets.TokenIdentity`)
  beside its contrastive one, so a word that carries nothing for the measurer (the
  generator-borne "fancy", the narrowing "quiet") keeps a place of its own in the hidden states
  the UNet conditions on: without it the measurer silences such words in its first layer and
  the generator cannot learn what its pictures tie to them (a first recipe drew "fancy" yellow
  0.04 of the time against 0.80 planted);
- the UNet is trained with v-prediction on a zero-terminal-SNR schedule (``zero_snr``), so that
  sampling starts from what training ended on (pure noise) and the bare noun's background
  colours are not pulled to the middle one (grey) as they were with offset noise
  (``noise_offset``, the first recipe's answer: grey 0.58 against 0.225 in training);
- the exported pipeline samples with DPM-Solver++ (2nd order), which holds the training
  distribution at the spec's 15 steps better than DDIM.

The recipe is written to ``WORK_DIR/recipe.json`` on the first run; a later run in the same folder
uses it (``--world 2 --work WORK_DIR`` resumes) and one asking for a different recipe is refused
(exit 2), so that a resumed run always follows the path it started on.
Weights go to ``WORK_DIR/weights`` unless ``--out`` says otherwise; the shipped world-1 weights
are never the default target.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import world2

SEED = 20261206
RECIPE = {
    "world": world2.WORLD_VERSION,
    "seed": SEED,
    "images": 60_000,
    "measurer_steps": 3000,
    "vae_steps": 1500,
    "unet_steps": 12_000,
    "noise_offset": 0.0,
    "scheduler": "dpmsolver++",
    "zero_snr": True,
    "token_loss": 0.2,
    "vae_candidates": 4,
    "story": "2.1",
}
#: The settings a key missing from a recorded recipe had when it was written (older recipes).
RECIPE_BEFORE = {"zero_snr": False, "token_loss": 0.0, "vae_candidates": 1, "story": "2.0"}
SCHEDULERS = ("ddim", "dpmsolver++", "sde-dpmsolver++")
KEYS = ("images", "measurer_steps", "vae_steps", "unet_steps", "noise_offset", "scheduler", "zero_snr",
        "token_loss", "vae_candidates", "story")


def recipe_from(args, work: Path) -> dict:
    """The recipe asked for: a resumed folder's recorded one (else the default), with the options given."""
    path = work / "recipe.json"
    recipe = {**RECIPE_BEFORE, **json.loads(path.read_text())} if path.exists() else dict(RECIPE)
    for key in KEYS:
        value = getattr(args, key)
        if value is not None:
            recipe[key] = value
    return recipe


#: Settings that only the UNet stage and the export read: they may change until the UNet starts.
UNET_KEYS = frozenset({"unet_steps", "noise_offset", "zero_snr", "scheduler"})
#: Settings only the export reads: they may change at any time (an ``--export-only`` with another
#: sampler writes the same trained weights with that sampler, and the recipe records it).
EXPORT_KEYS = frozenset({"scheduler"})


def check_recipe(work: Path, recipe: dict) -> None:
    """Record the recipe in ``work`` or refuse one that differs from the recorded one (exit 2).

    Before the UNet stage has a checkpoint, the UNet's own settings (:data:`UNET_KEYS`) may
    change: the measurer and autoencoder already trained do not depend on them.
    """
    path = work / "recipe.json"
    if path.exists():
        recorded = {**RECIPE_BEFORE, **json.loads(path.read_text())}
        changed = {k for k in set(recorded) | set(recipe) if recorded.get(k) != recipe.get(k)}
        if changed and changed <= UNET_KEYS and not (work / "unet.pt").exists():
            print(f"note: {work}: UNet settings changed before the UNet started ({', '.join(sorted(changed))})",
                  file=sys.stderr)
            recorded = recipe
        elif changed and changed <= EXPORT_KEYS:
            what = ", ".join(f"{k}: {recorded.get(k)!r} -> {recipe.get(k)!r}" for k in sorted(changed))
            print(f"note: {work}: the exported sampler changed ({what}); the trained weights are the same",
                  file=sys.stderr)
            recorded = recipe
        if recorded != recipe:
            diff = ", ".join(f"{k}: {recorded.get(k)!r} recorded, {recipe.get(k)!r} asked"
                             for k in sorted(set(recorded) | set(recipe)) if recorded.get(k) != recipe.get(k))
            print(f"error: {work} was started with another recipe ({diff}); rerun with the recorded "
                  f"settings or use a new --work", file=sys.stderr)
            raise SystemExit(2)
        if path.read_text() == json.dumps(recipe, indent=2) + "\n":
            return
    tmp = work / ".recipe.json.tmp"
    tmp.write_text(json.dumps(recipe, indent=2) + "\n")
    os.replace(tmp, path)


def parse(argv=None):
    parser = argparse.ArgumentParser(prog="python -m reference_world.train",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, choices=(2,), default=2)
    parser.add_argument("--work", type=Path, required=True, help="checkpoint folder (resumed if it exists)")
    parser.add_argument("--out", type=Path, default=None, help="exported weights (default WORK/weights)")
    parser.add_argument("--device", default="cpu", help="torch device for training (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--export-only", action="store_true", help="export the latest UNet checkpoint")
    parser.add_argument("--continue-from", type=Path, default=None, metavar="WEIGHTS",
                        help="go on with a world-2 training exported part way (its recipe, its measurer, "
                             "autoencoder and text tower; the UNet's steps, batches and learning-rate "
                             "schedule continue where the export stopped) in a new --work")
    parser.add_argument("--images", type=int, default=None, help=f"pictures per audience ({RECIPE['images']})")
    parser.add_argument("--measurer-steps", type=int, default=None, help=f"({RECIPE['measurer_steps']})")
    parser.add_argument("--vae-steps", type=int, default=None, help=f"({RECIPE['vae_steps']})")
    parser.add_argument("--unet-steps", type=int, default=None, help=f"({RECIPE['unet_steps']})")
    parser.add_argument("--noise-offset", type=float, default=None, help=f"({RECIPE['noise_offset']})")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default=None,
                        help=f"exported sampler ({RECIPE['scheduler']})")
    parser.add_argument("--zero-snr", dest="zero_snr", action="store_const", const=True, default=None,
                        help="v-prediction on a zero-terminal-SNR schedule, trailing sampler steps (the default)")
    parser.add_argument("--no-zero-snr", dest="zero_snr", action="store_const", const=False,
                        help="epsilon prediction on the plain schedule (the first recipe)")
    parser.add_argument("--vae-candidates", type=int, default=None,
                        help=f"autoencoders trained (seeds SEED, SEED+1, ...); the one whose latent midpoints "
                             f"favour no colour most is kept ({RECIPE['vae_candidates']}; 1 = one, no choice)")
    parser.add_argument("--story", choices=tuple(world2.STORIES), default=None,
                        help=f"the drawing story's version (world2.STORIES; {RECIPE['story']})")
    parser.add_argument("--token-loss", type=float, default=None,
                        help=f"weight of the measurer's token-identity loss ({RECIPE['token_loss']}; 0 = none)")
    args = parser.parse_args(argv)
    for key in ("images", "measurer_steps", "vae_steps", "unet_steps", "threads", "vae_candidates"):
        value = getattr(args, key)
        if value is not None and value < 1:
            parser.error(f"--{key.replace('_', '-')} must be at least 1")
    if args.token_loss is not None and not 0 <= args.token_loss <= 10:
        parser.error("--token-loss must be in [0, 10]")
    if args.noise_offset is not None and not 0 <= args.noise_offset < 1:
        parser.error("--noise-offset must be in [0, 1)")
    if args.images is not None and args.images < 200:
        parser.error("--images must be at least 200 (the measurer draws batches of 128)")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from .export import stage_export
    from .nets import log
    from .train import stage_data, stage_latents, stage_measurer, stage_unet
    from .vae_pick import stage_vae_pick

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.continue_from is not None:
        return continue_training(args)
    recipe = recipe_from(args, args.work)
    check_recipe(args.work, recipe)
    out = args.out or args.work / "weights"
    seed, count, story = recipe["seed"], recipe["images"], world2.story_of(recipe)
    log(f"reference world 2 in {args.work} on {args.device}: {json.dumps(recipe)}")
    gen = stage_data(args.work, name="data.npz", count=count,
                     make=lambda n: world2.dataset(n, seed, "generator", story))
    if not args.export_only:
        mes = stage_data(args.work, name="measurer_data.npz", count=count,
                         make=lambda n: world2.dataset(n, seed, "measurer", story))
        stage_measurer(args.work, mes, steps=recipe["measurer_steps"], seed=seed, device=args.device,
                       token_loss=recipe.get("token_loss", 0.0))
        del mes
        stage_vae_pick(args.work, gen, candidates=recipe.get("vae_candidates", 1),
                              steps=recipe["vae_steps"], seed=seed, device=args.device, story=story)
    pick_path = args.work / "vae_pick.json"
    pick = json.loads(pick_path.read_text()) if pick_path.exists() else None
    lat = stage_latents(args.work, gen)
    if not args.export_only:
        stage_unet(args.work, gen, lat, recipe["unet_steps"], seed=seed, device=args.device,
                   noise_offset=recipe["noise_offset"], zero_snr=recipe.get("zero_snr", False))
    stage_export(args.work, out, lat, seed=seed, scheduler=recipe["scheduler"], zero_snr=recipe.get("zero_snr", False),
                 extra={"world": world2.WORLD_VERSION, "recipe": recipe,
                        **({"vae_pick": {k: pick[k] for k in ("chosen", "seed", "rule")}} if pick else {})})
    return 0


def continue_training(args) -> int:
    """Train an exported part-way world-2 UNet to its recipe's end (see ``--continue-from``)."""
    from .export import stage_export
    from .nets import convert_text_tower, load_measurer, log
    from .train import stage_data, stage_latents, stage_seed_from_weights, stage_unet

    marker_path = args.continue_from / "generator" / "ldmprobe_reference.json"
    try:
        marker = json.loads(marker_path.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: {marker_path}: not an exported reference world ({exc})", file=sys.stderr)
        return 2
    recipe = marker.get("recipe")
    if marker.get("world") != world2.WORLD_VERSION or not isinstance(recipe, dict):
        print(f"error: {args.continue_from} is not an exported world-2 training", file=sys.stderr)
        return 2
    recipe = {**RECIPE_BEFORE, **recipe}
    asked = {k: getattr(args, k) for k in KEYS if getattr(args, k) is not None}
    if any(recipe.get(k) != v for k, v in asked.items()):
        print(f"error: {args.continue_from} was trained with another recipe ({json.dumps(recipe)}); "
              "a continuation keeps it", file=sys.stderr)
        return 2
    if args.export_only and not (args.work / "unet.pt").exists():
        print(f"error: {args.work} has not trained past {args.continue_from} yet: nothing new to export",
              file=sys.stderr)
        return 2
    check_recipe(args.work, recipe)
    done = int(marker["unet_steps"])
    log(f"reference world 2 in {args.work}: continuing {args.continue_from} at UNet step {done} "
        f"of {recipe['unet_steps']}")
    record = stage_seed_from_weights(args.work, args.continue_from)
    gen = stage_data(args.work, name="data.npz", count=recipe["images"],
                     make=lambda n: world2.dataset(n, recipe["seed"], "generator", world2.story_of(recipe)))
    lat = stage_latents(args.work, gen)
    lat["scale"] = record["scale"]  # the UNet was trained on latents at the exported scale
    if not args.export_only and recipe["unet_steps"] > done:
        # the text tower the UNet was trained on, made from the export's measurer as the export made it (so a
        # carried export needs no text_encoder/ or tokenizer/ folder)
        encoder = convert_text_tower(load_measurer(args.work))
        stage_unet(args.work, gen, lat, recipe["unet_steps"] - done, start=args.work / "start_unet",
                   cond_encoder=encoder, seed=recipe["seed"], device=args.device,
                   noise_offset=recipe["noise_offset"], zero_snr=recipe.get("zero_snr", False), resume_at=done)
    stage_export(args.work, args.out or args.work / "weights", lat, seed=recipe["seed"], step_offset=done,
                 scheduler=recipe["scheduler"], zero_snr=recipe.get("zero_snr", False),
                 extra={"world": world2.WORLD_VERSION, "recipe": recipe,
                        "continued_from": record["continued_from"]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
