"""What each architecture's denoiser reads of a prompt, laid out for ``trace``.

``trace`` generates from explicit conditioning: the pipeline's own ``encode_prompt`` output,
held as a :class:`TextCond` (the token rows the denoiser attends to, and the pooled vector
where the architecture has one). The rows come from one or more **blocks**, each the states of
one tokenizer's positions:

- SD 1.x: one CLIP block (77 rows, causal), no pooled vector.
- SDXL: one block of 77 rows (CLIP-L and OpenCLIP-bigG side by side on the feature axis; both
  tokenise a prompt to the same positions), and bigG's projected pooled output.
- SD 3.x: a CLIP block (77 rows: CLIP-L and CLIP-G side by side, padded to T5's width) and
  then a T5 block (the pipeline's ``max_sequence_length`` rows), and both CLIPs' pooled
  outputs side by side.
- Flux.1: one T5 block (``max_sequence_length`` rows) and CLIP-L's pooled output.

T5 is bidirectional and has no start token and no end-of-text pooling: a word changes the
states of the tokens *before* it too (part ``before``), and the pooled vector comes from CLIP.
A causal CLIP block's states before the word are the same in both prompts, so ``before`` only
exists where a bidirectional block does. The hybrid parts of an architecture are
:func:`parts_of`; ``pooled`` is the pooled vector, where there is one.

Every prompt is encoded in a call of its own (no value depends on the other prompts), except
SD 1.x, which keeps the batched encoding its cached trace images were made with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: Every hybrid part, in prompt order (an architecture uses a subset: :func:`parts_of`).
ALL_PARTS = ("before", "modifier", "content", "eot_pad", "pooled")
FAMILIES = ("sd1", "sdxl", "sd3", "flux")


@dataclass(frozen=True)
class TextCond:
    """One prompt's conditioning: token rows (L, d) and the pooled vector (p,) or None."""

    tokens: np.ndarray
    pooled: np.ndarray | None = None

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.tokens,) if self.pooled is None else (self.tokens, self.pooled)


def as_cond(value) -> TextCond:
    """A :class:`TextCond`; a bare array is the token rows of an architecture without pooling."""
    return value if isinstance(value, TextCond) else TextCond(np.asarray(value, np.float32))


@dataclass(frozen=True)
class Block:
    """Rows ``start .. start + length`` of the token rows: one tokenizer's positions."""

    tokenizer: object
    start: int
    length: int
    bidirectional: bool
    name: str


@dataclass(frozen=True)
class TextLayout:
    family: str
    blocks: tuple[Block, ...]
    pooled: bool

    @property
    def rows(self) -> int:
        return sum(b.length for b in self.blocks)

    @property
    def parts(self) -> tuple[str, ...]:
        return parts_of(self.family)


def family_of(loaded) -> str:
    """The generator's architecture family ("sd1" for a pipeline loaded without a folder)."""
    from ldmprobe.models import configs

    folder = getattr(loaded, "folder", None)
    return configs.architecture(folder) if folder is not None else "sd1"


def parts_of(family: str) -> tuple[str, ...]:
    """The hybrid parts trace can swap on ``family``."""
    if family == "sd1":
        return ("modifier", "content", "eot_pad")
    if family == "sdxl":
        return ("modifier", "content", "eot_pad", "pooled")
    return ALL_PARTS


def t5_length(pipe) -> int:
    """The pipeline's default ``max_sequence_length`` (the T5 rows it makes)."""
    import inspect

    default = inspect.signature(type(pipe).__call__).parameters.get("max_sequence_length")
    return int(default.default) if default is not None and isinstance(default.default, int) else 256


def layout(loaded) -> TextLayout:
    pipe, family = loaded.pipe, family_of(loaded)
    clip = int(pipe.tokenizer.model_max_length) if getattr(pipe, "tokenizer", None) is not None else 77
    if family in ("sd1", "sdxl"):
        return TextLayout(family, (Block(pipe.tokenizer, 0, clip, False, "CLIP"),), family == "sdxl")
    if family == "sd3":
        return TextLayout(family, (Block(pipe.tokenizer, 0, clip, False, "CLIP"),
                                   Block(pipe.tokenizer_3, clip, t5_length(pipe), True, "T5")), True)
    if family == "flux":
        return TextLayout(family, (Block(pipe.tokenizer_2, 0, t5_length(pipe), True, "T5"),), True)
    raise ValueError(f"trace cannot lay out the text conditioning of a {family!r} pipeline")


def _numpy(tensor) -> np.ndarray:
    return tensor.float().cpu().numpy()


def _encode_one(pipe, family: str, prompt: str, negative: str | None):
    """(cond, negative cond or None) as the pipeline encodes them."""
    import torch

    device = pipe._execution_device if hasattr(pipe, "_execution_device") else pipe.device
    with torch.inference_mode():
        if family == "flux":
            embeds, pooled, _ = pipe.encode_prompt(prompt=[prompt], prompt_2=None, device=device,
                                                   num_images_per_prompt=1)
            return TextCond(_numpy(embeds[0]), _numpy(pooled[0])), None
        cfg = negative is not None
        if family == "sdxl":
            out = pipe.encode_prompt(prompt=[prompt], device=device, num_images_per_prompt=1,
                                     do_classifier_free_guidance=cfg, negative_prompt=[negative] if cfg else None)
        else:
            out = pipe.encode_prompt(prompt=[prompt], prompt_2=None, prompt_3=None, device=device,
                                     num_images_per_prompt=1, do_classifier_free_guidance=cfg,
                                     negative_prompt=[negative] if cfg else None)
        embeds, neg, pooled, neg_pooled = out
    cond = TextCond(_numpy(embeds[0]), _numpy(pooled[0]))
    return cond, (TextCond(_numpy(neg[0]), _numpy(neg_pooled[0])) if cfg else None)


def encode(loaded, prompts: Sequence[str]) -> list[TextCond]:
    """Each prompt's conditioning as the pipeline would make it."""
    family = family_of(loaded)
    if family == "sd1":
        import torch

        pipe = loaded.pipe
        with torch.inference_mode():
            embeds, _ = pipe.encode_prompt(list(prompts), pipe.device, 1, False)
        return [TextCond(row) for row in _numpy(embeds)]
    return [_encode_one(loaded.pipe, family, p, None)[0] for p in prompts]


def negative(loaded, negative_prompt: str | None) -> TextCond | None:
    """The negative prompt's conditioning; None where the pipeline makes its own (Flux's distilled
    guidance; no negative prompt on SDXL / SD 3, which SDXL may zero)."""
    family = family_of(loaded)
    if family == "flux":
        return None
    if family == "sd1":
        return encode(loaded, [negative_prompt or ""])[0]  # None: the empty prompt, as the pipeline does
    return _encode_one(loaded.pipe, family, "", negative_prompt)[1]


def pipe_kwargs(family: str, conds: Sequence[TextCond], neg: TextCond | None, device, dtype) -> dict:
    """The pipeline call's conditioning arguments for a batch of conditionings."""
    import torch

    def stack(arrays):
        return torch.from_numpy(np.stack([np.asarray(a, np.float32) for a in arrays])).to(device, dtype)

    kwargs = {"prompt_embeds": stack([c.tokens for c in conds])}
    if family != "sd1":
        kwargs["pooled_prompt_embeds"] = stack([c.pooled for c in conds])
    if neg is not None:
        kwargs["negative_prompt_embeds"] = stack([neg.tokens] * len(conds))
        if family != "sd1":
            kwargs["negative_pooled_prompt_embeds"] = stack([neg.pooled] * len(conds))
    return kwargs
