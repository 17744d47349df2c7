"""Association sets from the user's own files: ``embeddings = "x.csv"`` / ``images = "folder"``
in a spec, or ``--set X=PATH`` on the command line (the kind is then read from the path).

A relative path is read against the spec's folder (the working folder for ``--set``). The
label defaults to the file or folder name. Reading the files is :func:`read_set_sources`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ldmprobe.errors import BadInputError, SpecError
from ldmprobe.specs.assoc_types import _ROLE, FILE_KINDS, SET_NAMES, AssocSet, AssocSpec
from ldmprobe.specs.embedding_files import (
    EMBEDDING_SUFFIXES, SetSource, check_dimensions, read_source,
)

#: Top-level keys of a sweep spec that an association spec never has.
SWEEP_ONLY_KEYS = ("templates", "terms", "baseline", "probes", "controls")


def default_label(path: str | Path) -> str:
    """A set's label when none is given: the file's name without its suffix, or the folder's."""
    path = Path(path)
    return (path.stem if path.suffix.lower() in EMBEDDING_SUFFIXES else path.name) or str(path)


def _base_folder(source: str) -> Path:
    spec_file = Path(source)
    return spec_file.parent if spec_file.is_file() else Path.cwd()


def validate_file_set(set_name: str, value: Mapping[str, Any], where) -> AssocSet:
    """An ``[X]`` table with ``embeddings = "..."`` or ``images = "..."`` (and an optional label)."""
    given = [k for k in FILE_KINDS if k in value]
    other = [k for k in ("words", "prompts", "templates", "seeds") if k in value]
    if len(given) > 1 or other:
        raise SpecError(
            f"{where(set_name, given[-1])}: set {set_name} has {' and '.join(given + other)}; a set read "
            f"from your files is only embeddings = \"file.csv\" (or .npy) or images = \"folder\", with an "
            f"optional label. Keep one."
        )
    kind = given[0]
    raw = value[kind]
    if not isinstance(raw, str) or not raw.strip():
        raise SpecError(f"{where(set_name, kind)}: {kind} must be a path (a non-empty string), not "
                        f"{raw!r}; write e.g. {kind} = \"{'flowers.csv' if kind == 'embeddings' else 'flowers/'}\".")
    path = (_base_folder(where.source) / Path(raw).expanduser()).resolve()
    _check_path(set_name, kind, path, where(set_name, kind))
    label = value.get("label", default_label(path))
    if not isinstance(label, str) or not label.strip():
        raise SpecError(f"{where(set_name, 'label')}: the label must be a non-empty string, not "
                        f"{label!r}; write e.g. label = \"flowers\".")
    field = "embedding_file" if kind == "embeddings" else "image_folder"
    return AssocSet(set_name, " ".join(label.split()), **{field: str(path)})


def _embeddings_problem(path: Path) -> str | None:
    """Why ``path`` is not an embeddings file ldmprobe reads, said of it (None: a .csv or .npy file)."""
    if path.is_dir():
        return "is a folder"
    if not path.exists():
        return "not found"
    if path.suffix.lower() not in EMBEDDING_SUFFIXES:
        return "is neither .csv (iEAT layout) nor .npy; export the embeddings as one of those"
    return None


def _check_path(set_name: str, kind: str, path: Path, at: str) -> None:
    if kind == "images":
        if not path.is_dir():
            raise SpecError(f"{at}: {path} is {'not a folder' if path.exists() else 'not found'}; images = "
                            f"\"...\" names a folder of image files (set {set_name}).")
        return
    problem = _embeddings_problem(path)
    if problem:
        raise SpecError(f"{at}: {path} {problem}; embeddings = \"...\" names a .csv or .npy file (a folder "
                        f"of images is images = \"...\").")


def check_file_pair(first: AssocSet, second: AssocSet, where) -> None:
    """Two sets of one pair may not be the same file (every item would be in both)."""
    if first.path and first.path == second.path:
        raise SpecError(
            f"{where(second.name, second.kind)}: {_ROLE[first.name]} sets {first.name} and {second.name} "
            f"are the same {second.kind} ({second.path}); give each set its own file or folder."
        )


def sweep_spec_hint(raw: Mapping[str, Any], where) -> None:
    """A sweep spec given to ``assoc``: say so, instead of suggesting key renames."""
    found = [k for k in SWEEP_ONLY_KEYS if k in raw]
    if found and not any(k in raw for k in SET_NAMES):
        raise SpecError(
            f"{where.source}: this looks like a sweep spec (it has {', '.join(found)}), not an association "
            f"spec; run it with `ldmprobe sweep {where.source}`. An association spec has tables [X], [Y] "
            f"(targets) and [A], [B] (attributes), each words, prompts, embeddings or images."
        )


def kind_of_path(set_name: str, text: str) -> tuple[str, Path]:
    """``--set X=PATH``: a folder is images, a .csv or .npy file is embeddings."""
    path = Path(text).expanduser().resolve()
    if path.is_dir():
        return "images", path
    problem = _embeddings_problem(path)
    if problem:
        raise BadInputError(f"--set {set_name}={text}: {path} {problem}; give a .csv or .npy file of "
                            f"embeddings or a folder of images.")
    return "embeddings", path


def read_set_sources(spec: AssocSpec) -> tuple[AssocSpec, dict[str, SetSource]]:
    """Read every file / folder set (errors name the file), check their dimensions agree, and
    return the spec with each such set's size filled in."""
    sources = {name: read_source(name, aset.kind, aset.path) for name, aset in spec.sets.items() if aset.path}
    check_dimensions(sources)
    sized = {name: dataclasses.replace(spec.sets[name], n_items=src.n) for name, src in sources.items()}
    return dataclasses.replace(spec, **sized), sources
