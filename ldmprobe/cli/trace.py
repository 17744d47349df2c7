"""``ldmprobe trace SPEC``: follow each term through the conditioning, the cross-attention, the
denoising steps and the autoencoder. Parsing and checks only; the work is
:func:`ldmprobe.usecases.trace.trace`. Every check here runs before a model loads.
"""

from __future__ import annotations

from pathlib import Path

import click

from ldmprobe.cli.checks import check_out

from ldmprobe.cli.options import (CliState, generation_options, given_models, model_options, output_options,
                                  spec_options)

PARTS_CHOICES = ("conditioning", "attention", "steps", "vae")


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


def _parts(value: str) -> tuple[str, ...]:
    parts = _csv(value)
    bad = [p for p in parts if p not in PARTS_CHOICES]
    if bad or not parts:
        raise click.BadParameter(f"unknown part(s) {', '.join(bad) or '(none given)'}; choose from "
                                 f"{','.join(PARTS_CHOICES)}", param_hint="--parts")
    return tuple(p for p in PARTS_CHOICES if p in parts)


def _variants(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    from ldmprobe.engine.trace_text import ALL_PARTS  # any architecture's parts; the run refuses absent ones

    names = _csv(value)
    for name in names:
        if name not in ("none", "all") and not all(p in ALL_PARTS for p in name.split("+")):
            raise click.BadParameter(f"{name!r} is not a hybrid: use none, all, {', '.join(ALL_PARTS)} or parts "
                                     "joined by '+' (modifier+content)", param_hint="--variants")
    if not names:
        raise click.BadParameter("give at least one hybrid", param_hint="--variants")
    return names


def _switch_steps(value: str | None) -> tuple[int, ...] | None:
    """Switch points as given (the run checks them against the resolved steps before any model loads)."""
    if not value:
        return None
    try:
        ks = tuple(int(v) for v in _csv(value))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers", param_hint="--switch-steps")
    if not ks:
        raise click.BadParameter("give at least one switch step", param_hint="--switch-steps")
    return ks


@click.command("trace")
@click.argument("spec_path", metavar="SPEC")
@click.option("--parts", default=",".join(PARTS_CHOICES), show_default=True,
              help="Which parts of the model to trace, comma-separated.")
@spec_options
@model_options(spec_models=True)
@generation_options(command="trace")
@click.option("--switch-steps", default=None,
              help="Steps part: switch points k, comma-separated (default: the quarters of --steps).")
@click.option("--variants", default=None,
              help="Conditioning part: hybrids to build (none, all, before, modifier, content, eot_pad, pooled, "
                   "or a+b). Default: each part the generator has (SD 1.x: modifier, content, eot_pad; SDXL adds "
                   "pooled; SD 3 and Flux: before, modifier, content, eot_pad, pooled).")
@click.option("--noun", default=None, help="Attention part: the noun word (default: the last content token).")
@click.option("--region", type=click.Choice(["auto", "object", "noun"]), default="auto", show_default=True,
              help="Attention part: what the modifier's attention is measured against: each picture's object "
                   "(segmented from a plain background, as in the reference world), the noun's own top region, "
                   "or auto (object where nine tenths of the pictures have a plain background).")
@click.option("--attention-mass", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5,
              show_default=True, help="Attention part: share of the noun's attention its region holds.")
@click.option("--vae-images", "image_folder", type=click.Path(exists=True, file_okay=False), default=None,
              help="VAE part: also round-trip your images from FOLDER (subfolders = groups).")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Bootstrap resamples for the shares' intervals.")
@click.option("--stats-seed", type=int, default=0, show_default=True, help="Seed of the statistics.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder (default: a new runs/NAME-trace-YYYYmmdd-HHMMSS).")
@click.option("--replace", is_flag=True, help="Replace the --out run folder whole if it holds an earlier run.")
@click.option("--no-report", is_flag=True, help="Skip report.html and its figures.")
@output_options
@click.pass_obj
def trace_command(obj: CliState | None, spec_path, parts, terms, baseline, probes, seeds, pipeline, measurer, fmt,
                  no_report, variants, switch_steps, **flags):
    """Follow each term of SPEC through the model: which part of the text encoder's output carries
    it, where its cross-attention lands in the picture, at which denoising steps it acts, and
    what the autoencoder's round trip does to it. Writes results.json and report.html.

    SPEC is a sweep spec (TOML, a plain-text file of templates, or a shipped name such as
    fancy-house); its models and settings are taken as sweep takes them, and the plain images are
    the sweep's own. Trace images are cached: rerun the same command (with --replace if it names
    --out) to resume.

    \b
    ldmprobe trace fancy-house --pipeline tiny --measurer tiny --seeds 2 --steps 4
    ldmprobe trace my.toml --parts conditioning,steps --switch-steps 5,10,15
    """
    from ldmprobe.render.emit import emit
    from ldmprobe.specs.sweep import load_spec
    from ldmprobe.usecases.trace import TraceOptions, trace

    obj = obj if isinstance(obj, CliState) else CliState(verbose=False, offline=False)
    check_out(flags["out"])
    options = TraceOptions(sections=_parts(parts), variants=_variants(variants), switch_ks=_switch_steps(switch_steps),
                           offline=obj.offline, **flags, **given_models(pipeline=pipeline, measurer=measurer))
    spec = load_spec(spec_path, terms=terms, baseline=baseline, probes=probes, seeds=seeds)
    result = trace(spec, options, obj.terminal, report=not no_report)
    emit(result, fmt, obj.terminal)
    obj.terminal.info(f"run folder: {result.run.out}")
