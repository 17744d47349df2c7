"""Attribute groups, reference rates and a calibration set in a sweep spec.

::

    [attributes.background]          # a group: mutually exclusive options, each a probe text
    yellow = "a yellow background"
    grey = "a grey background"

    [reference_rates."".background]  # optional: a data set's rates for the baseline ("" here)
    yellow = 0.10
    grey = 0.225
    [reference_rates.fancy.background]
    yellow = 0.80

    reference_source = "training data of the reference world (ldmprobe/reference/world.py)"
    calibration = "calibration/reference-world"   # optional, relative to the spec file

Every image gets the measurer's zero-shot probabilities over each group's options and a label
(the most probable option); the rates of those labels are what ``analysis.rates`` reports.
Validation is pure (no model): a group needs two options or more, distinct option texts and
names made of letters, digits, ``_`` and ``-``; a reference rate must name a term of the spec,
a group and its options, lie in [0, 1] and sum to at most 1 within a group.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldmprobe.errors import SpecError
from ldmprobe.specs import files as specfile

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")
MAX_OPTIONS = 32
MAX_GROUPS = 16
ATTRIBUTE_KEYS = ("attributes", "reference_rates", "reference_source", "calibration")


@dataclass(frozen=True)
class AttributeGroup:
    """One group of mutually exclusive options: ``options[i]`` is measured by ``texts[i]``."""

    name: str
    options: tuple[str, ...]
    texts: tuple[str, ...]

    def to_dict(self) -> dict[str, str]:
        return dict(zip(self.options, self.texts))


@dataclass(frozen=True)
class ReferenceRates:
    """A data set's rates of one group's options for one term ("" may be the baseline)."""

    term: str
    group: str
    rates: tuple[tuple[str, float], ...]

    def rate(self, option: str) -> float | None:
        return dict(self.rates).get(option)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _name(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise SpecError(
            f"{where}: {what} name {value!r} is not allowed; use a letter followed by letters, digits, "
            f"'_' or '-' (at most 40 characters), e.g. yellow or perceived-gender."
        )
    return value


def validate_attributes(value: Any, source: str) -> tuple[AttributeGroup, ...]:
    """``[attributes.GROUP]`` tables (or already validated groups) as AttributeGroups."""
    if value is None or value == () or value == {}:
        return ()
    if isinstance(value, (tuple, list)) and all(isinstance(g, AttributeGroup) for g in value):
        value = {g.name: g.to_dict() for g in value}
    if not isinstance(value, Mapping):
        raise SpecError(
            f"{source}: attributes must be tables of options, e.g. [attributes.background] followed by "
            f'yellow = "a yellow background" and grey = "a grey background"; got {type(value).__name__}.'
        )
    if len(value) > MAX_GROUPS:
        raise SpecError(f"{source}: {len(value)} attribute groups is more than the {MAX_GROUPS} allowed.")
    groups = []
    for group, options in value.items():
        where = f"{source}: [attributes.{group}]"
        _name(group, where, "group")
        if not isinstance(options, Mapping):
            raise SpecError(
                f"{where} must be a table of option = \"probe text\" lines, e.g. yellow = \"a yellow "
                f"background\"; got {type(options).__name__} {options!r}."
            )
        if len(options) < 2:
            raise SpecError(
                f"{where} has {len(options)} option{'s' if len(options) != 1 else ''}; a group needs two or "
                f"more mutually exclusive options (a zero-shot label over one option is always that "
                f"option). Add the alternatives, e.g. yellow and grey."
            )
        if len(options) > MAX_OPTIONS:
            raise SpecError(f"{where} has {len(options)} options, more than the {MAX_OPTIONS} allowed.")
        names, texts, seen = [], [], {}
        for option, text in options.items():
            _name(option, where, "option")
            if not isinstance(text, str) or not _squash(text):
                raise SpecError(
                    f"{where}: option {option} must be a non-empty probe text, e.g. {option} = "
                    f"\"a {option} background\"; got {text!r}."
                )
            text = _squash(text)
            specfile.first_time(seen, text.casefold(), option, lambda other: (
                f"{where}: options {other} and {option} have the same text {text!r}; the measurer "
                f"could not tell them apart. Give each option its own text."))
            names.append(option)
            texts.append(text)
        groups.append(AttributeGroup(group, tuple(names), tuple(texts)))
    return tuple(groups)


def validate_reference_rates(value: Any, groups: tuple[AttributeGroup, ...], terms: tuple[str, ...],
                             source: str) -> tuple[ReferenceRates, ...]:
    """``[reference_rates.TERM.GROUP]`` tables: option = rate in [0, 1], summing to <= 1."""
    if value is None or value == () or value == {}:
        return ()
    if isinstance(value, (tuple, list)) and all(isinstance(r, ReferenceRates) for r in value):
        out: dict = {}
        for r in value:
            out.setdefault(r.term, {})[r.group] = dict(r.rates)
        value = out
    if not isinstance(value, Mapping):
        raise SpecError(f"{source}: reference_rates must be tables such as [reference_rates.fancy.background] "
                        f"with option = rate lines; got {type(value).__name__}.")
    by_name = {g.name: g for g in groups}
    known = {_squash(t).casefold(): _squash(t) for t in terms}
    rows = []
    for term, tables in value.items():
        label = f'[reference_rates."{term}"]'
        if not isinstance(term, str) or _squash(term).casefold() not in known:
            listing = ", ".join(repr(t) for t in known.values())
            raise SpecError(f"{source}: {label} names no term of the spec; use one of {listing} (\"\" is the "
                            f"baseline when the baseline is empty).")
        if not isinstance(tables, Mapping):
            raise SpecError(f"{source}: {label} must hold group tables, e.g. [reference_rates.\"{term}\".background].")
        for group, rates in tables.items():
            where = f'{source}: [reference_rates."{term}".{group}]'
            if group not in by_name:
                raise SpecError(f"{where}: there is no attribute group {group!r}; the groups are "
                                f"{', '.join(by_name) or '(none: add [attributes.GROUP] tables)'}.")
            if not isinstance(rates, Mapping) or not rates:
                raise SpecError(f"{where} must be a table of option = rate lines, e.g. yellow = 0.8.")
            pairs = []
            for option, rate in rates.items():
                if option not in by_name[group].options:
                    raise SpecError(f"{where}: {option!r} is not an option of group {group}; its options are "
                                    f"{', '.join(by_name[group].options)}.")
                if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) \
                        or not 0 <= rate <= 1:
                    raise SpecError(f"{where}: the rate of {option} must be a number from 0 to 1 (a share of "
                                    f"images), not {rate!r}.")
                pairs.append((option, float(rate)))
            total = sum(r for _, r in pairs)
            if total > 1.005:  # rounded figures may sum a little over 1
                raise SpecError(f"{where}: the rates sum to {total:.4g}, more than 1; the options of a group "
                                f"are mutually exclusive, so their shares cannot exceed 1.")
            rows.append(ReferenceRates(known[_squash(term).casefold()], group, tuple(pairs)))
    return tuple(rows)


def validate_calibration(value: Any, source: str) -> str | None:
    """``calibration = "PATH"``: a folder or manifest, relative to the spec file; must exist."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{source}: calibration must be the path of a folder (one folder per group and "
                        f"option) or a manifest CSV, as a string; got {value!r}.")
    path = Path(value).expanduser()
    if not path.is_absolute() and not source.startswith("<"):
        path = Path(source).parent / path
    if not path.exists():
        raise SpecError(f"{source}: the calibration set {str(path)!r} does not exist; give a folder laid out "
                        f"as GROUP/OPTION/*.png or a manifest CSV with path,group,option columns.")
    return str(path.resolve())


def validate_attribute_fields(raw: Mapping[str, Any], terms: tuple[str, ...], source: str) -> dict[str, Any]:
    """The four attribute keys of a spec, validated (all optional)."""
    groups = validate_attributes(raw.get("attributes"), source)
    rates = validate_reference_rates(raw.get("reference_rates"), groups, terms, source)
    ref_source = raw.get("reference_source")
    if ref_source is not None and (not isinstance(ref_source, str) or not ref_source.strip()):
        raise SpecError(f"{source}: reference_source must be a non-empty string naming where the reference "
                        f"rates come from; got {ref_source!r}.")
    if rates and ref_source is None:
        raise SpecError(f"{source}: reference_rates are given without reference_source; add e.g. "
                        f'reference_source = "LAION-5B sample, Smith et al. 2024, table 3" so a reader can '
                        f"check the figures.")
    calibration = validate_calibration(raw.get("calibration"), source)
    if (rates or calibration) and not groups:
        raise SpecError(f"{source}: reference_rates and calibration need [attributes.GROUP] tables to refer to.")
    if calibration:
        from ldmprobe.specs.calibration import calibration_files
        from ldmprobe.errors import BadInputError

        try:
            calibration_files(calibration, tuple((g.name, g.options) for g in groups))
        except BadInputError as exc:
            raise SpecError(f"{source}: {exc}") from None
    return {"attributes": groups, "reference_rates": rates,
            "reference_source": ref_source.strip() if ref_source else None, "calibration": calibration}


def attribute_dict(attributes, reference_rates, reference_source, calibration) -> dict[str, Any]:
    """The spec's attribute keys in their TOML form, only those that are set (for Spec.to_dict)."""
    out: dict[str, Any] = {}
    if attributes:
        out["attributes"] = {g.name: g.to_dict() for g in attributes}
    if reference_rates:
        tables: dict = {}
        for r in reference_rates:
            tables.setdefault(r.term, {})[r.group] = dict(r.rates)
        out["reference_rates"] = tables
    if reference_source:
        out["reference_source"] = reference_source
    if calibration:
        out["calibration"] = calibration
    return out
