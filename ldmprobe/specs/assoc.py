"""Embedding association tests (WEAT / iEAT / T2IAT) on texts or generated images.

An association spec is a TOML file with two target sets ``X``, ``Y`` and two attribute sets
``A``, ``B``::

    name = "weat1-flowers-insects"          # optional; defaults to the file name
    description = "Flowers vs insects ..."   # optional
    source = "Caliskan et al. 2017, ..."     # optional citation (shipped specs all have one)

    [X]
    label = "flowers"
    words = ["aster", "clover", ...]         # text embeddings of the bare words ...
    templates = ["a photo of a {}."]         # ... or averaged over templates (optional)

    [A]
    label = "male"
    prompts = ["a photo of a man studying physics", ...]   # images generated from prompts
    seeds = 4                                # a count (seeds 0..3) or a list [0, 7, 9]

    [test]                                   # optional; the command line overrides it
    ddof = 1                                 # 1 (Caliskan et al.) or 0 (as WEFE)
    permutations = 100000                    # exact enumeration when comb(|X|+|Y|, |X|) <= this
    seed = 0

    steps = 50                               # optional, only with prompt sets; written
    guidance = 7.5                           # before the first [table]
    negative_prompt = "blurry"

X and Y must be of one kind (both words or both prompts), and so must A and B: a text set
against an image set would measure CLIP's modality gap, not an association. A prompt set
has ``len(prompts) * len(seeds)`` items, one image each.

The statistics are :func:`ldmprobe.analysis.stats.weat`: s(w,A,B) = mean_a cos(w,a) − mean_b cos(w,b),
S = Σ_X s − Σ_Y s, d = (mean_X s − mean_Y s) / sd_{X∪Y}(s), one-sided permutation p.

Loading and validating a spec imports nothing heavy. Text-only specs never load (or import)
the generator. Image sets go through :func:`embed_prompt_sets`, the one place images are made.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ldmprobe import SCHEMA_VERSION
from ldmprobe.specs import files as specfile
from ldmprobe.errors import LdmprobeError, SpecError
from ldmprobe.specs.sweep import MAX_SEED, MAX_SEED_COUNT

__all__ = [
    "ASSOC_KEYS",
    "DEFAULT_GUIDANCE",
    "DEFAULT_PERMUTATIONS",
    "DEFAULT_STEPS",
    "SET_KEYS",
    "SET_NAMES",
    "TEST_KEYS",
    "AssocResult",
    "AssocSet",
    "AssocSpec",
    "BadImagesError",
    "ImageRecord",
    "assoc_from_dict",
    "assoc_from_names",
    "embed_prompt_sets",
    "embed_word_set",
    "generation_recipe",
    "load_assoc_spec",
    "render_assoc_table",
    "resolve_test_settings",
    "run_assoc",
    "schema_path",
]

SET_NAMES = ("X", "Y", "A", "B")
#: Top-level keys of an association spec.
ASSOC_KEYS = ("name", "description", "source", "steps", "guidance", "negative_prompt",
              *SET_NAMES, "test")
#: Keys of a set table.
SET_KEYS = ("label", "words", "templates", "prompts", "seeds")
#: Keys of the optional [test] table.
TEST_KEYS = ("ddof", "permutations", "seed")

DEFAULT_DDOF = 1
DEFAULT_PERMUTATIONS = 100_000
DEFAULT_TEST_SEED = 0
DEFAULT_STEPS = 50
DEFAULT_TINY_STEPS = 4  # as the sweep: the tiny pipeline's images do not improve with steps
DEFAULT_GUIDANCE = 7.5
#: Guard against typos such as permutations = 1000000000 (that would run for hours).
MAX_PERMUTATIONS = 100_000_000

_ROLE = {"X": "target", "Y": "target", "A": "attribute", "B": "attribute"}

_KEY_ALIASES = {
    "title": "name",
    "citation": "source",
    "reference": "source",
    "ref": "source",
    "x": "X", "y": "Y", "a": "A", "b": "B",
    "stats": "test",
    "statistics": "test",
    "num_inference_steps": "steps",
    "guidance_scale": "guidance",
    "cfg": "guidance",
    "negative": "negative_prompt",
    # set-table keys
    "terms": "words",
    "template": "templates",
    "prompt": "prompts",
    "seed": "seeds",
    # test-table keys
    "n_permutations": "permutations",
    "n_resamples": "permutations",
    "resamples": "permutations",
    "random_seed": "seed",
}


# --------------------------------------------------------------------------------------------
# Specs


@dataclass(frozen=True)
class AssocSet:
    """One of X, Y, A, B: words (optionally inside templates) or prompts × seeds."""

    name: str  # "X", "Y", "A" or "B"
    label: str
    words: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()

    @property
    def kind(self) -> str:
        """``"words"`` (text embeddings) or ``"prompts"`` (generated images)."""
        return "prompts" if self.prompts else "words"

    @property
    def size(self) -> int:
        """Number of embeddings the set contributes (one per word, one per image)."""
        return len(self.prompts) * len(self.seeds) if self.prompts else len(self.words)

    def images(self) -> list[tuple[str, int]]:
        """The (prompt, seed) of every image, prompt-major; [] for a word set."""
        return [(p, s) for p in self.prompts for s in self.seeds]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "kind": self.kind, "n": self.size}
        if self.kind == "words":
            out["words"] = list(self.words)
            out["templates"] = list(self.templates)
        else:
            out["prompts"] = list(self.prompts)
            out["seeds"] = list(self.seeds)
        return out


@dataclass(frozen=True)
class AssocSpec:
    """A validated association spec; ``path`` is where it was read from."""

    name: str
    X: AssocSet
    Y: AssocSet
    A: AssocSet
    B: AssocSet
    description: str = ""
    source: str = ""  # the citation
    ddof: int | None = None  # from [test]; None: not set in the spec
    permutations: int | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str | None = None
    path: str = "<inline>"

    @property
    def sets(self) -> dict[str, AssocSet]:
        return {"X": self.X, "Y": self.Y, "A": self.A, "B": self.B}

    @property
    def needs_generator(self) -> bool:
        """True when any set is made of generated images."""
        return any(s.kind == "prompts" for s in self.sets.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "path": self.path,
            **{k: s.to_dict() for k, s in self.sets.items()},
            "test": {"ddof": self.ddof, "permutations": self.permutations, "seed": self.seed},
            "steps": self.steps,
            "guidance": self.guidance,
            "negative_prompt": self.negative_prompt,
        }


def load_assoc_spec(path_or_name: str | Path) -> AssocSpec:
    """Read and validate an association spec from a TOML file or a shipped name.

    A bare name such as ``weat1-flowers-insects`` finds ``prompts/assoc/NAME.toml``.
    Every problem raises :class:`SpecError` naming the file, the line or field, and the fix.
    """
    path = _resolve(path_or_name)
    text = _read_text(path)
    where = _Where(str(path), text)
    data = specfile.load_toml(
        path, text, syntax_hint="Fix the TOML there (strings need double quotes, lists need commas between "
        "items, a set is a [X] table with label = ... and words = [...]).",
    )
    data.setdefault("name", path.stem)
    return _validate(data, where)


def assoc_from_dict(data: Mapping[str, Any], *, path: str = "<inline>") -> AssocSpec:
    """Validate a spec given as a mapping with the TOML layout (for notebooks and tests)."""
    raw = dict(data)
    raw.setdefault("name", "inline")
    return _validate(raw, _Where(path))


# --------------------------------------------------------------------------------------------
# Validation


class _Where:
    """Names a field for error messages, with its TOML line when it can be found."""

    def __init__(self, source: str, text: str | None = None):
        self.source = source
        self.lines = text.splitlines() if text else []

    def __call__(self, table: str | None, key: str | None = None, index: int | None = None,
                 value: Any = None) -> str:
        what = ".".join(p for p in (table, key) if p) or "spec"
        if index is not None:
            what += f"[{index}]"
        line = self.line(table, key, value if index is not None else None)
        return f"{self.source} line {line} ({what})" if line else f"{self.source}: {what}"

    def _table_range(self, table: str | None) -> tuple[int, int] | None:
        header = re.compile(r"^\s*\[")
        if table is None:
            end = next((i for i, ln in enumerate(self.lines) if header.match(ln)), len(self.lines))
            return 0, end
        mine = re.compile(rf"""^\s*\[\s*(["']?){re.escape(table)}\1\s*\]""")
        start = next((i for i, ln in enumerate(self.lines) if mine.match(ln)), None)
        if start is None:
            return None
        end = next((i for i in range(start + 1, len(self.lines)) if header.match(self.lines[i])),
                   len(self.lines))
        return start, end

    def line(self, table: str | None, key: str | None = None, value: Any = None) -> int | None:
        if not self.lines:
            return None
        span = self._table_range(table)
        if span is None:  # dotted or inline form: X.words = [...] / X = {...}
            dotted = re.compile(rf"^\s*{re.escape(table)}\s*[.=]")
            hit = next((i for i, ln in enumerate(self.lines) if dotted.match(ln)), None)
            return hit + 1 if hit is not None else None
        start, end = span
        if key is None:
            return start + 1 if table is not None else None
        pattern = re.compile(rf"""^\s*(["']?){re.escape(key)}\1\s*=""")
        at = next((i for i in range(start, end) if pattern.match(self.lines[i])), None)
        if at is None:
            return start + 1 if table is not None else None
        if value is not None:
            needles = [f'"{value}"', f"'{value}'"] if isinstance(value, str) else [str(value)]
            for i in range(at, end):
                if i > at and re.match(r"^\s*[A-Za-z_\"'][\w\"' -]*=", self.lines[i]):
                    break
                if any(n in self.lines[i] for n in needles):
                    return i + 1
        return at + 1


def _validate(raw: Mapping[str, Any], where: _Where) -> AssocSpec:
    _check_keys(raw, ASSOC_KEYS, None, where)

    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SpecError(
            f"{where(None, 'name')}: the name must be a non-empty string, not {name!r}; write "
            f'e.g. name = "weat1-flowers-insects".'
        )
    text_fields = {}
    for key in ("description", "source"):
        value = raw.get(key, "")
        if not isinstance(value, str):
            raise SpecError(
                f"{where(None, key)}: {key} must be a string, not {_type(value)}; quote it "
                f"(a multi-line string is written between triple quotes)."
            )
        text_fields[key] = " ".join(value.split())

    sets = {}
    for set_name in SET_NAMES:
        if set_name not in raw:
            raise SpecError(
                f"{where.source}: the spec has no [{set_name}] table. An association test needs "
                f"target sets X and Y and attribute sets A and B; add [{set_name}] with a label "
                f"and either words = [...] or prompts = [...] plus seeds."
            )
        sets[set_name] = _validate_set(set_name, raw[set_name], where)
    _check_pair(sets["X"], sets["Y"], where)
    _check_pair(sets["A"], sets["B"], where)

    test = raw.get("test", {})
    if not isinstance(test, dict):
        raise SpecError(
            f"{where(None, 'test')}: test must be a table, not {_type(test)}; write [test] "
            f"followed by ddof = 1, permutations = 100000, seed = 0 (each optional)."
        )
    _check_keys(test, TEST_KEYS, "test", where)
    ddof = test.get("ddof")
    if ddof is not None and (not _is_int(ddof) or ddof not in (0, 1)):
        raise SpecError(
            f"{where('test', 'ddof')}: ddof must be 0 or 1, not {ddof!r}; 1 (the sample "
            f"standard deviation, as Caliskan et al. 2017) is the default, 0 matches WEFE."
        )
    permutations = test.get("permutations")
    if permutations is not None:
        if not _is_int(permutations) or not 1 <= permutations <= MAX_PERMUTATIONS:
            raise SpecError(
                f"{where('test', 'permutations')}: permutations must be a whole number from 1 "
                f"to {MAX_PERMUTATIONS}, not {permutations!r}; write e.g. permutations = 100000."
            )
    seed = test.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= MAX_SEED):
        raise SpecError(
            f"{where('test', 'seed')}: seed must be a whole number from 0 to {MAX_SEED}, not "
            f"{seed!r}; write e.g. seed = 0."
        )

    has_prompts = any(s.kind == "prompts" for s in sets.values())
    steps, guidance, negative = raw.get("steps"), raw.get("guidance"), raw.get("negative_prompt")
    for key, value in (("steps", steps), ("guidance", guidance), ("negative_prompt", negative)):
        if value is not None and not has_prompts:
            raise SpecError(
                f"{where(None, key)}: {key} only applies to sets made of prompts (generated "
                f"images), and every set of this spec is words; remove {key}."
            )
    if steps is not None and (not _is_int(steps) or steps < 1):
        raise SpecError(
            f"{where(None, 'steps')}: steps must be a whole number ≥ 1, not {steps!r}; write "
            f"e.g. steps = 50."
        )
    if guidance is not None:
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) \
                or not math.isfinite(guidance) or guidance < 0:
            raise SpecError(
                f"{where(None, 'guidance')}: guidance must be a finite number ≥ 0, not "
                f"{guidance!r}; write e.g. guidance = 7.5."
            )
        guidance = float(guidance)
    if negative is not None and not isinstance(negative, str):
        raise SpecError(
            f"{where(None, 'negative_prompt')}: negative_prompt must be a string, not "
            f"{_type(negative)}; write e.g. negative_prompt = \"blurry\" or leave it out."
        )

    return AssocSpec(
        name=" ".join(name.split()), **sets, description=text_fields["description"],
        source=text_fields["source"], ddof=ddof, permutations=permutations, seed=seed,
        steps=steps, guidance=guidance, negative_prompt=negative, path=where.source,
    )


def _validate_set(set_name: str, value: Any, where: _Where) -> AssocSet:
    role = _ROLE[set_name]
    if not isinstance(value, dict):
        raise SpecError(
            f"{where(None, set_name)}: {set_name} must be a table, not {_type(value)}; write "
            f"[{set_name}] on its own line followed by label = \"...\" and words = [...] (or "
            f"prompts = [...] and seeds = 4)."
        )
    _check_keys(value, SET_KEYS, set_name, where)
    label = value.get("label")
    if label is None:
        raise SpecError(
            f"{where(set_name)}: the {role} set {set_name} has no label; add label = \"...\" "
            f"(a short name for the concept, e.g. \"flowers\"), used in the output."
        )
    if not isinstance(label, str) or not label.strip():
        raise SpecError(
            f"{where(set_name, 'label')}: the label must be a non-empty string, not {label!r}; "
            f"write e.g. label = \"flowers\"."
        )
    has_words, has_prompts = "words" in value, "prompts" in value
    if has_words and has_prompts:
        raise SpecError(
            f"{where(set_name, 'prompts')}: set {set_name} has both words and prompts; a set "
            f"is either words (text embeddings) or prompts (generated images). Keep one, or "
            f"split them into separate specs."
        )
    if not has_words and not has_prompts:
        raise SpecError(
            f"{where(set_name)}: set {set_name} has neither words nor prompts; add words = "
            f"[\"...\", ...] (text embeddings) or prompts = [\"a photo of ...\", ...] with "
            f"seeds = 4 (generated images)."
        )
    label = " ".join(label.split())
    if has_words:
        for key in ("seeds",):
            if key in value:
                raise SpecError(
                    f"{where(set_name, key)}: seeds only apply to prompt sets (each prompt is "
                    f"generated once per seed); set {set_name} is words, so remove seeds."
                )
        words = _str_list(value["words"], set_name, "words", where, what="word")
        templates: tuple[str, ...] = ()
        if "templates" in value:
            templates = _str_list(value["templates"], set_name, "templates", where,
                                  what="template")
            for i, template in enumerate(templates):
                if template.count("{}") != 1 or "{" in template.replace("{}", "") \
                        or "}" in template.replace("{}", ""):
                    raise SpecError(
                        f"{where(set_name, 'templates', i, value['templates'][i])}: template "
                        f"{template!r} must contain exactly one {{}} (where the word goes) and "
                        f"no other braces; write e.g. \"a photo of a {{}}.\""
                    )
        return AssocSet(set_name, label, words=words, templates=templates)

    if "templates" in value:
        raise SpecError(
            f"{where(set_name, 'templates')}: templates only apply to word sets; set "
            f"{set_name} is prompts, which are used exactly as written. Remove templates, or "
            f"write each full prompt out."
        )
    prompts = _str_list(value["prompts"], set_name, "prompts", where, what="prompt")
    for i, prompt in enumerate(prompts):
        if "{" in prompt or "}" in prompt:
            raise SpecError(
                f"{where(set_name, 'prompts', i, value['prompts'][i])}: prompt {prompt!r} has "
                f"braces; prompts are used as written (they are not templates), so write the "
                f"full prompt out, e.g. \"a photo of a person studying physics\"."
            )
    if "seeds" not in value:
        raise SpecError(
            f"{where(set_name)}: set {set_name} has prompts but no seeds; add seeds = 4 (one "
            f"image per prompt for each of seeds 0..3) or a list such as seeds = [0, 1, 2]."
        )
    seeds = _validate_seeds(value["seeds"], set_name, where)
    return AssocSet(set_name, label, prompts=prompts, seeds=seeds)


def _str_list(value: Any, table: str, key: str, where: _Where, *, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise SpecError(
            f"{where(table, key)}: {key} must be a list of strings, not a single string; write "
            f"{key} = [{value!r}]."
        )
    if not isinstance(value, (list, tuple)):
        raise SpecError(
            f"{where(table, key)}: {key} must be a list of strings, not {_type(value)}; write "
            f"e.g. {key} = [\"...\", \"...\"]."
        )
    if not value:
        raise SpecError(
            f"{where(table, key)}: the list is empty; set {table} needs at least one {what}."
        )
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        at = where(table, key, i, item)
        if not isinstance(item, str):
            raise SpecError(f"{at}: each {what} must be a string, not {_type(item)} {item!r}; "
                            f"quote it.")
        text = " ".join(item.split())
        if not text:
            raise SpecError(f"{at}: the {what} is empty; remove it.")
        fold = text.casefold()
        if fold in seen:
            j = seen[fold]
            raise SpecError(
                f"{at}: {what} {text!r} is listed twice in {table}.{key} (also [{j}]"
                + (f" = {out[j]!r}; CLIP's tokenizer ignores case" if out[j] != text else "")
                + "); remove the duplicate (it would count the same embedding twice)."
            )
        seen[fold] = i
        out.append(text)
    return tuple(out)


def _validate_seeds(value: Any, table: str, where: _Where) -> tuple[int, ...]:
    at = where(table, "seeds")
    if _is_int(value):
        if not 1 <= value <= MAX_SEED_COUNT:
            raise SpecError(
                f"{at}: the seed count must be from 1 to {MAX_SEED_COUNT}, not {value}; write "
                f"e.g. seeds = 4 (seeds 0..3) or a list such as seeds = [0, 1, 2]."
            )
        return tuple(range(value))
    if not isinstance(value, (list, tuple)):
        raise SpecError(
            f"{at}: seeds must be a count (e.g. seeds = 4) or a list of non-negative whole "
            f"numbers (e.g. seeds = [0, 1, 2]), not {_type(value)} {value!r}."
        )
    if not value:
        raise SpecError(f"{at}: the seed list is empty; give at least one seed, e.g. seeds = 4.")
    seen: set[int] = set()
    for i, seed in enumerate(value):
        here = where(table, "seeds", i, seed)
        if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
            raise SpecError(
                f"{here}: seed {seed!r} must be a whole number from 0 to {MAX_SEED}."
            )
        if seed in seen:
            raise SpecError(
                f"{here}: seed {seed} is listed twice; a repeated seed repeats the same image. "
                f"Remove the duplicate."
            )
        seen.add(seed)
    return tuple(value)


def _check_pair(first: AssocSet, second: AssocSet, where: _Where) -> None:
    role = _ROLE[first.name]
    if first.kind != second.kind:
        raise SpecError(
            f"{where(second.name)}: {role} sets {first.name} and {second.name} must be of one "
            f"kind, but {first.name} is {first.kind} and {second.name} is {second.kind}. Text "
            f"and image embeddings sit in different regions of CLIP space, so the test would "
            f"measure that gap, not an association; make both words or both prompts."
        )
    items = (lambda s: s.words) if first.kind == "words" else (lambda s: s.prompts)
    mine = {t.casefold(): t for t in items(first)}
    shared = [t for t in items(second) if t.casefold() in mine]
    if shared:
        raise SpecError(
            f"{where(second.name, first.kind, items(second).index(shared[0]), shared[0])}: "
            f"{shared[0]!r} is in both {first.name} ({first.label}) and {second.name} "
            f"({second.label}); {role} sets must not overlap (an item in both cancels out and "
            f"blurs the test). Remove it from one of them."
        )


def _check_keys(data: Mapping[str, Any], allowed: Sequence[str], table: str | None,
                where: _Where) -> None:
    unknown = [k for k in data if k not in allowed]
    if not unknown:
        return
    parts = []
    for key in unknown:
        suggestion = _KEY_ALIASES.get(str(key)) or _KEY_ALIASES.get(str(key).lower())
        if suggestion not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
            suggestion = close[0] if close else None
        line = where.line(table, str(key)) if table else where.line(None, str(key))
        if table is None and line is None:
            line = where.line(str(key))  # a misspelt [table]
        at = f" (line {line})" if line else ""
        parts.append(f"{key!r}{at}" + (f" — did you mean {suggestion!r}?" if suggestion else ""))
    noun = "key" if len(unknown) == 1 else "keys"
    scope = f"in [{table}]" if table else "in the spec"
    raise SpecError(
        f"{where.source}: unknown {noun} {scope}: {'; '.join(parts)}. Allowed "
        f"{'here' if table else 'at the top level'}: {', '.join(allowed)}; rename or remove "
        f"the unknown {noun}."
    )


# --------------------------------------------------------------------------------------------
# Reading


def _resolve(path_or_name: str | Path) -> Path:
    return specfile.resolve(path_or_name, subdir="assoc", what="association spec",
                            folder_fix="Give a .toml file.")


_read_text = specfile.read_text


_is_int = specfile.is_int
_type = specfile.type_name


# --------------------------------------------------------------------------------------------
# Embedding


def embed_word_set(measurer, aset: AssocSet):
    """Unit text embeddings of a word set: bare words, or averaged over its templates."""
    from ldmprobe.engine.encode import encode_in_templates, encode_texts

    if aset.templates:
        return encode_in_templates(measurer, aset.words, aset.templates)
    return encode_texts(measurer, aset.words)


@dataclass(frozen=True)
class ImageRecord:
    """One generated image of a prompt set: which set, prompt and seed, and its cache key."""

    set: str
    prompt: str
    seed: int
    key: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class BadImagesError(LdmprobeError):
    """Generated images that are NaN or all black; they must not reach the statistics."""


def _image_size(pipe) -> tuple[int, int]:
    """Default (height, width) of an SD-style pipeline: UNet sample size × VAE scale factor."""
    sample = getattr(getattr(pipe, "unet", None), "config", None)
    sample = getattr(sample, "sample_size", None)
    factor = getattr(pipe, "vae_scale_factor", 8)
    if isinstance(sample, (list, tuple)):
        return int(sample[0]) * factor, int(sample[1]) * factor
    if sample is None:
        return 512, 512
    return int(sample) * factor, int(sample) * factor


def generation_recipe(generator, *, steps: int, guidance: float, negative_prompt: str | None):
    """The :class:`~ldmprobe.engine.workitems.Recipe` the images are made with (keys match the sweep's)."""
    from ldmprobe.models import sources as models
    from ldmprobe.engine.workitems import Recipe

    height, width = _image_size(generator.pipe)
    return Recipe(
        pipeline=generator.identity, scheduler=models.scheduler_identity(generator.folder),
        steps=int(steps), guidance=float(guidance), width=width, height=height,
        dtype=generator.dtype, negative_prompt=negative_prompt,
    )


def embed_prompt_sets(
    generator,
    measurer,
    sets: Sequence[AssocSet],
    *,
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
    negative_prompt: str | None = None,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Any], list[ImageRecord], Any]:
    """Generate every (prompt, seed) image of the prompt sets, embed them, return per set.

    Returns ``(embeddings, records, recipe)``: ``embeddings[set_name]`` is an (n, d) array of
    unit image embeddings in the set's prompt-major order; ``records`` lists each image's
    set, prompt, seed and cache key (:func:`ldmprobe.engine.workitems.item_key`); ``recipe`` is the
    :class:`~ldmprobe.engine.workitems.Recipe`. Each image gets its own CPU ``torch.Generator`` seeded
    with its seed, so an image does not depend on its batch. An image shared by two sets
    (same prompt and seed) is made once. NaN or all-black images raise
    :class:`BadImagesError` listing them.

    Images and embeddings go through the sweep's caches (keyed exactly as a sweep keys
    them), so a rerun, or a sweep that made the same images, generates nothing.
    """
    import numpy as np

    from ldmprobe.engine.cache import ImageStore
    from ldmprobe.engine.generate import embed_stored_images, generate_into_store, missing_items
    from ldmprobe.engine.workitems import WorkItem, item_key

    recipe = generation_recipe(generator, steps=steps, guidance=guidance,
                               negative_prompt=negative_prompt)
    records: list[ImageRecord] = []
    unique: dict[str, WorkItem] = {}
    for aset in sets:
        for prompt, seed in aset.images():
            key = item_key(recipe, prompt, seed)
            records.append(ImageRecord(aset.name, prompt, seed, key))
            unique.setdefault(key, WorkItem(template=prompt, template_index=0, term="", is_baseline=False,
                                            seed=seed, prompt=prompt, recipe=recipe, key=key))

    store = ImageStore()
    items = list(unique.values())
    done = [sum(store.has(k) for k in unique)]

    def advance(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], len(items))

    generate_into_store(generator, recipe, missing_items(items, store), store, batch_size=batch_size,
                        on_batch=advance)
    bad = [f"{item.prompt!r} seed {item.seed} ({store.failure(item.key)['failed']})"
           for item in items if store.failure(item.key) is not None]
    if bad:
        raise BadImagesError(
            f"{len(bad)} generated image{'s are' if len(bad) != 1 else ' is'} unusable: "
            f"{'; '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}. The test was not run, "
            f"because dropping them would change the sets and keeping them would average "
            f"garbage in. NaN images usually mean float16 overflow (try --dtype float32); "
            f"black ones can come from a safety checker or a broken VAE."
        )
    rows = embed_stored_images(measurer, list(unique), store)
    embeddings = {
        aset.name: np.stack([rows[r.key] for r in records if r.set == aset.name]) for aset in sets
    }
    return embeddings, records, recipe


# --------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class AssocResult:
    """An association test's outcome with everything needed to read and reproduce it.

    The first fields are those of :class:`ldmprobe.analysis.stats.WeatResult`; ``labels`` maps X, Y,
    A, B to the sets' labels; ``permutations`` is the requested B (``n_resamples`` is what
    the p-value was computed over: all partitions when ``exact``).
    """

    effect_size: float
    statistic: float
    p_value: float
    exact: bool
    n_partitions: int
    n_resamples: int
    seed: int
    ddof: int
    min_p: float
    n_x: int
    n_y: int
    n_a: int
    n_b: int
    labels: dict[str, str]
    permutations: int
    spec: AssocSpec
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    images: tuple[ImageRecord, ...] = ()

    @property
    def tiny(self) -> bool:
        return bool(self.provenance.get("tiny"))

    def result_dict(self) -> dict[str, Any]:
        """The ``result`` object of the JSON document."""
        from ldmprobe.analysis.stats import WeatResult, jsonable

        names = [f.name for f in dataclasses.fields(WeatResult)]
        out = {n: getattr(self, n) for n in names}
        out["labels"] = dict(self.labels)
        out["permutations"] = self.permutations
        return jsonable(out)

    def record(self) -> dict[str, Any]:
        """One JSONL record: the result, named, with the tiny-model flag."""
        return {"kind": "assoc", "name": self.spec.name, "tiny": self.tiny, **self.result_dict()}

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (``--format json``); validates against assoc.schema.json."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "assoc",
            "spec": self.spec.to_dict(),
            "config": self.config,
            "provenance": self.provenance,
            "result": self.result_dict(),
            "images": [r.to_dict() for r in self.images],
        }


def resolve_test_settings(spec: AssocSpec, *, ddof: int | None = None,
                          permutations: int | None = None,
                          seed: int | None = None) -> dict[str, int]:
    """Effective ddof / permutations / seed: argument, else the spec's [test], else default."""
    def pick(arg, spec_value, default):
        return arg if arg is not None else spec_value if spec_value is not None else default

    settings = {
        "ddof": int(pick(ddof, spec.ddof, DEFAULT_DDOF)),
        "permutations": int(pick(permutations, spec.permutations, DEFAULT_PERMUTATIONS)),
        "seed": int(pick(seed, spec.seed, DEFAULT_TEST_SEED)),
    }
    if settings["ddof"] not in (0, 1):
        raise SpecError(f"ddof must be 0 or 1, not {settings['ddof']}.")
    if settings["permutations"] < 1:
        raise SpecError(f"permutations must be at least 1, not {settings['permutations']}.")
    if settings["seed"] < 0:
        raise SpecError(f"the permutation seed must be ≥ 0, not {settings['seed']}.")
    return settings


def run_assoc(
    spec: AssocSpec,
    *,
    measurer,
    generator=None,
    ddof: int | None = None,
    permutations: int | None = None,
    seed: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    batch_size: int = 8,
    allow_truncation: bool = False,
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    started: str | None = None,
) -> AssocResult:
    """Embed the four sets with loaded models and run the WEAT statistics.

    ``generator`` is needed only when a set is made of prompts (it is never touched
    otherwise). Arguments left as None fall back to the spec's [test] / generation values,
    then to the defaults (ddof 1, 100,000 permutations, seed 0, 50 steps, guidance 7.5).
    """
    from ldmprobe.results.provenance import now_iso, provenance
    from ldmprobe.specs.sweep import check_prompt_lengths
    from ldmprobe.analysis.stats import weat

    started = started or now_iso()
    settings = resolve_test_settings(spec, ddof=ddof, permutations=permutations, seed=seed)
    embeddings: dict[str, Any] = {}
    for aset in spec.sets.values():
        if aset.kind == "words":
            embeddings[aset.name] = embed_word_set(measurer, aset)

    prompt_sets = [s for s in spec.sets.values() if s.kind == "prompts"]
    records: list[ImageRecord] = []
    generation = None
    if prompt_sets:
        if generator is None:
            raise ValueError(f"spec {spec.name!r} has prompt sets: pass a loaded generator")
        default_steps = DEFAULT_TINY_STEPS if generator.ref.is_tiny else DEFAULT_STEPS
        steps = int(steps if steps is not None else spec.steps or default_steps)
        guidance = float(guidance if guidance is not None else
                         spec.guidance if spec.guidance is not None else DEFAULT_GUIDANCE)
        tokenizer = generator.tokenizer
        limit = int(getattr(tokenizer, "model_max_length", 77) or 77)
        prompts = [p for s in prompt_sets for p in s.prompts]
        if spec.negative_prompt:
            prompts.append(spec.negative_prompt)
        truncated = check_prompt_lengths(
            prompts, lambda p: len(tokenizer(p).input_ids), max_tokens=min(limit, 77),
            allow_truncation=allow_truncation,
        )
        if truncated and warn is not None:
            warn(f"{len(truncated)} prompt(s) are truncated to 77 tokens: "
                 + "; ".join(repr(p) for p in truncated))
        image_embeddings, records, recipe = embed_prompt_sets(
            generator, measurer, prompt_sets, steps=steps, guidance=guidance,
            negative_prompt=spec.negative_prompt, batch_size=batch_size, progress=progress,
        )
        embeddings.update(image_embeddings)
        generation = {**recipe.to_dict(), "batch_size": batch_size}

    outcome = weat(embeddings["X"], embeddings["Y"], embeddings["A"], embeddings["B"],
                   ddof=settings["ddof"], permutations=settings["permutations"],
                   seed=settings["seed"])

    tiny = bool(getattr(measurer.ref, "is_tiny", False)) or bool(
        prompt_sets and getattr(generator.ref, "is_tiny", False))
    device = getattr(measurer, "device", None)
    config = {
        "measurer": {"spec": measurer.ref.spec, "identity": measurer.identity},
        "pipeline": None if not prompt_sets else {
            "spec": generator.ref.spec, "identity": generator.identity,
            "folder": str(generator.folder),
        },
        "generation": generation,
        "device": device,
        "dtype": generator.dtype if prompt_sets else None,
        "test": settings,
        "embed_dim": int(next(iter(embeddings.values())).shape[-1]),
    }
    return AssocResult(
        **{f.name: getattr(outcome, f.name) for f in dataclasses.fields(outcome)},
        labels={k: s.label for k, s in spec.sets.items()},
        permutations=settings["permutations"],
        spec=spec,
        config=config,
        provenance=provenance(started=started, tiny=tiny, device=device,
                              dtype=config["dtype"]),
        images=tuple(records),
    )


def assoc_from_names(
    spec: AssocSpec | str | Path,
    *,
    measurer: str,
    pipeline: str = "sd15",
    revision: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    offline: bool = False,
    terminal=None,
    **options,
) -> AssocResult:
    """Resolve and load the models a spec needs, then :func:`run_assoc`.

    The generator is resolved and loaded only when the spec has prompt sets, so a text-only
    test never imports diffusers. ``terminal`` (``warn``/``info`` methods, writing to stderr)
    gets the tiny-model warning and progress; ``options`` go to :func:`run_assoc`.
    """
    from ldmprobe.models import sources as models
    from ldmprobe.results.provenance import now_iso

    started = now_iso()
    if not isinstance(spec, AssocSpec):
        spec = load_assoc_spec(spec)
    meas_ref = models.resolve_measurer(measurer)
    gen_ref = models.resolve_generator(pipeline, revision) if spec.needs_generator else None
    if terminal is not None and (meas_ref.is_tiny or (gen_ref is not None and gen_ref.is_tiny)):
        terminal.warn(models.TINY_WARNING)
    if offline:
        models.set_hub_offline()
    chosen_device, chosen_dtype = models.pick_device(device)
    chosen_dtype = chosen_dtype if dtype == "auto" else dtype
    generator = None
    if gen_ref is not None:
        generator = models.load_generator(gen_ref, device=chosen_device, dtype=chosen_dtype,
                                          offline=offline)
    loaded = models.load_measurer(meas_ref, device=chosen_device, offline=offline)
    if terminal is not None:
        options.setdefault("warn", terminal.warn)
        if generator is not None:
            options.setdefault(
                "progress", lambda done, total: terminal.info(f"images: {done}/{total}"))
    return run_assoc(spec, measurer=loaded, generator=generator, started=started, **options)


# --------------------------------------------------------------------------------------------
# Output


def schema_path() -> Path:
    """The JSON Schema that ``AssocResult.to_dict()`` documents validate against."""
    from ldmprobe.resources import schema_path as _schema_path

    return _schema_path("assoc")


def _fmt_p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


def render_assoc_table(result: AssocResult):
    """A rich table: effect size, S, p (exact or sampled), set sizes, models."""
    from rich.table import Table

    r = result.result_dict()
    spec = result.spec
    title = f"ldmprobe assoc: {spec.name}"
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    labels = r["labels"]
    table.add_row("targets", f"X = {labels['X']} ({r['n_x']})  vs  Y = {labels['Y']} ({r['n_y']})")
    table.add_row("attributes",
                  f"A = {labels['A']} ({r['n_a']})  vs  B = {labels['B']} ({r['n_b']})")
    d = r["effect_size"]
    table.add_row("effect size d", "n/a" if d is None else f"{d:+.3f}")
    s = r["statistic"]
    table.add_row("statistic S", "n/a" if s is None else f"{s:+.4f}")
    if r["exact"]:
        how = f"exact over all {r['n_partitions']:,} partitions"
    else:
        how = (f"sampled: {r['n_resamples']:,} random partitions of {r['n_partitions']:,}, "
               f"seed {r['seed']}")
    table.add_row("p (one-sided)", f"{_fmt_p(r['p_value'])}  ({how}; smallest possible "
                                   f"{_fmt_p(r['min_p'])})")
    table.add_row("n", f"X {r['n_x']}, Y {r['n_y']}, A {r['n_a']}, B {r['n_b']}; "
                       f"sd with ddof={r['ddof']}")
    table.add_row("measurer", result.config.get("measurer", {}).get("spec", ""))
    if result.config.get("pipeline"):
        gen = result.config.get("generation") or {}
        table.add_row("pipeline", f"{result.config['pipeline']['spec']} ({gen.get('steps')} "
                                  f"steps, guidance {gen.get('guidance')}, "
                                  f"{gen.get('width')}x{gen.get('height')})")
    if spec.source:
        table.add_row("source", spec.source)
    if result.tiny:
        table.caption = "tiny models have random weights: these numbers mean nothing"
    return table
