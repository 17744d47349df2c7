"""A sweep's setup: options, models resolved (configs only), the recipe and the keyed work items.

Nothing here loads a model or imports torch: ``--dry-run`` stops here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ldmprobe import SCHEMA_VERSION
from ldmprobe.engine import text_limits
from ldmprobe.store.files import check_cache_root
from ldmprobe.store.images import ImageStore
from ldmprobe.engine.recipe import plan_recipe
from ldmprobe.engine.workitems import PlanItems, Recipe, WorkItem, call_shape, unique_items, work_items
from ldmprobe.errors import BadInputError
from ldmprobe.models import sources as models
from ldmprobe.models.plan import resolve_models
from ldmprobe.models.runtime import check_device_name
from ldmprobe.specs.generation import GenerationSettings, check_guidance, check_image_side
from ldmprobe.specs.sweep import Spec, expand


@dataclass(frozen=True)
class GenerationOptions:
    """How images are made and where the run goes: the settings sweep and trace share (CLI flags
    map one to one). A model left None is the spec's, else the default (:func:`models_for`);
    steps, guidance, size and negative prompt left None are the spec's, else the generator's."""

    pipeline: str | None = None
    revision: str | None = None
    measurer: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    negative_prompt: str | None = None
    batch_size: int | None = None  # images per step of the generation loop: changes no image
    call_shape: int | None = None  # images per generation call (None: the device's default); in each image's key
    allow_truncation: bool = False  # prompts over the encoder's limit truncated instead of refused
    offline: bool = False
    out: Path | None = None
    replace: bool = False  # --replace: an --out run folder that holds files is replaced whole
    runs_dir: Path = Path("runs")


@dataclass(frozen=True)
class SweepOptions(GenerationOptions):
    """Everything a sweep needs besides the spec: the generation settings and the statistics'."""

    nsfw: str = "keep"  # keep | drop
    stats_seed: int = 0
    permutations: int = 9999
    bootstrap: int = 2000
    probe_templates: tuple[str, ...] | None = None
    vocab: tuple[str, ...] = ("adjectives", "nationalities", "objects", "professions")
    write_images: bool = True


def as_sweep_options(options: GenerationOptions, **changes) -> SweepOptions:
    """A sweep's options with ``options``' generation settings (and ``changes``): how trace and
    neighbours make their images as a sweep makes them."""
    return SweepOptions(**{**{f.name: getattr(options, f.name) for f in dataclasses.fields(GenerationOptions)},
                           **changes})


def models_for(spec: Spec | None, options: GenerationOptions) -> tuple[str, str]:
    """(generator, measurer): the options', else the spec's, else the defaults; the one place
    sweep, trace, a sweep of your own images, neighbours and assoc (``spec`` None: no sweep spec
    names models there) resolve them."""
    return (options.pipeline or (spec and spec.pipeline) or models.DEFAULT_GENERATOR,
            options.measurer or (spec and spec.measurer) or models.DEFAULT_MEASURER)


@dataclass(frozen=True)
class PlanLevel:
    """One (guidance, steps) level of a sweep: its recipe and its keyed work items."""

    guidance: float
    steps: int
    recipe: Recipe
    items: tuple[WorkItem, ...]


@dataclass
class SweepSetup:
    spec: Spec
    options: SweepOptions
    generator_ref: models.GeneratorRef
    measurer_ref: models.MeasurerRef
    generator_folder: Path | None  # None only in a --dry-run plan made without the generator's configs
    device: str
    dtype: str
    recipe: Recipe | None  # None only in such a plan
    items: list[WorkItem]
    truncated: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a --dry-run plan could not know, and why
    #: Every (guidance, steps) level (spec ``guidance = [3, 5, 7.5]``): ``recipe`` is the first's and
    #: ``items`` every level's, level by level. One entry for a single-level sweep.
    levels: tuple[PlanLevel, ...] = ()

    @property
    def several_levels(self) -> bool:
        return len(self.levels) > 1

    def level_setup(self, index: int) -> SweepSetup:
        """This setup narrowed to one level: its recipe and items (what the single-level code reads)."""
        from dataclasses import replace

        level = self.levels[index]
        return replace(self, recipe=level.recipe, items=list(level.items), levels=(level,))

    @property
    def tiny(self) -> bool:
        return self.generator_ref.is_tiny or self.measurer_ref.is_tiny

    @property
    def reference(self) -> bool:
        """Made with the shipped reference world (true of that world only)."""
        return self.generator_ref.is_reference or self.measurer_ref.is_reference


def call_groups(setup: SweepSetup) -> dict[str, int]:
    """Each planned image's call group: the generation call a clean one-process run makes it in
    (its index among its level's unique items, divided by the call shape; numbered on across
    levels). Ranks deal out whole groups (``distributed.shard``), so their calls are full: the
    items of a group sit at different slots (``generate_into_store``)."""
    groups: dict[str, int] = {}
    first = 0
    for level in setup.levels or (PlanLevel(0.0, 0, setup.recipe, tuple(setup.items)),):
        shape = call_shape(level.recipe, setup.device)
        unique = unique_items(level.items)
        for index, item in enumerate(unique):
            groups.setdefault(item.key, first + index // shape)
        first += -(-len(unique) // shape)
    return groups


_DTYPES = ("auto", "float16", "bfloat16", "float32")


def check_options(spec: Spec, options: SweepOptions) -> None:
    """Every option that can be checked without a model, at once (well under a second): a bad
    one exits 2 naming it, before any model is located, built or loaded."""
    if options.nsfw not in ("keep", "drop"):
        raise BadInputError(f"--nsfw must be keep or drop, not {options.nsfw!r}")
    if options.dtype not in _DTYPES:
        raise BadInputError(f"--dtype must be one of {', '.join(_DTYPES)}, not {options.dtype!r}")
    check_guidance(options.guidance)
    for side in ("width", "height"):
        check_image_side(getattr(options, side), f"--{side}")
    for name, value in (("--steps", options.steps), ("--batch-size", options.batch_size),
                        ("--call-shape", options.call_shape),
                        ("--permutations", options.permutations), ("--bootstrap", options.bootstrap)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise BadInputError(f"{name} must be a whole number ≥ 1, not {value!r}")
    check_device_name(options.device)
    check_vocabularies(options.vocab)


def check_vocabularies(names) -> None:
    """--vocab names: each a shipped list or a readable file (read now, not after generating)."""
    from ldmprobe.specs.vocab import DEFAULT_VOCAB, load_vocabulary

    for name in names or ():
        if str(name).strip() == DEFAULT_VOCAB:  # built in: always there
            continue
        try:
            load_vocabulary([name])
        except BadInputError as exc:
            raise BadInputError(f"--vocab {name}: {exc}") from None


def make_plan(spec: Spec, options: SweepOptions, *, dry_run: bool = False, reporter=None) -> SweepSetup:
    """Resolve models (configs only), build the recipe and the keyed work items.

    With ``dry_run`` (what --dry-run prints) a generator or measurer that cannot be had offline
    is not an error: the plan says what it could not know (keys, cache, size, prompt lengths)
    in ``notes``, warned through ``reporter``."""
    check_options(spec, options)
    check_cache_root()  # an unwritable LDMPROBE_CACHE is named now, not after generating
    levels = plan_levels(spec, options)
    negative = options.negative_prompt if options.negative_prompt is not None else spec.negative_prompt
    prompts = spec.prompts() + ([negative] if negative else [])
    pipeline, measurer = models_for(spec, options)
    resolved = resolve_models(pipeline, options.revision, measurer, offline=options.offline,
                              device=options.device, dtype=options.dtype, prompts=prompts,
                              guidances=[guidance for guidance, _ in levels], negative_prompt=negative,
                              dry_run=dry_run, reporter=reporter)
    notes = list(resolved.notes)
    setup = SweepSetup(spec=spec, options=options, generator_ref=resolved.generator_ref,
                       measurer_ref=resolved.measurer_ref, generator_folder=resolved.folder, device=resolved.device,
                       dtype=resolved.dtype, recipe=None, items=[], notes=notes)
    if resolved.folder is None:
        return setup
    recipes = [plan_recipe(spec, options, resolved, guidance, steps) for guidance, steps in levels]
    for note in resolved.guidance_notes:  # Flux: distilled or no guidance (each note once)
        if note not in notes:
            notes.append(note)
            if reporter is not None:
                reporter.warn(note)
    truncated = text_limits.check_texts(spec, options, resolved, prompts, notes, reporter)
    setup.levels = tuple(PlanLevel(r.guidance, r.steps, r, _held(work_items(spec, r))) for r in recipes)
    setup.recipe, setup.truncated = recipes[0], list(truncated)
    setup.items = setup.levels[0].items if len(recipes) == 1 else [i for level in setup.levels for i in level.items]
    return setup


def plan_levels(spec: Spec, options: SweepOptions) -> list[tuple[float | None, int | None]]:
    """The (guidance, steps) levels to make, guidance-major: the spec's lists crossed, except
    that ``--guidance`` / ``--steps`` given on the command line set one value (None: the default)."""
    guidance = (options.guidance,) if options.guidance is not None else (spec.guidance_levels or (spec.guidance,))
    steps = (options.steps,) if options.steps is not None else (spec.steps_levels or (spec.steps,))
    return [(g, s) for g in guidance for s in steps]


def _held(items):
    """The plan's items as held: a compact :class:`PlanItems` as it is, a list as a tuple."""
    return items if isinstance(items, PlanItems) else tuple(items)


def dry_run_document(setup: SweepSetup) -> dict:
    """The plan, printed by --dry-run without loading any model."""
    if setup.recipe is None:
        return _partial_plan(setup)
    store = ImageStore()
    unique = unique_items(setup.items)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "sweep-plan",
        "spec": setup.spec.to_dict(),
        "config": config_block(setup),
        "counts": {
            "planned": len(setup.items),
            "unique": len(unique),
            "cached": sum(store.has(item.key) for item in unique),
        },
        "items": [
            {"template": i.template, "term": i.term, "seed": i.seed, "prompt": i.prompt, "key": i.key,
             "cached": store.has(i.key), **_level_of(setup, i.recipe)}
            for i in setup.items
        ],
        "notes": list(setup.notes),
        **_levels_block(setup, [(level.guidance, level.steps) for level in setup.levels]),
    }


def _level_of(setup: SweepSetup, recipe: Recipe) -> dict:
    """An item's ``guidance`` and ``steps`` (only when the sweep has several levels)."""
    return {"guidance": recipe.guidance, "steps": recipe.steps} if setup.several_levels else {}


def _levels_block(setup: SweepSetup, levels: list) -> dict:
    """The plan's ``levels`` (several guidance / steps values; nothing for one)."""
    if len(levels) < 2:
        return {}
    return {"levels": [{"guidance": g, "steps": s} for g, s in levels]}


def _partial_plan(setup: SweepSetup) -> dict:
    """A plan made without the generator's configs (offline, not cached): prompts and seeds,
    no keys; nothing can be found in the cache without them, so nothing counts as cached."""
    spec, options = setup.spec, setup.options
    levels = [GenerationSettings.resolve(steps=s, guidance=g, tiny=setup.generator_ref.is_tiny)
              for g, s in plan_levels(spec, options)]
    several = len(levels) > 1
    items = [{"template": template, "term": term, "seed": seed, "prompt": expand(template, term), "key": None,
              "cached": False, **({"guidance": level.guidance, "steps": level.steps} if several else {})}
             for level in levels for template in spec.templates for term in spec.all_terms for seed in spec.seeds]
    generation = levels[0]
    negative = options.negative_prompt if options.negative_prompt is not None else spec.negative_prompt
    config = {
        "pipeline": {"spec": setup.generator_ref.spec, "source": setup.generator_ref.source, "identity": None},
        "measurer": {"spec": setup.measurer_ref.spec, "source": setup.measurer_ref.source,
                     "identity": models.measurer_identity(setup.measurer_ref)},
        "scheduler": None, "steps": generation.steps, "guidance": generation.guidance,
        "width": options.width or spec.width, "height": options.height or spec.height, "dtype": setup.dtype,
        "negative_prompt": negative, "device": setup.device, "batch_size": None, "nsfw": options.nsfw,
        "statistics": {"seed": options.stats_seed, "permutations": options.permutations,
                       "bootstrap": options.bootstrap},
    }
    return {
        "schema_version": SCHEMA_VERSION, "kind": "sweep-plan", "spec": spec.to_dict(), "config": config,
        "counts": {"planned": len(items),
                   "unique": len({(i["prompt"], i["seed"], i.get("guidance"), i.get("steps")) for i in items}),
                   "cached": 0},
        "items": items, "notes": list(setup.notes),
        **_levels_block(setup, [(level.guidance, level.steps) for level in levels]),
    }


def recipe_settings(recipe: Recipe) -> dict:
    """How a recipe draws (scheduler, steps, guidance, size, dtype): the config blocks' shared part."""
    return {"scheduler": recipe.scheduler_dict, "steps": recipe.steps, "guidance": recipe.guidance,
            "width": recipe.width, "height": recipe.height, "dtype": recipe.dtype}


def config_block(setup: SweepSetup, batch_size: int | None = None) -> dict:
    """The resolved configuration; ``batch_size`` is the shape of every generation call (issue 28:
    the recipe's call shape whatever ``--batch-size`` said; None: the plan's)."""
    recipe = setup.recipe
    return {
        "pipeline": {"spec": setup.generator_ref.spec, "source": setup.generator_ref.source,
                     "identity": recipe.pipeline_dict},
        "measurer": {"spec": setup.measurer_ref.spec, "source": setup.measurer_ref.source,
                     "identity": models.measurer_identity(setup.measurer_ref)},
        **recipe_settings(recipe),
        "negative_prompt": recipe.negative_prompt,
        "device": setup.device,
        "batch_size": call_shape(recipe, setup.device) if batch_size is None else batch_size,
        "call_shape": call_shape(recipe, setup.device) if batch_size is None else batch_size,
        "nsfw": setup.options.nsfw,
        "statistics": {"seed": setup.options.stats_seed, "permutations": setup.options.permutations,
                       "bootstrap": setup.options.bootstrap},
    }
