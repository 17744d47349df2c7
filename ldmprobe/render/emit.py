"""One way to print a result in the chosen ``--format``: table, json or jsonl.

Each kind of result names its JSON Lines records and its table as ``"module:function"``
(imported only when that format is asked for, so printing JSON loads no rich tables). The
functions receive the result as given to :func:`emit`; :func:`as_document` gives them a dict.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: kind -> (jsonl records, table); None records: the document is one record.
_VIEWS: dict[str, tuple[str | None, str]] = {
    "sweep": ("ldmprobe.render.sweep:sweep_records", "ldmprobe.render.sweep:render_sweep"),
    "sweep-plan": ("ldmprobe.render.sweep:plan_records", "ldmprobe.render.sweep:render_plan"),
    "models": ("ldmprobe.render.models:inventory_records", "ldmprobe.render.models:render_inventory"),
    "check": (None, "ldmprobe.render.models:render_check"),
    "neighbours": ("ldmprobe.render.neighbours:neighbour_records", "ldmprobe.render.neighbours:render_neighbours"),
    "assoc": ("ldmprobe.render.assoc:assoc_records", "ldmprobe.render.assoc:render_assoc_table"),
    "trace": ("ldmprobe.render.trace:trace_records", "ldmprobe.render.trace:render_trace"),
    "cache-info": ("ldmprobe.render.cache:info_records", "ldmprobe.render.cache:render_info"),
    "cache-verify": ("ldmprobe.render.cache:verify_records", "ldmprobe.render.cache:render_verify"),
    "cache-prune": ("ldmprobe.render.cache:prune_records", "ldmprobe.render.cache:render_prune"),
    "compare": ("ldmprobe.render.compare:compare_records", "ldmprobe.render.compare:render_compare"),
}


def _function(path: str):
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)


def kind_of(result: Any) -> str:
    return result["kind"] if isinstance(result, dict) else result.kind


def as_document(result: Any) -> dict:
    """The JSON document of a result (a dict is returned as it is)."""
    return result if isinstance(result, dict) else result.to_dict()


def emit(result: Any, fmt: str | None, terminal) -> None:
    """Print ``result`` (a typed result or a document dict with a ``kind``) to stdout."""
    fmt = fmt or terminal.default_format()
    if fmt == "json":
        terminal.write_json(result)
        return
    records_path, table_path = _VIEWS[kind_of(result)]
    if fmt == "jsonl":
        terminal.write_jsonl(_function(records_path)(result) if records_path else [result])
    else:
        if kind_of(result) != "assoc":  # assoc's table makes its own text printable (it reads a typed result)
            from ldmprobe.render.layout import printable_tree

            result = printable_tree(as_document(result))  # no terminal escape sequence from a term or a name
        terminal.write_table(_function(table_path)(result))
