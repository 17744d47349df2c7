"""``ldmprobe-torchrun``: torchrun with ldmprobe's exit codes and one-line messages.

It takes exactly torchrun's arguments (it is ``torch.distributed.run`` run in-process) and
differs only in how the job ends. torchrun ends every Ctrl-C or SIGTERM, and every failed
rank, with exit 1 and a Python traceback of its own; a scheduler or a script cannot tell an
interrupted sweep (resume it) from a broken one (fix it). Here:

- the launcher stopped by SIGINT or SIGTERM (Ctrl-C, ``scancel``, ``docker stop``) asks every
  rank to stop (each ends as on Ctrl-C, names itself and leaves nothing half-written) and
  exits 128 + the signal: 130 or 143;
- a rank that failed makes the job exit with that rank's code (2 bad input, 1 runtime, 130 /
  143 interrupted, 128 + N killed by signal N) and one line naming the rank that failed first
  and the exit code of every other rank.
"""

from __future__ import annotations

import signal
import sys


def _say(message: str) -> None:
    print(f"ldmprobe-torchrun: {message}", file=sys.stderr, flush=True)


def _exit_code(exitcode: int) -> int:
    """A process's status as a shell reports it: 128 + N when signal N killed it."""
    return 128 - exitcode if exitcode < 0 else exitcode


def _describe(exitcode: int) -> str:
    code = _exit_code(exitcode)
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name} (exit {code})"
        except ValueError:
            return f"killed by signal {-exitcode} (exit {code})"
    meaning = {1: "failed", 2: "bad input", 130: "interrupted", 143: "stopped by SIGTERM"}.get(code, "failed")
    return f"{meaning} (exit {code})"


def failure_summary(failures: dict, world_size: int | None = None) -> tuple[str, int]:
    """The line and exit code for the ranks that ended badly: ``failures`` maps a global rank
    to something with ``exitcode`` (negative: killed by that signal) and ``timestamp``.

    The cause is the earliest rank that did not merely stop (the launcher stops the others
    with SIGTERM once one fails, and the order it notices them in is not the order they
    failed in); the job exits with the cause's code."""
    stopped = {130, 143}  # interrupted, or stopped by the launcher after another rank failed
    causes = [rank for rank in failures if _exit_code(failures[rank].exitcode) not in stopped] or list(failures)
    first = min(causes, key=lambda rank: (failures[rank].timestamp, rank))
    of = f" of {world_size}" if world_size else ""
    line = f"rank {first}{of} {_describe(failures[first].exitcode)}"
    others = [f"rank {rank} {_describe(failures[rank].exitcode)}" for rank in sorted(failures) if rank != first]
    if others:
        line += "; " + ", ".join(others)
    hint = ("rerun the same command, at any world size, to resume" if _exit_code(failures[first].exitcode) in (130, 143)
            else "its message above says why; everything finished is cached, so after fixing the cause rerun the "
                 "same command, at any world size, to make only the rest")
    return f"{line}. {hint[0].upper()}{hint[1:]}.", _exit_code(failures[first].exitcode)


def main(argv: list[str] | None = None) -> int:
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = torchrun.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        torchrun.run(args)
    except SignalException as exc:
        signum = int(exc.sigval)
        name = signal.Signals(signum).name
        _say(f"stopped by {name}; every rank was asked to stop and ended as on Ctrl-C (their lines above), "
             "nothing is half-written. Rerun the same command, at any world size, to resume.")
        return 128 + signum
    except ChildFailedError as exc:
        line, code = failure_summary(exc.failures, _world_size(args))
        _say(line)
        return code or 1
    except KeyboardInterrupt:  # a Ctrl-C that arrived before torchrun set its handlers
        _say("interrupted before the ranks started. Rerun the same command.")
        return 130
    return 0


def _world_size(args) -> int | None:
    """nnodes × nproc_per_node when both are plain numbers (not elastic ranges or 'gpu')."""
    low, _, high = str(args.nnodes).partition(":")
    try:
        if high and int(high) != int(low):
            return None
        return int(low) * int(args.nproc_per_node)
    except (TypeError, ValueError):
        return None


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
