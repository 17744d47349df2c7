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
