"""Validation of association specs: every problem names the file, the line or field, and the fix."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ldmprobe.errors import SpecError
from ldmprobe.specs import files as specfile
from ldmprobe.specs.assoc_sources import check_file_pair, sweep_spec_hint, validate_file_set
from ldmprobe.specs.assoc_types import (
    _KEY_ALIASES, _ROLE, ASSOC_KEYS, MAX_PERMUTATIONS, SET_KEYS, SET_NAMES, TEST_KEYS, AssocSet, AssocSpec,
)
from ldmprobe.specs.sweep import MAX_SEED, MAX_SEED_COUNT
from ldmprobe.specs.sweep_validate import end_sentence

_is_int = specfile.is_int
_type = specfile.type_name


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
    sweep_spec_hint(raw, where)
    _check_keys(raw, ASSOC_KEYS, None, where)
    name, text_fields = _validate_text_fields(raw, where)
    sets = _validate_sets(raw, where)
    ddof, permutations, seed = _validate_test(raw, where)
    steps, guidance, negative = _validate_generation(raw, where, any(s.kind == "prompts" for s in sets.values()))
    return AssocSpec(
        name=" ".join(name.split()), **sets, description=text_fields["description"],
        source=text_fields["source"], ddof=ddof, permutations=permutations, seed=seed,
        steps=steps, guidance=guidance, negative_prompt=negative, path=where.source,
    )


def _validate_text_fields(raw: Mapping[str, Any], where: _Where) -> tuple[str, dict[str, str]]:
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
    return name, text_fields


def _validate_sets(raw: Mapping[str, Any], where: _Where) -> dict[str, AssocSet]:
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
    return sets


def _validate_test(raw: Mapping[str, Any], where: _Where) -> tuple[Any, Any, Any]:
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
    return ddof, permutations, seed


def _validate_generation(raw: Mapping[str, Any], where: _Where, has_prompts: bool) -> tuple[Any, Any, Any]:
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
    return steps, guidance, negative


def _validate_set(set_name: str, value: Any, where: _Where) -> AssocSet:
    role = _ROLE[set_name]
    if not isinstance(value, dict):
        raise SpecError(
            f"{where(None, set_name)}: {set_name} must be a table, not {_type(value)}; write "
            f"[{set_name}] on its own line followed by label = \"...\" and words = [...] (or "
            f"prompts = [...] and seeds = 4)."
        )
    _check_keys(value, SET_KEYS, set_name, where)
    if "embeddings" in value or "images" in value:
        return validate_file_set(set_name, value, where)
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
        return _validate_word_set(set_name, label, value, where)
    return _validate_prompt_set(set_name, label, value, where)


def _validate_word_set(set_name: str, label: str, value: dict, where: _Where) -> AssocSet:
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


def _validate_prompt_set(set_name: str, label: str, value: dict, where: _Where) -> AssocSet:
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
    specfile.check_str_list(value, where(table, key), key, f'e.g. {key} = ["...", "..."]')
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
        specfile.first_time(seen, text.casefold(), i, lambda j: (
            f"{at}: {what} {text!r} is listed twice in {table}.{key} (also [{j}]"
            + (f" = {out[j]!r}; CLIP's tokenizer ignores case" if out[j] != text else "")
            + "); remove the duplicate (it would count the same embedding twice)."))
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
    if first.path:
        return check_file_pair(first, second, where)
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
    listing = "; ".join(parts)
    raise SpecError(
        f"{where.source}: unknown {noun} {scope}: {listing}{end_sentence(listing)} Allowed "
        f"{'here' if table else 'at the top level'}: {', '.join(allowed)}; rename or remove "
        f"the unknown {noun}."
    )
