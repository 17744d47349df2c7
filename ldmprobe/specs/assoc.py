"""Embedding association tests (WEAT / iEAT / T2IAT) on texts or generated images.

An association spec is a TOML file with two target sets ``X``, ``Y`` and two attribute sets
``A``, ``B``::

    name = "weat1-flowers-insects"          # optional; defaults to the file name
    description = "Flowers vs insects ..."   # optional
    source = "Caliskan et al. 2017, ..."     # optional citation (shipped specs all have one)

    [X]
    label = "flowers"
    words = ["aster", "clover", ...]         # text embeddings of the bare words ...
    templates = ["a photo of a {}."]         # ... or averaged over templates (optional)

    [A]
    label = "male"
    prompts = ["a photo of a man studying physics", ...]   # images generated from prompts
    seeds = 4                                # a count (seeds 0..3) or a list [0, 7, 9]

    [test]                                   # optional; the command line overrides it
    ddof = 1                                 # 1 (Caliskan et al.) or 0 (as WEFE)
    permutations = 100000                    # exact enumeration when comb(|X|+|Y|, |X|) <= this
    seed = 0

    steps = 50                               # optional, only with prompt sets; written
    guidance = 7.5                           # before the first [table]
    negative_prompt = "blurry"

A set may instead come from your own files: ``embeddings = "flowers.csv"`` (a CSV in the iEAT
layout or a ``.npy``, rows are items) or ``images = "flowers/"`` (a folder the measurer embeds),
with an optional label (default: the file name); relative paths are read against the spec's
folder (:mod:`ldmprobe.specs.assoc_sources`). A CSV column ``prompt`` groups rows into one unit
of the permutation.

X and Y must be of one kind (both words or both prompts), and so must A and B: a text set
against an image set would measure CLIP's modality gap, not an association. A prompt set
has ``len(prompts) * len(seeds)`` items, one image each.

The statistics are :func:`ldmprobe.analysis.stats.weat`: s(w,A,B) = mean_a cos(w,a) − mean_b cos(w,b),
S = Σ_X s − Σ_Y s, d = (mean_X s − mean_Y s) / sd_{X∪Y}(s), one-sided permutation p.

Loading and validating a spec imports nothing heavy. Text-only specs never load (or import)
the generator. Image sets go through :func:`ldmprobe.engine.assoc_images.embed_prompt_sets`, the one place
their images are made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ldmprobe.specs import files as specfile
from ldmprobe.specs.assoc_types import (  # noqa: F401  (the spec's data types, importable from here)
    ASSOC_KEYS, DEFAULT_DDOF, DEFAULT_GUIDANCE, DEFAULT_PERMUTATIONS, DEFAULT_STEPS, DEFAULT_TEST_SEED,
    DEFAULT_TINY_STEPS, SET_KEYS, SET_NAMES, TEST_KEYS, AssocSet, AssocSpec,
)
from ldmprobe.errors import BadInputError
from ldmprobe.specs.assoc_sources import default_label, kind_of_path
from ldmprobe.specs.assoc_validate import _validate, _Where


def load_assoc_spec(path_or_name: str | Path) -> AssocSpec:
    """Read and validate an association spec from a TOML file or a shipped name.

    A bare name such as ``weat1-flowers-insects`` finds ``prompts/assoc/NAME.toml``.
    Every problem raises :class:`SpecError` naming the file, the line or field, and the fix.
    """
    path = _resolve(path_or_name)
    text = _read_text(path)
    where = _Where(str(path), text)
    data = specfile.load_toml(
        path, text, syntax_hint="Fix the TOML there (strings need double quotes, lists need commas between "
        "items, a set is a [X] table with label = ... and words = [...]).",
    )
    data.setdefault("name", path.stem)
    return _validate(data, where)


def assoc_from_dict(data: Mapping[str, Any], *, path: str = "<inline>") -> AssocSpec:
    """Validate a spec given as a mapping with the TOML layout (for notebooks and tests)."""
    raw = dict(data)
    raw.setdefault("name", "inline")
    return _validate(raw, _Where(path))


def _resolve(path_or_name: str | Path) -> Path:
    return specfile.resolve(path_or_name, subdir="assoc", what="association spec",
                            folder_fix="Give a .toml file.")


_read_text = specfile.read_text


def with_set_paths(spec: AssocSpec | None, paths: Mapping[str, str],
                   labels: Mapping[str, str] | None = None) -> AssocSpec:
    """A spec whose sets in ``paths`` come from those files / folders (``--set``); with no spec,
    all four sets must be given and the test is named after their labels."""
    labels = dict(labels or {})
    unknown = [k for k in [*paths, *labels] if k not in SET_NAMES]
    if unknown:
        raise BadInputError(f"--set / --label name {unknown[0]!r}: the sets are X, Y (targets) and A, B "
                            f"(attributes); write e.g. --set X=flowers.csv.")
    missing = [k for k in SET_NAMES if k not in paths and spec is None]
    if missing:
        raise BadInputError(
            f"without a SPEC every set needs --set: {', '.join(missing)} missing; give --set X=PATH --set "
            f"Y=PATH --set A=PATH --set B=PATH (a .csv or .npy of embeddings, or a folder of images).")
    raw: dict[str, Any] = {} if spec is None else _raw_sets(spec)
    for name, text in paths.items():
        kind, path = kind_of_path(name, text)
        raw[name] = {kind: str(path), "label": labels.pop(name, default_label(path))}
    for name, label in labels.items():
        raw[name] = {**raw[name], "label": label}
    if spec is None:
        named = [raw[k]["label"] for k in SET_NAMES]
        return assoc_from_dict({"name": f"{named[0]} vs {named[1]}", **raw},
                               path="<command line>")
    head = {"name": spec.name, "description": spec.description, "source": spec.source}
    extra = {k: v for k, v in (("steps", spec.steps), ("guidance", spec.guidance),
                               ("negative_prompt", spec.negative_prompt)) if v is not None}
    if not any(raw[k].get("prompts") for k in SET_NAMES):
        extra = {}
    test = {k: v for k, v in (("ddof", spec.ddof), ("permutations", spec.permutations), ("seed", spec.seed))
            if v is not None}
    return dataclasses.replace(assoc_from_dict({**head, **extra, **raw, "test": test}, path=spec.path),
                               path=spec.path)


def _raw_sets(spec: AssocSpec) -> dict[str, Any]:
    """The spec's sets back in their TOML layout (paths absolute)."""
    out = {}
    for name, aset in spec.sets.items():
        if aset.path:
            out[name] = {aset.kind: aset.path, "label": aset.label}
        elif aset.kind == "prompts":
            out[name] = {"label": aset.label, "prompts": list(aset.prompts), "seeds": list(aset.seeds)}
        else:
            out[name] = {"label": aset.label, "words": list(aset.words),
                         **({"templates": list(aset.templates)} if aset.templates else {})}
    return out
