"""A recipe: everything but the prompt and the seed that changes an image's pixels (part of
its key, :mod:`ldmprobe.engine.workitems`), and the generation call shape it implies.

Like ``workitems``, this module imports nothing heavy (no torch, diffusers or open_clip).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ldmprobe.digest import canonical_json
from ldmprobe.specs.generation import GenerationSettings, check_image_side

_DTYPE_ALIASES = {
    "fp16": "float16",
    "half": "float16",
    "float16": "float16",
    "fp32": "float32",
    "float": "float32",
    "float32": "float32",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp64": "float64",
    "double": "float64",
    "float64": "float64",
}


@dataclass(frozen=True)
class Recipe:
    """Everything that changes the pixels except the prompt and the seed.

    ``pipeline`` and ``scheduler`` are opaque JSON-able mappings (e.g. ``{"id": ...,
    "revision": ...}`` and ``{"class": "DDIMScheduler", "config": {...}}``); pass dicts, they
    are stored as canonical JSON strings so the recipe stays hashable (read them back with
    :attr:`pipeline_dict` / :attr:`scheduler_dict`). Leave out of them anything that does not
    change pixels (e.g. diffusers' ``_diffusers_version``), or every upgrade invalidates the
    cache.

    Normalisation keeps equal recipes equal: ``guidance`` is stored as a float (7 and 7.0 give
    one key), ``dtype`` as a bare name (``torch.float16``, ``"fp16"`` and ``"half"`` all
    become ``"float16"``). ``negative_prompt`` is kept exactly: ``None`` and ``""`` are
    different recipes (SDXL zeroes the negative embedding for ``None`` but not for ``""``).

    ``call_shape``: how many images one pipeline call makes (issue 28). A call of another shape
    sums floats in another order, so it changes pixels by float noise: the shape is part of the
    recipe. ``None`` is the device's default (:func:`default_call_shape`) and leaves the key as it
    was before the field existed; any other value is in the key, so images made at another shape
    are never reused.
    """

    pipeline: str
    scheduler: str
    steps: int
    guidance: float
    width: int
    height: int
    dtype: str
    negative_prompt: str | None = None
    call_shape: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "pipeline", _opaque(self.pipeline, "pipeline"))
        set_(self, "scheduler", _opaque(self.scheduler, "scheduler"))
        if not _is_int(self.steps) or self.steps <= 0:
            raise ValueError(f"Recipe.steps must be a positive int, not {self.steps!r}")
        if isinstance(self.guidance, bool) or not isinstance(self.guidance, (int, float)):
            raise ValueError(f"Recipe.guidance must be a number, not {self.guidance!r}")
        if not math.isfinite(self.guidance) or self.guidance < 0:
            raise ValueError(f"Recipe.guidance must be finite and ≥ 0, not {self.guidance!r}")
        set_(self, "guidance", float(self.guidance))
        for name in ("width", "height"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"Recipe.{name} must be a positive int, not {value!r}")
        set_(self, "dtype", _dtype_name(self.dtype))
        if self.negative_prompt is not None and not isinstance(self.negative_prompt, str):
            raise ValueError(
                f"Recipe.negative_prompt must be a str or None, not {self.negative_prompt!r}"
            )
        if self.call_shape is not None and (not _is_int(self.call_shape) or self.call_shape <= 0):
            raise ValueError(f"Recipe.call_shape must be a positive int or None, not {self.call_shape!r}")

    @property
    def pipeline_dict(self) -> Any:
        return json.loads(self.pipeline)

    @property
    def scheduler_dict(self) -> Any:
        return json.loads(self.scheduler)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; ``pipeline`` and ``scheduler`` as mappings, not strings."""
        return {
            "pipeline": self.pipeline_dict,
            "scheduler": self.scheduler_dict,
            "steps": self.steps,
            "guidance": self.guidance,
            "width": self.width,
            "height": self.height,
            "dtype": self.dtype,
            "negative_prompt": self.negative_prompt,
            **({} if self.call_shape is None else {"call_shape": self.call_shape}),
        }


def plan_recipe(spec, options, models, guidance: float | None = None, steps: int | None = None) -> Recipe:
    """The generation recipe of one level of a plan (``models``: a ``models.plan.PlanModels``;
    ``guidance`` / ``steps``: the level's, None: the model's default), the size from the options,
    else the spec, else the model's native size; the call shape from ``--call-shape`` (in the key
    only when it is not the device's default). A side that is not a multiple of what the model
    takes exits 2 naming where it came from."""
    described = models.configs
    size = described.native_size[0]
    generation = GenerationSettings.resolve(steps=steps, guidance=guidance, tiny=models.generator_tiny,
                                            model_guidance=described.default_guidance)
    recipe = Recipe(
        pipeline=models.pipeline,
        scheduler=described.scheduler,
        steps=generation.steps,
        guidance=generation.guidance,
        width=options.width or spec.width or size,
        height=options.height or spec.height or size,
        dtype=models.dtype,
        negative_prompt=options.negative_prompt if options.negative_prompt is not None else spec.negative_prompt,
        call_shape=recipe_call_shape(options.call_shape, models.device),
    )
    for side in ("width", "height"):
        label = (f"--{side}" if getattr(options, side) else f"{side} (the spec's)" if getattr(spec, side)
                 else f"{side} (the model's native size)")
        check_image_side(getattr(recipe, side), label, described.side_multiple)
    return recipe


def default_call_shape(device: str) -> int:
    """Images per generation call when the recipe names none: 8 on CUDA, 4 elsewhere."""
    return 8 if str(device).startswith("cuda") else 4


def call_shape(recipe: Recipe, device: str) -> int:
    """The number of images every generation call of ``recipe`` makes on ``device`` (padded to it)."""
    return recipe.call_shape or default_call_shape(device)


def recipe_call_shape(requested: int | None, device: str) -> int | None:
    """What :attr:`Recipe.call_shape` holds for a requested shape: None for the device's default
    (so the default keeps the keys it always had), else the shape."""
    return None if requested is None or requested == default_call_shape(device) else int(requested)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _opaque(value: Any, name: str) -> str:
    """A mapping (or canonical JSON text of one) → canonical JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(
                f"Recipe.{name} must be a JSON-able mapping (e.g. {{'id': ..., 'revision': "
                f"...}}) or its JSON text, not the string {value!r}"
            ) from None
    if not isinstance(value, Mapping):
        raise ValueError(f"Recipe.{name} must be a mapping, not {type(value).__name__}")
    try:
        return canonical_json(dict(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Recipe.{name} is not JSON-able: {exc}") from None


def _dtype_name(dtype: Any) -> str:
    name = str(dtype).strip()
    if name.startswith("torch."):
        name = name[len("torch."):]
    if not name:
        raise ValueError("Recipe.dtype must name a dtype, e.g. 'float16'")
    return _DTYPE_ALIASES.get(name.lower(), name)
