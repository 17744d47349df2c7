"""Load and validate sweep specs: prompt templates × terms × seeds (+ probe words).

A spec comes from one of three places:

* a TOML file (``*.toml``)::

      name = "fancy-house"                 # optional; defaults to the file name
      templates = ["a photo of a {} house"]  # each with exactly one ``{}``
      baseline = ""                        # required; "" means "no modifier"
      terms = ["fancy", "poor"]            # the modifiers compared with the baseline
      controls = ["wooden", "small"]       # optional modifiers held irrelevant (judged against)
      probes = ["mansion", "hut"]          # optional words to measure shifts toward
      seeds = 8                            # a count (seeds 0..7) or a list [0, 5, 11]
      negative_prompt = "blurry"           # optional
      steps = 50                           # optional generation defaults
      guidance = 7.5                       # or levels the sweep crosses: guidance = [3, 5, 7.5]
      width = 512
      height = 512
      pipeline = "sd15"                    # optional default models (--pipeline / --measurer win)
      measurer = "ViT-L-14-quickgelu:openai"

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ldmprobe.errors import BadInputError, SpecError
from ldmprobe.records import Said, schema
from ldmprobe.specs.attributes import attribute_dict
from ldmprobe.specs.sweep_fields import (  # noqa: F401  (the spec's constants, importable from here)
    DEFAULT_SEED_COUNT, MAX_SEED, MAX_SEED_COUNT, PLACEHOLDER, SPEC_KEYS, _Ctx, _squash,
)
from ldmprobe.specs.sweep_validate import _check_keys, _validate, read_spec


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


@dataclass(frozen=True)
class Spec:
    """A validated sweep spec.

    ``terms`` does not include the baseline; :attr:`all_terms` is ``(baseline, *terms)``.
    Constructing a ``Spec`` directly validates and normalises it the same way
    :func:`load_spec` does (lists become tuples, a seed count becomes ``range(n)``).
    """

    #: The document's ``spec`` (``to_dict``) as the published schemas describe it (derived by
    #: ``results.schema_defs``): the level lists are written as ``steps`` / ``guidance`` lists.
    json_schema = {
        "description": "The spec the run followed, as validated and normalised (its TOML keys; source names the file).",
        "required": ("name", "templates", "baseline", "terms", "probes", "seeds"),
        "omit": ("guidance_levels", "steps_levels"),
        "properties": {
            "steps": {"type": None, "description": "the spec's denoising steps: one whole number, or a list of levels the sweep crossed",
                      "anyOf": [{"type": ["integer", "null"], "minimum": 1},
                                {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2}]},
            "guidance": {"type": None, "description": "the spec's guidance scale: one number, or a list of levels the sweep crossed "
                                        "(then 'levels' and 'trends' are in the document)",
                         "anyOf": [{"type": ["number", "null"], "minimum": 0},
                                   {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 2}]},
            "attributes": {"type": ["object", "null"], "description": "the spec's attribute groups: group -> option -> the probe "
                           "text the measurer reads it by (written only when the spec has some)",
                           "additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}}},
            "reference_rates": {"type": "object", "description": "term ('' for the baseline) -> group -> option -> the "
                                "reference rate (written only when the spec gives some)",
                                "additionalProperties": {"type": "object", "additionalProperties": {
                                    "type": "object", "additionalProperties": {"type": "number", "minimum": 0,
                                                                               "maximum": 1}}}},
        },
    }

    name: Said
    templates: tuple[str, ...] = field(metadata=schema("each with exactly one {} where the term goes", minItems=1))
    baseline: str = field(metadata=schema("the baseline term ('' is the bare template)"))
    terms: tuple[str, ...] = field(metadata=schema("the modifiers compared with the baseline", minItems=1))
    controls: tuple[str, ...] = field(default=(), metadata=schema("modifiers the study holds irrelevant"))
    probes: tuple[str, ...] = field(default=(), metadata=schema("words the shifts are measured toward"))
    seeds: tuple[int, ...] = field(default=tuple(range(DEFAULT_SEED_COUNT)), metadata=schema(
        "the seeds every (template, term) cell was drawn with", minItems=1, items={"type": "integer", "minimum": 0}))
    negative_prompt: str | None = None
    steps: int | None = None
    guidance: float | None = None
    width: int | None = field(default=None, metadata=schema(minimum=8))
    height: int | None = field(default=None, metadata=schema(minimum=8))
    pipeline: str | None = field(default=None, metadata=schema("the spec's default generator (the command line's wins)"))
    measurer: str | None = field(default=None, metadata=schema("the spec's default measurer (the command line's wins)"))
    attributes: tuple = ()  # AttributeGroup per [attributes.GROUP] (ldmprobe.specs.attributes)
    reference_rates: tuple = ()  # ReferenceRates per [reference_rates.TERM.GROUP]
    reference_source: str | None = field(default=None, metadata=schema("where the reference rates come from"))
    calibration: str | None = field(default=None, metadata=schema("the labelled calibration set's folder or manifest"))
    #: Several guidance scales / step counts (spec ``guidance = [3, 5, 7.5]``): the sweep crosses
    #: them. ``()`` for a single value; ``guidance`` / ``steps`` hold the first level.
    guidance_levels: tuple[float, ...] = ()
    steps_levels: tuple[int, ...] = ()
    source: str = field(default="<inline>", metadata=schema("the spec file (or shipped name) the run read",
                                                            type=["string", "null"]))

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
        """The baseline, the terms, then the controls, in spec order (everything generated)."""
        return (self.baseline, *self.terms, *self.controls)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (lists, not tuples) of every field, ``source`` included."""
        return {
            "name": self.name,
            "templates": list(self.templates),
            "baseline": self.baseline,
            "terms": list(self.terms),
            "controls": list(self.controls),
            "probes": list(self.probes),
            "seeds": list(self.seeds),
            "negative_prompt": self.negative_prompt,
            "steps": list(self.steps_levels) if self.steps_levels else self.steps,
            "guidance": list(self.guidance_levels) if self.guidance_levels else self.guidance,
            "width": self.width,
            "height": self.height,
            "pipeline": self.pipeline,
            "measurer": self.measurer,
            **attribute_dict(self.attributes, self.reference_rates, self.reference_source, self.calibration),
            "source": self.source,
        }

    @property
    def levels(self) -> tuple[tuple[float | None, int | None], ...]:
        """Every (guidance, steps) level the spec asks for, guidance-major (None: the default)."""
        return tuple((g, s) for g in (self.guidance_levels or (self.guidance,))
                     for s in (self.steps_levels or (self.steps,)))

    def prompts(self) -> list[str]:
        """Every distinct expanded prompt, in template then term order (for length checks)."""
        seen: dict[str, None] = {}
        for template in self.templates:
            for term in self.all_terms:
                seen.setdefault(expand(template, term), None)
        return list(seen)


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
    clean, source = read_spec(path_or_name, terms=terms, baseline=baseline, probes=probes, seeds=seeds)
    spec = object.__new__(Spec)  # checked once, above (``Spec(...)`` would check the values again)
    for f in fields(Spec):
        object.__setattr__(spec, f.name, source if f.name == "source" else clean.get(f.name, f.default))
    return spec


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
