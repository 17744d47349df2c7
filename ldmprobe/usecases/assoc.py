"""Run an association test: embed the four sets (generating images where a set is prompts, reading
the user's files where a set is embeddings or images), test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ldmprobe.engine.assoc_images import embed_image_folder, embed_prompt_sets, embed_word_set
from ldmprobe.engine.sweep_setup import GenerationOptions, models_for
from ldmprobe.errors import BadInputError, SpecError
from ldmprobe.reporting import Reporter, or_silent
from ldmprobe.results.assoc import AssocResult
from ldmprobe.specs.assoc import load_assoc_spec, with_set_paths
from ldmprobe.specs.assoc_sources import read_set_sources
from ldmprobe.specs.embedding_files import GROUP_COLUMN, SetSource
from ldmprobe.specs.assoc_types import (
    DEFAULT_DDOF, DEFAULT_PERMUTATIONS, DEFAULT_TEST_SEED, AssocSpec,
)
from ldmprobe.specs.generation import GenerationSettings


def resolve_test_settings(spec: AssocSpec, *, ddof: int | None = None,
                          permutations: int | None = None,
                          seed: int | None = None) -> dict[str, int]:
    """Effective ddof / permutations / seed: argument, else the spec's [test], else default."""
    def pick(arg, spec_value, default):
        return arg if arg is not None else spec_value if spec_value is not None else default

    settings = {
        "ddof": int(pick(ddof, spec.ddof, DEFAULT_DDOF)),
        "permutations": int(pick(permutations, spec.permutations, DEFAULT_PERMUTATIONS)),
        "seed": int(pick(seed, spec.seed, DEFAULT_TEST_SEED)),
    }
    if settings["ddof"] not in (0, 1):
        raise SpecError(f"ddof must be 0 or 1, not {settings['ddof']}.")
    if settings["permutations"] < 1:
        raise SpecError(f"permutations must be at least 1, not {settings['permutations']}.")
    if settings["seed"] < 0:
        raise SpecError(f"the permutation seed must be ≥ 0, not {settings['seed']}.")
    return settings


def _warned(notes, reporter):
    """The notes, each warned on the reporter's stderr as well."""
    for note in notes:
        or_silent(reporter).warn(note)
    return notes


@dataclass(frozen=True)
class AssocOptions(GenerationOptions):
    """How to run an association test besides the spec: the test's settings (None: the spec's
    [test] values, else ddof 1, 100,000 permutations, seed 0), the permutation ``unit``, the sets
    given on the command line (``sets``: X, Y, A, B -> a file of embeddings or a folder of images,
    replacing the spec's set; ``labels`` renames sets), and how prompt sets' images are made
    (the generation settings; steps and guidance None: the spec's, else 50 and 7.5; ``batch_size``
    None: 8). A model left None is the default."""

    ddof: int | None = None
    permutations: int | None = None
    seed: int | None = None
    unit: str | None = None
    sets: Mapping[str, str] | None = None
    labels: Mapping[str, str] | None = None


def run_assoc(spec: AssocSpec, options: AssocOptions = AssocOptions(), *, measurer=None, generator=None,
              reporter: Reporter | None = None, started: str | None = None,
              sources: dict[str, SetSource] | None = None) -> AssocResult:
    """Embed the four sets with loaded models (or read them from files) and run the WEAT statistics.

    ``measurer`` is needed unless every set is a file of embeddings; ``generator`` only when a
    set is made of prompts (it is never touched otherwise). Settings left None in ``options``
    fall back to the spec's [test] / generation values, then to the defaults (ddof 1, 100,000
    permutations, seed 0, 50 steps, guidance 7.5). ``options.unit``: None permutes prompts as
    blocks when a target set is made of prompts or has a ``prompt`` column (single rows
    otherwise); "image" permutes single images (anti-conservative; warned). ``sources``: the sets already
    read by :func:`~ldmprobe.specs.assoc_sources.read_set_sources` (read here when None).
    """
    from ldmprobe.analysis.association import association_test
    from ldmprobe.results.provenance import now_iso, provenance

    started = started or now_iso()
    settings = resolve_test_settings(spec, ddof=options.ddof, permutations=options.permutations, seed=options.seed)
    if sources is None:
        spec, sources = read_set_sources(spec)
    if measurer is None and spec.needs_measurer:
        raise ValueError(f"spec {spec.name!r} has sets the measurer embeds: pass a loaded measurer")
    embeddings, records, generation = _embed_sets(
        spec, sources, measurer, generator, steps=options.steps, guidance=options.guidance,
        batch_size=options.batch_size or 8, call_shape=options.call_shape,
        allow_truncation=options.allow_truncation, reporter=reporter)
    check_set_dimensions(spec, embeddings, sources)
    unit, blocks = _permutation_unit(spec, records, options.unit, reporter, sources)
    outcome = association_test(embeddings["X"], embeddings["Y"], embeddings["A"], embeddings["B"],
                               x_blocks=blocks.get("X"), y_blocks=blocks.get("Y"),
                               unit="image" if unit == "item" else unit, ddof=settings["ddof"],
                               permutations=settings["permutations"], seed=settings["seed"])
    if unit == "item":
        outcome = dataclasses.replace(outcome, unit="item", generalises_to=ITEM_SCOPE)
    notes = _warned(size_notes(outcome), reporter)
    uses_generator = any(s.kind == "prompts" for s in spec.sets.values())
    config = _config(measurer, generator if uses_generator else None, generation, settings, embeddings)
    tiny, reference = (bool(getattr(getattr(measurer, "ref", None), flag, False))
                       or bool(uses_generator and getattr(generator.ref, flag, False))
                       for flag in ("is_tiny", "is_reference"))
    return AssocResult(
        test=outcome, labels={k: s.label for k, s in spec.sets.items()}, permutations=settings["permutations"],
        spec=spec, config=config,
        provenance=provenance(started=started, tiny=tiny, reference=reference, device=config["device"],
                              dtype=config["dtype"]),
        images=tuple(records), sources=dict(sources), notes=tuple(notes),
    )


def _embed_sets(spec: AssocSpec, sources, measurer, generator, *, steps, guidance, batch_size: int,
                call_shape: int | None, allow_truncation: bool, reporter) -> tuple[dict, list, dict | None]:
    """(embeddings by set, generated-image records, generation recipe or None) of the four sets."""
    embeddings = {}
    for name, aset in spec.sets.items():
        if aset.kind == "words":
            embeddings[name] = embed_word_set(measurer, aset)
        elif aset.kind == "embeddings":
            embeddings[name] = sources[name].rows
        elif aset.kind == "images":
            embeddings[name] = embed_image_folder(measurer, sources[name], reporter=reporter)
    prompt_sets = [s for s in spec.sets.values() if s.kind == "prompts"]
    if not prompt_sets:
        return embeddings, [], None
    image_embeddings, records, recipe = _embed_images(
        spec, prompt_sets, measurer, generator, steps=steps, guidance=guidance, batch_size=batch_size,
        call_shape=call_shape, allow_truncation=allow_truncation, reporter=reporter)
    embeddings.update(image_embeddings)
    from ldmprobe.engine.workitems import call_shape as shape_of

    return embeddings, records, {**recipe.to_dict(), "batch_size": batch_size,
                                 "call_shape": shape_of(recipe, getattr(generator, "device", "cpu"))}


ITEM_SCOPE = ("items like these (each row or image re-partitioned alone; rows that share a source, such as "
              "several images of one prompt, need a prompt column to be kept together)")


def check_set_dimensions(spec: AssocSpec, embeddings: dict, sources: dict) -> None:
    """Every set has the same number of dimensions; else say which file differs from what."""
    dims = {name: int(np.shape(array)[-1]) for name, array in embeddings.items()}
    if len(set(dims.values())) <= 1:
        return
    def where(name):
        aset = spec.sets[name]
        return f"{name} ({sources[name].path})" if aset.kind == "embeddings" else f"{name} ({aset.kind}, by the measurer)"
    listed = "; ".join(f"{where(name)}: {dim}" for name, dim in dims.items())
    raise BadInputError(
        f"the sets have different dimensions ({listed}). A file's embeddings must come from the same model "
        f"as the other sets: embed them with --measurer, or give every set as files from one model."
    )


def size_notes(test) -> list[str]:
    """A note for each pair of sets of unequal size: what it does and does not change."""
    notes = []
    if test.n_x != test.n_y:
        notes.append(f"X has {test.n_x} items and Y {test.n_y}: the statistic S = Σ_X s − Σ_Y s grows with the "
                     "larger set, so compare tests by the effect size d (a difference of means); the p-value "
                     "is unaffected (re-partitions keep the sizes).")
    if test.n_a != test.n_b:
        notes.append(f"A has {test.n_a} items and B {test.n_b}: s(w) averages each set, so each item of the "
                     "smaller set weighs more and that set's noise counts more; d and p stay valid.")
    return notes


IMAGE_UNIT_WARNING = ("--unit image: single images are re-partitioned although images of one prompt cluster; "
                      "the p-value is anti-conservative (19-31 % of true nulls rejected in our calibration) "
                      "and generalises only to these prompts' images.")


def _permutation_unit(spec: AssocSpec, records, unit: str | None, reporter, sources=None) -> tuple[str, dict]:
    """The unit permuted and the block label of each target row (prompt sets, prompt columns)."""
    targets = [spec.sets[name] for name in ("X", "Y")]
    if targets[0].path:
        return _file_unit(spec, unit, reporter, sources or {})
    if not any(s.kind == "prompts" for s in targets):
        if unit not in (None, "word"):
            raise SpecError(f"--unit {unit} needs a target set made of prompts; X and Y of {spec.name!r} are words.")
        return "word", {}
    if unit not in (None, "prompt", "image"):
        raise SpecError(f"--unit must be prompt or image for image sets, not {unit!r}.")
    if unit == "image":
        or_silent(reporter).warn(IMAGE_UNIT_WARNING)
        return "image", {}
    blocks = {}
    for name, aset in zip(("X", "Y"), targets):
        if aset.kind == "prompts":
            blocks[name] = [r.prompt for r in records if r.set == aset.name]
        else:
            blocks[name] = [f"word:{w}" for w in aset.words]
    return "prompt", blocks


def _file_unit(spec: AssocSpec, unit: str | None, reporter, sources: dict) -> tuple[str, dict]:
    """Targets from files: rows of one ``prompt`` (a CSV column) move together, else each row alone."""
    groups = {name: sources[name].groups for name in ("X", "Y")}
    if all(g is None for g in groups.values()):
        if unit == "prompt":
            raise SpecError(f"--unit prompt needs a '{GROUP_COLUMN}' column in X's or Y's CSV; neither "
                            f"{sources['X'].path} nor {sources['Y'].path} has one, so each row is its own unit.")
        return "item", {}
    if unit == "image":
        or_silent(reporter).warn("--unit image: rows of one prompt are re-partitioned alone although they "
                                 "share a prompt; the p-value is anti-conservative when they cluster.")
        return "item", {}
    blocks = {name: list(g) if g is not None else [f"row:{i}" for i in range(sources[name].n)]
              for name, g in groups.items()}
    return "prompt", blocks


def _embed_images(spec: AssocSpec, prompt_sets, measurer, generator, *, steps, guidance, batch_size: int,
                  call_shape: int | None, allow_truncation: bool, reporter: Reporter | None):
    """Check the prompts' lengths, then make and embed the prompt sets' images."""
    from ldmprobe.specs.sweep import check_prompt_lengths

    if generator is None:
        raise ValueError(f"spec {spec.name!r} has prompt sets: pass a loaded generator")
    from ldmprobe.models.configs import default_guidance

    chosen = GenerationSettings.resolve(steps=steps, guidance=guidance, spec_steps=spec.steps,
                                        spec_guidance=spec.guidance, tiny=generator.ref.is_tiny,
                                        model_guidance=default_guidance(generator.folder))
    tokenizer = generator.tokenizer
    limit = int(getattr(tokenizer, "model_max_length", 77) or 77)
    prompts = [p for s in prompt_sets for p in s.prompts] + ([spec.negative_prompt] if spec.negative_prompt else [])
    truncated = check_prompt_lengths(prompts, lambda p: len(tokenizer(p).input_ids), max_tokens=min(limit, 77),
                                     allow_truncation=allow_truncation)
    if truncated:
        or_silent(reporter).warn(f"{len(truncated)} prompt(s) are truncated to 77 tokens: "
                                 + "; ".join(repr(p) for p in truncated))
    return embed_prompt_sets(generator, measurer, prompt_sets, steps=chosen.steps, guidance=chosen.guidance,
                             negative_prompt=spec.negative_prompt, batch_size=batch_size, call_shape=call_shape,
                             reporter=reporter)


def _config(measurer, generator, generation: dict | None, settings: dict, embeddings: dict) -> dict[str, Any]:
    """The resolved configuration of a test (``generator`` None: no prompt sets; ``measurer``
    None: every set is a file of embeddings)."""
    return {
        "measurer": None if measurer is None else {"spec": measurer.ref.spec, "identity": measurer.identity},
        "pipeline": None if generator is None else {
            "spec": generator.ref.spec, "identity": generator.identity, "folder": str(generator.folder),
        },
        "generation": generation,
        "device": getattr(measurer, "device", None),
        "dtype": generator.dtype if generator is not None else None,
        "test": settings,
        "embed_dim": int(np.shape(next(iter(embeddings.values())))[-1]),
    }


def assoc_from_names(spec: AssocSpec | str | Path | None, options: AssocOptions = AssocOptions(), *,
                     reporter: Reporter | None = None) -> AssocResult:
    """Read the spec and the sets' files, resolve and load the models it needs, then :func:`run_assoc`.

    ``options.sets`` maps X, Y, A, B to a file of embeddings or a folder of images (``--set``),
    replacing the spec's set (``spec`` may be None when all four are given); ``options.labels``
    renames sets. Files are read and checked before any model loads. No model is loaded (nor
    torch imported) when every set is a file of embeddings; the generator only when the spec has
    prompt sets, so a text-only test never imports diffusers. ``reporter`` gets the tiny-model
    warning, warnings and progress.
    """
    from ldmprobe.results.provenance import now_iso

    started = now_iso()
    if spec is not None and not isinstance(spec, AssocSpec):
        spec = load_assoc_spec(spec)
    if options.sets or options.labels or spec is None:
        spec = with_set_paths(spec, dict(options.sets or {}), options.labels)
    spec, sources = read_set_sources(spec)
    if not spec.needs_measurer:
        return run_assoc(spec, options, measurer=None, started=started, reporter=reporter, sources=sources)
    from ldmprobe.models import sources as models
    from ldmprobe.models.loader import LazyGenerator, ModelLoader

    pipeline, measurer = models_for(None, options)  # an association spec names no models
    loader = ModelLoader.from_names(pipeline=pipeline, revision=options.revision, measurer=measurer,
                                    device=options.device, dtype=options.dtype, offline=options.offline,
                                    needs_generator=spec.needs_generator)
    if loader.tiny:
        or_silent(reporter).warn(models.TINY_WARNING)
    generator = LazyGenerator(loader) if spec.needs_generator else None  # weights load only if images are missing
    loaded = loader.get_measurer()
    return run_assoc(spec, options, measurer=loaded, generator=generator, started=started, reporter=reporter,
                     sources=sources)
