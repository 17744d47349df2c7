"""Load and validate sweep specs: prompt templates × terms × seeds (+ probe words).

A spec comes from one of three places:

* a TOML file (``*.toml``)::

      name = "fancy-house"                 # optional; defaults to the file name
      templates = ["a photo of a {} house"]  # each with exactly one ``{}``
      baseline = ""                        # required; "" means "no modifier"
      terms = ["fancy", "poor"]            # the modifiers compared with the baseline
      probes = ["mansion", "hut"]          # optional words to measure shifts toward
      seeds = 8                            # a count (seeds 0..7) or a list [0, 5, 11]
      negative_prompt = "blurry"           # optional
      steps = 50                           # optional generation defaults
      guidance = 7.5
      width = 512
      height = 512

* a plain-text file (any other suffix): one template per line, blank lines and lines whose
  first non-blank character is ``#`` ignored (a ``#`` later in a line is prompt text);
  terms, baseline, probes and seeds come from the keyword arguments (the CLI's ``--term``,
  ``--baseline``, ``--probe``, ``--seeds``);
* a bare name such as ``fancy-house``, resolved to a spec shipped in ``prompts/``.

Every problem raises :class:`~ldmprobe.errors.SpecError` whose message is one paragraph
naming the file, the line or field, and the fix. This module imports nothing heavy (no torch,
diffusers or open_clip) so a spec can be checked in milliseconds.

Whitespace in templates, terms, the baseline and probes is collapsed (runs of whitespace
become one space, ends stripped); nothing else about the user's text is changed — in
particular articles ("a"/"an") are left exactly as written.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ldmprobe.specs import files as specfile
from ldmprobe.errors import BadInputError, SpecError

__all__ = [
    "DEFAULT_SEED_COUNT",
    "MAX_SEED",
    "SPEC_KEYS",
    "Spec",
    "check_prompt_lengths",
    "expand",
    "load_spec",
    "spec_from_dict",
]

#: Seeds used when neither the spec nor the caller gives any (seeds 0..3).
DEFAULT_SEED_COUNT = 4
#: Largest seed accepted (torch.Generator.manual_seed takes up to 2**64-1; we stay in int64
#: so every consumer of the JSON, numpy included, can hold it).
MAX_SEED = 2**63 - 1
#: Largest seed count accepted, a guard against typos such as ``seeds = 80000000``.
MAX_SEED_COUNT = 100_000

PLACEHOLDER = "{}"

# A plain-text line that is almost certainly TOML: key = [..., key = "...", key = 8, ...
_TOML_LINE = re.compile(r"""^[A-Za-z_][A-Za-z0-9_-]*\s*=\s*(\[|"|'|\d|true\b|false\b)""")

#: Keys a TOML spec may contain.
SPEC_KEYS = (
    "name",
    "templates",
    "baseline",
    "terms",
    "probes",
    "seeds",
    "negative_prompt",
    "steps",
    "guidance",
    "width",
    "height",
)

# Names people bring from diffusers or from habit, mapped to ours (checked before difflib).
_KEY_ALIASES = {
    "template": "templates",
    "prompts": "templates",
    "prompt": "templates",
    "term": "terms",
    "modifiers": "terms",
    "probe": "probes",
    "seed": "seeds",
    "negative": "negative_prompt",
    "negative_prompts": "negative_prompt",
    "num_inference_steps": "steps",
    "guidance_scale": "guidance",
    "cfg": "guidance",
    "cfg_scale": "guidance",
    "size": "width",
}


# --------------------------------------------------------------------------------------------
# The Spec


@dataclass(frozen=True)
class Spec:
    """A validated sweep spec.

    ``terms`` does not include the baseline; :attr:`all_terms` is ``(baseline, *terms)``.
    Constructing a ``Spec`` directly validates and normalises it the same way
    :func:`load_spec` does (lists become tuples, a seed count becomes ``range(n)``).
    """

    name: str
    templates: tuple[str, ...]
    baseline: str
    terms: tuple[str, ...]
    probes: tuple[str, ...] = ()
    seeds: tuple[int, ...] = tuple(range(DEFAULT_SEED_COUNT))
    negative_prompt: str | None = None
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    source: str = "<inline>"

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        source = values.pop("source")
        if not isinstance(source, str):
            raise TypeError(f"Spec.source must be a str, not {type(source).__name__}")
        clean = _validate(values, _Ctx(source))
        for key, value in clean.items():
            object.__setattr__(self, key, value)

    @property
    def all_terms(self) -> tuple[str, ...]:
        """The baseline followed by the terms, in spec order."""
        return (self.baseline, *self.terms)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (lists, not tuples) of every field, ``source`` included."""
        return {
            "name": self.name,
            "templates": list(self.templates),
            "baseline": self.baseline,
            "terms": list(self.terms),
            "probes": list(self.probes),
            "seeds": list(self.seeds),
            "negative_prompt": self.negative_prompt,
            "steps": self.steps,
            "guidance": self.guidance,
            "width": self.width,
            "height": self.height,
            "source": self.source,
        }

    def prompts(self) -> list[str]:
        """Every distinct expanded prompt, in template then term order (for length checks)."""
        seen: dict[str, None] = {}
        for template in self.templates:
            for term in self.all_terms:
                seen.setdefault(expand(template, term), None)
        return list(seen)


# --------------------------------------------------------------------------------------------
# Public functions


def expand(template: str, term: str) -> str:
    """Put ``term`` into the template's ``{}`` and collapse whitespace.

    ``expand("a photo of a {} house", "")`` is ``"a photo of a house"`` (no double space).
    Nothing else is changed: articles, case and punctuation stay as the user wrote them.
    """
    if template.count(PLACEHOLDER) != 1:
        raise SpecError(
            f"template {template!r} must contain exactly one {{}} placeholder "
            f"(it has {template.count(PLACEHOLDER)}); put {{}} where the term goes."
        )
    return _squash(template.replace(PLACEHOLDER, term))


def load_spec(
    path_or_name: str | Path,
    *,
    terms: Sequence[str] = (),
    baseline: str | None = None,
    probes: Sequence[str] = (),
    seeds: int | str | Sequence[int] | None = None,
) -> Spec:
    """Load, validate and normalise a spec from a TOML file, a plain-text file or a bare name.

    Keyword arguments are the CLI's overrides. For a TOML spec they replace the file's values
    when given (non-empty ``terms``/``probes``, a non-None ``baseline``/``seeds``); for a
    plain-text spec they are the only source of terms, baseline and probes.

    ``seeds`` (file or override) is a positive count ``n`` (seeds ``0..n-1``) or a list of
    distinct non-negative ints; as an override it may also be a string: ``"8"`` (a count) or
    ``"0,3,7"`` (a list), as typed on a command line.
    """
    path = _resolve(path_or_name)
    ctx = _Ctx(str(path))
    if path.suffix.lower() == ".toml":
        raw = _read_toml(path, ctx)
    else:
        raw = _read_plain(path, ctx)

    # Overrides replace the file's values; errors in them are reported as command-line ones.
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
    raw.setdefault("name", path.stem if path.suffix else path.name)
    clean = _validate(raw, ctx)
    return Spec(**clean, source=str(path))


def spec_from_dict(data: Mapping[str, Any], *, source: str = "<inline>") -> Spec:
    """Validate a spec given as a mapping with the TOML keys (for notebooks and tests)."""
    ctx = _Ctx(source)
    raw = dict(data)
    _check_keys(raw, ctx)
    for key in ("templates", "baseline", "terms"):
        if key not in raw:
            raise SpecError(f"{source}: the spec has no {key!r} key; add it.")
    raw.setdefault("name", "inline")
    return Spec(**_validate(raw, ctx), source=source)


def check_prompt_lengths(
    prompts: Iterable[str],
    count_tokens: Callable[[str], int],
    *,
    max_tokens: int = 77,
    allow_truncation: bool = False,
) -> list[str]:
    """Check every prompt against the text encoder's token limit.

    ``count_tokens(prompt)`` returns the number of tokens *including* the start and end
    tokens (so CLIP's limit is 77). Over-long prompts raise :class:`BadInputError` listing
    each one with its count, unless ``allow_truncation``; then the over-long prompts are
    returned (in first-seen order, each once) so the caller can warn. Returns ``[]`` when
    every prompt fits. Include the negative prompt in ``prompts`` to check it too.
    """
    over: list[tuple[str, int]] = []
    seen: set[str] = set()
    for prompt in prompts:
        if prompt in seen:
            continue
        seen.add(prompt)
        n = int(count_tokens(prompt))
        if n > max_tokens:
            over.append((prompt, n))
    if over and not allow_truncation:
        listing = "; ".join(f"{p!r} ({n} tokens)" for p, n in over)
        raise BadInputError(
            f"{len(over)} prompt{'s are' if len(over) != 1 else ' is'} longer than the text "
            f"encoder's limit of {max_tokens} tokens (counting the start and end tokens): "
            f"{listing}. The encoder would silently drop everything past token {max_tokens}, "
            f"so the term may not reach the model at all. Shorten the templates or terms, or "
            f"pass --allow-truncation to generate from the truncated prompts anyway."
        )
    return [p for p, _ in over]


# --------------------------------------------------------------------------------------------
# Reading


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


def _resolve(path_or_name: str | Path) -> Path:
    return specfile.resolve(
        path_or_name, what="spec",
        folder_fix="Give the path of a .toml spec or a plain-text file with one template per line.",
    )


def _read_toml(path: Path, ctx: _Ctx) -> dict[str, Any]:
    text = _read_text(path)
    ctx.text = text
    data = specfile.load_toml(
        path, text, syntax_hint="Fix the TOML syntax there (strings need double quotes, lists need "
        "commas between items, keys are written key = value).",
    )
    _check_keys(data, ctx)
    return data


def _read_plain(path: Path, ctx: _Ctx) -> dict[str, Any]:
    text = _read_text(path)
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


_read_text = specfile.read_text


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
    raise SpecError(
        f"{ctx.source}: unknown spec {noun} {'; '.join(parts)}. A spec may contain only "
        f"{', '.join(SPEC_KEYS)}; rename or remove the unknown {noun}."
    )


# --------------------------------------------------------------------------------------------
# Validation


def _validate(raw: Mapping[str, Any], ctx: _Ctx) -> dict[str, Any]:
    """Check every field and return the normalised values (tuples, collapsed whitespace)."""
    out: dict[str, Any] = {}

    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SpecError(
            f"{ctx.label('name')}: the name must be a non-empty string, not {name!r}; write "
            f'e.g. name = "fancy-house".'
        )
    out["name"] = _squash(name)

    out["templates"] = _validate_templates(raw.get("templates"), ctx)
    baseline, terms = _validate_terms(raw.get("baseline"), raw.get("terms"), ctx)
    out["baseline"], out["terms"] = baseline, terms
    out["probes"] = _validate_probes(raw.get("probes", ()), ctx)
    out["seeds"] = _validate_seeds(raw.get("seeds", DEFAULT_SEED_COUNT), ctx)

    negative = raw.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise SpecError(
            f"{ctx.label('negative_prompt')}: negative_prompt must be a string, not "
            f"{_type(negative)}; write e.g. negative_prompt = \"blurry, low quality\" or "
            f"leave it out."
        )
    out["negative_prompt"] = negative

    steps = raw.get("steps")
    if steps is not None:
        if not _is_int(steps):
            raise SpecError(
                f"{ctx.label('steps')}: steps must be a whole number, not {_type(steps)} "
                f"{steps!r}; write e.g. steps = 50."
            )
        if steps <= 0:
            raise SpecError(
                f"{ctx.label('steps')}: steps must be at least 1, not {steps}; write e.g. "
                f"steps = 50."
            )
    out["steps"] = steps

    guidance = raw.get("guidance")
    if guidance is not None:
        if not (_is_int(guidance) or isinstance(guidance, float)):
            raise SpecError(
                f"{ctx.label('guidance')}: guidance must be a number, not {_type(guidance)} "
                f"{guidance!r}; write e.g. guidance = 7.5."
            )
        if not math.isfinite(guidance) or guidance < 0:
            raise SpecError(
                f"{ctx.label('guidance')}: guidance must be a finite number ≥ 0, not "
                f"{guidance!r}; write e.g. guidance = 7.5 (values ≤ 1 turn classifier-free "
                f"guidance off)."
            )
        guidance = float(guidance)
    out["guidance"] = guidance

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


def _validate_templates(value: Any, ctx: _Ctx) -> tuple[str, ...]:
    if value is None:
        raise SpecError(
            f"{ctx.source}: the spec has no 'templates' key. Add templates = [\"a photo of "
            f"a {{}} house\", ...] with {{}} where the term goes."
        )
    if isinstance(value, str):
        raise SpecError(
            f"{ctx.label('templates')}: templates must be a list of strings, not a single "
            f"string; write templates = [{value!r}]."
        )
    if not isinstance(value, (list, tuple)):
        raise SpecError(
            f"{ctx.label('templates')}: templates must be a list of strings, not "
            f"{_type(value)}; write templates = [\"a photo of a {{}} house\"]."
        )
    if not value:
        raise SpecError(
            f"{ctx.label('templates')}: there are no templates. Add at least one, e.g. "
            f"templates = [\"a photo of a {{}} house\"]."
        )
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, template in enumerate(value):
        where = ctx.label("templates", i, template)
        if not isinstance(template, str):
            raise SpecError(
                f"{where}: each template must be a string, not {_type(template)} "
                f"{template!r}; quote it."
            )
        text = _squash(template)
        if not text:
            raise SpecError(f"{where}: the template is empty; remove it or write one with {{}}.")
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
        key = text.casefold()
        if key in seen:
            raise SpecError(
                f"{where}: template {text!r} repeats template {seen[key] + 1}"
                + (" (they differ only in case or spacing, which CLIP's tokenizer ignores)"
                   if value[seen[key]] != template else "")
                + "; remove the duplicate (it would count the same images twice)."
            )
        seen[key] = i
        out.append(text)
    return tuple(out)


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
    if terms is None:
        raise SpecError(
            f"{ctx.source}: the spec has no terms. Add terms = [\"...\"] or pass --term TERM."
        )
    if isinstance(terms, str):
        raise SpecError(
            f"{ctx.label('terms')}: terms must be a list of strings, not a single string; "
            f"write terms = [{terms!r}]."
        )
    if not isinstance(terms, (list, tuple)):
        raise SpecError(
            f"{ctx.label('terms')}: terms must be a list of strings, not {_type(terms)}; "
            f"write e.g. terms = [\"fancy\", \"poor\"]."
        )
    if not terms:
        raise SpecError(
            f"{ctx.label('terms')}: there are no terms to compare with the baseline. Add at "
            f"least one, e.g. terms = [\"fancy\"] (or --term fancy)."
        )
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, term in enumerate(terms):
        where = ctx.label("terms", i, term)
        if not isinstance(term, str):
            raise SpecError(
                f"{where}: each term must be a string, not {_type(term)} {term!r}; quote it."
            )
        text = _squash(term)
        if not text:
            raise SpecError(
                f"{where}: the term is empty. Only the baseline may be empty (meaning no "
                f"modifier); remove the empty term."
            )
        key = text.casefold()
        if key == base.casefold():
            raise SpecError(
                f"{where}: term {text!r} is the same as the baseline {base!r}"
                + (" (CLIP's tokenizer ignores case)" if text != base else "")
                + ". The baseline is compared with every term automatically; remove it from "
                "the terms."
            )
        if key in seen:
            j = seen[key]
            raise SpecError(
                f"{where}: term {text!r} is listed twice (also terms[{j}]"
                + (f" = {out[j]!r}; CLIP's tokenizer ignores case" if out[j] != text else "")
                + "). Remove the duplicate."
            )
        seen[key] = i
        out.append(text)
    return base, tuple(out)


def _validate_probes(value: Any, ctx: _Ctx) -> tuple[str, ...]:
    if isinstance(value, str):
        raise SpecError(
            f"{ctx.label('probes')}: probes must be a list of strings, not a single string; "
            f"write probes = [{value!r}]."
        )
    if not isinstance(value, (list, tuple)):
        raise SpecError(
            f"{ctx.label('probes')}: probes must be a list of strings, not {_type(value)}; "
            f"write e.g. probes = [\"mansion\", \"hut\"]."
        )
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, probe in enumerate(value):
        where = ctx.label("probes", i, probe)
        if not isinstance(probe, str):
            raise SpecError(
                f"{where}: each probe must be a string, not {_type(probe)} {probe!r}; quote it."
            )
        text = _squash(probe)
        if not text:
            raise SpecError(f"{where}: the probe is an empty string; remove it or write a word.")
        key = text.casefold()
        if key in seen:
            raise SpecError(
                f"{where}: probe {text!r} is listed twice (also probes[{seen[key]}]); remove "
                f"the duplicate."
            )
        seen[key] = i
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
    seen: set[int] = set()
    for i, seed in enumerate(value):
        at = ctx.label("seeds", i, seed)
        if not _is_int(seed):
            raise SpecError(
                f"{at}: seed {seed!r} is not a whole number; seeds must be non-negative "
                f"integers."
            )
        if seed < 0 or seed > MAX_SEED:
            raise SpecError(
                f"{at}: seed {seed} is out of range; seeds must be between 0 and {MAX_SEED}."
            )
        if seed in seen:
            raise SpecError(
                f"{at}: seed {seed} is listed twice; seeds must be distinct (a repeated seed "
                f"repeats the same image). Remove the duplicate."
            )
        seen.add(seed)
    return tuple(int(s) for s in value)


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


# --------------------------------------------------------------------------------------------
# Small helpers


def _squash(text: str) -> str:
    return " ".join(text.split())


_is_int = specfile.is_int
_type = specfile.type_name


def _as_str_list(values: Sequence[str], ctx: _Ctx, flag: str) -> list[str]:
    if isinstance(values, str):
        return [values]
    out = list(values)
    for v in out:
        if not isinstance(v, str):
            raise SpecError(f"{ctx.source}: {flag} {v!r} must be a string.")
    return out
