"""Options and per-invocation state shared by every command module."""

from __future__ import annotations

import functools

import click

from ldmprobe.render.terminal import FORMATS, Terminal


class CliState:
    """Per-invocation state shared by the commands."""

    def __init__(self, verbose: bool, offline: bool, quiet: bool = False):
        self.verbose = verbose
        self.offline = offline
        self.quiet = quiet
        self.terminal = Terminal(verbose=verbose, quiet=quiet)

    def update(self, *, verbose: bool = False, offline: bool = False, quiet: bool = False) -> None:
        """Global flags given after the subcommand (``ldmprobe sweep SPEC --offline``) add to those before it."""
        self.verbose, self.offline, self.quiet = self.verbose or verbose, self.offline or offline, self.quiet or quiet
        self.terminal.verbose, self.terminal.quiet = self.verbose, self.quiet


def check_device(ctx, param, value):
    """--device: a name torch takes (auto, cpu, cuda, cuda:N, mps), checked before torch is imported."""
    if value is None:
        return value
    from ldmprobe.errors import BadInputError
    from ldmprobe.models.load import check_device_name

    try:
        check_device_name(value)
        check_device_present(value)
    except BadInputError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[-1], ctx=ctx, param=param) from None
    return value


def check_device_present(value: str) -> None:
    """cuda / cuda:N / mps refused at parse time on a machine without them (not after the models
    load): without device nodes or off macOS at once, else by asking torch (imported only here)."""
    import sys

    from ldmprobe.errors import BadInputError
    from ldmprobe.models.load import _surely_cpu_only, pick_device

    if value in ("auto", "cpu"):
        return
    if value.startswith("cuda") and _surely_cpu_only():
        raise BadInputError(f"--device {value}: CUDA is not available on this machine (no NVIDIA or ROCm device); "
                            "try --device cpu.")
    if value == "mps" and sys.platform != "darwin":
        raise BadInputError("--device mps: MPS (Apple's Metal) exists only on macOS; try --device cpu.")
    pick_device(value)  # imports torch: the same refusal where device nodes exist but torch cannot use them


class FiniteFloat(click.FloatRange):
    """A float range that refuses nan and inf (click's FloatRange lets them through)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


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


def given(name: str) -> bool:
    """Whether the current command's parameter ``name`` was given (not left at its default)."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)


def given_models(**models) -> dict:
    """The models named on the command line; the others are left to the spec, else the defaults."""
    return {key: value for key, value in models.items() if given(key)}


def spec_options(func):
    """--term, --baseline, --probe, --seeds: what a sweep spec says, replaced from the command line."""
    for decorator in reversed([
        click.option("--term", "terms", multiple=True,
                     help="A term (repeatable; for a plain-text spec, or replacing a TOML spec's terms)."),
        click.option("--baseline", default=None, help="The baseline term (may be empty: --baseline '')."),
        click.option("--probe", "probes", multiple=True, help="A probe text (repeatable; replaces the spec's probes)."),
        click.option("--seeds", default=None, help="Seed count (N means 0..N-1) or a comma-separated list."),
    ]):
        func = decorator(func)
    return func


def generation_options(*, command: str):
    """--steps, --guidance, --width, --height, --negative-prompt, --batch-size, --call-shape and
    --allow-truncation: how images are made, the same for sweep and trace (GenerationOptions).
    Trace's steps part needs two steps to switch between, so its --steps starts at 2."""
    from ldmprobe.cli.checks import MAX_SIDE, SIDE

    min_steps = 2 if command == "trace" else 1
    decorators = [
        click.option("--steps", type=click.IntRange(min=min_steps), default=None,
                      help="Denoising steps (default: the spec's, else 50; tiny: 4)."),
        click.option("--guidance", type=FiniteFloat(min=0), default=None,
                     help="Guidance scale (default: the spec's, else the generator's own: SD 1.x 7.5, SDXL 5, SD 3 7, "
                          "Flux.1 dev 3.5)."),
        click.option("--width", type=SIDE, default=None,
                     help=f"Image width, a multiple of 8 up to {MAX_SIDE} (default: the model's native size)."),
        click.option("--height", type=SIDE, default=None,
                     help=f"Image height, a multiple of 8 up to {MAX_SIDE} (default: the model's native size)."),
        click.option("--negative-prompt", default=None, help="Negative prompt for every image."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help="Images made and saved per step, in calls of --call-shape (rounded up to a whole number "
                          "of calls; default: one call). Changes no image: the numbers are the same at any "
                          "--batch-size."),
        click.option("--call-shape", type=click.IntRange(min=1), default=None,
                     help="Images per generation call (default 8 on CUDA, 4 elsewhere); lower it when CUDA runs out "
                          "of memory. A call's shape changes an image's float noise, so it is part of each image's "
                          "recipe: images made at another shape are never reused (sweep and trace share them)."),
        click.option("--allow-truncation", is_flag=True,
                     help="Allow prompts over the tokenizer's 77 tokens (truncated)."),
    ]

    def decorate(func):
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return decorate


def model_options(func=None, *, spec_models: bool = False):
    """--pipeline / --measurer / --device / --dtype, shared by commands that load models.
    ``spec_models``: the command reads a sweep spec, whose ``pipeline`` / ``measurer`` keys come
    before the defaults (:func:`ldmprobe.engine.sweep_setup.models_for`); the help says so."""
    if func is None:
        return functools.partial(model_options, spec_models=spec_models)
    first = " (default: the spec's {key}, else {default})" if spec_models else ""

    @click.option("--pipeline", default="sd15", show_default=not spec_models,
                  help="Generator: a preset (sd15, sdxl, tiny, reference: the shipped reference world; "
                       "`ldmprobe models` lists them all), a hub id ORG/NAME, or a local diffusers folder"
                       + first.format(key="pipeline", default="sd15") + ".")
    @click.option("--revision", default=None, help="Hub revision (branch, tag or commit) of --pipeline.")
    @click.option("--measurer", default="ViT-L-14-quickgelu:openai", show_default=not spec_models,
                  help="open_clip model: NAME:PRETRAINED, hf-hub:ORG/REPO, local-dir:PATH, or a preset (tiny, "
                       "reference: the reference world's own CLIP)"
                       + first.format(key="measurer", default="ViT-L-14-quickgelu:openai") + ".")
    @click.option("--device", default="auto", show_default=True, callback=check_device,
                  help="auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu.")
    @click.option("--dtype", type=click.Choice(["auto", "float16", "bfloat16", "float32"]), default="auto",
                  show_default=True, help="Generator precision (auto: float16 on CUDA, else float32).")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper
