"""What a plan needs from its two models, read in one pass without loading either: where they
are, the generator's configs, how it runs (device, dtype, memory, guidance), the texts' token counts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ldmprobe.models import configs, runtime, sources
from ldmprobe.models import load as model_load


@dataclass(frozen=True)
class PlanModels:
    generator_ref: sources.GeneratorRef
    measurer_ref: sources.MeasurerRef
    folder: Path | None  # None only in a dry run's plan made without the generator's configs
    device: str
    dtype: str
    notes: tuple[str, ...]  # what a dry run could not have, and what its plan cannot know without it
    generator_tiny: bool = False
    configs: configs.GeneratorConfigs | None = None
    pipeline: dict | None = None  # the generator's identity in image keys
    guidance_notes: tuple[str, ...] = ()  # what the requested guidance and negative prompt do (Flux)
    texts: model_load.TextLimits | None = None


def resolve_models(pipeline: str, revision: str | None, measurer: str, *, offline: bool, device: str, dtype: str,
                   prompts, guidances, negative_prompt: str | None, dry_run: bool = False, reporter=None):
    """``--pipeline`` / ``--measurer`` resolved (configs only), ``--device`` / ``--dtype`` chosen, the
    notes on ``guidances`` (None: the model's default), ``prompts`` counted. With ``dry_run`` a
    model that cannot be had offline is a note (warned through ``reporter``), not an error."""
    generator_ref, measurer_ref, folder, measurer_folder, missing = sources.locate_pair(
        pipeline, revision, measurer, offline=offline, tolerate=dry_run)
    notes = ([f"{missing[0]}; the plan lists prompts and seeds, but its image keys, cache status, scheduler, "
              "native size and prompt lengths are unknown until the generator's configs are cached."] if missing[0]
             else []) + ([missing[1] + "; a sweep needs it."] if missing[1] else [])
    described = configs.describe(folder) if folder is not None else None
    device, dtype, memory, guidance_notes = runtime.settle(device, dtype, described, guidances, negative_prompt)
    for note in notes if reporter is not None else ():
        reporter.warn(note)
    if folder is None:
        return PlanModels(generator_ref, measurer_ref, None, device, dtype, tuple(notes))
    texts = model_load.text_limits(generator_ref, folder, prompts, described.t5, measurer_ref, measurer_folder,
                                   offline=offline)
    return PlanModels(generator_ref, measurer_ref, folder, device, dtype, tuple(notes), generator_ref.is_tiny,
                      described, sources.generator_identity(generator_ref, folder, described, memory),
                      tuple(guidance_notes), texts)
