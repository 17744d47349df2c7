"""Choose the reference world's autoencoder by what it decodes *between* pictures.

A diffusion model that is unsure between pictures predicts latents between them, and at zero
SNR its first prediction is the mean latent. World 2's shipped autoencoder decodes latent
midpoints as purple 0.52 of the time (1/7 drawn), so its generator over-draws purple at every
guidance whatever the UNet learned (docs/NOTES.md, eighth session). Which colour the space
between latents favours is a draw of the autoencoder's training: seeds of the same recipe
favoured purple 0.52, brown 0.29 and purple 0.34.

:func:`latent_probe` measures it; :func:`stage_vae_pick` trains ``candidates`` autoencoders
(seeds ``seed``, ``seed + 1``, ...) and keeps the one whose most favoured midpoint colour has the
smallest share (ties: the lowest seed). A pick of one candidate is the old single autoencoder.
The probe's pictures are drawn from their own seed, never the training pictures.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np

from . import world, world2

PROBE_SEED = 7_000_000


def palette_blends() -> dict[str, int]:
    """For each pair of palette colours, the palette colour nearest their mean: the colours pixel
    blending would favour (a reference for the latent midpoints)."""
    palette = np.array(list(world.COLOURS.values()), float)
    names = list(world.COLOURS)
    counts = {n: 0 for n in names}
    for a, b in itertools.combinations(range(len(palette)), 2):
        counts[names[int(np.argmin(((palette - (palette[a] + palette[b]) / 2) ** 2).sum(1)))]] += 1
    return counts


def colour_shares(pictures) -> dict[str, float]:
    """The share of ``pictures`` the world's pixel reader reads as each colour."""
    reads = [world.read_attributes(p)["colour"] for p in pictures]
    return {c: float(np.mean([r == c for r in reads])) for c in world.COLOURS}


def latent_probe(vae, *, pictures: int = 2000, pairs: int = 400, seed: int = 0,
                 story: world2.Story = world2.SHIPPED) -> dict:
    """Round trips, latent midpoints of random pairs and the mean latent of fresh pictures of the
    generator's story, read by the pixel reader (colour shares; the mean latent's attributes)."""
    import torch

    images, _ = world2.dataset(pictures, PROBE_SEED + seed, "generator", story)
    x = torch.from_numpy(images).float().permute(0, 3, 1, 2) / 127.5 - 1
    device = next(vae.parameters()).device

    def decode(z):
        out = vae.decode(z.to(device)).sample.clamp(-1, 1).cpu()
        return np.round((out + 1) * 127.5).permute(0, 2, 3, 1).numpy().astype(np.uint8)

    with torch.no_grad():
        latents = torch.cat([vae.encode(x[k:k + 500].to(device)).latent_dist.mean.cpu()
                             for k in range(0, len(x), 500)])
        rng = np.random.default_rng(seed)
        i, j = rng.choice(len(latents), pairs), rng.choice(len(latents), pairs)
        mean = world.read_attributes(decode(latents.mean(0, keepdim=True))[0])
        return {"round_trip": colour_shares(decode(latents[:pairs])),
                "latent_midpoints": colour_shares(decode((latents[i] + latents[j]) / 2)),
                "mean_latent": {k: mean[k] for k in ("colour", "size", "background")},
                "pictures": pictures, "pairs": pairs}


def favoured(probe: dict) -> tuple[str, float]:
    """The colour the latent midpoints favour most, and its share."""
    shares = probe["latent_midpoints"]
    colour = max(shares, key=lambda c: (shares[c], c))
    return colour, shares[colour]


def choose(probes: list[dict]) -> int:
    """The candidate whose most favoured midpoint colour has the smallest share (ties: the first)."""
    return min(range(len(probes)), key=lambda k: (favoured(probes[k])[1], k))


def stage_vae_pick(work: Path, data: dict, *, candidates: int, steps: int, seed: int,
                   device: str = "cpu", story: world2.Story = world2.SHIPPED) -> dict | None:
    """Train ``candidates`` autoencoders and install the chosen one as ``work/vae.done.pt``.

    One candidate trains in ``work`` itself (the single-autoencoder recipe) and records nothing.
    Otherwise each trains in ``work/vae_candidates/K`` (seed ``seed + K``, resumable), each is
    probed, and ``work/vae_pick.json`` records every probe and the choice; returns that record.
    """
    import torch

    from .nets import load_vae, log
    from .train import atomic_save, stage_vae

    if candidates == 1:
        stage_vae(work, data, steps=steps, seed=seed, device=device)
        return None
    record_path = work / "vae_pick.json"
    if record_path.exists() and (work / "vae.done.pt").exists():
        return json.loads(record_path.read_text())
    probes = []
    for k in range(candidates):
        folder = work / "vae_candidates" / str(k)
        folder.mkdir(parents=True, exist_ok=True)
        stage_vae(folder, data, steps=steps, seed=seed + k, device=device)
        probe_path = folder / "probe.json"
        if not probe_path.exists():
            vae = load_vae(folder).to(device).eval()
            probe = latent_probe(vae, story=story)
            probe_path.write_text(json.dumps(probe, indent=1) + "\n")
        probes.append(json.loads(probe_path.read_text()))
        colour, share = favoured(probes[-1])
        log(f"vae candidate {k} (seed {seed + k}): latent midpoints favour {colour} {share:.3f}")
    chosen = choose(probes)
    record = {"candidates": candidates, "chosen": chosen, "seed": seed + chosen,
              "rule": "smallest share of the latent midpoints' most favoured colour",
              "palette_blends": palette_blends(), "probes": probes}
    state = torch.load(work / "vae_candidates" / str(chosen) / "vae.done.pt", weights_only=True)
    atomic_save(state, work / "vae.done.pt")
    tmp = work / ".vae_pick.json.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, record_path)
    for k in range(candidates):  # the optimiser checkpoints are not needed once the choice is made
        partial = work / "vae_candidates" / str(k) / "vae.pt"
        if partial.exists():
            partial.unlink()
    log(f"vae: candidate {chosen} chosen ({favoured(probes[chosen])[0]} {favoured(probes[chosen])[1]:.3f})")
    return record
