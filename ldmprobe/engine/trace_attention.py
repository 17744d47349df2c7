"""Cross-attention maps for ``trace``: where each token's attention lands in the picture.

An attention processor (diffusers' processor interface, current diffusers, no pinned fork) is
set with ``unet.set_attn_processor`` on the cross-attention layers only (``attn2``) while
:func:`tracing` is active, and the previous processors are put back afterwards, so default
attention (SDPA) is untouched and as fast as ever when tracing is off. The tracer wraps the
layer's own processor: the layer's output is exactly what it would have been (the images do
not change), and the probabilities are recomputed for recording only.

What is recorded, per generated image and token position (all ``L`` = 77 positions, so the
start token, end-of-text and padding are kept explicitly, never silently dropped):

- the **conditional half** of the classifier-free-guidance batch only (the pipeline puts the
  negative prompt's half first; ``half="uncond"`` records the negative prompt's instead);
  without CFG the whole batch is conditional;
- softmax probabilities over the L keys, **averaged over heads** (summed over heads, divided
  by the head count), bilinearly resized to the latent grid, and **averaged over every
  (layer, step) call** with equal weight.

So at every latent pixel the maps of all L positions sum to 1 (bilinear resizing is a convex
combination), and :func:`upsample` keeps that at image size. Layers whose processor input
is not (batch, pixels, channels) (no SD-1.x cross-attention is) are skipped and counted.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Sequence

import numpy as np


class AttentionRecorder:
    """Accumulates cross-attention maps of one batch at a time (see the module docstring)."""

    def __init__(self, latent_hw: tuple[int, int], *, half: str = "cond"):
        if half not in ("cond", "uncond"):
            raise ValueError("half must be 'cond' or 'uncond'")
        self.latent_hw, self.half = latent_hw, half
        self.n_items = 0
        self.total = None
        self.calls = 0
        self.skipped = 0
        self.batches: list[np.ndarray] = []

    def begin(self, n_items: int) -> None:
        self.n_items, self.total, self.calls = n_items, None, 0

    def end(self) -> None:
        if self.total is None:
            raise RuntimeError("no cross-attention call was recorded in this batch")
        self.batches.append((self.total / self.calls).float().cpu().numpy())

    def maps(self) -> np.ndarray:
        """All recorded images' maps: (n, L, h, w) on the latent grid, float32."""
        return np.concatenate(self.batches) if self.batches else np.zeros((0, 0, 0, 0), np.float32)

    def _rows(self, batch: int) -> slice:
        n = self.n_items
        if batch == 2 * n:
            return slice(n, 2 * n) if self.half == "cond" else slice(0, n)
        if batch == n:
            if self.half == "uncond":
                raise RuntimeError("half='uncond' needs classifier-free guidance (guidance > 1)")
            return slice(0, n)
        raise RuntimeError(f"attention batch of {batch} rows does not match {n} images")

    def record(self, attn, hidden_states, encoder_hidden_states) -> None:
        import torch
        import torch.nn.functional as F

        if hidden_states.ndim != 3 or attn.spatial_norm is not None:
            self.skipped += 1
            return
        rows = self._rows(hidden_states.shape[0])
        hs, ehs = hidden_states[rows], encoder_hidden_states[rows]
        if attn.group_norm is not None:
            hs = attn.group_norm(hs.transpose(1, 2)).transpose(1, 2)
        if attn.norm_cross:
            ehs = attn.norm_encoder_hidden_states(ehs)
        query, key = attn.to_q(hs), attn.to_k(ehs)
        n, pixels, inner = query.shape
        heads, head_dim = attn.heads, inner // attn.heads
        query = query.view(n, pixels, heads, head_dim).transpose(1, 2)
        key = key.view(n, -1, heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        probs = torch.softmax((query.float() @ key.float().transpose(-1, -2)) * attn.scale, dim=-1)
        probs = probs.mean(dim=1).transpose(1, 2)  # (n, L, pixels), averaged over heads
        h0, w0 = self.latent_hw
        h = int(round(math.sqrt(pixels * h0 / w0)))
        grid = probs.reshape(n, probs.shape[1], h, pixels // h)
        if grid.shape[-2:] != (h0, w0):
            grid = F.interpolate(grid, size=(h0, w0), mode="bilinear", align_corners=False)
        self.total = grid if self.total is None else self.total + grid
        self.calls += 1


class TracingProcessor:
    """Wraps a cross-attention layer's own processor and records its probabilities."""

    def __init__(self, original, recorder: AttentionRecorder):
        self.original, self.recorder = original, recorder

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        out = self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        if encoder_hidden_states is not None:
            self.recorder.record(attn, hidden_states, encoder_hidden_states)
        return out


def is_cross_attention(name: str) -> bool:
    """diffusers names a UNet's cross-attention processors ``...attn2.processor``."""
    return name.endswith("attn2.processor")


@contextmanager
def tracing(unet, recorder: AttentionRecorder):
    """Install tracing processors on the cross-attention layers; restore the originals on exit."""
    originals = dict(unet.attn_processors)
    cross = [name for name in originals if is_cross_attention(name)]
    if not cross:
        raise ValueError("this UNet has no cross-attention layers (attn2) to trace")
    unet.set_attn_processor({name: TracingProcessor(proc, recorder) if name in cross else proc
                             for name, proc in originals.items()})
    try:
        yield recorder
    finally:
        unet.set_attn_processor(originals)


def group_maps(maps: np.ndarray, groups: Sequence[dict]) -> tuple[np.ndarray, list[str]]:
    """Sum each image's token maps over named position groups: (n, G, h, w) and the names.

    ``groups[i]`` maps a group name to the positions of image i (same names for all images).
    """
    names = list(groups[0]) if groups else []
    out = np.zeros((len(maps), len(names)) + maps.shape[2:], np.float32)
    for i, positions in enumerate(groups):
        for g, name in enumerate(names):
            idx = list(positions[name])
            if idx:
                out[i, g] = maps[i, idx].sum(axis=0)
    return out, names


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (..., h, w) maps to ``size`` (keeps per-pixel sums over tokens)."""
    import torch
    import torch.nn.functional as F

    lead = maps.shape[:-2]
    flat = torch.from_numpy(np.ascontiguousarray(maps, np.float32)).reshape(-1, 1, *maps.shape[-2:])
    out = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size).numpy()
