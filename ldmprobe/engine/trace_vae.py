"""Autoencoder round trips for ``trace``: what the pipeline's VAE keeps of an image.

An image (uint8, H x W x 3) is scaled to [-1, 1], encoded to the latent distribution, and its
**mean** (not a sample) is decoded, so a round trip is deterministic: identical inputs give
identical outputs. The latent is scaled and unscaled with the VAE's ``scaling_factor`` (and
``shift_factor`` where the config has one), exactly as the pipeline does around sampling,
so the round trip is the part of generation the autoencoder alone is responsible for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def round_trip(loaded, images: np.ndarray, *, batch_size: int = 8) -> np.ndarray:
    """Encode and decode uint8 images (n, H, W, 3) through the pipeline's VAE; uint8 out."""
    import torch

    vae = loaded.pipe.vae
    scale = float(vae.config.scaling_factor)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    out = []
    with torch.inference_mode():
        for first in range(0, len(images), max(1, batch_size)):
            chunk = np.asarray(images[first : first + max(1, batch_size)], np.float32)
            x = torch.from_numpy(chunk / 127.5 - 1.0).permute(0, 3, 1, 2).to(vae.device, vae.dtype)
            latent = (vae.encode(x).latent_dist.mean - shift) * scale
            decoded = vae.decode(latent / scale + shift).sample
            y = ((decoded.float().clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1)
            out.append(y.cpu().numpy().astype(np.uint8))
    return np.concatenate(out) if out else np.zeros_like(images, dtype=np.uint8)


@dataclass(frozen=True)
class FolderImages:
    """User images: pixels (n, H, W, 3) uint8, their group (subfolder; '' for the top) and paths."""

    pixels: np.ndarray
    groups: tuple[str, ...]
    paths: tuple[str, ...]


def _fit(image, size: tuple[int, int]):
    """Centre-crop to the target aspect, then resize (LANCZOS) to ``size`` = (height, width)."""
    from PIL import Image

    height, width = size
    w, h = image.size
    target = width / height
    if w / h > target:
        new_w = int(round(h * target))
        image = image.crop(((w - new_w) // 2, 0, (w - new_w) // 2 + new_w, h))
    elif w / h < target:
        new_h = int(round(w / target))
        image = image.crop((0, (h - new_h) // 2, w, (h - new_h) // 2 + new_h))
    return image.resize((width, height), Image.LANCZOS) if image.size != (width, height) else image


def load_folder(folder: str | Path, size: tuple[int, int]) -> FolderImages:
    """Images under ``folder`` (one level of subfolders = groups), fitted to ``size`` (H, W)."""
    from PIL import Image

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder '{root}' does not exist")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and len(p.relative_to(root).parts) <= 2)
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in '{root}' or its subfolders")
    pixels, groups = [], []
    for path in paths:
        with Image.open(path) as image:
            pixels.append(np.asarray(_fit(image.convert("RGB"), size), dtype=np.uint8))
        rel = path.relative_to(root).parts
        groups.append(rel[0] if len(rel) == 2 else "")
    return FolderImages(np.stack(pixels), tuple(groups), tuple(str(p) for p in paths))


def to_pil(images: Sequence[np.ndarray]) -> list:
    from PIL import Image

    return [Image.fromarray(np.asarray(im, np.uint8)) for im in images]
