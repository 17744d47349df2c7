"""The fields of a sweep spec and their checks: templates, terms, probes, seeds."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ldmprobe.errors import SpecError
from ldmprobe.specs import files as specfile


DEFAULT_SEED_COUNT = 4


MAX_SEED = 2**63 - 1


MAX_SEED_COUNT = 100_000


PLACEHOLDER = "{}"


_TOML_LINE = re.compile(r"""^[A-Za-z_][A-Za-z0-9_-]*\s*=\s*(\[|"|'|\d|true\b|false\b)""")


SPEC_KEYS = (
    "name",
    "templates",
    "baseline",
    "terms",
    "controls",
    "probes",
    "seeds",
    "negative_prompt",
    "steps",
    "guidance",
    "width",
    "height",
    "pipeline",
    "measurer",
    "attributes",
    "reference_rates",
    "reference_source",
    "calibration",
)


_KEY_ALIASES = {
    "template": "templates",
    "prompts": "templates",
    "prompt": "templates",
    "term": "terms",
    "modifiers": "terms",
    "probe": "probes",
    "control": "controls",
    "control_terms": "controls",
    "generator": "pipeline",
    "model": "pipeline",
    "seed": "seeds",
    "negative": "negative_prompt",
    "negative_prompts": "negative_prompt",
    "num_inference_steps": "steps",
    "guidance_scale": "guidance",
    "cfg": "guidance",
    "cfg_scale": "guidance",
    "size": "width",
}


@dataclass
class _Ctx:
    """Where a value came from, for error messages (and the TOML text, for line numbers)."""

    source: str
    text: str | None = None
    plain: bool = False
    overridden: set[str] = field(default_factory=set)
    template_lines: list[int] | None = None  # plain text: line number of each template

    def label(self, key: str, index: int | None = None, value: Any = None) -> str:
        """``"file.toml line 4 (templates[1])"`` or as near as we can tell."""
        what = key if index is None else f"{key}[{index}]"
        if key in self.overridden:
            return f"{self.source}: {what} (from the command line)"
        if self.plain and key == "templates" and index is not None and self.template_lines:
            return f"{self.source} line {self.template_lines[index]}"
        line = self.line_of(key, value if index is not None else None)
        if line is not None:
            return f"{self.source} line {line} ({what})"
        return f"{self.source}: {what}"

    def line_of(self, key: str, value: Any = None) -> int | None:
        """Best-effort line number of ``key = ...`` (or of ``value`` inside it) in TOML text."""
        if not self.text:
            return None
        lines = self.text.splitlines()
        pattern = re.compile(rf"""^\s*(["']?){re.escape(key)}\1\s*=""")
        start = next((i for i, line in enumerate(lines) if pattern.match(line)), None)
        if start is None:
            return None
        if value is not None:
            needles = [repr(value), f'"{value}"' if isinstance(value, str) else str(value)]
            for i in range(start, len(lines)):
                if i > start and re.match(r"^\s*[A-Za-z_\"'][\w\"' -]*=", lines[i]):
                    break  # next key: the value is not written literally
                if any(n in lines[i] for n in needles):
                    return i + 1
        return start + 1


def _squash(text: str) -> str:
    return " ".join(text.split())


_is_int = specfile.is_int


_type = specfile.type_name


def validate_fields(raw, ctx: _Ctx) -> dict[str, Any]:
    """The name, templates, baseline, terms, controls, probes and seeds, checked in that order and
    normalised (tuples, collapsed whitespace)."""
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SpecError(
            f"{ctx.label('name')}: the name must be a non-empty string, not {name!r}; write "
            f'e.g. name = "fancy-house".'
        )
    out: dict[str, Any] = {"name": _squash(name), "templates": _validate_templates(raw.get("templates"), ctx)}
    out["baseline"], out["terms"] = _validate_terms(raw.get("baseline"), raw.get("terms"), ctx)
    out["controls"] = _validate_controls(raw.get("controls"), out["baseline"], out["terms"], ctx)
    out["probes"] = _validate_probes(raw.get("probes", ()), ctx)
    out["seeds"] = _validate_seeds(raw.get("seeds", DEFAULT_SEED_COUNT), ctx)
    return out


def _str_list(value: Any, ctx: _Ctx, key: str, example: str) -> None:
    specfile.check_str_list(value, ctx.label(key), key, example)


def _texts(value, ctx: _Ctx, key: str, noun: str, empty: str):
    """Each item of a list of texts: (index, where it is, its text with whitespace collapsed); an
    item that is not a string, or is empty, exits naming where (``empty``: the fix for an empty one)."""
    for i, item in enumerate(value):
        where = ctx.label(key, i, item)
        if not isinstance(item, str):
            raise SpecError(f"{where}: each {noun} must be a string, not {_type(item)} {item!r}; quote it.")
        text = _squash(item)
        if not text:
            raise SpecError(f"{where}: {empty}")
        yield i, where, text


def _validate_templates(value: Any, ctx: _Ctx) -> tuple[str, ...]:
    if value is None:
        raise SpecError(
            f"{ctx.source}: the spec has no 'templates' key. Add templates = [\"a photo of "
            f"a {{}} house\", ...] with {{}} where the term goes."
        )
    _str_list(value, ctx, "templates", 'templates = ["a photo of a {} house"]')
    if not value:
        raise SpecError(
            f"{ctx.label('templates')}: there are no templates. Add at least one, e.g. "
            f"templates = [\"a photo of a {{}} house\"]."
        )
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, where, text in _texts(value, ctx, "templates", "template",
                                 "the template is empty; remove it or write one with {}."):
        _check_placeholder(text, where, ctx)
        specfile.first_time(seen, text.casefold(), i, lambda j: (
            f"{where}: template {text!r} repeats template {j + 1}"
            + (" (they differ only in case or spacing, which CLIP's tokenizer ignores)" if value[j] != value[i] else "")
            + "; remove the duplicate (it would count the same images twice)."))
        out.append(text)
    return tuple(out)


def _check_placeholder(text: str, where: str, ctx: _Ctx) -> None:
    """A template holds exactly one bare {} and no other braces."""
    n = text.count(PLACEHOLDER)
    toml_hint = ""
    if ctx.plain and "=" in text:
        toml_hint = (
            " (If this file is a TOML spec, give it a .toml suffix: other files are read "
            "as plain text, one template per line.)"
        )
    if n == 0:
        extra = ""
        if "{" in text or "}" in text:
            extra = " Named or numbered placeholders such as {term} or {0} are not supported."
        raise SpecError(
            f"{where}: template {text!r} has no {{}} placeholder. Put {{}} where the term "
            f"goes, e.g. 'a photo of a {{}} house'.{extra}{toml_hint}"
        )
    if n > 1:
        raise SpecError(
            f"{where}: template {text!r} has {n} {{}} placeholders; a template takes "
            f"exactly one term. Keep one {{}} and write the rest of the prompt out, or "
            f"split it into several templates."
        )
    rest = text.replace(PLACEHOLDER, "")
    if "{" in rest or "}" in rest:
        raise SpecError(
            f"{where}: template {text!r} has braces besides its one {{}} placeholder. "
            f"Only a bare {{}} is allowed: named or numbered placeholders ({{term}}, "
            f"{{0}}) are not supported and literal braces are not allowed in templates "
            f"(they would be mistaken for placeholders); remove them."
        )


def _validate_terms(baseline: Any, terms: Any, ctx: _Ctx) -> tuple[str, tuple[str, ...]]:
    if baseline is None:
        raise SpecError(
            f"{ctx.source}: the spec has no baseline. Add baseline = \"\" (no modifier) or a "
            f"neutral term, or pass --baseline TERM."
        )
    if not isinstance(baseline, str):
        raise SpecError(
            f"{ctx.label('baseline')}: the baseline must be a string, not {_type(baseline)} "
            f"{baseline!r}; write baseline = \"\" for no modifier or quote the term."
        )
    base = _squash(baseline)
    _check_term_list(terms, ctx)
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, where, text in _texts(terms, ctx, "terms", "term",
                                 "the term is empty. Only the baseline may be empty (meaning no modifier); "
                                 "remove the empty term."):
        key = text.casefold()
        if key == base.casefold():
            raise SpecError(
                f"{where}: term {text!r} is the same as the baseline {base!r}"
                + (" (CLIP's tokenizer ignores case)" if text != base else "")
                + ". The baseline is compared with every term automatically; remove it from "
                "the terms."
            )
        specfile.first_time(seen, key, i, lambda j: (
            f"{where}: term {text!r} is listed twice (also terms[{j}]"
            + (f" = {out[j]!r}; CLIP's tokenizer ignores case" if out[j] != text else "") + "). Remove the duplicate."))
        out.append(text)
    return base, tuple(out)


def _check_term_list(terms: Any, ctx: _Ctx) -> None:
    """terms is a non-empty list (a missing, single-string or empty one gets its own fix)."""
    if terms is None:
        raise SpecError(
            f"{ctx.source}: the spec has no terms. Add terms = [\"...\"] or pass --term TERM."
        )
    _str_list(terms, ctx, "terms", 'e.g. terms = ["fancy", "poor"]')
    if not terms:
        raise SpecError(
            f"{ctx.label('terms')}: there are no terms to compare with the baseline. Add at "
            f"least one, e.g. terms = [\"fancy\"] (or --term fancy)."
        )


def _validate_probes(value: Any, ctx: _Ctx) -> tuple[str, ...]:
    _str_list(value, ctx, "probes", 'e.g. probes = ["mansion", "hut"]')
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, where, text in _texts(value, ctx, "probes", "probe",
                                 "the probe is an empty string; remove it or write a word."):
        specfile.first_time(seen, text.casefold(), i, lambda j: (
            f"{where}: probe {text!r} is listed twice (also probes[{j}]); remove the duplicate."))
        out.append(text)
    return tuple(out)


def _validate_seeds(value: Any, ctx: _Ctx) -> tuple[int, ...]:
    where = ctx.label("seeds")
    if "seeds" in ctx.overridden:
        count_eg, list_eg = "--seeds 8", "--seeds 0,1,2"
    else:
        count_eg, list_eg = "seeds = 8", "seeds = [0, 1, 2]"
    if _is_int(value):
        if value <= 0:
            raise SpecError(
                f"{where}: the seed count must be at least 1, not {value}; write e.g. "
                f"{count_eg} (seeds 0..7) or a list of seeds such as {list_eg}."
            )
        if value > MAX_SEED_COUNT:
            raise SpecError(
                f"{where}: {value} seeds is more than the {MAX_SEED_COUNT} allowed; is it a "
                f"typo? Use a smaller count, or a list of the seeds you want."
            )
        return tuple(range(value))
    if isinstance(value, range):
        value = list(value)
    if not isinstance(value, (list, tuple)):
        raise SpecError(
            f"{where}: seeds must be a count (e.g. {count_eg}) or a list of non-negative "
            f"whole numbers (e.g. {list_eg}), not {_type(value)} {value!r}."
        )
    if not value:
        raise SpecError(
            f"{where}: the seed list is empty; give at least one seed, e.g. {list_eg} or "
            f"{count_eg}."
        )
    if (all(type(seed) is int for seed in value) and 0 <= min(value) and max(value) <= MAX_SEED
            and len(set(value)) == len(value)):
        return tuple(value)  # the common case in linear time; the loop below finds the first bad seed
    seen: set[int] = set()
    for i, seed in enumerate(value):
        def at(i=i, seed=seed) -> str:  # the line is searched only for a message (per seed it was quadratic)
            return ctx.label("seeds", i, seed)

        if not _is_int(seed):
            raise SpecError(
                f"{at()}: seed {seed!r} is not a whole number; seeds must be non-negative "
                f"integers."
            )
        if seed < 0 or seed > MAX_SEED:
            raise SpecError(
                f"{at()}: seed {seed} is out of range; seeds must be between 0 and {MAX_SEED}. "
                f"Use e.g. {list_eg}, or a count such as {count_eg} for seeds 0..n-1."
            )
        if seed in seen:
            raise SpecError(
                f"{at()}: seed {seed} is listed twice; seeds must be distinct (a repeated seed "
                f"repeats the same image). Remove the duplicate."
            )
        seen.add(seed)
    return tuple(int(s) for s in value)


def _validate_controls(value: Any, baseline: str, terms: tuple[str, ...], ctx: _Ctx) -> tuple[str, ...]:
    """Control terms: modifiers the study holds irrelevant, generated and checked like terms;
    none may repeat the baseline, a term or another control."""
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return ()
    _str_list(value, ctx, "controls", 'e.g. controls = ["wooden", "small"] (modifiers the study holds irrelevant)')
    taken = {base.casefold(): "the baseline" for base in (baseline,)}
    taken.update({t.casefold(): f"term {t!r}" for t in terms})
    out: list[str] = []
    for i, where, text in _texts(value, ctx, "controls", "control",
                                 "the control is empty; remove it or write a modifier."):
        specfile.first_time(taken, text.casefold(), f"controls[{i}]", lambda other: (
            f"{where}: control {text!r} is also {other}; a control must be a modifier "
            f"that is neither the baseline nor a term. Remove or rename it."))
        out.append(text)
    return tuple(out)

