"""``ldmprobe check``: load both models, make one image and embed it."""

from __future__ import annotations

import click

from ldmprobe.cli.options import CliState, model_options, output_options



@click.command("check")
@model_options
@output_options
@click.pass_obj
def check_command(obj: CliState, pipeline, revision, measurer, device, dtype, fmt):
    """Load a generator and a measurer, make one image and embed it; report timings."""
    from ldmprobe.render.emit import emit
    from ldmprobe.usecases.check import check_models

    document = check_models(
        pipeline=pipeline, revision=revision, measurer=measurer, device=device, dtype=dtype,
        offline=obj.offline, reporter=obj.terminal,
    )
    emit(document, fmt, obj.terminal)
