"""Generation from explicit conditioning for ``trace``: prompt embeddings in, images out.

Every trace image is made by the pipeline itself from ``prompt_embeds`` (never a hand-written
sampler), batched, with one CPU ``torch.Generator`` per image seeded from its seed, so the
pairing of ``sweep`` holds: two jobs with the same seed differ only in their conditioning.

A job may switch its conditioning during sampling: ``first`` for the first ``switch_at``
denoising-loop iterations, ``after`` from then on. The switch is made by a forward pre-hook on
the denoiser (UNet or transformer) that replaces the conditional rows of its text inputs
(``encoder_hidden_states`` and, where the architecture has one, the pooled vector:
``added_cond_kwargs["text_embeds"]`` on SDXL, ``pooled_projections`` on SD 3 and Flux) from the
step on; the pipeline's ``callback_on_step_end`` only counts the steps. The pipeline keeps its
own scheduler, guidance, rescaling and timestep conditioning, so a job that never switches is
exactly an ordinary generation, and one loop serves SD 1.x, SDXL, SD 3 and Flux. Jobs with
different switch points share a batch (each row switches at its own step).

Conditioning is a :class:`~ldmprobe.engine.trace_text.TextCond` (token rows and pooled vector);
a bare array is taken as the token rows of SD 1.x.

Torch and diffusers are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ldmprobe.engine.generate import image_problem
from ldmprobe.engine.trace_text import TextCond, as_cond


@dataclass(frozen=True)
class CondJob:
    """One image: its seed and conditioning (the token rows and pooled vector the denoiser reads).

    ``after`` None: ``first`` for every step. Otherwise ``first`` for loop iterations
    ``i < switch_at`` and ``after`` for ``i >= switch_at`` (``switch_at`` 0: ``after`` only).
    ``label``, when given, names the conditioning exactly (prompts, hybrid parts, switch) for
    cache keys; without one the cache hashes the arrays' bytes.
    """

    seed: int
    first: TextCond
    after: TextCond | None = None
    switch_at: int = 0
    label: str = ""

    def __post_init__(self):
        object.__setattr__(self, "first", as_cond(self.first))
        if self.after is not None:
            object.__setattr__(self, "after", as_cond(self.after))

    def start(self) -> TextCond:
        return self.first if self.after is None or self.switch_at > 0 else self.after


@dataclass(frozen=True)
class GenSettings:
    """How trace images are sampled (the sweep recipe's steps, guidance, size, negative prompt)."""

    steps: int | None = None  # None: the sweep's default (``GenerationSettings``: 50, tiny models 4)
    guidance: float | None = None  # None: the generator's own default (``configs.default_guidance``)
    width: int | None = None
    height: int | None = None
    negative_prompt: str = ""

    def for_generator(self, loaded, *, tiny: bool = False) -> "GenSettings":
        """These settings with what is unset resolved as a sweep resolves it: the steps by
        ``GenerationSettings`` (``tiny``: the tiny models' default), the guidance by the
        generator's own default."""
        if self.guidance is not None and self.steps is not None:
            return self
        from dataclasses import replace

        from ldmprobe.models.configs import default_guidance
        from ldmprobe.specs.generation import DEFAULT_GUIDANCE, GenerationSettings

        folder = getattr(loaded, "folder", None)
        guidance = self.guidance
        if guidance is None:
            guidance = DEFAULT_GUIDANCE if folder is None else default_guidance(folder)
        steps = GenerationSettings.resolve(steps=self.steps, guidance=guidance, tiny=tiny).steps
        return replace(self, steps=steps, guidance=guidance)

    def size(self, loaded) -> tuple[int, int]:
        """(height, width) in pixels: the settings' or the generator's native size.

        ``loaded`` is a loaded generator (its folder's configs say the native size) or, for a
        pipeline built in memory, the pipeline itself (its UNet's sample size)."""
        folder = getattr(loaded, "folder", None)
        if folder is not None:
            from ldmprobe.models import configs

            default_h, default_w = configs.native_image_size(folder)
        else:
            pipe = getattr(loaded, "pipe", loaded)
            default_h = default_w = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
        return int(self.height or default_h), int(self.width or default_w)


@dataclass(frozen=True)
class JobImages:
    """Images (uint8, n x H x W x 3; a failed row is zeros) and per-row failure ('nan'/'black'/None)."""

    pixels: np.ndarray
    failed: tuple[str | None, ...]
    seconds: float


def refuse_architecture(folder) -> None:
    """Exit 2 before any model loads when trace cannot drive the generator's architecture.

    Trace lays out the text conditioning of SD 1.x/2.x, SDXL, SD 3.x and Flux.1
    (:mod:`ldmprobe.engine.trace_text`); any other pipeline is refused.
    """
    from ldmprobe.engine.trace_text import FAMILIES
    from ldmprobe.errors import BadInputError
    from ldmprobe.models import configs

    family = configs.architecture(folder)
    if family not in FAMILIES:
        raise BadInputError(
            f"trace drives Stable Diffusion 1.x/2.x, SDXL, SD 3.x and Flux.1 pipelines; the generator is a "
            f"{configs.pipeline_class(folder) or 'generic'} pipeline, whose text conditioning trace cannot lay out. "
            "sweep, neighbours --images, assoc, check and --dry-run work on it.")


def _denoiser(pipe):
    return pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer


def check_pipeline(loaded) -> None:
    """Raise a clear error for pipelines trace cannot drive."""
    if getattr(loaded, "folder", None) is not None:
        refuse_architecture(loaded.folder)
    pipe = loaded.pipe
    missing = [n for n in ("tokenizer", "text_encoder", "vae") if getattr(pipe, n, None) is None]
    if getattr(pipe, "unet", None) is None and getattr(pipe, "transformer", None) is None:
        missing.append("unet or transformer")
    if missing or not hasattr(pipe, "encode_prompt"):
        raise ValueError(f"trace needs a text-to-image pipeline with a tokenizer, text encoder, denoiser and VAE; "
                         f"{type(pipe).__name__} lacks {', '.join(missing) or 'encode_prompt'}")


def encode_prompts(loaded, prompts: Sequence[str]) -> list[TextCond]:
    """The conditioning the pipeline itself would use for each prompt."""
    from ldmprobe.engine.trace_text import encode

    return encode(loaded, prompts)


class _Switcher:
    """Swaps each switching row's conditional text inputs from its step on (see the module docstring)."""

    def __init__(self, batch: Sequence[CondJob], family: str, device, dtype):
        import torch

        def tensor(array):
            return torch.from_numpy(np.asarray(array, np.float32)).to(device, dtype)

        self.n, self.family, self.step = len(batch), family, 0
        self.swaps = [(row, int(job.switch_at), tensor(job.after.tokens),
                       None if job.after.pooled is None else tensor(job.after.pooled))
                      for row, job in enumerate(batch) if job.after is not None and job.switch_at > 0]

    def callback(self, pipe, step, timestep, kwargs):
        self.step = int(step) + 1
        return kwargs

    def _replace(self, tensor, index: int, todo):
        out = tensor.clone()
        offset = out.shape[0] - self.n  # CFG: [negative half, conditional half]
        for row, values in todo:
            out[offset + row] = values[index]
        return out

    def hook(self, module, args, kwargs):
        todo = [(row, (tokens, pooled)) for row, k, tokens, pooled in self.swaps if self.step >= k]
        if not todo:
            return None
        kwargs = dict(kwargs)
        kwargs["encoder_hidden_states"] = self._replace(kwargs["encoder_hidden_states"], 0, todo)
        if self.family == "sdxl":
            added = dict(kwargs["added_cond_kwargs"])
            added["text_embeds"] = self._replace(added["text_embeds"], 1, todo)
            kwargs["added_cond_kwargs"] = added
        elif self.family in ("sd3", "flux"):
            kwargs["pooled_projections"] = self._replace(kwargs["pooled_projections"], 1, todo)
        return args, kwargs


def _run_batch(loaded, batch: Sequence[CondJob], settings: GenSettings, negative) -> np.ndarray:
    import torch

    from ldmprobe.engine.trace_text import family_of, pipe_kwargs

    pipe, family = loaded.pipe, family_of(loaded)
    denoiser = _denoiser(pipe)
    dtype = denoiser.dtype
    kwargs = pipe_kwargs(family, [j.start() for j in batch], negative, pipe.device, dtype)
    height, width = settings.size(loaded)
    switcher = _Switcher(batch, family, pipe.device, dtype)
    handle = None
    if switcher.swaps:
        kwargs.update(callback_on_step_end=switcher.callback, callback_on_step_end_tensor_inputs=["latents"])
        handle = denoiser.register_forward_pre_hook(switcher.hook, with_kwargs=True)
    try:
        with torch.inference_mode():
            out = pipe(num_inference_steps=settings.steps, guidance_scale=settings.guidance, height=height,
                       width=width, output_type="np",
                       generator=[torch.Generator("cpu").manual_seed(int(j.seed)) for j in batch], **kwargs)
    finally:
        if handle is not None:
            handle.remove()
    return np.asarray(out.images, dtype=np.float32)


def generate_jobs(loaded, jobs: Sequence[CondJob], settings: GenSettings, *, batch_size: int = 4,
                  on_batch: Callable[[int], None] | None = None, before_batch: Callable[[int], None] | None = None,
                  after_batch: Callable[[], None] | None = None) -> JobImages:
    """Generate every job in batches; uint8 pixels and failures (checked as ``sweep`` checks them).

    ``before_batch(n)`` / ``after_batch()`` bracket each pipeline call (an attention
    recorder uses them); ``on_batch(n)`` reports progress.
    """
    import time

    check_pipeline(loaded)
    settings = settings.for_generator(loaded)
    from ldmprobe.engine.trace_text import negative as negative_cond

    negative = negative_cond(loaded, settings.negative_prompt)  # once per run; None where unused (Flux)
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
