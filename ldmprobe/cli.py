"""Command line: parse, call the library, pick a renderer. Heavy imports stay inside commands."""

from __future__ import annotations

import functools
import os
import sys

import click

from . import SCHEMA_VERSION, __version__
from .errors import ExitCode, LdmprobeError
from .render import FORMATS, Terminal


class Context:
    """Per-invocation state shared by the commands."""

    def __init__(self, verbose: bool, offline: bool):
        self.verbose = verbose
        self.offline = offline
        self.terminal = Terminal(verbose=verbose)


def output_options(func):
    """The same output flag on every command that prints data."""

    @click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default=None,
        help="Output format (default: table on a terminal, json when piped).",
    )
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def model_options(func):
    """--pipeline / --measurer / --device / --dtype, shared by commands that load models."""

    @click.option("--pipeline", default="sd15", show_default=True,
                  help="Generator: preset (sd15, tiny), hub id ORG/NAME, or a local diffusers folder.")
    @click.option("--revision", default=None, help="Hub revision (branch, tag or commit) of --pipeline.")
    @click.option("--measurer", default="ViT-L-14-quickgelu:openai", show_default=True,
                  help="open_clip model: NAME:PRETRAINED, hf-hub:ORG/REPO, local-dir:PATH, or tiny.")
    @click.option("--device", default="auto", show_default=True,
                  help="auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu.")
    @click.option("--dtype", type=click.Choice(["auto", "float16", "bfloat16", "float32"]), default="auto",
                  show_default=True, help="Generator precision (auto: float16 on CUDA, else float32).")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


class Group(click.Group):
    """Turns library errors into one paragraph on stderr and the right exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LdmprobeError as exc:
            verbose = isinstance(ctx.obj, Context) and ctx.obj.verbose
            if verbose:
                import traceback

                traceback.print_exc(file=sys.stderr)
            Terminal().error(str(exc))
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            Terminal().error("interrupted.")
            ctx.exit(int(ExitCode.INTERRUPTED))


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
    from .inventory import model_inventory, render_inventory

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
    from .inventory import check_models, render_check

    document = check_models(
        pipeline=pipeline, revision=revision, measurer=measurer, device=device, dtype=dtype,
        offline=obj.offline, terminal=obj.terminal,
    )
    fmt = fmt or obj.terminal.default_format()
    if fmt in ("json", "jsonl"):
        obj.terminal.write_json(document) if fmt == "json" else obj.terminal.write_jsonl([document])
    else:
        obj.terminal.write_table(render_check(document))


def run(argv: list[str] | None = None) -> int:
    """Entry point for the console script and ``python -m ldmprobe``."""
    try:
        main.main(args=argv, prog_name="ldmprobe", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0
