"""``ldmprobe assoc SPEC``: embedding association tests (WEAT / iEAT / T2IAT).

Registered on the main group with ``main.add_command(assoc)``. Parsing and rendering only;
the work is :func:`ldmprobe.usecases.assoc.assoc_from_names`.
"""

from __future__ import annotations

import click

from ldmprobe.cli.options import CliState, FiniteFloat, model_options, output_options


@click.command("assoc")
@click.argument("spec", metavar="[SPEC]", required=False)
@click.option("--set", "set_paths", multiple=True, metavar="NAME=PATH",
              help="Read set X, Y, A or B from your own files: a .csv in the iEAT layout or a .npy "
                   "(rows are items), or a folder of images embedded by --measurer. Replaces the "
                   "spec's set; without SPEC give all four.")
@click.option("--label", "set_labels", multiple=True, metavar="NAME=TEXT",
              help="The label of a set (default: the spec's, else the file or folder name).")
@model_options
@click.option("--permutations", type=click.IntRange(min=1), default=None,
              help="Permutation budget B: exact p over all re-partitions of X∪Y when there are "
                   "at most B of them, else B random ones (default: the spec's [test], else "
                   "100000).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of the random re-partitions (default: the spec's [test], else 0).")
@click.option("--ddof", type=click.Choice(["0", "1"]), default=None,
              help="Delta degrees of freedom of the effect size's standard deviation: 1 as "
                   "Caliskan et al. 2017 (default), 0 as WEFE.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Denoising steps for prompt sets (default: the spec's, else 50).")
@click.option("--guidance", type=FiniteFloat(min=0), default=None,
              help="Guidance scale for prompt sets (default: the spec's, else the generator's own: "
                   "SD 1.x 7.5, SDXL 5, SD 3 7, Flux.1 dev 3.5).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Images generated and saved per step, in calls of --call-shape; changes no image.")
@click.option("--call-shape", type=click.IntRange(min=1), default=None,
              help="Images per generation call (default 8 on CUDA, 4 elsewhere, as the sweep's); lower it when "
                   "CUDA runs out of memory. Part of each image's recipe, as in a sweep.")
@click.option("--allow-truncation", is_flag=True,
              help="Generate from prompts longer than 77 tokens (truncated) instead of failing.")
@click.option("--unit", type=click.Choice(["prompt", "image"]), default=None,
              help="What the test re-partitions when X and Y are prompts x seeds: prompt (default; a "
                   "prompt's images stay together) or image (opt-in; anti-conservative when images of "
                   "one prompt cluster). Word sets always permute words.")
@output_options
@click.pass_obj
def assoc(obj: CliState | None, spec, set_paths, set_labels, pipeline, revision, measurer, device, dtype,
          permutations, seed, ddof, steps, guidance, batch_size, call_shape, allow_truncation, unit, fmt):
    """Run an embedding association test (WEAT / iEAT / T2IAT) from SPEC.

    SPEC is a TOML file or the name of a shipped test (prompts/assoc/NAME.toml), with target
    sets X, Y and attribute sets A, B, each words (text embeddings) or prompts + seeds
    (generated images). Prints the effect size d, the statistic S and a one-sided permutation
    p-value, exact when feasible. Word-only specs load no generator. With --set, sets come from
    your own embeddings (no model is loaded when all four are files) or image folders; a CSV
    column named prompt keeps its rows together in the permutation.

    \b
    ldmprobe assoc weat1-flowers-insects --measurer tiny
    ldmprobe assoc t2iat-gender-science --pipeline sd15 --format json
    ldmprobe assoc --set X=flowers.csv --set Y=insects.csv \\
        --set A=pleasant.csv --set B=unpleasant.csv
    """
    from ldmprobe.specs.assoc import load_assoc_spec, with_set_paths

    obj = obj if isinstance(obj, CliState) else CliState(verbose=False, offline=False)
    paths, labels = _pairs(set_paths, "--set"), _pairs(set_labels, "--label")
    if spec is None and not paths:
        raise click.UsageError("give a SPEC (a .toml file or a shipped name) or --set X=PATH --set Y=PATH "
                               "--set A=PATH --set B=PATH.")
    loaded = load_assoc_spec(spec) if spec is not None else None
    if paths or labels or loaded is None:
        loaded = with_set_paths(loaded, paths, labels)
    _warn_ignored(loaded, obj.terminal)
    _run(obj, loaded, measurer=measurer, pipeline=pipeline, revision=revision, device=device, dtype=dtype,
         ddof=ddof, permutations=permutations, seed=seed, steps=steps, guidance=guidance,
         batch_size=batch_size, call_shape=call_shape, allow_truncation=allow_truncation, unit=unit, fmt=fmt)


def _pairs(values, option: str) -> dict[str, str]:
    """NAME=VALUE options as a dict; a malformed or repeated one is a usage error naming it."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        name = name.strip()
        if not sep or not name or not rest.strip():
            raise click.BadParameter(f"{value!r}: write NAME=VALUE, e.g. {option} X=flowers.csv.",
                                     param_hint=option)
        if name in out:
            raise click.BadParameter(f"{name} is given twice.", param_hint=option)
        out[name] = rest.strip()
    return out


def _warn_ignored(spec, terminal) -> None:
    """Options given on the command line that this spec's sets make irrelevant."""
    ctx = click.get_current_context()
    options = () if spec.needs_generator else ("pipeline", "revision", "steps", "guidance", "dtype",
                                               "batch-size", "call-shape", "allow-truncation")
    options += () if spec.needs_measurer else ("measurer", "device")
    ignored = [f"--{name}" for name in options if ctx.get_parameter_source(name.replace("-", "_"))
               == click.core.ParameterSource.COMMANDLINE]
    if ignored:
        why = ("no images are generated" if spec.needs_measurer
               else "every set is a file of embeddings, so no model is loaded")
        terminal.warn(f"{', '.join(ignored)} ignored for '{spec.name}': {why}.")


def _run(obj: CliState, spec, *, measurer, pipeline, revision, device, dtype, ddof, permutations, seed,
         steps, guidance, batch_size, call_shape, allow_truncation, unit, fmt) -> None:
    from ldmprobe.render.emit import emit
    from ldmprobe.usecases.assoc import AssocOptions, assoc_from_names

    options = AssocOptions(measurer=measurer, pipeline=pipeline, revision=revision, device=device, dtype=dtype,
                           offline=obj.offline, ddof=None if ddof is None else int(ddof), permutations=permutations,
                           seed=seed, steps=steps, guidance=guidance, batch_size=batch_size, call_shape=call_shape,
                           allow_truncation=allow_truncation, unit=unit)
    result = assoc_from_names(spec, options, reporter=obj.terminal)
    emit(result, fmt, obj.terminal)
