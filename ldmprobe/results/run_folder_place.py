"""Where a run folder goes and how it gets there (issue 28): reserved without creating it,
written in a hidden staging folder, published only when complete, ``--replace`` swapped in by
one atomic exchange, and what a killed process left behind tidied at the next start.

Every hidden name this module makes carries the host and the process id that made it
(``.NAME.ldmprobe-HOST-PID-stage-XXXX``, ``...-old``, ``.NAME.ldmprobe-reserved``), so a later
start removes only its own kind's leftovers, and only those of processes that are gone.
A published folder holds :data:`MARKER`, the list of the files ldmprobe wrote in it: ``--replace``
replaces only such a folder, and only while it holds nothing else.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

#: In every run folder ldmprobe publishes: ``{"made_by": "ldmprobe", "files": [relative paths]}``.
MARKER = ".ldmprobe-run"
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.ldmprobe-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-(?P<what>stage-\w+|old)$")
_RESERVED_SUFFIX = ".ldmprobe-reserved"
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs on this host (a zombie counts as gone)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def stage_name(out: Path) -> str:
    return f".{out.name}.ldmprobe-{_HOST}-{os.getpid()}-stage-"


def _old_path(out: Path) -> Path:
    return out.parent / f".{out.name}.ldmprobe-{_HOST}-{os.getpid()}-old"


def tidy_leftovers(parent: Path) -> list[str]:
    """Remove the staging folders and reservations that dead processes of this host left in
    ``parent``; an old folder a two-step ``--replace`` had moved aside is put back when its
    place is empty (the new one never arrived), else removed. Returns what was done."""
    done: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return done
    for entry in entries:
        if not entry.name.startswith("."):
            continue
        if entry.name.endswith(_RESERVED_SUFFIX):
            if _reservation_dead(Path(entry.path)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    done.append(f"removed {entry.name}")
            continue
        found = _LEFTOVER.match(entry.name)
        if not found or found["host"] != _HOST or _alive(int(found["pid"])):
            continue
        path, home = Path(entry.path), Path(parent) / found["name"]
        if found["what"] == "old" and not home.exists():
            with contextlib.suppress(OSError):
                os.rename(path, home)
                done.append(f"put back {home.name}")
                continue
        shutil.rmtree(path, ignore_errors=True)
        done.append(f"removed {entry.name}")
    return done


def _reservation_dead(path: Path) -> bool:
    try:
        host, pid = path.read_text().split()[:2]
    except (OSError, ValueError):
        return False  # being written, or not ours to judge
    return host == _HOST and not _alive(int(pid))


def reserve(candidate: Path) -> Path | None:
    """Reserve the name ``candidate`` (not created) with an exclusive hidden file beside it;
    None when it exists or another live process holds it. Returns the reservation file."""
    mark = candidate.parent / f".{candidate.name}{_RESERVED_SUFFIX}"
    for _ in range(2):
        try:
            fd = os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _reservation_dead(mark):
                with contextlib.suppress(OSError):
                    os.unlink(mark)
                continue
            return None
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{_HOST} {os.getpid()}\n")
        if os.path.lexists(candidate):
            os.unlink(mark)
            return None
        return mark
    return None


def _renameat2(source: Path, target: Path, flags: int) -> bool:
    """renameat2(2) through libc; False where the OS or filesystem does not have it."""
    libc = _libc()
    fn = getattr(libc, "renameat2", None) if libc is not None else None
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(target))


_LIBC: list = []


def _libc():
    if not _LIBC:
        try:
            _LIBC.append(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True))
        except OSError:
            _LIBC.append(None)
    return _LIBC[0]


def exchange(staging: Path, out: Path) -> None:
    """Put ``staging`` at ``out`` and the old ``out`` at ``staging`` in one atomic step where the
    OS has RENAME_EXCHANGE; else in two renames whose middle a later start recovers
    (:func:`tidy_leftovers` puts the old folder back)."""
    if _renameat2(staging, out, _RENAME_EXCHANGE):
        return
    old = _old_path(out)
    os.rename(out, old)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(old, out)
        raise
    os.rename(old, staging)  # the caller removes what is at staging: now the old folder


def publish_new(staging: Path, out: Path) -> None:
    """Move ``staging`` to ``out`` where ``out`` is missing (never over a folder made meanwhile)."""
    if _renameat2(staging, out, _RENAME_NOREPLACE):
        return
    if os.path.lexists(out):
        raise OSError(errno.EEXIST, "exists", str(out))
    os.rename(staging, out)


def list_files(folder: Path) -> list[str]:
    """Every file under ``folder`` (relative, sorted), the marker left out."""
    found = []
    for root, dirs, files in os.walk(folder):
        rel = os.path.relpath(root, folder)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = name if rel == "." else f"{rel}/{name}"
            if path != MARKER:
                found.append(path.replace(os.sep, "/"))
    return sorted(found)


def write_marker(folder: Path, files: list[str] | None = None) -> None:
    """Record that ldmprobe made ``folder`` and which files it wrote there."""
    listed = list_files(folder) if files is None else sorted(set(files))
    (Path(folder) / MARKER).write_text(json.dumps({"made_by": "ldmprobe", "files": listed}, indent=0) + "\n")


def add_to_marker(folder: Path, names) -> None:
    """Add files ldmprobe wrote later (report.html, exported images) to a folder's marker."""
    folder = Path(folder)
    listed = marker_files(folder)
    if listed is None:
        return
    from ldmprobe.store.files import atomic_write_text

    body = {"made_by": "ldmprobe", "files": sorted(set(listed) | set(names))}
    atomic_write_text(folder / MARKER, json.dumps(body, indent=0) + "\n")


def marker_files(folder: Path) -> list[str] | None:
    """The files the marker lists, or None when ``folder`` has no readable marker."""
    try:
        body = json.loads((Path(folder) / MARKER).read_text())
        files = body["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if body.get("made_by") != "ldmprobe" or not isinstance(files, list):
        return None
    return [f for f in files if isinstance(f, str)]


def foreign_files(folder: Path) -> list[str] | None:
    """Files in ``folder`` that ldmprobe did not write there; None when it has no marker."""
    listed = marker_files(folder)
    if listed is None:
        return None
    known = set(listed)
    return [f for f in list_files(folder) if f not in known]


def new_staging(out: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=out.parent, prefix=stage_name(out)))
