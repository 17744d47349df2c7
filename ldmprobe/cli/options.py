"""Options and per-invocation state shared by every command module."""

from __future__ import annotations

import functools

import click

from ldmprobe.render.terminal import FORMATS, Terminal


class CliState:
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
