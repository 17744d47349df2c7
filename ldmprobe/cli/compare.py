"""``ldmprobe compare RUN_A RUN_B``: parse, call :func:`ldmprobe.usecases.compare.compare_runs`, emit."""

from __future__ import annotations

from pathlib import Path

import click

from ldmprobe.cli.checks import check_out
from ldmprobe.cli.options import CliState, check_device, output_options


@click.command("compare")
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder to write compare.html and compare.json into: a new or empty folder "
                   "(or one an earlier compare wrote, with --replace).")
@click.option("--replace", is_flag=True, help="Replace an --out folder an earlier compare wrote, whole.")
@click.option("--alpha", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Level at which a BH-adjusted change counts as better or worse.")
@click.option("--permutations", type=click.IntRange(min=1), default=9999, show_default=True,
              help="Sign flips for the p fixed (these templates and seeds only) when not enumerated.")
@click.option("--bootstrap", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Bootstrap draws (templates, then pairs) for the drift difference's second interval.")
@click.option("--stats-seed", type=int, default=0, show_default=True, help="Seed of the resampling.")
@click.option("--device", default="auto", show_default=True, callback=check_device,
              help="Where to run the measurer if the probe words' embeddings are not cached.")
@output_options
@click.pass_obj
def compare_command(obj: CliState, run_a, run_b, out, alpha, permutations, bootstrap, stats_seed, device, replace, fmt):
    """Compare two sweep runs of the same spec, e.g. a base model and its fine-tune: B − A.

    Images are paired by (template, term, seed). Per term: the change in image drift and in
    each probe shift, with 95% CIs and p-values that treat templates and seeds as random
    factors, Benjamini–Hochberg adjusted, and whether the term moved the images less
    (better) or more (worse) in RUN_B. Embeddings come from the cache (LDMPROBE_CACHE) by the
    runs' item keys; no generator is loaded.

    Runs whose specs have the same [attributes] also get, per term, group and option, the
    change in the share of images with that option (B − A, corrected where the spec has a
    calibration set; paired by template × seed cell when both runs made the same cells,
    unpaired when their seeds differ) and the change in diversity (Vendi score and effective
    number of options, "narrows" / "widens" only where the interval excludes 0). A run over
    several guidance or steps levels is compared at its first (top) level. See docs/RATES.md.

    \b
    ldmprobe compare runs/base runs/finetune
    ldmprobe compare runs/base runs/finetune --format json | jq .summary
    """
    from ldmprobe.analysis.compare import CompareSettings
    from ldmprobe.render.emit import emit
    from ldmprobe.usecases.compare import CompareOptions, compare_runs

    check_out(out)
    settings = CompareSettings(permutations=permutations, bootstrap=bootstrap, seed=stats_seed, alpha=alpha)
    options = CompareOptions(settings, out=out, replace=replace, offline=obj.offline, device=device)
    result = compare_runs(run_a, run_b, options, reporter=obj.terminal)
    if result.provenance.get("tiny"):
        obj.terminal.warn("tiny models have random weights: their numbers mean nothing")
    if out is not None:
        obj.terminal.info(f"wrote {result.report}")
    emit(result, fmt, obj.terminal)
