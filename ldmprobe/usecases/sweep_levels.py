"""A sweep over several guidance / steps levels (spec ``guidance = [3, 5, 7.5]``), around the
single-level machinery: each level's images are made with its own recipe, each level is
analysed as a single-level sweep on its own embeddings, and the rates' trends over guidance
are computed across the levels (``analysis.trends``). A single-level sweep passes straight through."""

from __future__ import annotations

from ldmprobe.analysis.sweep import StatisticsSettings
from ldmprobe.engine.progress import GenerationProgress
from ldmprobe.engine.sweep_images import generate_missing
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
    return levels_result([(level.guidance, level.steps) for level in setup.levels], setup.spec.baseline, datas,
                         analyses, settings)


def levels_result(pairs: list, baseline: str, datas: list, analyses: list, settings: StatisticsSettings):
    """``levels`` (one single-level analysis per (guidance, steps) pair) and the rates' ``trends``
    over guidance; for generated sweeps and for the user's own data that carries its levels."""
    from ldmprobe.analysis.trends import sweep_trends
    from ldmprobe.results.sweep import LevelResult

    levels = tuple(LevelResult(guidance=g, steps=s, baseline=baseline, analysis=a)
                   for (g, s), a in zip(pairs, analyses))
    return levels, sweep_trends(datas, pairs, alpha=settings.alpha)

