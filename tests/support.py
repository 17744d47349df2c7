"""Plain helpers and constants shared by test modules (fixtures live in ``conftest.py``).

Test modules import from here, never from one another.
"""

from __future__ import annotations

import re

# One template, one term, two seeds: the smallest sweep with a pair per seed.
MINI_SPEC = """\
name = "mini"
templates = ["a photo of a {} car"]
baseline = ""
terms = ["red"]
probes = ["fire", "ocean"]
seeds = 2
"""

# The session's ``tiny_run`` (conftest): three terms over two templates, so reports have plots and pairs.
MINI_REPORT_SPEC = """\
name = "mini-report"
templates = ["a photo of a {} car", "a {} house at night"]
baseline = ""
terms = ["red", "blue", "old"]
probes = ["fire", "ocean", "tree"]
seeds = 2
"""


def assert_whole(text: str, cells, width: int = 80) -> None:
    """Each cell's words appear whole (as whitespace-separated tokens, or inside a longer token such
    as '[0.12,' for a CI), no ellipsis, no line wider than ``width``, no '-0' number."""
    assert "…" not in text, text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width, text
    tokens = text.split()
    for cell in cells:
        for word in str(cell).split():
            assert word in tokens or any(word in t for t in tokens), (word, cell, text)
    assert not re.search(r"(?<![\w.])-0(\.0+)?(?![\d.e])", text), text


def render_text(renderable, width: int = 80) -> str:
    """What rich prints for ``renderable`` on a ``width``-column terminal, as plain text."""
    import io

    from rich.console import Console

    console = Console(width=width, record=True, no_color=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def undeclared_keys(document, schema: dict) -> list[str]:
    """Paths of the keys in ``document`` that its JSON Schema does not describe (objects whose
    schema lists ``properties`` and does not forbid others): what a reader of the published
    schema would not know is there. ``$ref`` within the schema is followed; for ``anyOf`` /
    ``oneOf`` the first branch of the value's JSON type is used."""
    found: list[str] = []

    def resolve(node):
        while isinstance(node, dict) and "$ref" in node:
            target = schema
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def walk(value, node, where):
        node = resolve(node)
        if not isinstance(node, dict):
            return
        branches = [resolve(b) for b in node.get("anyOf", node.get("oneOf", ()))]
        if branches and "properties" not in node:  # a node's own properties win; its branches only constrain
            for b in branches:
                if (isinstance(value, dict) and (b.get("type") == "object" or "properties" in b)) or \
                        (isinstance(value, list) and b.get("type") == "array"):
                    walk(value, b, where)
                    break
            return
        if isinstance(value, dict) and "properties" in node:
            for k, v in value.items():
                if k in node["properties"]:
                    walk(v, node["properties"][k], f"{where}/{k}")
                elif node.get("additionalProperties") is not False and "patternProperties" not in node:
                    found.append(f"{where}/{k}")
        elif isinstance(value, list) and "items" in node:
            for v in value:
                walk(v, node["items"], f"{where}/[]")

    walk(document, schema, "")
    return sorted(set(found))
