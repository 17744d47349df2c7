"""Reading and validating a sweep spec file: every problem names the file, the line or field, and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ldmprobe.errors import SpecError
from ldmprobe.specs import files as specfile
from ldmprobe.specs.sweep_fields import _KEY_ALIASES, _TOML_LINE, SPEC_KEYS, _Ctx, _is_int, _type, validate_fields


def read_spec(path_or_name: str | Path, *, terms, baseline, probes, seeds) -> tuple[dict[str, Any], str]:
    """A spec file read and checked in one pass: its fields' normalised values and its path.
    The overrides (the command line's) replace the file's values (see ``specs.sweep.load_spec``)."""
    path, text, data = specfile.read_spec_file(
        path_or_name, what="spec",
        folder_fix="Give the path of a .toml spec or a plain-text file with one template per line.",
        syntax_hint="Fix the TOML syntax there (strings need double quotes, lists need "
        "commas between items, keys are written key = value).",
    )
    ctx = _Ctx(str(path))
    if data is not None:
        ctx.text = text
        _check_keys(data, ctx)
        raw = data
    else:
        raw = _read_plain(path, text, ctx)
    _apply_overrides(raw, ctx, terms=terms, baseline=baseline, probes=probes, seeds=seeds)
    _require_baseline_and_terms(raw, ctx, path)
    raw.setdefault("name", path.stem if path.suffix else path.name)
    return _validate(raw, ctx), str(path)


def _read_plain(path: Path, text: str, ctx: _Ctx) -> dict[str, Any]:
    ctx.plain = True
    templates: list[str] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if _TOML_LINE.match(stripped):
            raise SpecError(
                f"{path} line {number}: {stripped!r} looks like TOML (key = value), but the "
                f"file is read as plain text, one template per line, because its name does "
                f"not end in .toml. Rename it to {path.stem}.toml, or write bare templates "
                f"such as a photo of a {{}} house."
            )
        templates.append(stripped)
        lines.append(number)
    ctx.template_lines = lines
    if not templates:
        raise SpecError(
            f"{path}: the file has no templates (every line is blank or a # comment). Write "
            f"one template per line with {{}} where the term goes, e.g. a photo of a {{}} "
            f"house."
        )
    return {"templates": templates}


def _apply_overrides(raw: dict[str, Any], ctx: _Ctx, *, terms, baseline, probes, seeds) -> None:
    """Overrides replace the file's values; errors in them are reported as command-line ones."""
    if terms:
        raw["terms"] = _as_str_list(terms, ctx, "--term")
        ctx.overridden.add("terms")
    if probes:
        raw["probes"] = _as_str_list(probes, ctx, "--probe")
        ctx.overridden.add("probes")
    if baseline is not None:
        raw["baseline"] = baseline
        ctx.overridden.add("baseline")
    if seeds is not None:
        raw["seeds"] = _seeds_override(seeds, ctx)
        ctx.overridden.add("seeds")


def _require_baseline_and_terms(raw: dict[str, Any], ctx: _Ctx, path: Path) -> None:
    if "baseline" not in raw:
        if ctx.plain:
            raise SpecError(
                f"{path}: a plain-text spec has no baseline. Pass --baseline TERM (the "
                f"neutral term the others are compared with; --baseline '' means no "
                f"modifier, e.g. 'a photo of a house')."
            )
        raise SpecError(
            f"{path}: the spec has no 'baseline' key. Add a line such as baseline = \"\" "
            f"(the neutral term the others are compared with; an empty string means no "
            f"modifier) or pass --baseline TERM."
        )
    if "terms" not in raw:
        if ctx.plain:
            raise SpecError(
                f"{path}: a plain-text spec has no terms. Pass one or more --term TERM "
                f"(each is put into every template's {{}} and compared with the baseline)."
            )
        raise SpecError(
            f"{path}: the spec has no 'terms' key. Add terms = [\"...\", ...] (the "
            f"modifiers compared with the baseline) or pass --term TERM."
        )


def end_sentence(text: str) -> str:
    """The full stop a sentence needs, unless it already ends in one (a '?' from "did you mean")."""
    return "" if text.rstrip().endswith((".", "?", "!")) else "."


def _check_keys(data: Mapping[str, Any], ctx: _Ctx) -> None:
    unknown = [k for k in data if k not in SPEC_KEYS]
    if not unknown:
        return
    parts = []
    for key in unknown:
        suggestion = _KEY_ALIASES.get(str(key).lower())
        if suggestion is None:
            close = difflib.get_close_matches(str(key), SPEC_KEYS, n=1, cutoff=0.6)
            suggestion = close[0] if close else None
        line = ctx.line_of(str(key))
        at = f" (line {line})" if line is not None else ""
        parts.append(
            f"{key!r}{at}" + (f" — did you mean {suggestion!r}?" if suggestion else "")
        )
    noun = "key" if len(unknown) == 1 else "keys"
    listing = "; ".join(parts)
    raise SpecError(
        f"{ctx.source}: unknown spec {noun} {listing}{end_sentence(listing)} A spec may contain only "
        f"{', '.join(SPEC_KEYS)}; rename or remove the unknown {noun}."
    )


def _validate(raw: Mapping[str, Any], ctx: _Ctx) -> dict[str, Any]:
    """Check every field and return the normalised values (tuples, collapsed whitespace)."""
    out = validate_fields(raw, ctx)  # name, templates, baseline, terms, controls, probes, seeds
    out.update(_validate_generation(raw, ctx))
    for key in ("pipeline", "measurer"):
        out[key] = _validate_model_name(raw.get(key), key, ctx)
    from ldmprobe.specs.attributes import validate_attribute_fields

    out.update(validate_attribute_fields(raw, (out["baseline"], *out["terms"], *out["controls"]), ctx.source))
    return out


def _validate_generation(raw: Mapping[str, Any], ctx: _Ctx) -> dict[str, Any]:
    """negative_prompt, steps, guidance (each a value or a list of levels), width and height (each optional)."""
    out: dict[str, Any] = {}
    negative = raw.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise SpecError(
            f"{ctx.label('negative_prompt')}: negative_prompt must be a string, not "
            f"{_type(negative)}; write e.g. negative_prompt = \"blurry, low quality\" or "
            f"leave it out."
        )
    out["negative_prompt"] = negative

    from ldmprobe.specs.levels import validate_levels

    out.update(validate_levels(raw, ctx))  # one value, or a list of levels the sweep crosses

    for key in ("width", "height"):
        value = raw.get(key)
        if value is not None:
            if not _is_int(value):
                raise SpecError(
                    f"{ctx.label(key)}: {key} must be a whole number of pixels, not "
                    f"{_type(value)} {value!r}; write e.g. {key} = 512."
                )
            if value <= 0 or value % 8:
                lower = value // 8 * 8
                fix = (f"{key} = {lower} or {lower + 8}" if lower > 0 and value > 0
                       else f"{key} = 512")
                raise SpecError(
                    f"{ctx.label(key)}: {key} must be a positive multiple of 8 (the VAE "
                    f"downsamples by 8), not {value}; use e.g. {fix}."
                )
        out[key] = value
    return out


def _seeds_override(seeds: Any, ctx: _Ctx) -> Any:
    if isinstance(seeds, str):
        text = seeds.strip()
        try:
            if "," in text:
                return [int(part) for part in text.split(",") if part.strip()]
            return int(text)
        except ValueError:
            raise SpecError(
                f"{ctx.source}: --seeds {seeds!r} is neither a count (e.g. --seeds 8) nor a "
                f"comma-separated list of seeds (e.g. --seeds 0,3,7)."
            ) from None
    return seeds


def _as_str_list(values: Sequence[str], ctx: _Ctx, flag: str) -> list[str]:
    if isinstance(values, str):
        return [values]
    out = list(values)
    for v in out:
        if not isinstance(v, str):
            raise SpecError(f"{ctx.source}: {flag} {v!r} must be a string.")
    return out


def _validate_model_name(value: Any, key: str, ctx: _Ctx) -> str | None:
    """pipeline / measurer: an optional non-empty string (the command line's flag overrides it)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        eg = 'pipeline = "sd15"' if key == "pipeline" else 'measurer = "ViT-L-14-quickgelu:openai"'
        raise SpecError(
            f"{ctx.label(key)}: {key} must be a non-empty string naming a model, not "
            f"{_type(value)} {value!r}; write e.g. {eg} or leave it out (--{key} overrides it)."
        )
    return value.strip()
