"""How many CPU threads torch may use: ``--threads N``, else ``LDMPROBE_THREADS``, else the
cores this process may run on that are not already busy (issue 33).

torch's own default is one thread per core, whatever else the machine is doing; on a loaded
2-core machine that made a tiny image take 8.4–17.4 s against 0.26–0.76 s at one thread,
because the threads wait on each other while other processes hold the cores. The default
here counts the cores in the process's affinity mask (``os.sched_getaffinity``: what a
container, ``taskset`` or a batch scheduler allows), takes away the one-minute load average
(the cores other processes keep busy), and caps the result at :data:`MAX_DEFAULT`.

Nothing here imports torch: the count is put in ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``
before torch loads (torch sizes its pool from them), and given to ``torch.set_num_threads``
when torch is already imported (a test calling the CLI in-process).
"""

from __future__ import annotations

import math
import os
import sys

#: The default never goes above this: past ~8 threads a CPU diffusion step gains little.
MAX_DEFAULT = 8
ENV = "LDMPROBE_THREADS"


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def load_average() -> float:
    """The one-minute load average; 0 where the OS has none."""
    try:
        return max(0.0, float(os.getloadavg()[0]))
    except (AttributeError, OSError):
        return 0.0


def default_threads(cores: int | None = None, load: float | None = None, cap: int = MAX_DEFAULT) -> int:
    """The cores not kept busy by others, at least 1 and at most ``cap``:
    ``min(cap, max(1, floor(cores - load + 0.5)))``. A machine whose every core is busy gets one
    thread (that one competes fairly; more would only wait on each other)."""
    cores = usable_cores() if cores is None else cores
    load = load_average() if load is None else load
    free = math.floor(cores - load + 0.5)
    return int(min(cap, max(1, free)))


def parse_threads(value: str | int | None, source: str = "--threads") -> int | None:
    """A thread count as given (a positive integer), or None when not given; ``ValueError`` naming
    ``source`` otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"{source} must be a positive whole number of threads, not {value!r}") from None
    if number < 1:
        raise ValueError(f"{source} must be at least 1, not {number}")
    return number


def choose_threads(option: int | None = None, environ=None) -> tuple[int, str]:
    """(threads, where the number came from): ``--threads``, then ``LDMPROBE_THREADS``, then an
    ``OMP_NUM_THREADS`` the user (or torchrun, one per rank) set, then the free cores."""
    environ = os.environ if environ is None else environ
    if option is not None:
        return option, "--threads"
    given = parse_threads(environ.get(ENV), ENV)
    if given is not None:
        return given, ENV
    try:  # OpenMP's own syntax allows lists ("4,2"); anything but one number is left to OpenMP
        given = parse_threads(environ.get("OMP_NUM_THREADS"), "OMP_NUM_THREADS")
    except ValueError:
        given = None
    if given is not None:
        return given, "OMP_NUM_THREADS"
    return default_threads(), f"free cores ({usable_cores()} usable, load {load_average():.1f})"


def apply_threads(threads: int, environ=None) -> None:
    """Torch will use ``threads`` intra-op threads: set before it loads, or now if it has."""
    environ = os.environ if environ is None else environ
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(threads)
        return
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        environ[name] = str(threads)
