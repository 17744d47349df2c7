"""Run an association test: embed the four sets (generating images where a set is prompts), test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ldmprobe.engine.assoc_images import embed_prompt_sets, embed_word_set
from ldmprobe.errors import SpecError
from ldmprobe.reporting import Reporter, or_silent
from ldmprobe.results.assoc import AssocResult
from ldmprobe.specs.assoc import load_assoc_spec
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


def run_assoc(
    spec: AssocSpec,
    *,
    measurer,
    generator=None,
    ddof: int | None = None,
    permutations: int | None = None,
    seed: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    batch_size: int = 8,
    allow_truncation: bool = False,
    reporter: Reporter | None = None,
    started: str | None = None,
    unit: str | None = None,
) -> AssocResult:
    """Embed the four sets with loaded models and run the WEAT statistics.

    ``generator`` is needed only when a set is made of prompts (it is never touched
    otherwise). Arguments left as None fall back to the spec's [test] / generation values,
    then to the defaults (ddof 1, 100,000 permutations, seed 0, 50 steps, guidance 7.5).
    ``unit``: None permutes prompts as blocks when a target set is made of prompts (words
    otherwise); "image" permutes single images (anti-conservative; warned).
    """
    from ldmprobe.analysis.association import association_test
    from ldmprobe.results.provenance import now_iso, provenance

    started = started or now_iso()
    settings = resolve_test_settings(spec, ddof=ddof, permutations=permutations, seed=seed)
    embeddings = {s.name: embed_word_set(measurer, s) for s in spec.sets.values() if s.kind == "words"}
    prompt_sets = [s for s in spec.sets.values() if s.kind == "prompts"]
    records, generation = [], None
    if prompt_sets:
        image_embeddings, records, recipe = _embed_images(
            spec, prompt_sets, measurer, generator, steps=steps, guidance=guidance, batch_size=batch_size,
            allow_truncation=allow_truncation, reporter=reporter)
        embeddings.update(image_embeddings)
        generation = {**recipe.to_dict(), "batch_size": batch_size}
    unit, blocks = _permutation_unit(spec, records, unit, reporter)
    outcome = association_test(embeddings["X"], embeddings["Y"], embeddings["A"], embeddings["B"],
                               x_blocks=blocks.get("X"), y_blocks=blocks.get("Y"), unit=unit, ddof=settings["ddof"],
                               permutations=settings["permutations"], seed=settings["seed"])
    config = _config(measurer, generator if prompt_sets else None, generation, settings, embeddings)
    tiny = bool(getattr(measurer.ref, "is_tiny", False)) or bool(
        prompt_sets and getattr(generator.ref, "is_tiny", False))
    return AssocResult(
        test=outcome, labels={k: s.label for k, s in spec.sets.items()}, permutations=settings["permutations"],
        spec=spec, config=config,
        provenance=provenance(started=started, tiny=tiny, device=config["device"], dtype=config["dtype"]),
        images=tuple(records),
    )


IMAGE_UNIT_WARNING = ("--unit image: single images are re-partitioned although images of one prompt cluster; "
                      "the p-value is anti-conservative (19-31 % of true nulls rejected in our calibration) "
                      "and generalises only to these prompts' images.")


def _permutation_unit(spec: AssocSpec, records, unit: str | None, reporter) -> tuple[str, dict]:
    """The unit permuted and the prompt label of each target image (prompt sets only)."""
    targets = [spec.sets[name] for name in ("X", "Y")]
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


def _embed_images(spec: AssocSpec, prompt_sets, measurer, generator, *, steps, guidance, batch_size: int,
                  allow_truncation: bool, reporter: Reporter | None):
    """Check the prompts' lengths, then make and embed the prompt sets' images."""
    from ldmprobe.specs.sweep import check_prompt_lengths

    if generator is None:
        raise ValueError(f"spec {spec.name!r} has prompt sets: pass a loaded generator")
    chosen = GenerationSettings.resolve(steps=steps, guidance=guidance, spec_steps=spec.steps,
                                        spec_guidance=spec.guidance, tiny=generator.ref.is_tiny)
    tokenizer = generator.tokenizer
    limit = int(getattr(tokenizer, "model_max_length", 77) or 77)
    prompts = [p for s in prompt_sets for p in s.prompts] + ([spec.negative_prompt] if spec.negative_prompt else [])
    truncated = check_prompt_lengths(prompts, lambda p: len(tokenizer(p).input_ids), max_tokens=min(limit, 77),
                                     allow_truncation=allow_truncation)
    if truncated:
        or_silent(reporter).warn(f"{len(truncated)} prompt(s) are truncated to 77 tokens: "
                                 + "; ".join(repr(p) for p in truncated))
    return embed_prompt_sets(generator, measurer, prompt_sets, steps=chosen.steps, guidance=chosen.guidance,
                             negative_prompt=spec.negative_prompt, batch_size=batch_size, reporter=reporter)


def _config(measurer, generator, generation: dict | None, settings: dict, embeddings: dict) -> dict[str, Any]:
    """The resolved configuration of a test (``generator`` None: no image sets)."""
    return {
        "measurer": {"spec": measurer.ref.spec, "identity": measurer.identity},
        "pipeline": None if generator is None else {
            "spec": generator.ref.spec, "identity": generator.identity, "folder": str(generator.folder),
        },
        "generation": generation,
        "device": getattr(measurer, "device", None),
        "dtype": generator.dtype if generator is not None else None,
        "test": settings,
        "embed_dim": int(next(iter(embeddings.values())).shape[-1]),
    }


def assoc_from_names(
    spec: AssocSpec | str | Path,
    *,
    measurer: str,
    pipeline: str = "sd15",
    revision: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    offline: bool = False,
    reporter: Reporter | None = None,
    **options,
) -> AssocResult:
    """Resolve and load the models a spec needs, then :func:`run_assoc`.

    The generator is resolved and loaded only when the spec has prompt sets, so a text-only
    test never imports diffusers. ``reporter`` gets the tiny-model warning, warnings and
    progress; ``options`` go to :func:`run_assoc`.
    """
    from ldmprobe.models import sources as models
    from ldmprobe.models.loader import LazyGenerator, ModelLoader
    from ldmprobe.results.provenance import now_iso

    started = now_iso()
    if not isinstance(spec, AssocSpec):
        spec = load_assoc_spec(spec)
    loader = ModelLoader.from_names(pipeline=pipeline, revision=revision, measurer=measurer, device=device,
                                    dtype=dtype, offline=offline, needs_generator=spec.needs_generator)
    if loader.tiny:
        or_silent(reporter).warn(models.TINY_WARNING)
    generator = LazyGenerator(loader) if spec.needs_generator else None  # weights load only if images are missing
    loaded = loader.get_measurer()
    return run_assoc(spec, measurer=loaded, generator=generator, started=started, reporter=reporter, **options)
