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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ldmprobe.specs import files as specfile
from ldmprobe.specs.assoc_types import (  # noqa: F401  (the spec's data types, importable from here)
    ASSOC_KEYS, DEFAULT_DDOF, DEFAULT_GUIDANCE, DEFAULT_PERMUTATIONS, DEFAULT_STEPS, DEFAULT_TEST_SEED,
    DEFAULT_TINY_STEPS, SET_KEYS, SET_NAMES, TEST_KEYS, AssocSet, AssocSpec,
)
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
