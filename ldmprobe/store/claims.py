"""Claims on work items, so that several processes on one cache divide the work (issue 17).

Before a process generates an item it creates ``images/claims/<key>.claim`` with ``O_EXCL``
(atomic on local filesystems and on NFS v3+), holding its host, pid and start time. Other
processes skip claimed items and, once nothing unclaimed is left, wait for them to appear in
the cache. A claim cannot be held forever by a dead process: the holder touches its claims
every :data:`HEARTBEAT_S` seconds from a background thread, and a claim is stale when its
holder is a dead process on this machine, or when it has not been touched for
:data:`STALE_AFTER_S` seconds (a holder on another machine that stopped). A stale claim is
taken over. Claims are released when the items are stored, and on any exit the process lives
through (Ctrl-C, SIGTERM, errors).

Claims only decide who does the work; correctness never rests on them. Cache writes are
atomic either way, so a taken-over claim whose holder was only slow costs a duplicate image,
never a corrupt one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ldmprobe.store.cleanup import pid_alive

HEARTBEAT_S = 20.0
STALE_AFTER_S = 120.0


class Claims:
    """This process's claims in one cache's ``images/claims`` folder."""

    def __init__(self, images_dir: Path, *, heartbeat: float = HEARTBEAT_S, stale_after: float = STALE_AFTER_S,
                 clock: Callable[[], float] = time.time):
        self.dir = images_dir / "claims"
        self.heartbeat, self.stale_after = heartbeat, stale_after
        self.clock = clock  # wall-clock seconds, compared with file mtimes; tests inject their own
        self.host = socket.gethostname()
        self.held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.claim"

    # ------------------------------------------------------------------ taking
    def try_take(self, key: str) -> bool:
        """Claim ``key``: True when this process holds it now (new, already ours, or stale)."""
        if key in self.held:
            return True
        if not (self._create(key) or (self.stale(key) and self._take_over(key))):
            return False
        with self._lock:
            self.held.add(key)
        self._start_heartbeat()
        return True

    def _create(self, key: str) -> bool:
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path(key), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump({"host": self.host, "pid": os.getpid(), "since": self.clock()}, fh)
        return True

    def _take_over(self, key: str) -> bool:
        """Remove a stale claim and claim it; False when another process got there first."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(key))
        return self._create(key)

    def holder(self, key: str) -> dict | None:
        try:
            return json.loads(self.path(key).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written, or torn by a crash: judged by its age alone

    def stale(self, key: str) -> bool:
        """Whether ``key``'s claim (if any) is held by no live process."""
        holder = self.holder(key)
        if holder is None:
            return False
        if holder.get("host") == self.host and isinstance(holder.get("pid"), int):
            if holder["pid"] != os.getpid() and not pid_alive(holder["pid"]):
                return True
        try:
            return self.clock() - self.path(key).stat().st_mtime > self.stale_after
        except FileNotFoundError:
            return False

    def claimed_by_others(self, key: str) -> bool:
        return key not in self.held and self.path(key).exists() and not self.stale(key)

    # ------------------------------------------------------------------ releasing
    def release(self, keys) -> None:
        with self._lock:
            keys = [k for k in keys if k in self.held]
            self.held.difference_update(keys)
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(key))

    def close(self) -> None:
        self._stop.set()
        self.release(list(self.held))
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ heartbeat
    def _start_heartbeat(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name="ldmprobe-claims", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with self._lock:
                keys = list(self.held)
            for key in keys:
                with contextlib.suppress(OSError):
                    os.utime(self.path(key))
