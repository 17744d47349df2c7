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

    _refuse_other_kinds(run_dir)
    target = write_report(run_dir)
    obj.terminal.info(f"wrote {target}")


def _refuse_other_kinds(run_dir: Path) -> None:
    """A trace or compare folder gets the command that (re)writes its own report (exit 2)."""
    import json

    try:
        kind = json.loads((run_dir / "results.json").read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None
    if (run_dir / "compare.json").is_file() and kind is None:
        kind = "compare"
    fixes = {"trace": "ldmprobe trace SPEC ... --out {dir} --replace (the trace's images are cached, so only its "
                      "report and figures are made again)",
             "compare": "ldmprobe compare RUN_A RUN_B --out {dir} --replace"}
    if kind in fixes:
        raise click.UsageError(f"{run_dir} holds a {kind} run, not a sweep; `ldmprobe report` writes sweep reports. "
                               f"To write its report again, rerun {fixes[kind].format(dir=run_dir)}.")
