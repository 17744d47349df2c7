"""A sweep over several guidance / steps levels (spec ``guidance = [3, 5, 7.5]``), around the
single-level machinery: each level's images are made with its own recipe, each level is
analysed as a single-level sweep on its own embeddings, and the rates' trends over guidance
are computed across the levels (``analysis.trends``). A single-level sweep passes straight through."""

from __future__ import annotations

from pathlib import Path

from ldmprobe.analysis.sweep import StatisticsSettings
from ldmprobe.engine import cache
from ldmprobe.engine.progress import GenerationProgress
from ldmprobe.engine.sweep_images import ItemRecord, generate_missing
from ldmprobe.engine.sweep_setup import SweepSetup
from ldmprobe.models.loader import ModelLoader


def generate_levels(setup: SweepSetup, loaded: ModelLoader, reporter, store, mine: list,
                    progress: GenerationProgress) -> tuple[set[str], int]:
    """Make this rank's missing images level by level (each guidance / steps level is its own
    recipe); (keys made now, the smallest batch size any level ended with)."""
    if not setup.several_levels:
        return generate_missing(setup, loaded, reporter, store, items=mine, progress=progress)
    made: set[str] = set()
    sizes = []
    for index in range(len(setup.levels)):
        level = setup.level_setup(index)
        keys = {item.key for item in level.items}
        level_made, size = generate_missing(level, loaded, reporter, store, progress=progress,
                                            items=[item for item in mine if item.key in keys])
        made |= level_made
        sizes.append(size)
    return made, min(sizes)


def level_setups(setup: SweepSetup) -> list[SweepSetup]:
    """The setup of each guidance / steps level (the setup itself for a single-level sweep)."""
    if not setup.several_levels:
        return [setup]
    return [setup.level_setup(index) for index in range(len(setup.levels))]


def levels_and_trends(setup: SweepSetup, datas: list, analyses: list, settings: StatisticsSettings):
    """A several-level sweep's ``levels`` and ``trends`` (both empty for a single level)."""
    if not setup.several_levels:
        return (), ()
    from ldmprobe.analysis.trends import sweep_trends
    from ldmprobe.results.sweep import LevelResult

    pairs = [(level.guidance, level.steps) for level in setup.levels]
    levels = tuple(LevelResult(guidance=g, steps=s, baseline=setup.spec.baseline, analysis=a)
                   for (g, s), a in zip(pairs, analyses))
    return levels, sweep_trends(datas, pairs, alpha=settings.alpha)


def add_levels_to_items(folder: Path, setup: SweepSetup, records: dict[str, ItemRecord]) -> None:
    """items.jsonl of a several-level sweep: each line with its ``guidance`` and ``steps``, and a
    line for every image of the other levels (referenced by key; ``ldmprobe export`` copies them)."""
    import json

    from ldmprobe.records import jsonable

    path = folder / "items.jsonl"
    level_of = {item.key: (item.recipe.guidance, item.recipe.steps) for item in setup.items}
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    written = {line["key"] for line in lines}
    drop = setup.options.nsfw == "drop"
    for item in setup.items:
        if item.key in written:
            continue
        record = records[item.key]
        lines.append({"template": item.template, "template_index": item.template_index, "term": item.term,
                      "is_baseline": item.is_baseline, "seed": item.seed, "prompt": item.prompt, "key": item.key,
                      "image": None, "cached": record.cached,
                      "flags": {"failed": record.failed, "nsfw": record.nsfw, "dropped": drop and bool(record.nsfw)}})
        written.add(item.key)
    for line in lines:
        line.setdefault("guidance", level_of[line["key"]][0])
        line.setdefault("steps", level_of[line["key"]][1])
    cache.atomic_write_text(path, "".join(json.dumps(line, ensure_ascii=False, allow_nan=False, default=jsonable)
                                          + "\n" for line in lines))
