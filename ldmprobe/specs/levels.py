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

from ldmprobe.errors import BadInputError, SpecError
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


# ----------------------------------------------------------------------------- the user's own data

#: Optional per-row fields of an embeddings file (arrays) or image manifest (columns): the level
#: each image was made at. Rows of several levels hold each planned cell once per level.
LEVEL_FIELDS = ("guidance", "steps")

Level = tuple  # (guidance or None, steps or None)


def row_levels(path, guidance, steps, rows: int) -> list[Level] | None:
    """Each row's (guidance, steps) from per-row values (a sequence, or None where the file has no
    such field); None when it has neither. A field that is there needs a value on every row."""
    if guidance is None and steps is None:
        return None
    columns = []
    for name, values, check in (("guidance", guidance, _check_guidance), ("steps", steps, _check_steps)):
        if values is None:
            columns.append([None] * rows)
            continue
        if getattr(values, "ndim", 1) != 1:
            raise BadInputError(f"{path}: {name} has shape {values.shape}; it must be {rows} values, one per image.")
        values = list(values)
        if len(values) != rows:
            raise BadInputError(f"{path}: {name} has {len(values)} values for {rows} rows; one per image.")
        columns.append([_level_value(path, name, v, i, check) for i, v in enumerate(values)])
    return list(zip(*columns))


def row_levels_of(path, source, rows: int) -> list[Level] | None:
    """:func:`row_levels` of a manifest's rows (dicts: the columns) or an embeddings file's arrays."""
    if isinstance(source, list):
        values = [[row.get(n) for row in source] if any(n in row for row in source) else None for n in LEVEL_FIELDS]
    else:
        values = [source[n] if n in source else None for n in LEVEL_FIELDS]
    return row_levels(path, *values, rows)


def _level_value(path, name: str, value, row: int, check):
    if value is None or isinstance(value, str):
        value = (value or "").strip()
        if not value:
            raise BadInputError(f"{path}: {_row(path, row)} has no {name}; with a {name} column every row needs one "
                                "(the level its image was made at).")
        try:
            value = float(value) if name == "guidance" else int(value)
        except ValueError:
            what = "a whole number (e.g. 50)" if name == "steps" else "a number"
            raise BadInputError(f"{path}: {_row(path, row)}: {name} {value!r} is not {what}.") from None
    elif hasattr(value, "item"):  # a numpy scalar
        value = value.item()
    try:
        return check(value, f"{path} {_row(path, row)}")
    except SpecError as exc:
        raise BadInputError(str(exc)) from None


def _row(path, row: int) -> str:
    """A row as messages name it: an .npz array's index from 0, a manifest's data row from 1."""
    if str(path).lower().endswith(".npz"):
        return f"row {row} (counting from 0)"
    return f"row {row + 1} (data rows counting from 1)"


def file_levels(levels: list[Level] | None) -> list[Level]:
    """The distinct levels of a file's rows, guidance-major ascending (the first is the top level);
    empty for a file without level fields."""
    if not levels:
        return []
    return sorted(set(levels), key=lambda lv: tuple(-1 if v is None else v for v in lv))


def at_level(labels: list, levels: list[Level] | None, level: Level | None) -> list:
    """``labels`` with the rows of other levels replaced by None (rows a reader skips)."""
    if level is None or levels is None:
        return labels
    return [label if lv == tuple(level) else None for label, lv in zip(labels, levels)]
