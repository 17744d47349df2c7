"""A sweep on the user's own data: an embeddings file (``--embeddings FILE.npz``) read and
checked against the spec's plan, and what it shares with a manifest of images (``--images
MANIFEST``, read in :mod:`ldmprobe.specs.own_manifest`): the source record and cell matching.

Read here, before any model loads and without torch. Every planned (template, term, seed)
cell must be in the file (the missing ones are listed); rows the spec does not plan are
ignored and counted; a wrong dimension or non-finite rows name the array, an unreadable
image names the file. Every problem is a :class:`BadInputError` (exit 2).
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ldmprobe.errors import BadInputError
from ldmprobe.specs.levels import at_level, row_levels_of
from ldmprobe.specs.sweep import Spec, expand

Cell = tuple[int, str, int]  # (template index, term, seed), as analysis.sweep labels images

#: The arrays of an embeddings file: required, then optional pairs (names, vectors).
REQUIRED_ARRAYS = ("image", "template", "term", "seed")
OPTIONAL_PAIRS = (("probe", "probe_embedding"), ("prompt", "prompt_embedding"), ("vocab", "vocab_embedding"))
FLAG_ARRAYS = ("failed", "nsfw")  # optional (n,) booleans: a failed row's values are not used


@dataclass(frozen=True)
class SweepSource:
    """Where a sweep's images or embeddings came from (recorded in its JSON as ``source``)."""

    kind: str  # "embeddings" or "images"
    path: str
    format: str  # "npz", "csv" or "jsonl"
    sha256: str  # of the file's bytes
    rows: int
    extra_rows: int  # rows for cells the spec does not plan (ignored)
    dim: int | None = None
    arrays: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        made = ("embeddings read from this file: no model was run, so there is no conditioning drift"
                if self.kind == "embeddings" else
                "images listed in this manifest, embedded by the measurer: no generator, so no conditioning drift")
        out = {"kind": self.kind, "path": self.path, "format": self.format, "sha256": self.sha256,
               "rows": self.rows, "extra_rows": self.extra_rows, "note": made}
        if self.kind == "embeddings":
            out.update(dim=self.dim, arrays=list(self.arrays))
        return out


@dataclass(frozen=True)
class EmbeddingsFile:
    """The planned cells' rows of an embeddings file, and its text embeddings (by name)."""

    source: SweepSource
    images: dict[Cell, Any]  # cell -> (d,) row; None where the row is flagged failed
    nsfw: dict[Cell, bool]
    probe_embeddings: Any  # (P, d) in the spec's probe order, or None
    prompt_embeddings: dict[str, Any] | None  # expanded prompt -> (d,), or None (no text drift)
    vocabulary: tuple[str, ...] = ()
    vocabulary_embeddings: Any = None
    rows: dict[Cell, int] = field(default_factory=dict)  # cell -> its row in the file (from 0)


def _fail(path: Path, what: str) -> BadInputError:
    return BadInputError(f"{path}: {what}")


def _squash(text: str) -> str:
    return " ".join(str(text).split())


def planned_cells(spec: Spec) -> list[Cell]:
    """Every (template index, term, seed) the spec plans, in template, term, seed order."""
    return [(t, term, seed) for t in range(len(spec.templates)) for term in spec.all_terms for seed in spec.seeds]


def _describe(spec: Spec, cell: Cell) -> str:
    t, term, seed = cell
    return f"({spec.templates[t]!r}, {term!r}, seed {seed})"


def match_cells(path: Path, spec: Spec, labels: list[tuple[str, str, int]], what: str, *, first: int = 0,
                level=None) -> tuple[dict[Cell, int], int]:
    """Row index of every planned cell among ``labels`` (template text, term, seed), and the
    number of rows the spec does not plan. A missing or repeated planned cell is an error.
    Rows are named counting from ``first`` (0 for an .npz array, 1 for a manifest's data rows);
    ``level``: the (guidance, steps) these labels are the rows of, named when cells are missing."""
    count = "counting from 0" if first == 0 else "data rows counting from 1"
    index = {template: t for t, template in enumerate(spec.templates)}
    planned = set(planned_cells(spec))
    rows: dict[Cell, int] = {}
    extra = 0
    for i, label in enumerate(labels):
        if label is None:  # a row of another guidance / steps level
            continue
        template, term, seed = label
        t = index.get(_squash(template))
        cell = (t, _squash(term), int(seed))
        if t is None or cell not in planned:
            extra += 1
        elif cell in rows:
            raise _fail(path, f"{what} {rows[cell] + first} and {i + first} ({count}) are both "
                              f"{_describe(spec, cell)}; keep one row per (template, term, seed).")
        else:
            rows[cell] = i
    missing = [cell for cell in planned_cells(spec) if cell not in rows]
    if missing:
        listed = "; ".join(_describe(spec, c) for c in missing[:20]) + (" ..." if len(missing) > 20 else "")
        at = "" if level is None else f" at {_level_text(level)}"
        raise _fail(path, f"{len(missing)} of {len(planned)} (template, term, seed) cells the spec plans are not "
                          f"in the file{at}: {listed}. Add them, or narrow the spec (--term, --seeds) to what the "
                          "file holds; templates must be written as in the spec, with {}.")
    return rows, extra


def _level_text(level) -> str:
    guidance, steps = level
    parts = [f"{name} {value:g}" for name, value in (("guidance", guidance), ("steps", steps)) if value is not None]
    return ", ".join(parts) or "this level"


#: The largest member an .npz may ask us to load (uncompressed): refused above, before reading it.
MAX_MEMBER_BYTES = 8 * 1024 ** 3


class _Members(Mapping):
    """The arrays of an .npz, each read from the archive only when first asked for (an unused
    member, however large, is never read), object arrays refused (no pickle)."""

    def __init__(self, path: Path, archive, sizes: dict[str, int]):
        self.path, self.archive, self.sizes, self.loaded = path, archive, sizes, {}

    def __getitem__(self, name: str):
        if name not in self.loaded:
            if name not in self.sizes:
                raise KeyError(name)
            if self.sizes[name] > MAX_MEMBER_BYTES:
                raise _fail(self.path, f"array {name!r} is {self.sizes[name] / 1024 ** 3:.1f} GiB uncompressed, more "
                                       f"than the {MAX_MEMBER_BYTES // 1024 ** 3} GiB an embeddings file needs.")
            try:
                self.loaded[name] = self.archive[name]
            except ValueError as exc:
                raise _fail(self.path, f"array {name!r} holds an object array ({exc}); store texts as numpy str "
                                       "arrays, e.g. numpy.array(terms, dtype=str), so the file loads without "
                                       "pickle.") from exc
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise _fail(self.path, f"array {name!r} cannot be read ({exc}); write the file again with "
                                       "numpy.savez.") from exc
        return self.loaded[name]

    def __iter__(self):
        return iter(self.sizes)

    def __len__(self) -> int:
        return len(self.sizes)


def _load_npz(path: Path) -> tuple[Mapping[str, Any], str]:
    """The file's arrays (read lazily) and its sha256 (streamed): a .npy, a text file or any other
    non-zip file is named for what it is, before anything is loaded."""
    import numpy as np

    if not path.is_file():
        raise _fail(path, "no such file (--embeddings); give a .npz written with numpy.savez.")
    with path.open("rb") as handle:
        head = handle.read(6)
    example = ("numpy.savez(path, image=..., template=..., term=..., seed=..., probe=..., probe_embedding=...)")
    if head == b"\x93NUMPY":
        raise _fail(path, f"is a single .npy array; --embeddings reads an .npz archive of named arrays: {example}.")
    if not zipfile.is_zipfile(path):
        raise _fail(path, f"is not an npz/zip file; --embeddings reads an .npz archive of named arrays: {example}.")
    try:
        with zipfile.ZipFile(path) as archive:
            sizes = {info.filename[:-4] if info.filename.endswith(".npy") else info.filename: info.file_size
                     for info in archive.infolist()}
        members = _Members(path, np.load(path, allow_pickle=False), sizes)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise _fail(path, f"is not a readable .npz archive ({exc}); write it with {example}.") from exc
    if not sizes:
        raise _fail(path, "is an empty .npz archive; it needs named arrays.")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return members, digest.hexdigest()


def _vectors(path: Path, arrays: dict, name: str, rows: int | None, dim: int | None, *, zero_rows: bool = False,
             names: str = "its names array", labels=None):
    """A 2-d float array of ``rows`` rows (any count when None) and ``dim`` columns, all finite
    and (unless ``zero_rows``) none all zeros: a zero vector has no direction, so an option,
    probe, prompt or calibration embedding of zeros is refused (an image row of zeros is
    excluded and counted by the analysis, as a generated sweep's is)."""
    import numpy as np

    array = arrays[name]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise _fail(path, f"array {name!r} is {array.dtype} of shape {array.shape}; it must be 2-d floats "
                          "(one row per item, one column per dimension).")
    if rows is not None and array.shape[0] != rows:
        raise _fail(path, f"array {name!r} has {array.shape[0]} rows but {names} has {rows}; one row per name.")
    if dim is not None and array.shape[1] != dim:
        raise _fail(path, f"array {name!r} has {array.shape[1]} dimensions but 'image' has {dim}; every "
                          "embedding must come from the same model.")
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if len(bad):
        raise _fail(path, f"array {name!r} has {len(bad)} row(s) with NaN or infinite values "
                          f"({row_list(bad, labels)}); remove or recompute them.")
    zero = np.flatnonzero(~array.any(axis=1)) if not zero_rows else ()
    if len(zero):
        raise _fail(path, f"array {name!r} has {len(zero)} row(s) of all zeros ({row_list(zero, labels)}); a zero "
                          "embedding has no direction to compare with, so remove or recompute them.")
    return array


def row_list(rows, labels=None) -> str:
    """'rows 3, 7, counting from 0': the row numbers of an .npz array, as every message gives them
    (with each row's name, e.g. row 1 'hut', where ``labels`` names the rows)."""
    shown = ", ".join(str(int(i)) + (f" {labels[int(i)]!r}" if labels is not None else "") for i in rows[:10])
    shown += " ..." if len(rows) > 10 else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}, counting from 0"


def _names(path: Path, arrays: dict, name: str, rows: int | None = None, against: str = "'image'",
           unit: str = "one per image") -> list[str]:
    array = arrays[name]
    if array.ndim != 1 or array.dtype.kind not in "U":
        raise _fail(path, f"array {name!r} is {array.dtype} of shape {array.shape}; it must be a 1-d str array "
                          "(numpy.array(values, dtype=str)).")
    if rows is not None and len(array) != rows:
        raise _fail(path, f"array {name!r} has {len(array)} entries but {against} has {rows}; {unit}.")
    return [str(v) for v in array]


def _flags(path: Path, arrays: dict, name: str, rows: int):
    import numpy as np

    if name not in arrays:
        return np.zeros(rows, dtype=bool)
    array = arrays[name]
    if array.shape != (rows,) or array.dtype.kind not in "bi":
        raise _fail(path, f"array {name!r} has shape {array.shape} ({array.dtype}); it must be {rows} booleans, "
                          "one per image.")
    return array.astype(bool)


def _seeds(path: Path, arrays: dict, rows: int) -> list[int]:
    import numpy as np

    array = arrays["seed"]
    if array.shape != (rows,) or not np.issubdtype(array.dtype, np.integer):
        raise _fail(path, f"array 'seed' is {array.dtype} of shape {array.shape}; it must be {rows} integers, "
                          "one per image.")
    return [int(v) for v in array]


def _text_pairs(path: Path, arrays: dict, dim: int) -> dict[str, tuple[list[str], Any]]:
    pairs = {}
    for names, vectors in OPTIONAL_PAIRS:
        if (names in arrays) != (vectors in arrays):
            given, lacking = (names, vectors) if names in arrays else (vectors, names)
            raise _fail(path, f"has {given!r} but no {lacking!r}; give both or neither.")
        if names in arrays:
            words = _names(path, arrays, names)
            pairs[names] = (words, _vectors(path, arrays, vectors, len(words), dim, zero_rows=names == "vocab",
                                            names=repr(names), labels=words))
    return pairs


def _probe_rows(path: Path, spec: Spec, pairs: dict):
    import numpy as np

    if not spec.probes:
        return None
    if "probe" not in pairs:
        raise _fail(path, f"the spec has probes ({', '.join(spec.probes)}) but the file has no 'probe' and "
                          "'probe_embedding' arrays; add them, or drop the probes from the spec.")
    words, vectors = pairs["probe"]
    where = {_squash(w): i for i, w in enumerate(words)}
    lacking = [p for p in spec.probes if p not in where]
    if lacking:
        raise _fail(path, f"array 'probe' lacks the spec's probe(s) {', '.join(map(repr, lacking))}; add their "
                          "embeddings.")
    return np.stack([vectors[where[p]] for p in spec.probes])


def _prompt_rows(path: Path, spec: Spec, pairs: dict) -> dict[str, Any] | None:
    if "prompt" not in pairs:
        return None
    words, vectors = pairs["prompt"]
    where = {_squash(w): i for i, w in enumerate(words)}
    wanted = spec.prompts()
    lacking = [p for p in wanted if p not in where]
    if lacking:
        raise _fail(path, f"array 'prompt' lacks {len(lacking)} of the {len(wanted)} expanded prompts: "
                          f"{'; '.join(map(repr, lacking[:10]))}{' ...' if len(lacking) > 10 else ''}; add them, "
                          "or leave out 'prompt' and 'prompt_embedding' (no text drift).")
    return {p: vectors[where[p]] for p in wanted}


def read_embeddings_file(path: str | Path, spec: Spec, level=None) -> tuple[EmbeddingsFile, int]:
    """Read and check an embeddings .npz against ``spec`` (its rows at ``level``, a (guidance,
    steps) pair, when it has such arrays); returns it and its extra-row count."""
    path = Path(path)
    arrays, sha = _load_npz(path)
    absent = [name for name in REQUIRED_ARRAYS if name not in arrays]
    if absent:
        raise _fail(path, f"lacks the array(s) {', '.join(map(repr, absent))}; an embeddings file has image "
                          "(n x d floats), template, term (n str), seed (n ints), and probe / probe_embedding.")
    image = arrays["image"]
    rows = image.shape[0] if image.ndim == 2 else None
    image = _vectors(path, arrays, "image", None, None, zero_rows=True)
    if rows == 0 or image.shape[1] == 0:
        raise _fail(path, f"array 'image' is empty (shape {image.shape}).")
    labels = list(zip(_names(path, arrays, "template", rows), _names(path, arrays, "term", rows),
                      _seeds(path, arrays, rows)))
    labels = at_level(labels, row_levels_of(path, arrays, rows), level)
    index, extra = match_cells(path, spec, labels, "rows", level=level)
    failed, nsfw = (_flags(path, arrays, name, rows) for name in FLAG_ARRAYS)
    pairs = _text_pairs(path, arrays, image.shape[1])
    vocab_words, vocab_vectors = pairs.get("vocab", ((), None))
    source = SweepSource("embeddings", str(path.resolve()), "npz", sha, rows, extra, dim=int(image.shape[1]),
                         arrays=tuple(sorted(arrays)))
    return EmbeddingsFile(
        source=source, images={c: None if failed[i] else image[i] for c, i in index.items()},
        nsfw={c: bool(nsfw[i]) for c, i in index.items()}, probe_embeddings=_probe_rows(path, spec, pairs),
        prompt_embeddings=_prompt_rows(path, spec, pairs), vocabulary=tuple(vocab_words),
        vocabulary_embeddings=vocab_vectors, rows=index,
    ), extra


def expanded_prompts(spec: Spec) -> dict[tuple[int, str], str]:
    """(template index, term) -> the expanded prompt, as the analysis labels text."""
    return {(t, term): expand(template, term) for t, template in enumerate(spec.templates) for term in spec.all_terms}
