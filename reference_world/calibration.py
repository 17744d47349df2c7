"""Render the reference world's calibration set: pictures whose attributes are known by construction.

    python -m reference_world.calibration prompts/calibration/reference-world [--per-option 12] [--seed 7]

Writes GROUP/OPTION/NNN.png for the groups of prompts/reference-world.toml (background, size,
colour): each picture is drawn from the world's own story (``world.draw_scene``) until it has the
option, so the other attributes vary as they do in the world. A sweep with
``calibration = "calibration/reference-world"`` labels them with the measurer and corrects its
rates through the confusion matrix. They are clean renders, not generated images: the measurer's
errors on a generator's blurrier pictures may be larger than these show.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from reference_world import world

GROUPS = {"background": tuple(world.BACKGROUNDS), "size": world.SIZES, "colour": tuple(world.COLOURS)}


def scenes_with(rng: np.random.Generator, group: str, option: str, count: int) -> list[world.Scene]:
    """``count`` scenes from the world's story that have ``option`` in ``group``."""
    out = []
    while len(out) < count:
        scene = world.draw_scene(rng)
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--per-option", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    n = write_calibration(args.folder, args.per_option, args.seed)
    print(f"wrote {n} calibration pictures to {args.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
