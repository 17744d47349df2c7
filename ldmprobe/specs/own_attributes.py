"""A sweep on the user's own embeddings (``--embeddings FILE.npz``): what the spec's attribute
groups need from the file, and the guidance / steps levels its rows were made at.

Read here, before any model loads and without torch. Optional arrays of the file:

- ``option`` (k str: option texts, as written in the spec's ``[attributes.GROUP]`` tables) with
  ``option_embedding`` (k × d) and ``logit_scale`` (one float: the measurer's softmax
  temperature, CLIP's 100): each image gets the zero-shot labels a generated sweep gives it;
- ``calibration_embedding`` (m × d) with ``calibration_group`` and ``calibration_option``
  (m str each): a labelled calibration set already embedded, for corrected rates;
- ``guidance`` (n floats) and / or ``steps`` (n ints): the level each row was made at (the
  rows hold every planned cell once per level).

Every problem is a :class:`BadInputError` (exit 2) naming the array and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldmprobe.errors import BadInputError
from ldmprobe.specs.levels import LEVEL_FIELDS, Level, file_levels, row_levels_of
from ldmprobe.specs.sweep import Spec
from ldmprobe.specs.own_manifest import _manifest_rows
from ldmprobe.specs.sweep_sources import _load_npz, _names, _squash, _vectors, row_list

OPTION_ARRAYS = ("option", "option_embedding", "logit_scale")
CALIBRATION_ARRAYS = ("calibration_embedding", "calibration_group", "calibration_option")


@dataclass(frozen=True)
class FileAttributes:
    """The option texts' embeddings (per spec group, in its option order), the logit scale and
    the calibration images' embeddings with their true (group, option), from an embeddings file."""

    option_embeddings: tuple[Any, ...]
    logit_scale: float
    calibration: Any = None  # (m, d) or None
    calibration_labels: tuple[tuple[str, str], ...] = ()


def levels_in(path: Path, kind: str) -> list[Level]:
    """The guidance / steps levels of an embeddings file's rows or a manifest's (empty: no such
    field; a file that cannot be read is left to the reader, which names the problem)."""
    path = Path(path)
    if not path.is_file():
        return []
    if kind == "embeddings":
        try:
            arrays, _ = _load_npz(path)
            if not any(name in arrays for name in LEVEL_FIELDS) or "seed" not in arrays:
                return []
            if arrays["seed"].ndim != 1:
                return []  # the reader names the problem
            rows = len(arrays["seed"])  # one per row, and small (the image array is read once, by the reader)
        except BadInputError:
            return []
        return file_levels(row_levels_of(path, arrays, rows))
    try:
        _, rows = _manifest_rows(path, path.read_bytes())
    except (BadInputError, OSError):
        return []
    return file_levels(row_levels_of(path, rows, len(rows)))


def _missing(path: Path, arrays, names: tuple[str, ...], what: str) -> bool:
    """Whether all of ``names`` are absent (False: all present; some only: an error)."""
    have = [n for n in names if n in arrays]
    if have and len(have) < len(names):
        lacking = [n for n in names if n not in arrays]
        raise BadInputError(f"{path}: has {', '.join(map(repr, have))} but no {', '.join(map(repr, lacking))}; "
                            f"{what} needs all of {', '.join(names)}.")
    return not have


def file_attributes(path: str | Path, spec: Spec, dim: int) -> FileAttributes | None:
    """What the spec's ``[attributes]`` need from the file (None: the spec has none, or the
    file carries no option arrays, and then rates are not measured)."""
    import numpy as np

    path = Path(path)
    if not spec.attributes:
        return None
    arrays, _ = _load_npz(path)
    if _missing(path, arrays, OPTION_ARRAYS, "measuring the spec's attribute groups"):
        return None
    words = _names(path, arrays, "option")
    vectors = _vectors(path, arrays, "option_embedding", len(words), dim, names="'option'", labels=words)
    scale = np.asarray(arrays["logit_scale"], dtype=np.float64).ravel()
    if scale.size != 1 or not np.isfinite(scale[0]) or scale[0] <= 0:
        raise BadInputError(f"{path}: logit_scale must be one positive number (the measurer's softmax "
                            f"temperature, 100 for CLIP), not {arrays['logit_scale']!r}.")
    where = {_squash(w): i for i, w in enumerate(words)}
    lacking = [t for g in spec.attributes for t in g.texts if _squash(t) not in where]
    if lacking:
        raise BadInputError(f"{path}: array 'option' lacks the spec's option text(s) {', '.join(map(repr, lacking))}; "
                            "add their embeddings (embedded like the probes, by the model that embedded the images).")
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    options = tuple(np.stack([unit[where[_squash(t)]] for t in g.texts]) for g in spec.attributes)
    calibration, labels = _calibration(path, arrays, spec, dim)
    return FileAttributes(options, float(scale[0]), calibration, labels)


def _calibration(path: Path, arrays, spec: Spec, dim: int):
    """The calibration images' embeddings and (group, option) labels, checked against the spec."""
    if _missing(path, arrays, CALIBRATION_ARRAYS, "a calibration set"):
        if spec.calibration:
            raise BadInputError(
                f"{path}: the spec names a calibration set ({spec.calibration}) but the embeddings file has no "
                "calibration_embedding / calibration_group / calibration_option arrays, and with --embeddings no "
                "model embeds the calibration images. Add those arrays (the calibration images embedded by the same "
                "model), or drop calibration from the spec to report raw rates.")
        return None, ()
    groups = _names(path, arrays, "calibration_group")
    options = _names(path, arrays, "calibration_option", len(groups), against="'calibration_group'",
                     unit="one group and one option per calibration image")
    vectors = _vectors(path, arrays, "calibration_embedding", len(groups), dim, names="'calibration_group'")
    known = {g.name: g.options for g in spec.attributes}
    for i, (group, option) in enumerate(zip(groups, options)):
        if group in known and option not in known[group]:
            raise BadInputError(f"{path}: calibration {row_list([i])}: option {option!r} is not an option of attribute "
                                f"group {group} ({', '.join(known[group])}); rename it or add it to "
                                f"[attributes.{group}].")
    return vectors, tuple(zip(groups, options))
