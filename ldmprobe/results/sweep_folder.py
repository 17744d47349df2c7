"""Reading a sweep's run folder back: its results.json and items.jsonl.

The one reader behind ``report RUN`` (checks and renders the page), ``compare RUN_A RUN_B``
(pairs the images of two runs) and ``export RUN`` (copies the images in): each error names the
file and says what to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ldmprobe.errors import BadInputError


def shown_in_report(line: dict) -> bool:
    """Whether report.html shows this items.jsonl line: an image copied into the folder, or a failed image."""
    return bool(line.get("image") or (line.get("flags") or {}).get("failed"))


def read_document(folder: Path, label: str = "") -> dict:
    """results.json of the sweep run folder ``folder`` (``label``: how the command names it, e.g.
    "RUN_A"); a document without a ``kind`` is a sweep's (runs written before kinds)."""
    folder, who = Path(folder), f"{label} " if label else ""
    if not folder.is_dir():
        raise BadInputError(f"{who}{folder} is not a folder; give the run folder of a sweep (its --out).")
    path = folder / "results.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{who}{folder} is not a sweep run folder (no results.json); give the folder "
                            "`ldmprobe sweep SPEC --out DIR` wrote.") from None
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path} is not readable JSON ({exc}); rerun the sweep to rewrite it.") from None
    if not isinstance(document, dict) or document.get("kind", "sweep") != "sweep":
        kind = document.get("kind") if isinstance(document, dict) else f"a JSON {type(document).__name__}"
        raise BadInputError(f"{path} is not a sweep result (kind={kind!r}); give the run folder of a sweep.")
    return document


def item_lines(folder: Path, *, required: bool = True) -> Iterator[tuple[int, Any]]:
    """(line number, parsed line) of items.jsonl, read line by line (memory flat in the number of
    images); blank lines skipped. A missing file is an error when ``required``, else no lines."""
    path = Path(folder) / "items.jsonl"
    if not path.is_file():
        if required:
            raise BadInputError(f"{path} does not exist; {folder} is not a complete sweep run folder "
                                "(rerun the sweep to write it).")
        return
    with open(path, encoding="utf-8") as fh:
        for number, text in enumerate(fh, 1):
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except ValueError:
                raise BadInputError(f"{path} line {number} is not JSON; rerun the sweep to rewrite it.") from None
