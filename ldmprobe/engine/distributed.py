"""Several processes, one sweep: ``torchrun`` / ``accelerate launch``, one rank per GPU.

A launcher announces a distributed run in the environment: ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` (torchrun sets them; ``accelerate launch``
with several processes runs torchrun). Without them, or with ``WORLD_SIZE=1``,
:func:`setup` returns a single-process :class:`RankContext` and imports nothing from torch.

What ranks exchange is small and lives on the CPU: the work list (broadcast from rank 0),
the keys each rank generated (gathered at the end), one barrier, and a few counters in the
launcher's key-value store (images made across ranks, for rank 0's progress display; each
rank's state, so that a rank that fails or goes silent is named and the others do not wait
forever). Nothing here needs NCCL, so the process group is gloo on CPUs and GPUs alike
(gloo's monitored barrier names the ranks that did not arrive; NCCL has none).

Tunable: ``LDMPROBE_RANK_TIMEOUT`` (seconds, default 1800): how long ranks wait at a meeting
point while nothing moves anywhere in the job before they give up and name the missing ranks.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, TypeVar

from ldmprobe.errors import BadInputError, LdmprobeError

T = TypeVar("T")

TIMEOUT_ENV = "LDMPROBE_RANK_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0

#: Distinct key prefix per :func:`setup` call (every rank calls it the same number of times).
_SETUPS = 0


class RankFailure(LdmprobeError):
    """Another rank failed, stopped answering, or the ranks disagree."""


def launch_env(environ: Mapping[str, str] | None = None) -> tuple[int, int, int] | None:
    """(rank, world size, local rank) set by a launcher, or None for a plain single process."""
    env = os.environ if environ is None else environ
    raw_world = env.get("WORLD_SIZE", "").strip()
    if not raw_world:
        return None
    try:
        world = int(raw_world)
        rank = int(env.get("RANK", "0") or 0)
        local = int(env.get("LOCAL_RANK", str(rank)) or rank)
    except ValueError:
        raise BadInputError(
            f"RANK/WORLD_SIZE/LOCAL_RANK must be integers (got WORLD_SIZE={raw_world!r}, "
            f"RANK={env.get('RANK')!r}, LOCAL_RANK={env.get('LOCAL_RANK')!r}); start the run with "
            "torchrun or accelerate launch, or unset them."
        ) from None
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise BadInputError(f"RANK={rank} is outside WORLD_SIZE={world}; start the run with torchrun.")
    return rank, world, local


def is_main_process() -> bool:
    """Whether this process should write output: no launcher, or rank 0 (no torch import)."""
    env = launch_env()
    return env is None or env[0] == 0


def rank_timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise BadInputError(f"{TIMEOUT_ENV}={raw!r} must be a number of seconds.") from None
    if value <= 0:
        raise BadInputError(f"{TIMEOUT_ENV}={raw!r} must be positive.")
    return value


def shard(items: Sequence[T], rank: int, world_size: int, groups: Mapping[str, int] | None = None) -> list[T]:
    """Rank ``rank``'s disjoint share of ``items`` (strided; some ranks may get nothing).

    With ``groups`` (an item's ``key`` to its call group, :func:`~ldmprobe.engine.sweep_setup.call_groups`)
    the groups are dealt out instead, so each rank makes whole calls: the items of one group sit at
    different slots and fill one generation call (issue 28)."""
    if groups is None:
        return list(items[rank::world_size])
    return [item for item in items if groups[item.key] % world_size == rank]


class SharedCounter:
    """A number summed across ranks (the launcher's key-value store); read by any rank."""

    def __init__(self, store, key: str):
        self.store, self.key = store, key

    def add(self, n: int) -> int:
        return int(self.store.add(self.key, int(n)))

    def value(self) -> int:
        return int(self.store.add(self.key, 0))


@dataclass
class RankContext:
    """This process's place in the job; a plain process is rank 0 of 1 and does nothing here."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S
    group: Any = None  # gloo group for every operation here
    store: Any = None  # key-value store under this run's prefix (None: progress stays local)
    owns_process_group: bool = False
    _previous_sigterm: Any = field(default=None, repr=False)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.world_size}"

    # ------------------------------------------------------------------ devices and work

    def device(self, device: str) -> str:
        """The device of this rank: plain ``cuda`` becomes ``cuda:LOCAL_RANK`` (modulo the GPU count)."""
        if not self.distributed or device != "cuda":
            return device
        import torch

        index = self.local_rank % max(1, torch.cuda.device_count())
        torch.cuda.set_device(index)
        return f"cuda:{index}"

    def shard(self, items: Sequence[T], groups: Mapping[str, int] | None = None) -> list[T]:
        return shard(items, self.rank, self.world_size, groups)

    # ------------------------------------------------------------------ collectives

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (picklable objects)."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        self._collective(lambda: dist.broadcast_object_list(box, src=0, group=self.group), "broadcast")
        return box[0]

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list = [None] * self.world_size
        self._collective(lambda: dist.all_gather_object(out, obj, group=self.group), "gather")
        return out

    def barrier(self, timeout_s: float | None = None) -> None:
        """Meet every rank; names the ranks that did not arrive within the timeout."""
        if not self.distributed:
            return
        import datetime

        import torch.distributed as dist

        timeout = datetime.timedelta(seconds=timeout_s or self.timeout_s)
        self._collective(lambda: dist.monitored_barrier(group=self.group, timeout=timeout, wait_all_ranks=True),
                         "barrier")

    def _collective(self, op: Callable[[], Any], what: str) -> None:
        try:
            op()
        except RuntimeError as exc:  # gloo: timeouts, closed connections, monitored-barrier reports
            raise RankFailure(
                f"{self}: the {what} with the other ranks failed ({' '.join(str(exc).split())}). "
                "A rank probably died; the launcher's report names it. Everything finished is cached: "
                "rerun the same command, at any world size, to make the rest."
            ) from exc

    # ------------------------------------------------------------------ progress and states

    def counter(self, name: str) -> SharedCounter | None:
        """A counter summed across ranks, or None in a single process (count locally)."""
        return SharedCounter(self.store, name) if self.distributed and self.store is not None else None

    def report(self, state: str, error: str | None = None) -> None:
        """Publish this rank's state: working, finished or failed (with the error)."""
        if not self.distributed or self.store is None:
            return
        try:
            self.store.set(f"state/{self.rank}", json.dumps({"state": state, "error": error}))
            self.store.add("beat", 1)
            if state == "finished":
                self.store.add("finished", 1)
            elif state == "failed":
                self.store.add("failed", 1)
        except Exception:  # noqa: BLE001 - the store is gone: the waits below report it
            pass

    def states(self) -> dict[int, dict]:
        """Every rank's last published state (ranks that published nothing are missing)."""
        found = {}
        for rank in range(self.world_size):
            key = f"state/{rank}"
            if self.store.check([key]):
                found[rank] = json.loads(self.store.get(key))
        return found

    def wait_for_ranks(self, poll: Callable[[], None] | None = None, interval: float = 0.5) -> None:
        """Wait until every rank has finished its share, calling ``poll`` meanwhile (progress).

        Fails, naming the ranks, when one reported a failure or when nothing at all moved in
        the job (no image made, no state change) for ``timeout_s`` seconds.
        """
        if not self.distributed or self.store is None:
            return
        last_seen, last_change = None, time.monotonic()
        while True:
            check_stop()
            try:
                failed = int(self.store.add("failed", 0))
                finished = int(self.store.add("finished", 0))
                seen = (finished, int(self.store.add("beat", 0)), int(self.store.add("done", 0)))
                states = self.states() if failed else {}
            except RuntimeError as exc:
                raise RankFailure(
                    f"{self}: lost contact with the other ranks ({' '.join(str(exc).split())}); rank 0 or the "
                    "launcher probably died. Everything finished is cached: rerun the same command."
                ) from exc
            if failed:
                bad = sorted(r for r, s in states.items() if s.get("state") == "failed")
                detail = "; ".join(f"rank {r}: {states[r].get('error')}" for r in bad) or "no details"
                raise RankFailure(
                    f"{self}: {'rank' if len(bad) == 1 else 'ranks'} {', '.join(map(str, bad))} of "
                    f"{self.world_size} failed ({detail}). What every rank finished is cached: fix the cause "
                    "and rerun the same command, at any world size, to make only the rest."
                )
            if finished >= self.world_size:
                if poll is not None:
                    poll()
                return
            now = time.monotonic()
            if seen != last_seen:
                last_seen, last_change = seen, now
            elif now - last_change > self.timeout_s:
                states = self.states()
                silent = [r for r in range(self.world_size) if states.get(r, {}).get("state") != "finished"]
                raise RankFailure(
                    f"{self}: {'rank' if len(silent) == 1 else 'ranks'} {', '.join(map(str, silent))} of "
                    f"{self.world_size} did not finish and nothing moved in the job for {self.timeout_s:.0f} s "
                    f"({TIMEOUT_ENV}); they probably died. What every rank finished is cached: rerun the same "
                    "command, at any world size, to make only the rest."
                )
            if poll is not None:
                poll()
            time.sleep(interval)

    # ------------------------------------------------------------------ teardown

    def close(self) -> None:
        """Leave the process group (when this module made it) and restore SIGTERM."""
        if self._previous_sigterm is not None:
            try:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
            except ValueError:
                pass
            self._previous_sigterm = None
        if self.owns_process_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.owns_process_group = False
        self.group = self.store = None


#: Signals that stopped this process through :func:`_sigterm_as_interrupt` (exit 128 + signal).
STOPPED_BY: list[int] = []
#: A stop signal arrived and has not yet been seen to unwind the work (see :func:`check_stop`).
_PENDING: list[int] = []


def _sigterm_as_interrupt(signum, frame):  # noqa: ARG001
    """The launcher stops ranks with SIGTERM (e.g. when another rank failed), as do schedulers
    and ``docker stop``: unwind like Ctrl-C, so temp files are removed and the process exits
    with its own message (the CLI then exits 143, see :func:`stopped_by_signal`)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    STOPPED_BY.append(int(signum))
    _PENDING.append(int(signum))
    raise KeyboardInterrupt


def _sigint_as_interrupt(signum, frame):  # noqa: ARG001
    """Ctrl-C as Python does it (KeyboardInterrupt), remembered for :func:`check_stop`."""
    _PENDING.append(int(signum))
    raise KeyboardInterrupt


def check_stop() -> None:
    """Raise KeyboardInterrupt if a stop signal arrived and was swallowed.

    Python drops an exception raised inside a ``__del__`` or a weakref callback ("Exception
    ignored in ..."), so a Ctrl-C or SIGTERM that lands there is lost and the work goes on.
    Loops that make or wait for items call this between batches: such a signal stops the
    work at the next batch instead of never."""
    if _PENDING:
        _PENDING.clear()
        raise KeyboardInterrupt


def clear_stop() -> None:
    """Forget a stop signal already acted on (a new command starts)."""
    _PENDING.clear()


def _quiet_lost_interrupt(unraisable, _previous=sys.unraisablehook) -> None:
    """A KeyboardInterrupt Python had to drop (see :func:`check_stop`) is acted on at the next
    batch; printing "Exception ignored in ..." with a traceback for it would only alarm."""
    if issubclass(unraisable.exc_type, KeyboardInterrupt) and _PENDING:
        return
    _previous(unraisable)


def handle_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C in this process, and remember SIGINT for :func:`check_stop`
    (main thread only; keeps a handler another program already set)."""
    sys.unraisablehook = _quiet_lost_interrupt
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _sigint_as_interrupt)
    except ValueError:  # not the main thread
        pass


def stopped_by_signal() -> int | None:
    """The signal (SIGTERM) that stopped this process, if it was one."""
    return STOPPED_BY[0] if STOPPED_BY else None


def setup(environ: Mapping[str, str] | None = None) -> RankContext:
    """Join the job the launcher started (gloo process group), or describe a plain process."""
    global _SETUPS
    env = launch_env(environ)
    if env is None:
        return RankContext()
    rank, world, local = env
    timeout_s = rank_timeout()
    import datetime

    import torch.distributed as dist

    context = RankContext(rank=rank, world_size=world, local_rank=local, timeout_s=timeout_s)
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo", init_method="env://", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
        context.owns_process_group = True
    elif dist.get_world_size() != world or dist.get_rank() != rank:
        raise BadInputError(
            f"the process group (rank {dist.get_rank()} of {dist.get_world_size()}) does not match the "
            f"launcher's RANK={rank} WORLD_SIZE={world}."
        )
    context.group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    _SETUPS += 1
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        context.store = dist.PrefixStore(f"ldmprobe/{_SETUPS}/", _get_default_store())
    except Exception:  # noqa: BLE001 - private API: without it, progress stays per rank
        context.store = None
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            context._previous_sigterm = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    except ValueError:  # not the main thread
        pass
    return context
