"""A user's own association sets: embedding files (iEAT CSV, ``.npy``) and image folders.

Read here, before any model loads and without torch: a CSV in the iEAT layout (a leading
unnamed index column, one numeric column per dimension, any other column kept as a label, a
``prompt`` column grouping rows into one permutation unit), a ``.npy`` of shape (n, d), or a
folder of images (checked to open; the measurer embeds them later). Every problem is a
:class:`BadInputError` naming the file and the fix.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldmprobe.errors import BadInputError

EMBEDDING_SUFFIXES = (".csv", ".npy")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
GROUP_COLUMN = "prompt"
_PREFERRED_LABEL = "img"


@dataclass(frozen=True)
class SetSource:
    """Where one set's rows came from, with their labels and (optional) prompt groups.

    ``rows`` is the (n, d) float64 array for an embedding file and None for an image folder
    (the measurer embeds ``files`` later); ``sha256`` is of the file's bytes, or for a folder
    of the canonical JSON list of its images' names and digests.
    """

    set: str
    kind: str  # "embeddings" or "images"
    path: str
    format: str  # "csv", "npy" or "folder"
    sha256: str
    items: tuple[str, ...]
    groups: tuple[str, ...] | None = None
    rows: Any = None
    files: tuple[tuple[str, str], ...] = ()  # (name, sha256) of each image of a folder
    label_columns: tuple[str, ...] = ()
    dim: int | None = None

    @property
    def n(self) -> int:
        return len(self.items)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind, "path": self.path, "format": self.format, "sha256": self.sha256,
            "n": self.n, "dim": self.dim, "label_columns": list(self.label_columns),
            "group_column": GROUP_COLUMN if self.groups is not None else None,
            "n_groups": len(dict.fromkeys(self.groups)) if self.groups is not None else None,
            "items": list(self.items),
        }
        if self.format == "folder":
            out["files"] = [{"name": name, "sha256": digest} for name, digest in self.files]
        return out


def _fail(path: Path, what: str) -> BadInputError:
    return BadInputError(f"{path}: {what}")


def _read_bytes(path: Path, set_name: str) -> bytes:
    if not path.exists():
        raise _fail(path, f"no such file (set {set_name}). Give the path of an existing .csv or .npy "
                          "file of embeddings, or a folder of images.")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc}); check its permissions.") from exc


def read_source(set_name: str, kind: str, path: str | Path) -> SetSource:
    """Read one set's file or folder; ``kind`` is ``"embeddings"`` or ``"images"``."""
    path = Path(path)
    if kind == "images":
        return read_image_folder(set_name, path)
    data = _read_bytes(path, set_name)
    digest = hashlib.sha256(data).hexdigest()
    suffix = path.suffix.lower()
    if suffix == ".npy":
        rows, items, groups, labels = _parse_npy(path, data), None, None, ()
        items = tuple(f"row {i}" for i in range(len(rows)))
    elif suffix == ".csv":
        rows, items, groups, labels = _parse_csv(path, data)
    else:
        raise _fail(path, f"set {set_name}: embeddings must be a .csv (iEAT layout) or a .npy file, not "
                          f"{suffix or 'a file without a suffix'}; a folder of images is read as images.")
    _check_rows(path, rows, items)
    return SetSource(set_name, "embeddings", str(path), suffix[1:], digest, items, groups, rows,
                     label_columns=labels, dim=int(rows.shape[1]))


def _parse_npy(path: Path, data: bytes):
    import numpy as np

    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _fail(path, f"is not a readable .npy array ({exc}); write it with numpy.save(path, "
                          "array) where array is (n items, d dimensions).") from exc
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        shape = getattr(array, "shape", None)
        raise _fail(path, f"has shape {shape}; an embedding file must be 2-d, (n items, d dimensions), "
                          "one row per item (use numpy.atleast_2d for a single item).")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise _fail(path, f"holds {array.dtype} values; embeddings must be real numbers.")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise _fail(path, f"is empty (shape {array.shape}); a set needs at least one item of at least "
                          "one dimension.")
    return array.astype(np.float64)


def _csv_table(path: Path, data: bytes) -> tuple[list[str], list[list[str]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(path, f"is not UTF-8 text (byte {exc.start}); save the CSV as UTF-8.") from exc
    table = [row for row in csv.reader(io.StringIO(text)) if row]
    if not table:
        raise _fail(path, "is empty; a CSV of embeddings has a header row and one row per item.")
    header, body = table[0], table[1:]
    if all(_is_number(cell) for cell in header):  # no header row: every column is a dimension
        header, body = [str(i) for i in range(len(header))], table
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise _fail(path, f"row {number} has {len(row)} fields but the header has {len(header)}; "
                              "every row needs one value per column.")
    if not body:
        raise _fail(path, "has a header but no rows; a set needs at least one item.")
    return header, body


def _parse_csv(path: Path, data: bytes):
    """(rows, item labels, prompt groups or None, label column names) of an iEAT-layout CSV."""
    import numpy as np

    header, body = _csv_table(path, data)
    columns = list(zip(*body))
    first = 1 if header[0].strip() in ("", "Unnamed: 0") else 0  # the pandas index column
    numeric, labels, groups = [], {}, None
    # iEAT names its dimensions 0..d-1: then a column with another name is a label even if numeric
    named_dims = any(_is_number(h) for h in header[first:])
    for index in range(first, len(header)):
        name, values = header[index].strip(), columns[index]
        if name == GROUP_COLUMN:
            groups = tuple(v.strip() for v in values)
            continue
        parsed = _floats(values) if _is_number(name) or not named_dims else None
        if parsed is not None:
            numeric.append(parsed)
        elif _is_number(name):
            bad = next(i for i, v in enumerate(values) if not _is_number(v))
            raise _fail(path, f"column {name!r} row {bad + 2} holds {values[bad]!r}, not a number; fix "
                              "the value (a dimension column must be numeric in every row).")
        else:
            labels[name or f"column {index}"] = tuple(v.strip() for v in values)
    if not numeric:
        raise _fail(path, f"has no numeric columns (columns: {', '.join(map(repr, header[:8]))}); an "
                          "embedding CSV has one numeric column per dimension (the iEAT layout).")
    rows = np.array(numeric, dtype=np.float64).T
    label = _PREFERRED_LABEL if _PREFERRED_LABEL in labels else next(iter(labels), None)
    items = labels[label] if label else tuple(f"row {i}" for i in range(len(rows)))
    return rows, items, groups, tuple(labels)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _floats(values) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def _check_rows(path: Path, rows, items) -> None:
    import numpy as np

    bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    if len(bad):
        named = ", ".join(f"{i + 1} ({items[i]})" for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise _fail(path, f"{len(bad)} of {len(rows)} rows have NaN or infinite values (rows, counting "
                          f"items from 1: {named}); remove or recompute them.")


def read_image_folder(set_name: str, path: Path) -> SetSource:
    """The images of a folder (not its sub-folders), each checked to open, with their digests."""
    from PIL import UnidentifiedImageError

    from ldmprobe.specs.files import check_image

    if not path.is_dir():
        what = "no such folder" if not path.exists() else "not a folder"
        raise _fail(path, f"{what} (set {set_name} images); give a folder of image files "
                          f"({', '.join(IMAGE_SUFFIXES)}).")
    names = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise _fail(path, f"has no image files ({', '.join(IMAGE_SUFFIXES)}) for set {set_name}; "
                          "sub-folders are not read.")
    files = []
    for name in names:
        data = _read_bytes(path / name, set_name)
        try:
            check_image(data)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise _fail(path / name, f"is not a readable image ({exc}); replace or remove it.") from exc
        files.append((name, hashlib.sha256(data).hexdigest()))
    digest = hashlib.sha256(json.dumps(files, separators=(",", ":")).encode()).hexdigest()
    return SetSource(set_name, "images", str(path), "folder", digest, tuple(names), files=tuple(files))


def check_dimensions(sources: Mapping[str, SetSource]) -> None:
    """Every embedding file has the same number of dimensions; else name the files that differ."""
    dims = {name: s for name, s in sources.items() if s.dim is not None}
    if len({s.dim for s in dims.values()}) > 1:
        listed = "; ".join(f"{name}: {s.path} has {s.dim}" for name, s in dims.items())
        raise BadInputError(
            f"the embedding files have different dimensions ({listed}). All sets of one test must come "
            "from the same embedding model; re-export them with one model."
        )
