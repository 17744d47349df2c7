"""``ldmprobe sweep SPEC``: parse the flags, run the sweep use case, emit the result."""

from __future__ import annotations

from pathlib import Path

import click

from ldmprobe.cli.checks import MAX_ITEMS, check_items, check_out
from ldmprobe.cli.options import (CliState, generation_options, given, given_models, model_options,
                                  output_options, spec_options)



@click.command("sweep")
@click.argument("spec_path", metavar="SPEC")
@spec_options
@model_options(spec_models=True)
@generation_options(command="sweep")
@click.option("--nsfw", type=click.Choice(["keep", "drop"]), default="keep", show_default=True,
              help="Whether images flagged by the safety checker count in the statistics.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder (default: a new runs/NAME-YYYYmmdd-HHMMSS); one that holds files is refused.")
@click.option("--replace", is_flag=True, help="Replace the --out run folder whole if it holds an earlier run.")
@click.option("--permutations", type=click.IntRange(min=1), default=9999, show_default=True,
              help="Permutations for p-values (exact enumeration when fewer patterns exist).")
@click.option("--bootstrap", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Bootstrap resamples for probe-shift confidence intervals.")
@click.option("--stats-seed", type=int, default=0, show_default=True, help="Seed of the statistics' random numbers.")
@click.option("--max-items", type=click.IntRange(min=1), default=MAX_ITEMS, show_default=True,
              help="Refuse a plan of more images than this (templates x terms x seeds).")
@click.option("--dry-run", is_flag=True, help="Print the plan (prompts, seeds, counts, cached) and load no model.")
@click.option("--vocab", "vocabs", multiple=True,
              help="Vocabulary for drift-direction neighbours: a shipped list (adjectives, nationalities, "
                   "objects, professions, clip-bpe) or a file; repeatable (default: the four curated lists). "
                   "The spec's probes are always included.")
@click.option("--no-report", is_flag=True, help="Skip writing report.html in the run folder.")
@click.option("--embeddings", "embeddings", type=click.Path(path_type=Path), default=None,
              help="Analyse your own embeddings instead of generating: an .npz with image, template, term, seed, "
                   "probe, probe_embedding (optional prompt / prompt_embedding, vocab / vocab_embedding). No model "
                   "is loaded. Optional option / option_embedding / logit_scale (rates), calibration_* arrays "
                   "(corrected rates) and a guidance / steps value per row: see docs/RATES.md.")
@click.option("--images", "images", type=click.Path(path_type=Path), default=None,
              help="Analyse your own images instead of generating: a CSV or JSONL manifest with columns template, "
                   "term, seed, path (relative to the manifest's folder), embedded by --measurer. Optional "
                   "guidance / steps columns give each image's level: see docs/RATES.md.")
@click.option("--export-embeddings", type=click.Path(path_type=Path), default=None,
              help="Also write the analysed embeddings to this .npz (the file --embeddings reads).")
@output_options
@click.pass_obj
def sweep_command(obj: CliState, spec_path, terms, baseline, probes, seeds, vocabs, dry_run, no_report, fmt,
                  max_items, **flags):
    """Generate every (template, term, seed) image of SPEC, embed it, and report drift per term.

    SPEC is a TOML spec, a plain-text file of templates, or a shipped name: reference-world
    (the main job: offline, on the shipped reference world, whose spec picks --pipeline
    reference --measurer reference), fancy-house, descriptors,
    professions. Everything is cached: rerun the same command to resume.
    With --embeddings FILE.npz or --images MANIFEST nothing is generated: your own
    embeddings or images are analysed as SPEC plans them.
    """
    from ldmprobe.engine.sweep_setup import SweepOptions
    from ldmprobe.render.emit import emit
    from ldmprobe.specs.sweep import load_spec
    from ldmprobe.api import run_sweep
    from ldmprobe.usecases.sweep import preview_sweep

    check_out(flags.get("out"))
    spec = load_spec(spec_path, terms=terms, baseline=baseline, probes=probes, seeds=seeds)
    check_items(spec, max_items)
    own = {"embeddings": flags.pop("embeddings"), "images": flags.pop("images")}
    export = flags.pop("export_embeddings")
    _check_own_flags(own, export, dry_run=dry_run, vocabs=vocabs)
    # a model not named on the command line is the spec's, else the default (the sweep's plan resolves it)
    named = given_models(pipeline=flags.pop("pipeline"), measurer=flags.pop("measurer"))
    options = SweepOptions(**flags, **named, offline=obj.offline, **({"vocab": tuple(vocabs)} if vocabs else {}))
    if dry_run:
        plan = preview_sweep(spec, options, obj.terminal)
        if plan is not None:  # a distributed run's other ranks: rank 0 prints the plan
            emit(plan, fmt, obj.terminal)
        return
    result = run_sweep(spec, options, terminal=obj.terminal, report=not no_report, export_embeddings=export, **own)
    if result is None:  # a distributed run's other ranks: rank 0 writes the output
        return
    emit(result, fmt, obj.terminal)
    if result.source is not None:
        obj.terminal.info(f"{result.source['kind']} from {result.source['path']} (sha256 {result.source['sha256'][:12]}…); "
                          f"no generator, so no conditioning drift. run folder: {result.run.out}")
    else:
        obj.terminal.info(f"run folder: {result.run.out}")


#: Flags that only mean something when images are generated (refused with --embeddings / --images).
_GENERATION_FLAGS = ("pipeline", "revision", "steps", "guidance", "width", "height", "negative_prompt",
                     "allow_truncation", "dtype", "call_shape")


def _check_own_flags(own: dict, export, *, dry_run: bool, vocabs) -> None:
    """--embeddings / --images: one of them, and none of the flags that only a generated sweep uses."""
    sources = [f"--{k}" for k, v in own.items() if v is not None]
    if len(sources) == 2:
        raise click.UsageError("give --embeddings or --images, not both.")
    if export is not None and dry_run:
        raise click.UsageError("--export-embeddings writes a finished sweep's embeddings; leave out --dry-run.")
    if not sources:
        return
    refused = [f"--{k.replace('_', '-')}" for k in _GENERATION_FLAGS if given(k)]
    if own["embeddings"] is not None:
        refused += [f"--{k}" for k in ("measurer", "device", "batch-size") if given(k.replace("-", "_"))]
        refused += ["--vocab"] if vocabs else []
    refused += ["--dry-run"] if dry_run else []
    refused += ["--export-embeddings"] if export is not None else []
    if refused:
        what = ("the embeddings, their vocabulary and the model that made them come from the file"
                if own["embeddings"] is not None else "nothing is generated")
        raise click.UsageError(f"{', '.join(refused)} cannot be used with {sources[0]}: {what}. Leave "
                               f"{'them' if len(refused) > 1 else 'it'} out.")
