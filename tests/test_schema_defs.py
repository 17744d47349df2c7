"""The published schemas' record entries are derived from the result dataclasses."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Literal

import jsonschema
import pytest

from ldmprobe.records import Count, Probability, Record, Said, record_schema, schema, type_schema
from ldmprobe.results import schema_defs


def test_published_schemas_are_what_the_records_derive():
    assert schema_defs.main(["--check"]) == 0


def test_a_field_added_to_a_record_makes_the_check_fail(monkeypatch, capsys):
    from ldmprobe.analysis.trace_results import VaeGroup

    @dataclass(frozen=True)
    class Wider(VaeGroup):
        new_field: int = 0

    monkeypatch.setitem(schema_defs.DERIVED, "trace", {**schema_defs.DERIVED["trace"], "vae_group": Wider})
    assert schema_defs.main(["--check"]) == 1
    assert "trace" in capsys.readouterr().err


@pytest.mark.parametrize("hint, expected", [
    (int, {"type": "integer"}),
    (float, {"type": ["number", "null"]}),  # NaN and inf are written as null
    (str | None, {"type": ["string", "null"]}),
    (bool, {"type": "boolean"}),
    (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
    (tuple[float, float], {"type": "array", "items": {"type": ["number", "null"]}, "minItems": 2, "maxItems": 2}),
    (tuple[str, float], {"type": "array", "prefixItems": [{"type": "string"}, {"type": ["number", "null"]}],
                         "minItems": 2, "maxItems": 2}),
    (dict, {"type": "object"}),
    (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
    (Literal["a", "b"], {"enum": ["a", "b"]}),
    (Literal["a", "b"] | None, {"enum": ["a", "b", None]}),
    (Probability, {"type": ["number", "null"], "minimum": 0, "maximum": 1}),
    (Count | None, {"type": ["integer", "null"], "minimum": 0}),
    (Said, {"type": "string", "minLength": 1}),
])
def test_type_schemas(hint, expected):
    assert type_schema(hint, lambda cls: cls.__name__) == expected


@dataclass(frozen=True)
class _Inner(Record):
    value: float


@dataclass(frozen=True)
class _Planted(Record):
    json_schema = {"required": ("name", "p")}

    name: Said
    p: Probability
    count: Count = field(default=0, metadata=schema("how many"))
    kind: Literal["x", "y"] | None = None
    inner: _Inner | None = None
    items: tuple[_Inner, ...] = ()


def test_a_records_description_is_its_docstrings_first_paragraph():
    @dataclass(frozen=True)
    class Described(Record):
        """What it is, in ``words``
        over two lines.

        Details a reader of the code needs."""

        x: int

    assert record_schema(Described, str)["description"] == "What it is, in words over two lines."
    assert "description" not in record_schema(_Inner, str)  # a dataclass's own signature is not a description


def _validator():
    defs = {"inner": record_schema(_Inner, lambda cls: "inner"),
            "planted": record_schema(_Planted, lambda cls: {"_Inner": "inner"}[cls.__name__])}
    return jsonschema.Draft202012Validator({"$ref": "#/$defs/planted", "$defs": defs})


def test_a_records_document_validates_against_its_derived_schema_and_bad_ones_do_not():
    derived = record_schema(_Planted, lambda cls: "inner")
    assert derived["required"] == ["name", "p"] and derived["additionalProperties"] is False
    assert derived["properties"]["count"] == {"type": "integer", "minimum": 0, "description": "how many"}
    validator = _validator()
    good = _Planted("a", math.nan, 3, "x", _Inner(math.inf), (_Inner(1.0),)).to_dict()
    assert good["p"] is None and good["inner"] == {"value": None}
    assert not list(validator.iter_errors(good))
    assert not list(validator.iter_errors({"name": "a", "p": 0.5}))  # keys outside required may be missing
    for bad in ({**good, "p": 1.5}, {**good, "count": -1}, {**good, "kind": "z"}, {**good, "name": ""},
                {**good, "extra": 1}, {**good, "items": [{"value": "s"}]}, {"name": "a"}):
        assert list(validator.iter_errors(bad)), bad


def test_every_record_a_derived_schema_nests_has_an_entry():
    for name in schema_defs.DERIVED:
        defs = schema_defs.derived_defs(name)
        refs = {ref.split("/")[-1] for ref in _refs(defs)}
        published = json.loads((schema_defs.schema_path(name)).read_text())["$defs"]
        assert refs <= set(published), (name, refs - set(published))


def _refs(value):
    if isinstance(value, dict):
        if "$ref" in value:
            yield value["$ref"]
        for v in value.values():
            yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


def test_the_schema_layout_round_trips_and_keeps_lines_short():
    value = {"a": [1, 2, {"b": "x" * 30, "c": [None, True, 0.5]}], "long": ["word%d" % i for i in range(40)],
             "empty": {}, "nested": {"k%d" % i: {"type": "integer", "minimum": i} for i in range(12)}}
    text = schema_defs.formatted(value, width=60)
    assert json.loads(text) == value
    assert max(len(line) for line in text.splitlines()) <= 60
    assert schema_defs.formatted({"a": [1, 2]}) == '{"a": [1, 2]}'  # what fits stays on one line


def _spec_validator(name: str):
    document = json.loads(schema_defs.schema_path(name).read_text())
    return jsonschema.Draft202012Validator({"$ref": "#/$defs/spec", "$defs": document["$defs"]})


@pytest.mark.parametrize("name", ["sweep", "trace"])
def test_the_spec_entry_is_the_spec_dataclass_and_takes_what_it_writes(name):
    from ldmprobe.specs.sweep import SPEC_KEYS, load_spec, spec_from_dict

    validator = _spec_validator(name)
    # one level, several levels with attribute groups and reference rates: what Spec.to_dict writes
    plain = spec_from_dict({"templates": ["a {} house"], "baseline": "", "terms": ["fancy"], "seeds": 2}).to_dict()
    levels = load_spec("reference-world-guidance").to_dict()
    assert isinstance(levels["guidance"], list) and levels["attributes"] and levels["reference_rates"]
    for good in (plain, levels):
        assert not list(validator.iter_errors(good)), good
    # the keys a spec file may hold are the keys its document writes (one shape)
    assert set(SPEC_KEYS) == set(levels) - {"source"}
    for bad in ({**plain, "seeds": [-1]}, {**plain, "templates": []}, {**plain, "steps": [10]},
                {**plain, "guidance": -1}, {**plain, "width": 4}, {k: v for k, v in plain.items() if k != "terms"},
                {**levels, "reference_rates": {"": {"background": {"yellow": 1.5}}}}):
        assert list(validator.iter_errors(bad)), bad
    assert bool(list(validator.iter_errors({**plain, "unknown": 1}))) is (name == "trace")  # sweep's is open


def test_omitted_fields_and_dropped_keywords():
    @dataclass(frozen=True)
    class Kept:
        json_schema = {"omit": ("in_memory",), "properties": {"levels": {"type": None, "anyOf": [
            {"type": "integer"}, {"type": "array"}]}}}

        levels: int
        in_memory: int = 0

    derived = record_schema(Kept, str)
    assert list(derived["properties"]) == ["levels"] and derived["required"] == ["levels"]
    assert derived["properties"]["levels"] == {"anyOf": [{"type": "integer"}, {"type": "array"}]}
