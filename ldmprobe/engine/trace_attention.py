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

**Joint attention** (SD 3's MMDiT, Flux): there is no cross-attention layer; image and text
tokens attend to each other in one softmax. Every attention processor of the transformer is
wrapped; while the original runs, the attention kernel it calls (``scaled_dot_product_attention``
or diffusers' ``dispatch_attention_fn``) is intercepted to read its query and key (after the
layer's norms and rotary embedding, exactly what the kernel sees) and then called unchanged.
What is recorded is the **text→image part**: for each image query, its softmax probabilities
over the text keys (the conditioning rows, in order), renormalised per head to sum to 1 over
the text keys and then averaged over heads, so the maps mean the same as a UNet's ("of the
attention a picture patch pays to the text, the share of each token"). How much of its attention an image query pays to the text at
all is kept as :attr:`AttentionRecorder.text_share` (the mean over images, layers and steps).
Layers that see no text (SD 3.5's image-only second attention) are skipped. SD 3 puts the
image tokens first; Flux puts the text first, in both its double- and single-stream blocks.
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
        self.text_mass = [0.0, 0]  # joint attention: sum of per-call mean text shares, calls

    def begin(self, n_items: int) -> None:
        self.n_items, self.total, self.calls = n_items, None, 0

    def end(self) -> np.ndarray:
        """The call's maps: (n, L, h, w) on the latent grid, float32."""
        if self.total is None:
            raise RuntimeError("no cross-attention call was recorded in this batch")
        return (self.total / self.calls).float().cpu().numpy()

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
        self._add(probs.mean(dim=1).transpose(1, 2))  # (n, L, pixels), averaged over heads

    @property
    def text_share(self) -> float:
        """Joint attention: the mean share of an image query's attention that goes to the text."""
        total, calls = self.text_mass
        return total / calls if calls else float("nan")

    def record_joint(self, query, key, scale, text_rows: int, text_first: bool) -> None:
        """Record one joint-attention call from the kernel's query and key, (batch, heads, tokens, dim)."""
        import torch

        rows = self._rows(query.shape[0])
        query, key = query[rows].float(), key[rows].float()
        n, heads, tokens, dim = query.shape
        if tokens <= text_rows:
            self.skipped += 1
            return
        scale = float(scale) if scale is not None else 1.0 / math.sqrt(dim)
        text = slice(0, text_rows) if text_first else slice(tokens - text_rows, tokens)
        image = slice(text_rows, tokens) if text_first else slice(0, tokens - text_rows)
        acc, mass = None, 0.0
        for h in range(heads):  # one head at a time: (n, image tokens, tokens) stays small
            probs = torch.softmax((query[:, h, image] @ key[:, h].transpose(-1, -2)) * scale, dim=-1)
            part = probs[..., text]
            head_mass = part.sum(-1, keepdim=True)
            mass += float(head_mass.mean())
            part = part / head_mass.clamp_min(1e-30)  # this head's distribution over the text tokens
            acc = part if acc is None else acc + part
        self.text_mass[0] += mass / heads
        self.text_mass[1] += 1
        self._add((acc / heads).transpose(1, 2))  # (n, text rows, image tokens), averaged over heads

    def _add(self, probs) -> None:
        """Add one call's (n, L, pixels) maps, resized to the latent grid."""
        import torch.nn.functional as F

        n, _, pixels = probs.shape
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


class _Intercept:
    """While active, the attention kernels hand their first query and key to ``seen``: torch's
    ``scaled_dot_product_attention`` (batch, heads, tokens, dim) and, in the processor's module,
    diffusers' ``dispatch_attention_fn`` (batch, tokens, heads, dim). Each is called unchanged."""

    def __init__(self, module_name: str):
        import sys

        import torch.nn.functional as F

        module = sys.modules.get(module_name)
        self.seen: list = []
        self.depth = 0
        self.targets = [(F, "scaled_dot_product_attention", False)]
        if getattr(module, "dispatch_attention_fn", None) is not None:
            self.targets.append((module, "dispatch_attention_fn", True))
        self.saved: list = []

    def _kernel(self, real, bnhd: bool):
        def kernel(query, key, value, *args, **kwargs):
            if self.depth == 0 and not self.seen:
                scale = kwargs.get("scale", args[3] if len(args) > 3 else None)
                self.seen.append((query.transpose(1, 2), key.transpose(1, 2), scale) if bnhd else (query, key, scale))
            self.depth += 1  # a kernel called by another one is not recorded again
            try:
                return real(query, key, value, *args, **kwargs)
            finally:
                self.depth -= 1
        return kernel

    def __enter__(self):
        for owner, name, bnhd in self.targets:
            real = getattr(owner, name)
            self.saved.append((owner, name, real))
            setattr(owner, name, self._kernel(real, bnhd))
        return self

    def __exit__(self, *exc):
        for owner, name, real in reversed(self.saved):
            setattr(owner, name, real)
        return False


class JointTracingProcessor:
    """Wraps a joint-attention layer's own processor and records its text->image probabilities.

    ``text_rows``: the conditioning's token rows; ``text_first``: the text tokens come first in
    the joint sequence (Flux); ``always_text``: the layer sees the text even when called without
    ``encoder_hidden_states`` (Flux's single-stream blocks get text and image concatenated).
    """

    def __init__(self, original, recorder: AttentionRecorder, text_rows: int, text_first: bool, always_text: bool):
        self.original, self.recorder = original, recorder
        self.text_rows, self.text_first, self.always_text = text_rows, text_first, always_text

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        if encoder_hidden_states is None and not self.always_text:
            return self.original(attn, hidden_states, encoder_hidden_states, *args, **kwargs)
        with _Intercept(type(self.original).__module__) as seen:
            out = self.original(attn, hidden_states, encoder_hidden_states, *args, **kwargs)
        if seen.seen:
            query, key, scale = seen.seen[0]
            self.recorder.record_joint(query, key, scale, self.text_rows, self.text_first)
        else:
            self.recorder.skipped += 1
        return out


def is_cross_attention(name: str) -> bool:
    """diffusers names a UNet's cross-attention processors ``...attn2.processor``."""
    return name.endswith("attn2.processor")


@contextmanager
def tracing(denoiser, recorder: AttentionRecorder, *, family: str = "sd1", text_rows: int = 77):
    """Install tracing processors on the layers that attend to the text; restore the originals on exit.

    A UNet (SD 1.x, SDXL): its cross-attention layers. A transformer (SD 3, Flux): every
    attention layer, recording the text->image part of the joint attention."""
    originals = dict(denoiser.attn_processors)
    if family in ("sd3", "flux"):
        wrapped = {name: JointTracingProcessor(proc, recorder, text_rows, text_first=family == "flux",
                                               always_text=family == "flux") for name, proc in originals.items()}
    else:
        cross = [name for name in originals if is_cross_attention(name)]
        if not cross:
            raise ValueError("this UNet has no cross-attention layers (attn2) to trace")
        wrapped = {name: TracingProcessor(proc, recorder) if name in cross else proc
                   for name, proc in originals.items()}
    denoiser.set_attn_processor(wrapped)
    try:
        yield recorder
    finally:
        denoiser.set_attn_processor(originals)


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
