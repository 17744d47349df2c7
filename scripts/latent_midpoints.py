"""Which colour does the reference world's autoencoder draw for a latent between two pictures?

    python scripts/latent_midpoints.py [--weights ldmprobe/reference/weights] [--pictures 2000] [--pairs 400]

A diffusion model that is unsure between two pictures predicts something between their latents,
and the sampler's early steps start from such predictions (at zero SNR the first prediction is
the mean latent). If the autoencoder decodes the space between latents as one colour, the
generator over-draws that colour whatever its UNet learned. This encodes fresh pictures of the
generator's story, decodes the mean latent and the midpoints of random pairs, and reads their
colours with the world's pixel reader; as a check, the same pairs blended in pixels (the nearest
palette colour of the two objects' mean colour).

Measured on the shipped world 2 at the defaults (docs/NOTES.md, eighth session): round trips
0.142 purple (1/7 drawn); latent midpoints 0.52 purple (the next colour, orange, 0.125); the mean latent decodes to a big purple object on
grey; pixel midpoints give purple for 5 of the 21 colour pairs (brown 5, red 4, orange 4).
So the generator's purple excess is the autoencoder's latent geometry, not the UNet's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=ROOT / "ldmprobe" / "reference" / "weights")
    parser.add_argument("--pictures", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from diffusers import AutoencoderKL

    from reference_world.vae_pick import latent_probe, palette_blends

    torch.set_num_threads(1)
    vae = AutoencoderKL.from_pretrained(str(args.weights / "generator"), subfolder="vae", use_safetensors=True)
    with torch.no_grad():
        probe = latent_probe(vae, pictures=args.pictures, pairs=args.pairs, seed=args.seed)
    for key in ("round_trip", "latent_midpoints"):
        probe[key] = {c: round(v, 3) for c, v in probe[key].items()}
    print(json.dumps({**probe, "pixel_midpoints_of_colour_pairs": palette_blends()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
