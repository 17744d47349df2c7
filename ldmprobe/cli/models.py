"""``ldmprobe models``: the model presets and whether each is available locally."""

from __future__ import annotations

import click

from ldmprobe.cli.options import CliState, output_options



@click.command("models")
@output_options
@click.pass_obj
def models_command(obj: CliState, fmt: str | None):
    """List model presets, what each resolves to, and whether it is available locally."""
    from ldmprobe.render.emit import emit
    from ldmprobe.usecases.check import list_models

    emit(list_models(), fmt, obj.terminal)
