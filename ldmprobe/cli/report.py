"""``ldmprobe report RUN_DIR``: (re)write a sweep's report.html."""

from __future__ import annotations

from pathlib import Path

import click

from ldmprobe.cli.options import CliState



@click.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.pass_obj
def report_command(obj: CliState, run_dir: Path):
    """Write report.html (config, contact sheets, drift and probe plots) into a sweep's run folder."""
    from ldmprobe.render.report import write_report

    target = write_report(run_dir)
    obj.terminal.info(f"wrote {target}")
