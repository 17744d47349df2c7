"""What the store notices during one run, held in one object per run rather than module counters.

A :class:`RunState` counts the cached values that failed their check and were removed or skipped
(by kind and reason; a command reports them in one stderr line at its end; a value read and
found bad by two readers in one run is counted once), and remembers the
model identities behind the namespaces named (written beside a namespace's values as
``identity.json``, so ``ldmprobe cache info`` can say which model a folder belongs to).

The store's readers report to the run's state, :data:`current`; a command of the command line
starts its own (:func:`begin_run`). Code that starts none (the Python API, tests) shares the one
made at import, as a process did before. Safe to use from several threads.
"""

from __future__ import annotations

import collections
import threading


class RunState:
    """The repairs and namespace identities of one run."""

    def __init__(self) -> None:
        self.repairs: collections.Counter = collections.Counter()  # (kind, reason) -> count
        self.details: list[str] = []
        self.seen: set[tuple[str, str]] = set()  # (kind, key) of the values counted
        self.identities: dict[str, dict] = {}
        self._lock = threading.Lock()

    def record_repair(self, kind: str, reason: str = "unreadable", detail: str | None = None,
                      key: str | None = None) -> None:
        """Count one cached value of ``kind`` (e.g. "images") that failed its check and was removed;
        ``detail`` (e.g. which model folder was rebuilt) is added to the summary line. A value
        named by ``key`` is counted once per run, however many readers found it bad (a packed
        value stays in its shard until compaction, so each store opened on it checks it again)."""
        with self._lock:
            if key is not None:
                if (kind, key) in self.seen:
                    return
                self.seen.add((kind, key))
            self.repairs[(kind, reason)] += 1
            if detail and detail not in self.details:
                self.details.append(detail)

    def repair_summary(self, reset: bool = True) -> str | None:
        """One line with the number of cached values per kind that failed their check, or None."""
        counts: dict[str, int] = {}
        with self._lock:
            for (kind, _reason), n in sorted(self.repairs.items()):
                counts[kind] = counts.get(kind, 0) + n
            details = list(self.details)
            if reset:
                self.repairs.clear()
                self.details.clear()
                self.seen.clear()
        total = sum(counts.values())
        if not total:
            return None
        parts = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
        return (f"{total} cached value(s) failed their integrity check and were treated as missing "
                f"(remade where this run needed them): {parts}." + "".join(f" {d}." for d in details))

    def remember_namespace(self, namespace: str, identity: dict) -> None:
        with self._lock:
            self.identities.setdefault(namespace, identity)

    def namespace_identity(self, namespace: str) -> dict | None:
        """The identity a cache namespace was made from in this run (None if not named here)."""
        return self.identities.get(namespace)


#: The state the store reports to now (replaced by :func:`begin_run`; read it at each use).
current = RunState()


def begin_run() -> RunState:
    """Start a run's own state (the command line, once per command) and make it :data:`current`."""
    global current
    current = RunState()
    return current
