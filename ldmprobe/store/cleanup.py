"""Temp files and staging folders left in the cache by killed processes, and removing them."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

from ldmprobe.store.files import TEMP_SUFFIX, cache_root

#: Temp files and staging folders untouched this long are left over from a killed process.
STALE_AFTER_S = 3600.0
#: How often (at most) a command walks the cache for them (the walk lists every image folder).
CLEANUP_EVERY_S = 3600.0
CLEANUP_MARKER = ".last-cleanup"
_PID = re.compile(r"\.(\d+)-[^.]*(?:\.tmp)?$")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists
        return True
    return True


def _newest_mtime(path: Path) -> float:
    """A folder's newest modification time over its whole tree (a live build keeps writing)."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for sub in path.rglob("*"):
            with contextlib.suppress(OSError):
                newest = max(newest, sub.lstat().st_mtime)
    return newest


def _stale(entry: os.DirEntry, now: float, max_age: float) -> bool:
    name = entry.name
    is_temp_file = name.endswith(TEMP_SUFFIX) and entry.is_file(follow_symlinks=False)
    is_staging = (entry.is_dir(follow_symlinks=False) and name.count(".") >= 2
                  and Path(entry.path).parent.name == "models")  # staging_dir's model builds
    if not name.startswith(".") or not (is_temp_file or is_staging):
        return False
    match = _PID.search(name)
    if match and int(match.group(1)) != os.getpid() and pid_alive(int(match.group(1))):
        return False  # held by a live process on this machine (named in the temp name)
    try:
        return now - _newest_mtime(Path(entry.path)) > max_age
    except OSError:
        return False


def remove_stale_temp(root: Path | None = None, *, max_age: float = STALE_AFTER_S,
                      every: float = CLEANUP_EVERY_S, now: float | None = None) -> list[Path]:
    """Remove temp files (``.NAME.PID-XXXX.tmp``) and staging folders (``.NAME.PID-XXXX``) left
    by killed processes: untouched for ``max_age`` seconds and not named after a live local
    process. Walks the cache at most once per ``every`` seconds; returns what it removed."""
    import time

    root = Path(root or cache_root())
    now = time.time() if now is None else now
    marker = root / CLEANUP_MARKER
    with contextlib.suppress(OSError):
        if now - marker.stat().st_mtime < every:
            return []
    removed: list[Path] = []
    for folder, dirs, _files in os.walk(root):
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                if _stale(entry, now, max_age):
                    path = Path(entry.path)
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(path, ignore_errors=True)
                        dirs[:] = [d for d in dirs if d != entry.name]
                    else:
                        path.unlink(missing_ok=True)
                    removed.append(path)
    with contextlib.suppress(OSError):
        root.mkdir(parents=True, exist_ok=True)
        marker.touch()
    return removed
