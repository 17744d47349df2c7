"""A sweep on the user's own images (``--images MANIFEST``): the manifest read and checked
against the spec's plan (every planned cell's image must exist and open), before any model
loads and without torch. Every problem is a :class:`BadInputError` (exit 2) naming the file and
its data row (counting from 1)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from ldmprobe.specs.levels import at_level, row_levels_of
from ldmprobe.specs.sweep import Spec
from ldmprobe.specs.sweep_sources import Cell, SweepSource, _fail, match_cells

MANIFEST_COLUMNS = ("template", "term", "seed", "path")


@dataclass(frozen=True)
class ImageManifest:
    """The planned cells' image files of a manifest: (path as listed, resolved path, sha256)."""

    source: SweepSource
    folder: str
    files: dict[Cell, tuple[str, str, str]] = field(default_factory=dict)


def _manifest_rows(path: Path, data: bytes) -> tuple[str, list[dict]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(path, f"is not UTF-8 text (byte {exc.start}); save the manifest as UTF-8.") from exc
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise _fail(path, f"line {number} is not JSON ({exc}); one object per line.") from exc
                if not isinstance(row, dict):
                    raise _fail(path, f"line {number} is not a JSON object with {', '.join(MANIFEST_COLUMNS)}.")
                rows.append(row)
        return "jsonl", rows
    if path.suffix.lower() != ".csv":
        raise _fail(path, "a manifest is a .csv or a .jsonl file with columns template, term, seed, path.")
    return "csv", list(csv.DictReader(io.StringIO(text)))


def _manifest_labels(path: Path, rows: list[dict]) -> list[tuple[str, str, int]]:
    labels = []
    for number, row in enumerate(rows, start=1):
        absent = [c for c in MANIFEST_COLUMNS if row.get(c) is None]
        if absent:
            raise _fail(path, f"row {number} (data rows counting from 1) has no {', '.join(absent)}; every row "
                              f"needs the columns "
                              f"{', '.join(MANIFEST_COLUMNS)} (term empty for the baseline).")
        try:
            seed = int(str(row["seed"]).strip())
        except ValueError:
            raise _fail(path, f"row {number} (data rows counting from 1): seed {row['seed']!r} is not an "
                              "integer.") from None
        labels.append((str(row["template"]), str(row["term"]), seed))
    return labels


def _check_image(path: Path, listed: str, number: int) -> str:
    """sha256 of an image file that exists and opens (else an error naming the file)."""
    from PIL import UnidentifiedImageError

    where = f"manifest row {number}, data rows counting from 1"
    if not path.is_file():
        raise _fail(path, f"not found ({where}, path {listed!r}, read against the manifest's folder).")
    from ldmprobe.specs.files import check_image

    try:
        data = path.read_bytes()
        check_image(data)
    except (UnidentifiedImageError, SyntaxError) as exc:
        raise _fail(path, f"is not a readable image ({where}: PIL cannot identify its format); replace it or fix "
                          "its path.") from exc
    except (OSError, ValueError) as exc:
        raise _fail(path, f"is not a readable image ({where}: {exc}); replace it or fix its path.") from exc
    return hashlib.sha256(data).hexdigest()


def read_image_manifest(path: str | Path, spec: Spec, level=None) -> tuple[ImageManifest, int]:
    """Read and check a manifest against ``spec`` (every planned cell's image must open; its rows
    at ``level`` when it has guidance / steps columns); returns it and its extra-row count."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such file (--images); give a .csv or .jsonl manifest with columns template, term, "
                          "seed, path.")
    data = path.read_bytes()
    fmt, rows = _manifest_rows(path, data)
    if not rows:
        raise _fail(path, "has no rows; list one image per (template, term, seed).")
    labels = at_level(_manifest_labels(path, rows), row_levels_of(path, rows, len(rows)), level)
    index, extra = match_cells(path, spec, labels, "rows", first=1, level=level)
    folder = path.resolve().parent
    files = {}
    for cell, i in index.items():
        listed = str(rows[i]["path"]).strip()
        target = (folder / listed).resolve()
        files[cell] = (listed, str(target), _check_image(target, listed, i + 1))
    source = SweepSource("images", str(path.resolve()), fmt, hashlib.sha256(data).hexdigest(), len(rows), extra)
    return ImageManifest(source=source, folder=str(folder), files=files), extra
