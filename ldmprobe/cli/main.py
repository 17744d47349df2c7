"""Command line: parse, call the library, pick a renderer. Heavy imports stay inside commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ldmprobe import SCHEMA_VERSION, __version__
from ldmprobe.errors import ExitCode, LdmprobeError
from ldmprobe.cli.options import Context, model_options, output_options
from ldmprobe.render.terminal import Terminal


class Group(click.Group):
    """Turns errors into one paragraph on stderr and the right exit code (tracebacks with -v)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except LdmprobeError as exc:
            self._traceback(ctx)
            Terminal().error(str(exc))
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            Terminal().error("interrupted; everything finished so far is cached, rerun the same command to resume.")
            ctx.exit(int(ExitCode.INTERRUPTED))
        except OSError as exc:  # disk full, permissions, a vanished file
            self._traceback(ctx)
            Terminal().error(f"{exc.strerror or exc} ({exc.filename or 'no file name'}). Nothing cached "
                             "before this point is lost." + ("" if self._verbose(ctx) else " Run with -v for the traceback."))
            ctx.exit(int(ExitCode.RUNTIME))
        except Exception as exc:  # a bug or a library failure: say so, briefly
            self._traceback(ctx)
            Terminal().error(f"unexpected {type(exc).__name__}: {exc}"
                             + ("" if self._verbose(ctx) else " (run with -v for the traceback)."))
            ctx.exit(int(ExitCode.RUNTIME))

    @staticmethod
    def _verbose(ctx) -> bool:
        return isinstance(ctx.obj, Context) and ctx.obj.verbose

    def _traceback(self, ctx) -> None:
        if self._verbose(ctx):
            import traceback

            traceback.print_exc(file=sys.stderr)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="ldmprobe")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and library logs on errors.")
@click.option("--offline", is_flag=True, envvar="LDMPROBE_OFFLINE",
              help="Never touch the network; use only cached or local models (also LDMPROBE_OFFLINE=1).")
@click.pass_context
def main(ctx, verbose: bool, offline: bool):
    """Measure how words move text-to-image diffusion models, in CLIP space.

    \b
    ldmprobe models                      presets and whether they are cached
    ldmprobe check --pipeline tiny --measurer tiny
                                         load models and run one image through them
    """
    ctx.obj = Context(verbose=verbose, offline=offline)
    if offline:
        os.environ["LDMPROBE_OFFLINE"] = "1"


@main.command("models")
@output_options
@click.pass_obj
def models_command(obj: Context, fmt: str | None):
    """List model presets, what each resolves to, and whether it is available locally."""
    from ldmprobe.models.inventory import model_inventory, render_inventory

    document = {"schema_version": SCHEMA_VERSION, "kind": "models", **model_inventory()}
    fmt = fmt or obj.terminal.default_format()
    if fmt == "json":
        obj.terminal.write_json(document)
    elif fmt == "jsonl":
        obj.terminal.write_jsonl(document["generators"] + document["measurers"])
    else:
        obj.terminal.write_table(render_inventory(document))


@main.command("check")
@model_options
@output_options
@click.pass_obj
def check_command(obj: Context, pipeline, revision, measurer, device, dtype, fmt):
    """Load a generator and a measurer, make one image and embed it; report timings."""
    from ldmprobe.models.inventory import check_models, render_check

    document = check_models(
        pipeline=pipeline, revision=revision, measurer=measurer, device=device, dtype=dtype,
        offline=obj.offline, terminal=obj.terminal,
    )
    fmt = fmt or obj.terminal.default_format()
    if fmt in ("json", "jsonl"):
        obj.terminal.write_json(document) if fmt == "json" else obj.terminal.write_jsonl([document])
    else:
        obj.terminal.write_table(render_check(document))


@main.command("sweep")
@click.argument("spec_path", metavar="SPEC")
@click.option("--term", "terms", multiple=True, help="A term (repeatable; plain-text specs, or to replace a TOML spec's terms).")
@click.option("--baseline", default=None, help="The baseline term (may be empty: --baseline '').")
@click.option("--probe", "probes", multiple=True, help="A probe word (repeatable).")
@click.option("--seeds", default=None, help="Seed count (N means 0..N-1) or a comma-separated list.")
@model_options
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Denoising steps (default: spec, else 50; tiny: 4).")
@click.option("--guidance", type=click.FloatRange(min=0), default=None, help="Classifier-free guidance scale (default 7.5).")
@click.option("--width", type=click.IntRange(min=8), default=None, help="Image width (default: the model's native size).")
@click.option("--height", type=click.IntRange(min=8), default=None, help="Image height (default: the model's native size).")
@click.option("--negative-prompt", default=None, help="Negative prompt for every image.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Images per generation batch (default 8 on CUDA, halved on out-of-memory; 4 elsewhere).")
@click.option("--allow-truncation", is_flag=True, help="Allow prompts over the tokenizer's 77 tokens (truncated).")
@click.option("--nsfw", type=click.Choice(["keep", "drop"]), default="keep", show_default=True,
              help="Whether images flagged by the safety checker count in the statistics.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder (default: runs/NAME-YYYYmmdd-HHMMSS).")
@click.option("--permutations", type=click.IntRange(min=1), default=9999, show_default=True,
              help="Permutations for p-values (exact enumeration when fewer patterns exist).")
@click.option("--bootstrap", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Bootstrap resamples for probe-shift confidence intervals.")
@click.option("--stats-seed", type=int, default=0, show_default=True, help="Seed of the statistics' random numbers.")
@click.option("--dry-run", is_flag=True, help="Print the plan (prompts, seeds, counts, cached) and load no model.")
@click.option("--vocab", "vocabs", multiple=True,
              help="Vocabulary for drift-direction neighbours: a shipped list (adjectives, nationalities, "
                   "objects, professions, clip-bpe) or a file; repeatable (default: the four curated lists). "
                   "The spec's probes are always included.")
@click.option("--no-report", is_flag=True, help="Skip writing report.html in the run folder.")
@output_options
@click.pass_obj
def sweep_command(obj: Context, spec_path, terms, baseline, probes, seeds, pipeline, revision, measurer, device,
                  dtype, steps, guidance, width, height, negative_prompt, batch_size, allow_truncation, nsfw,
                  out, permutations, bootstrap, stats_seed, vocabs, dry_run, no_report, fmt):
    """Generate every (template, term, seed) image of SPEC, embed it, and report drift per term.

    SPEC is a TOML spec, a plain-text file of templates, or a shipped name (fancy-house,
    descriptors, professions). Everything is cached: rerun the same command to resume.
    """
    from ldmprobe.specs.sweep import load_spec
    from ldmprobe.engine.distributed import is_main_process
    from ldmprobe.usecases.sweep import SweepOptions, dry_run_document, make_plan, run_sweep
    from ldmprobe.render.sweep import render_plan, render_sweep, sweep_records

    spec = load_spec(spec_path, terms=terms, baseline=baseline, probes=probes, seeds=seeds)
    options = SweepOptions(
        pipeline=pipeline, revision=revision, measurer=measurer, device=device, dtype=dtype, steps=steps,
        guidance=guidance, width=width, height=height, negative_prompt=negative_prompt, batch_size=batch_size,
        allow_truncation=allow_truncation, nsfw=nsfw, offline=obj.offline, out=out, permutations=permutations,
        bootstrap=bootstrap, stats_seed=stats_seed,
    )
    if vocabs:
        options.vocab = tuple(vocabs)
    fmt = fmt or obj.terminal.default_format()
    if dry_run:
        if not is_main_process():  # under torchrun / accelerate launch, rank 0 prints the plan
            return
        document = dry_run_document(make_plan(spec, options))
        if fmt == "json":
            obj.terminal.write_json(document)
        elif fmt == "jsonl":
            obj.terminal.write_jsonl(document["items"])
        else:
            obj.terminal.write_table(render_plan(document))
        return
    document = run_sweep(spec, options, obj.terminal)
    if document is None:  # a distributed run's other ranks: rank 0 writes the output
        return
    if not no_report:
        from ldmprobe.render.report import write_report

        write_report(document["run"]["out"])
    if fmt == "json":
        obj.terminal.write_json(document)
    elif fmt == "jsonl":
        obj.terminal.write_jsonl(sweep_records(document))
    else:
        obj.terminal.write_table(render_sweep(document))
    obj.terminal.info(f"run folder: {document['run']['out']}")


@main.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.pass_obj
def report_command(obj: Context, run_dir: Path):
    """Write report.html (config, contact sheets, drift and probe plots) into a sweep's run folder."""
    from ldmprobe.render.report import write_report

    target = write_report(run_dir)
    obj.terminal.info(f"wrote {target}")


def run(argv: list[str] | None = None) -> int:
    """Entry point for the console script and ``python -m ldmprobe``."""
    try:
        main.main(args=argv, prog_name="ldmprobe", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


def _register_commands() -> None:
    """Commands defined in their own modules (imported after this module's decorators exist)."""
    from ldmprobe.cli.assoc import assoc
    from ldmprobe.cli.neighbours import neighbours

    main.add_command(assoc)
    main.add_command(neighbours)


_register_commands()
