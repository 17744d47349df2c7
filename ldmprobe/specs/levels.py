"""``steps`` and ``guidance`` in a sweep spec: one value, or a list of levels the sweep crosses.

``guidance = [3, 5, 7.5]`` makes every image at each of the three scales (each level its own
recipe and keys, so cached images are reused); with ``steps`` a list too, every pair of
values is a level. A list of one value is that value. The spec keeps the first value in
``guidance`` / ``steps`` (what a single-setting reader such as ``trace`` uses) and the whole
list in ``guidance_levels`` / ``steps_levels`` (empty for a single value).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ldmprobe.errors import SpecError
from ldmprobe.specs.sweep_fields import _Ctx, _is_int, _type

MAX_LEVELS = 32  # guidance × steps levels: each is a whole sweep's images


def validate_levels(raw: Mapping[str, Any], ctx: _Ctx) -> dict[str, Any]:
    """``steps``, ``guidance`` and their ``*_levels`` (tuples; ``()`` for a single value).

    ``raw`` holds a spec file's keys, or a ``Spec``'s fields (then a non-empty
    ``guidance_levels`` / ``steps_levels`` is the list and wins over the single value)."""
    out: dict[str, Any] = {}
    for key, check in (("steps", _check_steps), ("guidance", _check_guidance)):
        value = raw.get(f"{key}_levels") or raw.get(key)
        if isinstance(value, (list, tuple)):
            levels = _check_list(value, key, check, ctx)
        else:
            levels = () if value is None else (check(value, ctx.label(key)),)
        out[key] = levels[0] if levels else None
        out[f"{key}_levels"] = levels if len(levels) > 1 else ()
    n = max(1, len(out["steps_levels"])) * max(1, len(out["guidance_levels"]))
    if n > MAX_LEVELS:
        raise SpecError(f"{ctx.source}: guidance × steps make {n} levels, more than {MAX_LEVELS}; each level is a "
                        "whole sweep's images. List fewer values (e.g. guidance = [3, 5, 7.5] with one steps value).")
    return out


def _check_list(values, key: str, check, ctx: _Ctx) -> tuple:
    where = ctx.label(key)
    eg = "guidance = [3, 5, 7.5]" if key == "guidance" else "steps = [20, 50]"
    if not values:
        raise SpecError(f"{where}: an empty list; write one value or several levels, e.g. {eg}.")
    levels = tuple(check(v, f"{where} item {i + 1}") for i, v in enumerate(values))
    repeated = sorted({v for v in levels if levels.count(v) > 1})
    if repeated:
        raise SpecError(f"{where}: {', '.join(f'{v:g}' for v in repeated)} listed twice; each level once, e.g. {eg}.")
    return levels


def _check_steps(value, where: str) -> int:
    if not _is_int(value):
        raise SpecError(f"{where}: steps must be a whole number, not {_type(value)} {value!r}; write e.g. "
                        "steps = 50 (or a list of levels, steps = [20, 50]).")
    if value <= 0:
        raise SpecError(f"{where}: steps must be at least 1, not {value}; write e.g. steps = 50.")
    return int(value)


def _check_guidance(value, where: str) -> float:
    if not (_is_int(value) or isinstance(value, float)):
        raise SpecError(f"{where}: guidance must be a number, not {_type(value)} {value!r}; write e.g. "
                        "guidance = 7.5 (or a list of levels, guidance = [3, 5, 7.5]).")
    if not math.isfinite(value) or value < 0:
        raise SpecError(f"{where}: guidance must be a finite number ≥ 0, not {value!r}; write e.g. guidance = 7.5 "
                        "(values ≤ 1 turn classifier-free guidance off).")
    return float(value)
