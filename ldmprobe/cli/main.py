"""The ``ldmprobe`` command group: errors to exit codes, global flags, and the commands' registration.

Each command lives in its own module (parse → one use case → emit); heavy imports stay inside
the commands."""

from __future__ import annotations

import errno
import functools
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
        from ldmprobe.engine.distributed import clear_stop

        clear_stop()  # a stop signal an earlier command in this process acted on
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except LdmprobeError as exc:
            self._traceback(ctx)
            Terminal().error(str(exc))
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            from ldmprobe.engine import distributed

            env = distributed.launch_env()
            who = f"rank {env[0]} of {env[1]}: " if env is not None and env[1] > 1 else ""
            Terminal().error(f"{who}interrupted; everything finished so far is cached, rerun the same command to "
                             "resume.")
            ctx.exit(int(ExitCode.INTERRUPTED))
        except BrokenPipeError:  # `ldmprobe ... | head`: the reader has what it wanted
            ctx.exit(_closed_pipe_exit())
        except OSError as exc:  # disk full, permissions, a vanished file
            self._traceback(ctx)
            from ldmprobe.store.files import cache_hint

            full = ""
            if exc.errno == errno.ENOSPC:
                from ldmprobe.store.diskspace import disk_full_message

                full = f": {disk_full_message(exc.filename)}"
            Terminal().error(f"{exc.strerror or exc} ({exc.filename or 'no file name'}){full}. Nothing cached "
                             "before this point is lost." + (cache_hint(exc.filename) if exc.filename else "")
                             + ("" if self._verbose(ctx) else " Run with -v for the traceback."))
            ctx.exit(int(ExitCode.RUNTIME))
        except Exception as exc:  # a bug or a library failure: say so, briefly
            self._traceback(ctx)
            Terminal().error(f"unexpected {type(exc).__name__}: {exc}"
                             + ("" if self._verbose(ctx) else " (run with -v for the traceback)."))
            ctx.exit(int(ExitCode.RUNTIME))
        finally:
            _report_repairs(quiet=isinstance(ctx.obj, CliState) and ctx.obj.quiet)

    @staticmethod
    def _verbose(ctx) -> bool:
        return isinstance(ctx.obj, CliState) and ctx.obj.verbose

    def _traceback(self, ctx) -> None:
        if self._verbose(ctx):
            import traceback

            traceback.print_exc(file=sys.stderr)


_VERBOSE_HELP = "Show tracebacks and library logs on errors."
_OFFLINE_HELP = "Never touch the network; use only cached or local models (also LDMPROBE_OFFLINE=1)."
_QUIET_HELP = "Only errors on stderr: no status lines, warnings or progress."
_THREADS_HELP = ("CPU threads for torch (also LDMPROBE_THREADS; default: the usable cores not kept busy by "
                 "other processes, 1 to 8).")

_ENVIRONMENT = """\b
Environment:
  LDMPROBE_CACHE    cache folder (images, embeddings, tiny models); default: the user cache dir
  LDMPROBE_OFFLINE  1: never touch the network (same as --offline)
  NO_COLOR          set: no colour on the terminal
  LDMPROBE_THREADS  CPU threads for torch (same as --threads)
  COLUMNS           table width when stdout is not a terminal (default 80)

-v, -q, --offline and --threads work before or after the command (ldmprobe sweep SPEC --offline)."""


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=_ENVIRONMENT)
@click.version_option(__version__, "--version", prog_name="ldmprobe")
@click.option("-v", "--verbose", is_flag=True, help=_VERBOSE_HELP)
@click.option("-q", "--quiet", is_flag=True, help=_QUIET_HELP)
@click.option("--offline", is_flag=True, envvar="LDMPROBE_OFFLINE", help=_OFFLINE_HELP)
@click.option("--threads", type=click.IntRange(min=1), default=None, help=_THREADS_HELP)
@click.pass_context
def main(ctx, verbose: bool, offline: bool, quiet: bool = False, threads: int | None = None):
    """Measure how words move text-to-image diffusion models, in CLIP space.

    \b
    ldmprobe sweep reference-world       the main job: offline, on the shipped reference world
    ldmprobe models                      presets and whether they are cached
    ldmprobe check --pipeline tiny --measurer tiny
                                         load models and run one image through them
    """
    from ldmprobe.store.run_state import begin_run

    begin_run()  # this command's own store state: its repairs are reported at its end
    ctx.obj = CliState(verbose=verbose, offline=offline, quiet=quiet)
    ctx.obj.threads = threads
    _remove_stale_temp()
    if offline:
        os.environ["LDMPROBE_OFFLINE"] = "1"


def _closed_pipe_exit() -> int:
    """The reader of stdout went away: end quietly, as Unix tools do (128 + SIGPIPE)."""
    try:  # later writes and the interpreter's final flush go nowhere instead of raising again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (a test's buffer)
        pass
    return 141


def _remove_stale_temp() -> None:
    """Temp files and staging folders that killed processes left in the cache (issue 17)."""
    from ldmprobe.store.cleanup import remove_stale_temp

    try:
        remove_stale_temp()
    except OSError:  # a read-only or vanished cache: nothing to clean
        pass


def _report_repairs(quiet: bool = False) -> None:
    """One stderr line when cached values failed their integrity check this command (issue 17)."""
    from ldmprobe.store import run_state

    line = run_state.current.repair_summary()
    if line:
        Terminal(quiet=quiet).warn(line)


def run(argv: list[str] | None = None) -> int:
    """Entry point for the console script and ``python -m ldmprobe``."""
    from ldmprobe.engine import distributed

    distributed.handle_sigterm()  # SIGTERM (schedulers, docker stop) unwinds like Ctrl-C
    try:
        main.main(args=argv, prog_name="ldmprobe", standalone_mode=True)
    except SystemExit as exc:
        code = _signal_exit(int(exc.code or 0) if not isinstance(exc.code, str) else 1)
        return _flush_stdout(code)
    except BrokenPipeError:  # while click itself wrote (--help into `head`)
        return _closed_pipe_exit()
    return _flush_stdout(0)


def _flush_stdout(code: int) -> int:
    """Flush stdout now, so a reader that left early ends the command quietly (not at exit)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return _closed_pipe_exit()
    except (OSError, ValueError):
        pass
    return code


def _signal_exit(code: int) -> int:
    """130 (interrupted) becomes 128 + the signal when SIGTERM stopped the command."""
    from ldmprobe.engine import distributed

    signum = distributed.stopped_by_signal()
    if signum is None or code != int(ExitCode.INTERRUPTED):
        return code
    env = distributed.launch_env()
    who = f"rank {env[0]} of {env[1]}: " if env is not None and env[1] > 1 else ""
    Terminal().error(f"{who}stopped by signal {signum} (SIGTERM); nothing is half-written. "
                     "Rerun the same command to resume.")
    return 128 + signum


#: One example per command, shown under its --help.
EXAMPLES = {
    "models": ["ldmprobe models", "ldmprobe models --format json"],
    "check": ["ldmprobe check --pipeline tiny --measurer tiny", "ldmprobe check --device cuda:0"],
    "sweep": ["ldmprobe sweep reference-world", "ldmprobe sweep fancy-house --dry-run --offline",
              "ldmprobe sweep fancy-house --pipeline tiny --format json | jq .terms",
              "ldmprobe sweep SPEC --embeddings embeddings.npz",
              "ldmprobe sweep SPEC --images manifest.csv --measurer reference",
              "ldmprobe sweep reference-world --export-embeddings reference-world.npz"],
    "report": ["ldmprobe report runs/fancy-house-20250101-120000"],
    "export": ["ldmprobe export runs/fancy-house-20250101-120000"],
    "assoc": ["ldmprobe assoc weat1-flowers-insects", "ldmprobe assoc weat1-flowers-insects --measurer tiny",
              "ldmprobe assoc --set X=x.csv --set Y=y.csv --set A=a.npy --set B=b.npy"],
    "neighbours": ["ldmprobe neighbours fancy -k 10", "ldmprobe neighbours fancy --context 'a photo of a {} house'"],
    "trace": ["ldmprobe trace reference-world --pipeline reference --measurer reference"],
    "compare": ["ldmprobe compare runs/base-run runs/finetune-run",
                "ldmprobe compare runs/base runs/finetune --out runs/base-vs-finetune"],
    "cache": ["ldmprobe cache info", "ldmprobe cache verify --repair", "ldmprobe cache prune --older-than 30d --dry-run"],
    "cache info": ["ldmprobe cache info --format json"],
    "cache verify": ["ldmprobe cache verify --repair"],
    "cache prune": ["ldmprobe cache prune --model tiny --dry-run", "ldmprobe cache prune --older-than 30d"],
}

_GLOBAL_FLAGS = ("verbose", "quiet", "offline")


def _global_params() -> list[click.Option]:
    return [click.Option(["-v", "--verbose"], is_flag=True, help=_VERBOSE_HELP),
            click.Option(["-q", "--quiet"], is_flag=True, help=_QUIET_HELP),
            click.Option(["--offline"], is_flag=True, help=_OFFLINE_HELP),
            click.Option(["--threads"], type=click.IntRange(min=1), default=None, help=_THREADS_HELP)]


def _with_global_flags(callback):
    """The command's callback, taking -v / -q / --offline given after the command name too."""

    @functools.wraps(callback)
    def run(*args, **kwargs):
        flags = {name: bool(kwargs.pop(name, False)) for name in _GLOBAL_FLAGS}
        threads = kwargs.pop("threads", None)
        ctx = click.get_current_context()
        state = ctx.find_object(CliState)
        if state is None:  # the command invoked on its own (no group before it)
            state = ctx.ensure_object(lambda: CliState(verbose=False, offline=False))
        state.update(**flags)
        if state.offline:
            os.environ["LDMPROBE_OFFLINE"] = "1"
        _set_threads(state, threads)
        return callback(*args, **kwargs)

    return run


def _set_threads(state: CliState, threads: int | None) -> None:
    """--threads (after the command, else before it), LDMPROBE_THREADS, or the free cores, for torch."""
    from ldmprobe.errors import BadInputError
    from ldmprobe.threads import apply_threads, choose_threads

    try:
        count, source = choose_threads(threads if threads is not None else getattr(state, "threads", None))
    except ValueError as exc:
        raise BadInputError(str(exc)) from None
    state.threads = count
    apply_threads(count)
    if state.verbose:
        state.terminal.info(f"torch threads: {count} ({source})")


def attach_global_flags(command: click.Command, path: str = "") -> None:
    """-v / -q / --offline on the command (and a group's subcommands), and its examples in --help."""
    name = f"{path} {command.name}".strip()
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            attach_global_flags(sub, name)
    if any(p.name in _GLOBAL_FLAGS for p in command.params):
        return  # already attached
    command.params.extend(_global_params())
    if command.callback is not None:
        command.callback = _with_global_flags(command.callback)
    examples = EXAMPLES.get(name)
    if examples and not command.epilog:
        command.epilog = "\b\nExamples:\n" + "\n".join(f"  {line}" for line in examples)


def _register_commands() -> None:
    """Commands defined in their own modules, one module per command."""
    from ldmprobe.cli.assoc import assoc
    from ldmprobe.cli.cache import cache_group
    from ldmprobe.cli.check import check_command
    from ldmprobe.cli.compare import compare_command
    from ldmprobe.cli.export import export_command
    from ldmprobe.cli.models import models_command
    from ldmprobe.cli.neighbours import neighbours
    from ldmprobe.cli.report import report_command
    from ldmprobe.cli.sweep import sweep_command
    from ldmprobe.cli.trace import trace_command

    for command in (models_command, check_command, sweep_command, report_command, assoc, neighbours, trace_command,
                    compare_command, cache_group, export_command):
        attach_global_flags(command)
        main.add_command(command)


_register_commands()
