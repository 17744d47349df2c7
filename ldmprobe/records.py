"""Typed results and the one place JSON is made from them.

A :class:`Record` is a frozen dataclass that also answers ``record["field"]`` (as diffusers'
``BaseOutput`` does), so typed results replace the dicts readers used to index. ``to_dict``
is the only conversion to JSON-safe values; ``from_dict`` reads it back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
from typing import Annotated, Any, Literal, TypeVar

R = TypeVar("R", bound="Record")


class _NoNumpy:
    """Stands in for numpy's scalar and array types until numpy is imported (before then no value
    can be one), so specs and records load without numpy's ~0.13 s import."""

    bool_ = integer = floating = ndarray = ()


def jsonable(value: Any) -> Any:
    """Plain Python values for JSON: records and numpy values converted, NaN/inf as None."""
    if isinstance(value, Record) or callable(getattr(value, "to_dict", None)):
        return jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    np = sys.modules.get("numpy") or _NoNumpy
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None  # NaN/inf are not JSON
    if isinstance(value, (list, tuple, np.ndarray, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


def nan_to_none(x) -> float | None:
    """``x`` as a float, or None when it is None, NaN or infinite (as :func:`jsonable` writes it)."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


def to_json(value: Any, *, indent: int | None = 2) -> str:
    """The one JSON writer: records, numpy values and paths converted, NaN/inf as null."""
    return json.dumps(jsonable(value), indent=indent, ensure_ascii=False, allow_nan=False)


class Record:
    """Base of typed results: ``to_dict`` / ``from_dict`` and read access by key."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict, fields in the constructor's order (a record's own fields before the
        keyword-only ones a shared base adds); non-finite floats become None."""
        return {f.name: jsonable(getattr(self, f.name)) for f in _ordered_fields(self)}

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        """The record ``to_dict`` made (nested records and tuples of records rebuilt)."""
        hints = typing.get_type_hints(cls)
        kwargs = {f.name: _from_json(hints[f.name], data.get(f.name))
                  for f in dataclasses.fields(cls) if f.name in data}
        return cls(**kwargs)

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) or key not in {f.name for f in dataclasses.fields(self)}:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self) -> list[str]:
        return [f.name for f in _ordered_fields(self)]


def _ordered_fields(record) -> list[dataclasses.Field]:
    return sorted(dataclasses.fields(record), key=lambda f: f.kw_only is True)  # stable: declaration order within each


def _from_json(hint: Any, value: Any) -> Any:
    """Rebuild a value of type ``hint`` from its JSON form."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _from_json(options[0], value) if len(options) == 1 else value
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_dict(value)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json(args[0], v) for v in value)
        return tuple(_from_json(a, v) for a, v in zip(args, value))
    if hint is float and isinstance(value, int):
        return float(value)
    return value


# --- JSON Schema from a record's fields (the published schemas' $defs are derived here) ---------

#: Field metadata key: ``field(metadata=schema(...))`` merges JSON Schema keywords
#: (``description``, ``minimum``, ``enum``, ``minLength`` ...) into what the field's type derives.
SCHEMA_KEY = "json_schema"


def schema(description: str | None = None, **keywords: Any) -> dict[str, Any]:
    """Field metadata adding JSON Schema keywords to what a field's type derives."""
    return {SCHEMA_KEY: ({"description": description} if description else {}) | keywords}


class Keywords(tuple):
    """JSON Schema keywords carried by an ``Annotated`` type (hashable, as typing needs)."""

    def __new__(cls, **keywords: Any):
        return super().__new__(cls, tuple(keywords.items()))


#: A probability (p-values): a number in [0, 1], null where not computed.
Probability = Annotated[float | None, Keywords(minimum=0, maximum=1)]
#: A count of things: an integer >= 0.
Count = Annotated[int, Keywords(minimum=0)]
#: A sentence a reader needs (what a p-value generalises to): a string, never empty.
Said = Annotated[str, Keywords(minLength=1)]


def type_schema(hint: Any, ref) -> dict[str, Any]:
    """The JSON Schema of a value of type ``hint`` as :meth:`Record.to_dict` writes it: a float
    may be null (NaN and inf are written as null); ``ref(cls)`` names a nested record's $def."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        out = type_schema(args[0], ref)
        for extra in hint.__metadata__:
            out = out | (dict(extra) if isinstance(extra, Keywords) else {})
        return out
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        inner = type_schema(options[0], ref) if len(options) == 1 else {}
        if "$ref" in inner:
            return {"oneOf": [inner, {"type": "null"}]}
        if "enum" in inner:
            return {**inner, "enum": [*inner["enum"], None]}
        kind = inner.get("type")
        return {**inner, "type": [kind, "null"]} if isinstance(kind, str) else inner
    if origin is Literal:
        return {"enum": list(args)}
    if isinstance(hint, type) and issubclass(hint, Record):
        return {"$ref": f"#/$defs/{ref(hint)}"}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": type_schema(args[0], ref)}
        if args and all(a == args[0] for a in args):
            return {"type": "array", "items": type_schema(args[0], ref), "minItems": len(args), "maxItems": len(args)}
        return {"type": "array", "prefixItems": [type_schema(a, ref) for a in args],
                "minItems": len(args), "maxItems": len(args)}
    if origin is dict or hint is dict:
        return {"type": "object", **({"additionalProperties": type_schema(args[1], ref)} if args else {})}
    simple = {bool: "boolean", int: "integer", str: "string", float: ["number", "null"]}
    return {"type": simple[hint]} if hint in simple else {}


def record_schema(cls: type, ref, *, closed: bool = True) -> dict[str, Any]:
    """The JSON Schema of ``cls(...).to_dict()``: one property per field in the document's order,
    typed from the field's annotation and refined by its :func:`schema` metadata.

    The record's description is its docstring's first paragraph unless ``json_schema`` gives
    one. Every field is written, so every field is required unless the class's ``json_schema``
    attribute keeps a ``required`` list as first published (fields added later stay optional,
    so older documents still validate); it may also set ``description``,
    ``additionalProperties`` (else ``not closed``), per-property keywords (``properties``) where
    a shared base's field means something particular in this record (a keyword given as None is
    dropped), and ``omit``: fields the document does not write (kept in memory only).
    """
    hints = typing.get_type_hints(cls, include_extras=True)
    settings = getattr(cls, "json_schema", {})
    fields = [f for f in _ordered_fields(cls) if f.name not in settings.get("omit", ())]
    own = settings.get("properties", {})
    properties = {f.name: _without_nulls(type_schema(hints[f.name], ref) | f.metadata.get(SCHEMA_KEY, {})
                                         | own.get(f.name, {})) for f in fields}
    out: dict[str, Any] = {"type": "object"}
    description = settings.get("description") or _docstring_summary(cls)
    if description:
        out["description"] = description
    out["required"] = list(settings.get("required", [f.name for f in fields]))
    out["additionalProperties"] = settings.get("additionalProperties", not closed)
    out["properties"] = properties
    return out


def _without_nulls(keywords: dict[str, Any]) -> dict[str, Any]:
    """A keyword set to None by a field's or class's words is removed (e.g. the annotation's
    ``type`` where an ``anyOf`` says what the document writes)."""
    return {key: value for key, value in keywords.items() if value is not None}


def _docstring_summary(cls: type) -> str | None:
    """The first paragraph of ``cls``'s own docstring as plain text (None: it has none; a
    dataclass without one gets its signature as ``__doc__``, which is not a description)."""
    doc = cls.__dict__.get("__doc__")
    if not doc or doc.startswith(f"{cls.__name__}("):
        return None
    return " ".join(doc.strip().split("\n\n")[0].split()).replace("``", "")
