"""``ldmprobe export RUN_DIR``: copy every image of a sweep's run folder in from the cache."""

from __future__ import annotations

from pathlib import Path

import click

from ldmprobe.cli.options import CliState


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.pass_obj
def export_command(obj: CliState, run_dir: Path):
    """Copy every image of a sweep's run folder into RUN_DIR/images.

    A run folder holds the images its report shows (the first 8 seeds of each template and
    term) and names the rest by cache key in items.jsonl; export copies them in from the
    cache, each checked against its digest, so the folder no longer needs the cache.
    Prints what it did as JSON.
    """
    from ldmprobe.records import to_json
    from ldmprobe.usecases.export import export_run

    result = export_run(run_dir)
    click.echo(to_json(result, indent=None))
    obj.terminal.info(f"{run_dir}: {result.copied} image(s) copied in, {result.present} already there")
