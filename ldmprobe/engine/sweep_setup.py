"""A sweep's setup: options, models resolved (configs only), the recipe and the keyed work items.

Nothing here loads a model or imports torch: ``--dry-run`` stops here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ldmprobe import SCHEMA_VERSION
from ldmprobe.engine import cache
from ldmprobe.engine.workitems import Recipe, WorkItem, unique_items, work_items
from ldmprobe.errors import BadInputError
from ldmprobe.models import load as model_load
from ldmprobe.models import sources as models
from ldmprobe.specs.generation import GenerationSettings
from ldmprobe.specs.sweep import Spec, check_prompt_lengths


@dataclass
class SweepOptions:
    """Everything a sweep needs besides the spec (CLI flags map one to one)."""

    pipeline: str = models.DEFAULT_GENERATOR
    revision: str | None = None
    measurer: str = models.DEFAULT_MEASURER
    device: str = "auto"
    dtype: str = "auto"
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    negative_prompt: str | None = None
    batch_size: int | None = None
    allow_truncation: bool = False
    nsfw: str = "keep"  # keep | drop
    offline: bool = False
    out: Path | None = None
    replace: bool = False  # --replace: an --out run folder that holds files is replaced whole
    runs_dir: Path = Path("runs")
    stats_seed: int = 0
    permutations: int = 9999
    bootstrap: int = 2000
    probe_templates: tuple[str, ...] | None = None
    vocab: tuple[str, ...] = ("adjectives", "nationalities", "objects", "professions")
    write_images: bool = True


@dataclass
class SweepSetup:
    spec: Spec
    options: SweepOptions
    generator_ref: models.GeneratorRef
    measurer_ref: models.MeasurerRef
    generator_folder: Path
    device: str
    dtype: str
    recipe: Recipe
    items: list[WorkItem]
    truncated: list[str] = field(default_factory=list)

    @property
    def tiny(self) -> bool:
        return self.generator_ref.is_tiny or self.measurer_ref.is_tiny

    @property
    def reference(self) -> bool:
        """Made with the shipped reference world (true of that world only)."""
        return self.generator_ref.is_reference or self.measurer_ref.is_reference


def native_size(folder: Path) -> int:
    """The generator's native image side (the height when it is not square)."""
    return models.native_image_size(folder)[0]


def make_plan(spec: Spec, options: SweepOptions) -> SweepSetup:
    """Resolve models (configs only), build the recipe and the keyed work items."""
    cache.check_cache_root()  # an unwritable LDMPROBE_CACHE is named now, not after generating
    generator_ref = models.resolve_generator(options.pipeline, options.revision)
    measurer_ref = models.resolve_measurer(options.measurer)
    if options.nsfw not in ("keep", "drop"):
        raise BadInputError(f"--nsfw must be keep or drop, not {options.nsfw!r}")
    folder = models.locate_generator(generator_ref, offline=options.offline, configs_only=True)
    models.ensure_measurer_available(measurer_ref, offline=options.offline)
    device, dtype = model_load.pick_device(options.device)
    if options.dtype != "auto":
        dtype = options.dtype
    size = native_size(folder)
    negative = options.negative_prompt if options.negative_prompt is not None else spec.negative_prompt
    generation = GenerationSettings.resolve(steps=options.steps, guidance=options.guidance, spec_steps=spec.steps,
                                            spec_guidance=spec.guidance, tiny=generator_ref.is_tiny)
    recipe = Recipe(
        pipeline=models.generator_identity(generator_ref, folder),
        scheduler=models.scheduler_identity(folder),
        steps=generation.steps,
        guidance=generation.guidance,
        width=options.width or spec.width or size,
        height=options.height or spec.height or size,
        dtype=dtype,
        negative_prompt=negative,
    )
    for side in ("width", "height"):
        if getattr(recipe, side) % 8:
            raise BadInputError(f"--{side} {getattr(recipe, side)} must be a multiple of 8.")
    counter = model_load.TokenCounter(generator_ref, folder, offline=options.offline)
    prompts = spec.prompts() + ([recipe.negative_prompt] if recipe.negative_prompt else [])
    try:
        truncated = check_prompt_lengths(prompts, counter, max_tokens=counter.max_length,
                                         allow_truncation=options.allow_truncation)
    finally:
        counter.save()
    return SweepSetup(
        spec=spec, options=options, generator_ref=generator_ref, measurer_ref=measurer_ref,
        generator_folder=folder, device=device, dtype=dtype, recipe=recipe,
        items=work_items(spec, recipe), truncated=list(truncated),
    )


def dry_run_document(setup: SweepSetup) -> dict:
    """The plan, printed by --dry-run without loading any model."""
    store = cache.ImageStore()
    unique = unique_items(setup.items)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "sweep-plan",
        "spec": setup.spec.to_dict(),
        "config": config_block(setup, batch_size=None),
        "counts": {
            "planned": len(setup.items),
            "unique": len(unique),
            "cached": sum(store.has(item.key) for item in unique),
        },
        "items": [
            {"template": i.template, "term": i.term, "seed": i.seed, "prompt": i.prompt, "key": i.key,
             "cached": store.has(i.key)}
            for i in setup.items
        ],
    }


def config_block(setup: SweepSetup, batch_size: int | None) -> dict:
    recipe = setup.recipe
    return {
        "pipeline": {"spec": setup.generator_ref.spec, "source": setup.generator_ref.source,
                     "identity": recipe.pipeline_dict},
        "measurer": {"spec": setup.measurer_ref.spec, "source": setup.measurer_ref.source,
                     "identity": models.measurer_identity(setup.measurer_ref)},
        "scheduler": recipe.scheduler_dict,
        "steps": recipe.steps,
        "guidance": recipe.guidance,
        "width": recipe.width,
        "height": recipe.height,
        "dtype": recipe.dtype,
        "negative_prompt": recipe.negative_prompt,
        "device": setup.device,
        "batch_size": batch_size,
        "nsfw": setup.options.nsfw,
        "statistics": {"seed": setup.options.stats_seed, "permutations": setup.options.permutations,
                       "bootstrap": setup.options.bootstrap},
    }
