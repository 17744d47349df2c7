"""The ``ldmprobe`` command group: errors to exit codes, global flags, and the commands' registration.

Each command lives in its own module (parse → one use case → emit); heavy imports stay inside
the commands."""

from __future__ import annotations

import os
import sys

import click

from ldmprobe import __version__
from ldmprobe.errors import ExitCode, LdmprobeError
from ldmprobe.cli.options import CliState
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
            from ldmprobe.storage import cache_hint

            Terminal().error(f"{exc.strerror or exc} ({exc.filename or 'no file name'}). Nothing cached "
                             "before this point is lost." + (cache_hint(exc.filename) if exc.filename else "")
                             + ("" if self._verbose(ctx) else " Run with -v for the traceback."))
            ctx.exit(int(ExitCode.RUNTIME))
        except Exception as exc:  # a bug or a library failure: say so, briefly
            self._traceback(ctx)
            Terminal().error(f"unexpected {type(exc).__name__}: {exc}"
                             + ("" if self._verbose(ctx) else " (run with -v for the traceback)."))
            ctx.exit(int(ExitCode.RUNTIME))
        finally:
            _report_repairs()

    @staticmethod
    def _verbose(ctx) -> bool:
        return isinstance(ctx.obj, CliState) and ctx.obj.verbose

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
    ctx.obj = CliState(verbose=verbose, offline=offline)
    _remove_stale_temp()
    if offline:
        os.environ["LDMPROBE_OFFLINE"] = "1"


def _remove_stale_temp() -> None:
    """Temp files and staging folders that killed processes left in the cache (issue 17)."""
    from ldmprobe.storage import remove_stale_temp

    try:
        remove_stale_temp()
    except OSError:  # a read-only or vanished cache: nothing to clean
        pass


def _report_repairs() -> None:
    """One stderr line when cached values failed their integrity check this command (issue 17)."""
    from ldmprobe.storage import repair_summary

    line = repair_summary()
    if line:
        Terminal().warn(line)


def run(argv: list[str] | None = None) -> int:
    """Entry point for the console script and ``python -m ldmprobe``."""
    from ldmprobe.engine import distributed

    distributed.handle_sigterm()  # SIGTERM (schedulers, docker stop) unwinds like Ctrl-C
    try:
        main.main(args=argv, prog_name="ldmprobe", standalone_mode=True)
    except SystemExit as exc:
        return _signal_exit(int(exc.code or 0) if not isinstance(exc.code, str) else 1)
    return 0


def _signal_exit(code: int) -> int:
    """130 (interrupted) becomes 128 + the signal when SIGTERM stopped the command."""
    from ldmprobe.engine import distributed

    signum = distributed.stopped_by_signal()
    if signum is None or code != int(ExitCode.INTERRUPTED):
        return code
    Terminal().error(f"stopped by signal {signum} (SIGTERM); nothing is half-written. "
                     "Rerun the same command to resume.")
    return 128 + signum


def _register_commands() -> None:
    """Commands defined in their own modules, one module per command."""
    from ldmprobe.cli.assoc import assoc
    from ldmprobe.cli.cache import cache_group
    from ldmprobe.cli.check import check_command
    from ldmprobe.cli.compare import compare_command
    from ldmprobe.cli.models import models_command
    from ldmprobe.cli.neighbours import neighbours
    from ldmprobe.cli.report import report_command
    from ldmprobe.cli.sweep import sweep_command
    from ldmprobe.cli.trace import trace_command

    for command in (models_command, check_command, sweep_command, report_command, assoc, neighbours, trace_command):
        main.add_command(command)
    main.add_command(compare_command)
    main.add_command(cache_group)


_register_commands()
