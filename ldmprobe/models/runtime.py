"""How a loaded pipeline is run: its call arguments, precision and memory options, on any
text-to-image ``DiffusionPipeline`` (SD 1.x, SDXL, SD 3, Flux, PixArt, Sana, ...).

- Call: ldmprobe calls every pipeline with prompt, steps, guidance, size, per-item generators
  and ``output_type="np"``. A pipeline whose ``__call__`` takes no ``negative_prompt`` or
  ``guidance_scale`` gets a thin wrapper that leaves those out (what it does with them is
  nothing); one that takes no prompt, steps or generator is not a text-to-image pipeline.
- Precision: ``--dtype auto`` on CUDA is float16, but SD 3 and Flux are trained and released
  in bfloat16 (float16 overflows in their T5 and transformer), so they get bfloat16.
- Memory (``LDMPROBE_MEMORY``, comma-separated): ``cpu-offload`` (model CPU offload: one
  component on the GPU at a time), ``vae-tiling``, ``vae-slicing``, ``attention-slicing``.
  What a user of one 24 GB card needs for SD 3.5 large or Flux. They are part of the
  generator's identity (so recorded in every run's config and image keys; VAE tiling changes
  pixels at tile seams).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from ldmprobe.errors import BadInputError

MEMORY_ENV = "LDMPROBE_MEMORY"
MEMORY_OPTIONS = {
    "cpu-offload": "enable_model_cpu_offload",
    "vae-tiling": "enable_vae_tiling",
    "vae-slicing": "enable_vae_slicing",
    "attention-slicing": "enable_attention_slicing",
}
_REQUIRED = ("prompt", "num_inference_steps", "generator", "output_type")
_OPTIONAL = ("negative_prompt", "guidance_scale", "width", "height")


def memory_options() -> tuple[str, ...]:
    """The memory options asked for in ``LDMPROBE_MEMORY`` (sorted; exit 2 on an unknown one)."""
    raw = os.environ.get(MEMORY_ENV, "")
    names = sorted({part.strip() for part in raw.split(",") if part.strip()})
    unknown = [n for n in names if n not in MEMORY_OPTIONS]
    if unknown:
        raise BadInputError(f"{MEMORY_ENV}={raw!r}: unknown option(s) {', '.join(unknown)}; use a comma-separated "
                            f"list of {', '.join(MEMORY_OPTIONS)}.")
    return tuple(names)


def apply_memory_options(pipe, options, device: str) -> bool:
    """Switch the options on; True when CPU offload now places the components (no ``pipe.to``)."""
    offloaded = False
    for name in options:
        method = getattr(pipe, MEMORY_OPTIONS[name], None)
        if method is None and name.startswith("vae-"):  # diffusers >= 0.40: on the autoencoder itself
            method = getattr(getattr(pipe, "vae", None), {"vae-tiling": "enable_tiling", "vae-slicing": "enable_slicing"}[name], None)
        if method is None:
            raise BadInputError(f"{MEMORY_ENV}: {type(pipe).__name__} has no {MEMORY_OPTIONS[name]} ({name}).")
        if name == "cpu-offload":
            if not device.startswith("cuda"):
                continue  # offload only moves components to and from a GPU; on CPU everything already is there
            method(device=device)
            offloaded = True
        else:
            method()
    return offloaded


def preferred_dtype(folder: Path | None, device: str, dtype: str) -> str:
    """``--dtype auto``'s choice for this generator: bfloat16 for SD 3 / Flux on CUDA."""
    from ldmprobe.models.configs import architecture

    if folder is not None and device.startswith("cuda") and dtype == "float16" \
            and architecture(folder) in ("sd3", "flux"):
        return "bfloat16"
    return dtype


class CallAdapter:
    """A pipeline whose ``__call__`` lacks some optional arguments ldmprobe passes: they are left
    out of the call. Everything else (components, ``to``, attributes) is the pipeline's own."""

    def __init__(self, pipe, dropped: tuple[str, ...]):
        object.__setattr__(self, "_pipe", pipe)
        object.__setattr__(self, "dropped", dropped)

    def __call__(self, *args, **kwargs):
        for name in self.dropped:
            kwargs.pop(name, None)
        return self._pipe(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def __setattr__(self, name, value):
        setattr(self._pipe, name, value)


def adapt_call(pipe):
    """The pipeline itself when its ``__call__`` takes what ldmprobe passes, else a
    :class:`CallAdapter`; a pipeline that is not text-to-image is refused (exit 2)."""
    params = inspect.signature(type(pipe).__call__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return pipe
    missing = [name for name in _REQUIRED if name not in params]
    if missing:
        raise BadInputError(f"{type(pipe).__name__} is not a text-to-image pipeline ldmprobe can drive: its call "
                            f"takes no {', '.join(missing)}.")
    dropped = tuple(name for name in _OPTIONAL if name not in params)
    return CallAdapter(pipe, dropped) if dropped else pipe


def guidance_notes(folder: Path, guidance: float, negative_prompt: str | None) -> list[str]:
    """What the recipe's guidance and negative prompt do on this generator, when it is not
    classifier-free guidance (read from the folder: Flux's ``guidance_embeds``)."""
    from ldmprobe.models.configs import guidance_semantics

    kind = guidance_semantics(folder)["kind"]
    notes = []
    if kind == "distilled":
        notes.append(f"guidance {guidance:g} is an input of this guidance-distilled model (FLUX.1 dev style: 3.5 is "
                     "typical), not classifier-free guidance")
    elif kind == "none" and guidance:
        notes.append(f"guidance {guidance:g} has no effect: this model takes no guidance (FLUX.1 schnell style)")
    if kind != "cfg" and negative_prompt is not None:
        notes.append("the negative prompt has no effect on this model (no classifier-free guidance); it still "
                     "names a separate recipe")
    return notes
