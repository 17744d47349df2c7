"""A sweep's setup: options, models resolved (configs only), the recipe and the keyed work items.

Nothing here loads a model or imports torch: ``--dry-run`` stops here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ldmprobe import SCHEMA_VERSION
from ldmprobe.engine import text_limits
from ldmprobe.store.files import check_cache_root
from ldmprobe.store.images import ImageStore
from ldmprobe.engine.workitems import PlanItems, Recipe, WorkItem, call_shape, recipe_call_shape, unique_items, work_items
from ldmprobe.errors import BadInputError, ModelUnavailableError
from ldmprobe.models import load as model_load
from ldmprobe.models import sources as models
from ldmprobe.specs.generation import GenerationSettings, check_guidance, check_image_side
from ldmprobe.specs.sweep import Spec, expand


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
    batch_size: int | None = None  # images per step of the generation loop: changes no image
    call_shape: int | None = None  # images per generation call (None: the device's default); in each image's key
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


def native_size(folder: Path) -> int:
    """The generator's native image side (the height when it is not square)."""
    return models.native_image_size(folder)[0]


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
    model_load.check_device_name(options.device)
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
    generator_ref = models.resolve_generator(options.pipeline, options.revision)
    measurer_ref = models.resolve_measurer(options.measurer)
    notes: list[str] = []
    try:
        folder = models.locate_generator(generator_ref, offline=options.offline, configs_only=True)
    except ModelUnavailableError as exc:
        if not dry_run:
            raise
        folder = None
        notes.append(f"{_first_sentence(exc)}; the plan lists prompts and seeds, but its image keys, cache "
                     "status, scheduler, native size and prompt lengths are unknown until the generator's "
                     "configs are cached.")
    try:
        models.ensure_measurer_available(measurer_ref, offline=options.offline)
    except ModelUnavailableError as exc:
        if not dry_run:
            raise
        notes.append(_first_sentence(exc) + "; a sweep needs it.")
    device, dtype = model_load.pick_device(options.device)
    if options.dtype != "auto":
        dtype = options.dtype
    for note in notes:
        if reporter is not None:
            reporter.warn(note)
    if folder is None:
        return SweepSetup(spec=spec, options=options, generator_ref=generator_ref, measurer_ref=measurer_ref,
                          generator_folder=None, device=device, dtype=dtype, recipe=None, items=[], notes=notes)
    if options.dtype == "auto":  # SD 3 / Flux on CUDA: bfloat16, as they are released (float16 overflows)
        from ldmprobe.models.runtime import preferred_dtype

        dtype = preferred_dtype(folder, device, dtype)
    recipes = [_recipe(spec, options, generator_ref, folder, dtype, guidance, steps, device=device)
               for guidance, steps in plan_levels(spec, options)]
    from ldmprobe.models.runtime import guidance_notes

    for recipe in recipes:  # Flux: distilled or no guidance (each note once)
        for note in guidance_notes(folder, recipe.guidance, recipe.negative_prompt):
            if note not in notes:
                notes.append(note)
                if reporter is not None:
                    reporter.warn(note)
    recipe = recipes[0]
    prompts = spec.prompts() + ([recipe.negative_prompt] if recipe.negative_prompt else [])
    truncated = text_limits.check_prompt_limits(generator_ref, folder, prompts, options, notes, reporter)
    text_limits.check_measurer_texts(spec, options, measurer_ref)
    levels = tuple(PlanLevel(r.guidance, r.steps, r, _held(work_items(spec, r))) for r in recipes)
    return SweepSetup(
        spec=spec, options=options, generator_ref=generator_ref, measurer_ref=measurer_ref,
        generator_folder=folder, device=device, dtype=dtype, recipe=recipe,
        items=levels[0].items if len(levels) == 1 else [item for level in levels for item in level.items], truncated=list(truncated), notes=notes,
        levels=levels,
    )


def plan_levels(spec: Spec, options: SweepOptions) -> list[tuple[float | None, int | None]]:
    """The (guidance, steps) levels to make, guidance-major: the spec's lists crossed, except
    that ``--guidance`` / ``--steps`` given on the command line set one value (None: the default)."""
    guidance = (options.guidance,) if options.guidance is not None else (spec.guidance_levels or (spec.guidance,))
    steps = (options.steps,) if options.steps is not None else (spec.steps_levels or (spec.steps,))
    return [(g, s) for g in guidance for s in steps]


def _first_sentence(exc: Exception) -> str:
    text = str(exc)
    return text.split(". Ways forward")[0].rstrip(".")


def _recipe(spec: Spec, options: SweepOptions, generator_ref, folder: Path, dtype: str,
            guidance: float | None = None, steps: int | None = None, *, device: str) -> Recipe:
    """The generation recipe of one level (``guidance`` / ``steps``: the level's, from
    :func:`plan_levels`; None: the model's default), the size from the options, else the spec,
    else the model's native size; the call shape from ``--call-shape`` (in the key only when it
    is not ``device``'s default)."""
    size = native_size(folder)
    negative = options.negative_prompt if options.negative_prompt is not None else spec.negative_prompt
    from ldmprobe.models.configs import default_guidance

    generation = GenerationSettings.resolve(steps=steps, guidance=guidance, tiny=generator_ref.is_tiny,
                                            model_guidance=default_guidance(folder))
    recipe = Recipe(
        pipeline=models.generator_identity(generator_ref, folder),
        scheduler=models.scheduler_identity(folder),
        steps=generation.steps,
        guidance=generation.guidance,
        width=options.width or spec.width or size,
        height=options.height or spec.height or size,
        dtype=dtype,
        negative_prompt=negative,
        call_shape=recipe_call_shape(options.call_shape, device),
    )
    multiple = max(8, _vae_factor(folder))
    for side in ("width", "height"):
        label = (f"--{side}" if getattr(options, side) else f"{side} (the spec's)" if getattr(spec, side)
                 else f"{side} (the model's native size)")
        check_image_side(getattr(recipe, side), label, multiple)
    return recipe


def _vae_factor(folder: Path) -> int:
    """How much the generator's autoencoder downsamples (8 for Stable Diffusion)."""
    import json

    config = folder / "vae" / "config.json"
    try:
        return 2 ** (len(json.loads(config.read_text()).get("block_out_channels", [0] * 4)) - 1)
    except (OSError, ValueError, TypeError):
        return 8


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
