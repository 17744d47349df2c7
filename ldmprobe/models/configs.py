"""What a diffusers model folder's config files say: architecture, native image size,
guidance semantics and scheduler (no torch)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


#: Pipeline class -> architecture family (anything else is "generic").
_FAMILIES = {
    "StableDiffusionPipeline": "sd1", "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3", "FluxPipeline": "flux",
}


def pipeline_class(folder: Path) -> str:
    return str(_json(Path(folder) / "model_index.json").get("_class_name", ""))


def architecture(folder: Path) -> str:
    """"sd1", "sdxl", "sd3", "flux", or "generic" (any other text-to-image DiffusionPipeline)."""
    return _FAMILIES.get(pipeline_class(folder), "generic")


def _vae_factor(folder: Path) -> int:
    vae = _json(Path(folder) / "vae" / "config.json")
    return 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)


def native_image_size(folder: Path) -> tuple[int, int]:
    """The generator's native (height, width).

    A tiny build says it in ``ldmprobe_tiny.json``; otherwise the denoiser's ``sample_size``
    (``unet/`` or ``transformer/``, in latent pixels) times the VAE's downscale; a transformer
    without one (Flux) uses diffusers' default of 128 latent pixels.
    """
    folder = Path(folder)
    marked = _json(folder / "ldmprobe_tiny.json").get("native_size")
    if isinstance(marked, list) and len(marked) == 2:
        return int(marked[0]), int(marked[1])
    denoiser = _json(folder / "unet" / "config.json") or _json(folder / "transformer" / "config.json")
    sample = denoiser.get("sample_size") or (128 if (folder / "transformer").is_dir() else 64)
    height, width = (sample[0], sample[1]) if isinstance(sample, (list, tuple)) else (sample, sample)
    factor = _vae_factor(folder)
    return int(height) * factor, int(width) * factor


def guidance_semantics(folder: Path) -> dict[str, Any]:
    """What the pipeline's ``guidance_scale`` does, read from the folder's configs.

    ``cfg``: classifier-free guidance (two passes, the negative prompt is used). ``distilled``:
    a guidance-distilled model (Flux.1 dev) takes the scale as an input of one pass; the
    negative prompt is not used. ``none``: the model ignores it (Flux.1 schnell, no guidance
    embedding).
    """
    folder = Path(folder)
    family = architecture(folder)
    if family == "flux":
        embeds = bool(_json(folder / "transformer" / "config.json").get("guidance_embeds", False))
        return {"kind": "distilled" if embeds else "none", "negative_prompt": False}
    return {"kind": "cfg", "negative_prompt": True}


#: diffusers' own default ``guidance_scale`` per pipeline class (what the model was released to run at).
_DEFAULT_GUIDANCE = {"StableDiffusionPipeline": 7.5, "StableDiffusionXLPipeline": 5.0,
                     "StableDiffusion3Pipeline": 7.0, "FluxPipeline": 3.5}


def default_guidance(folder: Path) -> float:
    """The guidance scale the generator runs at when neither the command nor the spec sets one:
    its pipeline's own default (SDXL 5, SD 3 7, Flux.1 dev 3.5, Flux.1 schnell 0: it takes none),
    else ldmprobe's (``specs.generation.DEFAULT_GUIDANCE``)."""
    from ldmprobe.specs.generation import DEFAULT_GUIDANCE

    if guidance_semantics(folder)["kind"] == "none":
        return 0.0
    return _DEFAULT_GUIDANCE.get(pipeline_class(folder), DEFAULT_GUIDANCE)


#: Pipeline class -> (T5 tokenizer component, the pipeline's default ``max_sequence_length``).
_T5 = {"StableDiffusion3Pipeline": ("tokenizer_3", 256), "FluxPipeline": ("tokenizer_2", 512)}


def t5_tokenizer(folder: Path) -> tuple[str, int] | None:
    """(component, token limit) of the T5 encoder the denoiser reads, or None (no T5)."""
    entry = _T5.get(pipeline_class(folder))
    return entry if entry is not None and (Path(folder) / entry[0]).is_dir() else None


def text_encoders(folder: Path) -> list[dict[str, Any]]:
    """The text encoders the pipeline reads, in the pipeline's order: component name, class,
    and which outputs the denoiser reads (``tokens`` and/or ``pooled``)."""
    folder = Path(folder)
    index = _json(folder / "model_index.json")
    family = architecture(folder)
    parts = {
        "sd1": {"text_encoder": ["tokens"]},
        "sdxl": {"text_encoder": ["tokens"], "text_encoder_2": ["tokens", "pooled"]},
        "sd3": {"text_encoder": ["tokens", "pooled"], "text_encoder_2": ["tokens", "pooled"],
                "text_encoder_3": ["tokens"]},
        "flux": {"text_encoder": ["pooled"], "text_encoder_2": ["tokens"]},
    }.get(family, {})
    found = []
    for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        entry = index.get(name)
        if not isinstance(entry, list) or entry[1] is None:
            continue
        found.append({"component": name, "class": entry[1], "parts": parts.get(name, ["tokens"])})
    return found


def _json_safe(value: Any) -> Any:
    """A config value with its non-finite floats as the strings JSON would not hold ("-Infinity":
    diffusers writes ``lambda_min_clipped = -inf`` into every DPM-Solver scheduler config)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def scheduler_identity(folder: Path) -> dict[str, Any]:
    """Scheduler class and public config, read from the folder (no torch needed); non-finite
    numbers become strings so the identity is strict JSON (it goes into recipes and cache keys)."""
    index = json.loads((folder / "model_index.json").read_text())
    entry = index.get("scheduler") or [None, None]
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    public = {k: _json_safe(v) for k, v in sorted(config.items()) if not k.startswith("_")}
    return {"class": entry[1] or config.get("_class_name", ""), "config": public}


@dataclass(frozen=True)
class GeneratorConfigs:
    """Everything a plan reads from the generator folder's configs, read in one pass."""

    architecture: str
    native_size: tuple[int, int]  # (height, width)
    side_multiple: int  # an image side is a multiple of this: 8, or the autoencoder's larger downscale
    guidance: dict[str, Any]  # :func:`guidance_semantics`
    default_guidance: float
    scheduler: dict[str, Any]  # :func:`scheduler_identity`
    t5: tuple[str, int] | None  # :func:`t5_tokenizer`


def describe(folder: Path) -> GeneratorConfigs:
    """The generator folder's configs as a plan needs them (no torch)."""
    try:
        factor = _vae_factor(folder)
    except TypeError:  # block_out_channels that is not a list
        factor = 8
    return GeneratorConfigs(
        architecture=architecture(folder),
        native_size=native_image_size(folder), side_multiple=max(8, factor), guidance=guidance_semantics(folder),
        default_guidance=default_guidance(folder), scheduler=scheduler_identity(folder), t5=t5_tokenizer(folder))
