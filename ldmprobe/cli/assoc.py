"""``ldmprobe assoc SPEC``: embedding association tests (WEAT / iEAT / T2IAT).

Registered on the main group with ``main.add_command(assoc)``. Parsing and rendering only;
the work is :func:`ldmprobe.usecases.assoc.assoc_from_names`.
"""

from __future__ import annotations

import click

from ldmprobe.cli.options import CliState, model_options, output_options


@click.command("assoc")
@click.argument("spec", metavar="SPEC")
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
@click.option("--guidance", type=click.FloatRange(min=0), default=None,
              help="Classifier-free guidance scale for prompt sets (default: the spec's, "
                   "else 7.5).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Images generated per pipeline call.")
@click.option("--allow-truncation", is_flag=True,
              help="Generate from prompts longer than 77 tokens (truncated) instead of failing.")
@click.option("--unit", type=click.Choice(["prompt", "image"]), default=None,
              help="What the test re-partitions when X and Y are prompts x seeds: prompt (default; a "
                   "prompt's images stay together) or image (opt-in; anti-conservative when images of "
                   "one prompt cluster). Word sets always permute words.")
@output_options
@click.pass_obj
def assoc(obj: CliState | None, spec, pipeline, revision, measurer, device, dtype, permutations,
          seed, ddof, steps, guidance, batch_size, allow_truncation, unit, fmt):
    """Run an embedding association test (WEAT / iEAT / T2IAT) from SPEC.

    SPEC is a TOML file or the name of a shipped test (prompts/assoc/NAME.toml), with target
    sets X, Y and attribute sets A, B, each words (text embeddings) or prompts + seeds
    (generated images). Prints the effect size d, the statistic S and a one-sided permutation
    p-value, exact when feasible. Word-only specs load no generator.

    \b
    ldmprobe assoc weat1-flowers-insects --measurer tiny
    ldmprobe assoc t2iat-gender-science --pipeline sd15 --format json
    """
    from ldmprobe.render.emit import emit
    from ldmprobe.specs.assoc import load_assoc_spec
    from ldmprobe.usecases.assoc import assoc_from_names

    obj = obj if isinstance(obj, CliState) else CliState(verbose=False, offline=False)
    loaded = load_assoc_spec(spec)
    if not loaded.needs_generator:
        ctx = click.get_current_context()
        ignored = [f"--{name}" for name in ("pipeline", "revision", "steps", "guidance", "dtype",
                                            "batch-size", "allow-truncation")
                   if ctx.get_parameter_source(name.replace("-", "_"))
                   == click.core.ParameterSource.COMMANDLINE]
        if ignored:
            obj.terminal.warn(f"{', '.join(ignored)} ignored: every set of '{loaded.name}' is "
                              "words, so no images are generated.")
    result = assoc_from_names(
        loaded, measurer=measurer, pipeline=pipeline, revision=revision, device=device,
        dtype=dtype, offline=obj.offline, reporter=obj.terminal,
        ddof=None if ddof is None else int(ddof), permutations=permutations, seed=seed,
        steps=steps, guidance=guidance, batch_size=batch_size,
        allow_truncation=allow_truncation, unit=unit,
    )
    emit(result, fmt, obj.terminal)
