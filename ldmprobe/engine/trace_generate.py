"""Generation from explicit conditioning for ``trace``: prompt embeddings in, images out.

Every trace image is made by the pipeline itself from ``prompt_embeds`` (never a hand-written
sampler), at the sweep's recipe, in calls of the recipe's fixed shape with each job at its slot
(:func:`generate_jobs`), with one CPU ``torch.Generator`` per image seeded from its seed, so the
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

from ldmprobe.engine.generate import image_problem, place
from ldmprobe.engine.trace_text import TextCond, as_cond
from ldmprobe.engine.trace_text import encode as encode_prompts  # noqa: F401  (each prompt's conditioning)
from ldmprobe.engine.workitems import Recipe


@dataclass(frozen=True)
class CondJob:
    """One image: its seed and conditioning (the token rows and pooled vector the denoiser reads).

    ``after`` None: ``first`` for every step. Otherwise ``first`` for loop iterations
    ``i < switch_at`` and ``after`` for ``i >= switch_at`` (``switch_at`` 0: ``after`` only).
    ``label`` names the conditioning exactly (prompts, hybrid parts, switch): the cache keys a job
    by it, and caches no job without one. ``slot``: the job's place in the
    plan (a trace job takes the slot of the sweep image it stands in for); it is made at position
    ``slot % shape`` of a call (None: its index in the job list).
    """

    seed: int
    first: TextCond
    after: TextCond | None = None
    switch_at: int = 0
    label: str = ""
    slot: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "first", as_cond(self.first))
        if self.after is not None:
            object.__setattr__(self, "after", as_cond(self.after))

    def start(self) -> TextCond:
        return self.first if self.after is None or self.switch_at > 0 else self.after


@dataclass(frozen=True)
class JobImages:
    """Images (uint8, n x H x W x 3; a failed row is zeros), per-row failure ('nan'/'black'/None) and,
    with a recorder, each image's attention maps (n x tokens x h x w)."""

    pixels: np.ndarray
    failed: tuple[str | None, ...]
    seconds: float
    maps: np.ndarray | None = None


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
    """Raise a clear error for pipelines trace cannot drive (an architecture it cannot lay out is
    refused from the folder's configs, :func:`refuse_architecture`, before any model loads)."""
    pipe = loaded.pipe
    missing = [n for n in ("tokenizer", "text_encoder", "vae") if getattr(pipe, n, None) is None]
    if getattr(pipe, "unet", None) is None and getattr(pipe, "transformer", None) is None:
        missing.append("unet or transformer")
    if missing or not hasattr(pipe, "encode_prompt"):
        raise ValueError(f"trace needs a text-to-image pipeline with a tokenizer, text encoder, denoiser and VAE; "
                         f"{type(pipe).__name__} lacks {', '.join(missing) or 'encode_prompt'}")


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


def _run_batch(loaded, batch: Sequence[CondJob], recipe: Recipe, negative) -> np.ndarray:
    import torch

    from ldmprobe.engine.trace_text import family_of, pipe_kwargs

    pipe, family = loaded.pipe, family_of(loaded)
    denoiser = _denoiser(pipe)
    dtype = denoiser.dtype
    kwargs = pipe_kwargs(family, [j.start() for j in batch], negative, pipe.device, dtype)
    switcher = _Switcher(batch, family, pipe.device, dtype)
    handle = None
    if switcher.swaps:
        kwargs.update(callback_on_step_end=switcher.callback, callback_on_step_end_tensor_inputs=["latents"])
        handle = denoiser.register_forward_pre_hook(switcher.hook, with_kwargs=True)
    try:
        with torch.inference_mode():
            out = pipe(num_inference_steps=recipe.steps, guidance_scale=recipe.guidance, height=recipe.height,
                       width=recipe.width, output_type="np",
                       generator=[torch.Generator("cpu").manual_seed(int(j.seed)) for j in batch], **kwargs)
    finally:
        if handle is not None:
            handle.remove()
    return np.asarray(out.images, dtype=np.float32)


def generate_jobs(loaded, jobs: Sequence[CondJob], recipe: Recipe, *, shape: int | None = None, recorder=None,
                  on_batch: Callable[[int], None] | None = None) -> JobImages:
    """Generate every job in pipeline calls of one shape, each job at its slot, as a sweep makes its
    images (:class:`~ldmprobe.engine.generate.BatchGenerator`): an image's pixels depend on its
    position in a call, not on its company, so a job gives the same image in any run. Empty
    positions hold a copy of the call's first job, dropped afterwards. uint8 pixels and failures
    (checked as ``sweep`` checks them), in job order.

    ``recipe``: the sweep's recipe (steps, guidance, size, negative prompt); ``shape`` None: the
    recipe's call shape on the generator's device. ``recorder``: an attention recorder bracketing
    each call; its maps of the jobs come back in ``maps``. ``on_batch(n)`` reports progress.
    """
    import time

    from ldmprobe.engine.workitems import call_shape

    check_pipeline(loaded)
    shape = max(1, int(shape or call_shape(recipe, loaded.device)))
    from ldmprobe.engine.trace_text import negative as negative_cond

    negative = negative_cond(loaded, recipe.negative_prompt)  # once per run; None: the pipeline's own
    start = time.perf_counter()
    rows: list = [None] * len(jobs)
    failed: list = [None] * len(jobs)
    maps: list = [None] * len(jobs)
    for call in place([i if job.slot is None else int(job.slot) for i, job in enumerate(jobs)], shape):
        filler = next(i for i in call if i is not None)
        batch = [jobs[filler if i is None else i] for i in call]
        if recorder is not None:
            recorder.begin(len(batch))
        images = _run_batch(loaded, batch, recipe, negative)
        if recorder is not None:
            recorded = recorder.end()
        for position, index in enumerate(call):
            if index is None:
                continue
            image = images[position]
            failed[index] = problem = image_problem(image)
            rows[index] = (np.zeros(image.shape, np.uint8) if problem else
                           (np.clip(image, 0, 1) * 255).round().astype(np.uint8))
            if recorder is not None:
                maps[index] = recorded[position]
        if on_batch is not None:
            on_batch(sum(i is not None for i in call))
    pixels = np.stack(rows) if rows else np.zeros((0, 1, 1, 3), np.uint8)
    stacked = np.stack(maps) if recorder is not None and jobs else None
    return JobImages(pixels, tuple(failed), time.perf_counter() - start, stacked)
