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
import re
import sys
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

    return _released_dtype(architecture(folder) if folder is not None else None, device, dtype)


def _released_dtype(architecture: str | None, device: str, dtype: str) -> str:
    return "bfloat16" if device.startswith("cuda") and dtype == "float16" and architecture in ("sd3", "flux") else dtype


def settle(device: str, dtype: str, described=None, guidances=(), negative_prompt: str | None = None):
    """How a generator runs for a plan: ``(device, dtype, memory options, guidance notes)``.

    ``--device`` by :func:`pick_device`; ``--dtype auto`` on SD 3 / Flux on CUDA: bfloat16. With
    the generator's configs (``described``, a ``configs.GeneratorConfigs``; None: a plan made
    without them, which makes no key) also the memory options and what each requested guidance
    (None: the model's default) and the negative prompt do on it (:func:`guidance_notes`)."""
    chosen, auto_dtype = pick_device(device)
    if described is None:
        return chosen, auto_dtype if dtype == "auto" else dtype, (), []
    if dtype == "auto":
        dtype = _released_dtype(described.architecture, chosen, auto_dtype)
    levels = [described.default_guidance if g is None else g for g in guidances]
    return chosen, dtype, memory_options(), guidance_notes(described.guidance["kind"], levels, negative_prompt)


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


def guidance_notes(kind: str, guidances, negative_prompt: str | None) -> list[str]:
    """What each guidance scale and the negative prompt do on a generator whose guidance is of
    ``kind`` (``configs.guidance_semantics``: Flux's ``guidance_embeds``), when it is not
    classifier-free guidance; each note once, in order."""
    notes = []
    for guidance in guidances:
        if kind == "distilled":
            notes.append(f"guidance {guidance:g} is an input of this guidance-distilled model (FLUX.1 dev style: "
                         "3.5 is typical), not classifier-free guidance")
        elif kind == "none" and guidance:
            notes.append(f"guidance {guidance:g} has no effect: this model takes no guidance (FLUX.1 schnell style)")
        if kind != "cfg" and negative_prompt is not None:
            notes.append("the negative prompt has no effect on this model (no classifier-free guidance); it still "
                         "names a separate recipe")
    return list(dict.fromkeys(notes))


def _surely_cpu_only() -> bool:
    """True on Linux with no NVIDIA or ROCm device nodes: no GPU torch could use (no import)."""
    if not sys.platform.startswith("linux"):
        return False
    return not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg"))


_DEVICE_NAME = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(requested: str, option: str = "--device") -> None:
    """Refuse a device name torch would not take, before torch is imported."""
    if not isinstance(requested, str) or not _DEVICE_NAME.match(requested):
        raise BadInputError(f"{option} {requested!r}: not a device; use auto (CUDA, then MPS, then CPU), cpu, "
                            "cuda, cuda:N or mps.")


def pick_device(requested: str = "auto") -> tuple[str, str]:
    """(device, dtype) for ``--device``: auto = CUDA (float16), then MPS, then CPU (float32)."""
    check_device_name(requested)
    if requested in ("auto", "cpu") and (requested == "cpu" or _surely_cpu_only()):
        return "cpu", "float32"
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda", "float16"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps", "float32"
        return "cpu", "float32"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError(f"--device {requested}: CUDA is not available on this machine (try --device cpu).")
    if requested.startswith("cuda:") and int(requested[5:]) >= torch.cuda.device_count():
        raise BadInputError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                            f"numbered from 0 (try --device cuda:0).")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BadInputError("--device mps: MPS is not available on this machine (try --device cpu).")
    return requested, ("float16" if requested.startswith("cuda") else "float32")
