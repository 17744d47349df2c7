"""Generation from explicit conditioning for ``trace``: prompt embeddings in, images out.

Every trace image is made by the pipeline itself from ``prompt_embeds`` (never a hand-written
sampler), batched, with one CPU ``torch.Generator`` per image seeded from its seed, so the
pairing of ``sweep`` holds: two jobs with the same seed differ only in their conditioning.

A job may switch its conditioning during sampling: ``first`` for the first ``switch_at``
denoising-loop iterations, ``after`` from then on. The switch is done with the pipeline's
``callback_on_step_end`` (it replaces the conditional half of ``prompt_embeds`` after step
``switch_at - 1``), not with a manual denoising loop: the pipeline keeps its own scheduler,
guidance, rescaling and timestep conditioning, so a job that never switches is exactly an
ordinary generation, and one loop serves every SD-1.x-style pipeline that lists
``prompt_embeds`` in ``_callback_tensor_inputs``. Jobs with different switch points share a
batch (each row switches at its own step).

Torch and diffusers are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ldmprobe.engine.generate import image_problem


@dataclass(frozen=True)
class CondJob:
    """One image: its seed and conditioning rows (tokens x width) of the generator's text encoder.

    ``after`` None: ``first`` for every step. Otherwise ``first`` for loop iterations
    ``i < switch_at`` and ``after`` for ``i >= switch_at`` (``switch_at`` 0: ``after`` only).
    ``label``, when given, names the conditioning exactly (prompts, hybrid parts, switch) for
    cache keys; without one the cache hashes the arrays' bytes.
    """

    seed: int
    first: np.ndarray
    after: np.ndarray | None = None
    switch_at: int = 0
    label: str = ""

    def start(self) -> np.ndarray:
        return self.first if self.after is None or self.switch_at > 0 else self.after


@dataclass(frozen=True)
class GenSettings:
    """How trace images are sampled (the sweep recipe's steps, guidance, size, negative prompt)."""

    steps: int = 20
    guidance: float = 7.5
    width: int | None = None
    height: int | None = None
    negative_prompt: str = ""

    def size(self, pipe) -> tuple[int, int]:
        """(height, width) in pixels: the settings' or the pipeline's default."""
        default = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
        return int(self.height or default), int(self.width or default)


@dataclass(frozen=True)
class JobImages:
    """Images (uint8, n x H x W x 3; a failed row is zeros) and per-row failure ('nan'/'black'/None)."""

    pixels: np.ndarray
    failed: tuple[str | None, ...]
    seconds: float


def refuse_architecture(folder) -> None:
    """Exit 2 before any model loads when trace cannot drive the generator's architecture yet.

    Trace splices hybrid conditionings into one CLIP's token states, switches them inside the
    UNet's step callback and reads ``attn2`` cross-attention: an SD 1.x (or 2.x) pipeline.
    SDXL (two encoders, pooled micro-conditioning), SD 3 and Flux (joint attention, T5) need
    their own token ablation and attention processors, which are not built yet.
    """
    from ldmprobe.errors import BadInputError
    from ldmprobe.models import configs

    family = configs.architecture(folder)
    if family != "sd1":
        name = {"sdxl": "SDXL", "sd3": "SD 3", "flux": "Flux"}.get(family, configs.pipeline_class(folder) or "this")
        raise BadInputError(
            f"trace drives Stable Diffusion 1.x/2.x pipelines only; the generator is a {name} pipeline "
            f"({configs.pipeline_class(folder)}), whose text encoders and joint or pooled conditioning trace "
            "does not split yet. sweep (with per-encoder conditioning drift), neighbours --images, assoc, check "
            "and --dry-run work on it; use an SD 1.x pipeline (sd15, tiny, reference) for trace.")


def check_pipeline(loaded) -> None:
    """Raise a clear error for pipelines trace cannot drive (no CLIP tokenizer + text encoder)."""
    if getattr(loaded, "folder", None) is not None:
        refuse_architecture(loaded.folder)
    pipe = loaded.pipe
    missing = [n for n in ("tokenizer", "text_encoder", "unet", "vae") if getattr(pipe, n, None) is None]
    if missing or not hasattr(pipe, "encode_prompt"):
        raise ValueError(f"trace needs an SD-1.x-style pipeline (tokenizer, text encoder, UNet, VAE); "
                         f"{type(pipe).__name__} lacks {', '.join(missing) or 'encode_prompt'}")
    if "prompt_embeds" not in getattr(pipe, "_callback_tensor_inputs", ()):
        raise ValueError(f"{type(pipe).__name__} does not let a step callback change prompt_embeds")


def encode_prompts(loaded, prompts: Sequence[str]) -> np.ndarray:
    """The conditioning the pipeline itself would use: (n, tokens, width) float32."""
    import torch

    pipe = loaded.pipe
    with torch.inference_mode():
        embeds, _ = pipe.encode_prompt(list(prompts), pipe.device, 1, False)
    return embeds.float().cpu().numpy()


def _switcher(batch: Sequence[CondJob], device, dtype):
    """A ``callback_on_step_end`` that swaps each row's conditional embedding at its step."""
    import torch

    swaps: dict[int, list[tuple[int, np.ndarray]]] = {}
    for row, job in enumerate(batch):
        if job.after is not None and job.switch_at > 0:
            swaps.setdefault(job.switch_at - 1, []).append((row, job.after))

    def callback(pipe, step, timestep, kwargs):
        todo = swaps.get(int(step))
        if not todo:
            return kwargs
        embeds = kwargs["prompt_embeds"].clone()
        offset = embeds.shape[0] - len(batch)  # CFG: [negative half, conditional half]
        for row, after in todo:
            embeds[offset + row] = torch.from_numpy(np.asarray(after, np.float32)).to(device, dtype)
        return {**kwargs, "prompt_embeds": embeds}

    return callback if swaps else None


def _run_batch(loaded, batch: Sequence[CondJob], settings: GenSettings, negative) -> np.ndarray:
    import torch

    pipe = loaded.pipe
    dtype = pipe.unet.dtype
    cond = torch.from_numpy(np.stack([np.asarray(j.start(), np.float32) for j in batch])).to(pipe.device, dtype)
    neg = negative.to(pipe.device, dtype).expand(len(batch), -1, -1).contiguous()
    height, width = settings.size(pipe)
    callback = _switcher(batch, pipe.device, dtype)
    extra = {"callback_on_step_end": callback, "callback_on_step_end_tensor_inputs": ["prompt_embeds"]} \
        if callback is not None else {}
    with torch.inference_mode():
        out = pipe(prompt_embeds=cond, negative_prompt_embeds=neg, num_inference_steps=settings.steps,
                   guidance_scale=settings.guidance, height=height, width=width, output_type="np",
                   generator=[torch.Generator("cpu").manual_seed(int(j.seed)) for j in batch], **extra)
    return np.asarray(out.images, dtype=np.float32)


def negative_embedding(loaded, settings: GenSettings):
    """The negative prompt's conditioning (1, tokens, width), encoded once per run."""
    import torch

    return torch.from_numpy(encode_prompts(loaded, [settings.negative_prompt]))


def generate_jobs(loaded, jobs: Sequence[CondJob], settings: GenSettings, *, batch_size: int = 4,
                  on_batch: Callable[[int], None] | None = None, before_batch: Callable[[int], None] | None = None,
                  after_batch: Callable[[], None] | None = None) -> JobImages:
    """Generate every job in batches; uint8 pixels and failures (checked as ``sweep`` checks them).

    ``before_batch(n)`` / ``after_batch()`` bracket each pipeline call (an attention
    recorder uses them); ``on_batch(n)`` reports progress.
    """
    import time

    check_pipeline(loaded)
    negative = negative_embedding(loaded, settings)
    start = time.perf_counter()
    rows, failed = [], []
    for first in range(0, len(jobs), max(1, int(batch_size))):
        batch = list(jobs[first : first + max(1, int(batch_size))])
        if before_batch is not None:
            before_batch(len(batch))
        images = _run_batch(loaded, batch, settings, negative)
        if after_batch is not None:
            after_batch()
        for image in images:
            problem = image_problem(image)
            failed.append(problem)
            rows.append(np.zeros(image.shape, np.uint8) if problem else
                        (np.clip(image, 0, 1) * 255).round().astype(np.uint8))
        if on_batch is not None:
            on_batch(len(batch))
    pixels = np.stack(rows) if rows else np.zeros((0, 1, 1, 3), np.uint8)
    return JobImages(pixels, tuple(failed), time.perf_counter() - start)
