"""The cache folder and atomic writes: the storage every stage builds on (no heavy imports)."""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path


def cache_root() -> Path:
    """``$LDMPROBE_CACHE``, else the platform's user cache folder for ldmprobe."""
    env = os.environ.get("LDMPROBE_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ldmprobe", appauthor=False))


def models_dir() -> Path:
    return cache_root() / "models"


def _file_mode() -> int:
    """Permissions a plain open() would give (mkstemp's 0600 would hide shared-cache files)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


def named(exc: BaseException, path) -> BaseException:
    """``exc`` with ``path`` as its file name when it is an OSError without one (a failed
    ``write`` or ``fsync`` names no file), so a full disk is reported where it happened (issue 28)."""
    if isinstance(exc, OSError) and exc.filename is None:
        exc.filename = str(path)
    return exc


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers only ever see the old or the complete new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=TEMP_SUFFIX)
    try:
        if hasattr(os, "fchmod"):  # not on Windows before Python 3.13
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        named(exc, path)
        raise


def read_for_check(path: Path) -> bytes | None:
    """A cached file's bytes before its check: None when it is missing, ``b""`` when it cannot be
    read (so the check fails and the entry is removed and remade like a damaged one)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return b""


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def publish_dir(tmp_dir: Path, final_dir: Path) -> Path:
    """Move a fully written temp folder into place; if another process won the race, keep theirs."""
    try:
        os.replace(tmp_dir, final_dir)
    except OSError:
        if not final_dir.is_dir():
            raise
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return final_dir


def staging_dir(final_dir: Path) -> Path:
    """A fresh temp folder beside ``final_dir`` (same filesystem, so the rename is atomic)."""
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{final_dir.name}.{os.getpid()}-"))


# --------------------------------------------------------------------------- stale temp files

TEMP_SUFFIX = ".tmp"
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


# --------------------------------------------------------------------------- repairs and hints

#: Cached values that failed a check this process and were removed or skipped, by (kind, reason);
#: a command reports them in one stderr line at its end (:func:`repair_summary`), then resets.
REPAIRS: collections.Counter = collections.Counter()
_DETAILS: list[str] = []
_REPAIRS_LOCK = threading.Lock()


def record_repair(kind: str, reason: str = "unreadable", detail: str | None = None) -> None:
    """Count one cached value of ``kind`` (e.g. "images") that failed its check and was removed;
    ``detail`` (e.g. which model folder was rebuilt) is added to the summary line."""
    with _REPAIRS_LOCK:
        REPAIRS[(kind, reason)] += 1
        if detail and detail not in _DETAILS:
            _DETAILS.append(detail)


def repair_summary(reset: bool = True) -> str | None:
    """One line with the number of cached values per kind that failed their check, or None."""
    counts: dict[str, int] = {}
    with _REPAIRS_LOCK:
        for (kind, _reason), n in sorted(REPAIRS.items()):
            counts[kind] = counts.get(kind, 0) + n
        details = list(_DETAILS)
        if reset:
            REPAIRS.clear()
            _DETAILS.clear()
    total = sum(counts.values())
    if not total:
        return None
    parts = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
    return (f"{total} cached value(s) failed their integrity check and were treated as missing "
            f"(remade where this run needed them): {parts}." + "".join(f" {d}." for d in details))


def cache_hint(path=None) -> str:
    """Where the cache is and how to move it: for errors about files in the cache."""
    root = cache_root()
    if path is not None:
        try:
            Path(path).resolve().relative_to(root.resolve())
        except (ValueError, OSError):
            return ""
    source = "LDMPROBE_CACHE" if os.environ.get("LDMPROBE_CACHE", "").strip() else "the default; set LDMPROBE_CACHE"
    return (f" This is ldmprobe's cache {root} ({source}): free space or fix permissions there, or set "
            "LDMPROBE_CACHE=/another/folder to use another cache.")


#: The identities behind the namespaces named this process (written beside a namespace's values
#: as ``identity.json``, so ``ldmprobe cache info`` can say which model a folder belongs to).
_IDENTITIES: dict[str, dict] = {}
IDENTITY_FILE = "identity.json"


def remember_namespace(namespace: str, identity: dict) -> None:
    _IDENTITIES.setdefault(namespace, identity)


def namespace_identity(namespace: str) -> dict | None:
    """The identity a cache namespace was made from in this process (None if not named here)."""
    return _IDENTITIES.get(namespace)


def check_cache_root() -> Path:
    """The cache folder, made if missing; a BadInputError naming LDMPROBE_CACHE when it cannot be
    written (before any slow work, rather than a raw OS error half-way through a command)."""
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=f".probe.{os.getpid()}-", suffix=TEMP_SUFFIX)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        from ldmprobe.errors import BadInputError

        why = "it is a file, not a folder" if root.is_file() else (exc.strerror or str(exc))
        raise BadInputError(f"The cache folder {root} cannot be written: {why}." + cache_hint()) from None
    return root


# --------------------------------------------------------------------------- copies that share nothing

_FICLONE = 0x40049409  # linux/fs.h: share the source's blocks copy-on-write (btrfs, XFS, bcachefs)


def clone_file(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` (replacing it atomically) so that a later edit of either
    cannot change the other: a reflink where the filesystem has them, else a kernel copy, else a
    plain one. Returns how ("reflink", "copy_file_range" or "copy"); never a hard link."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}-", suffix=TEMP_SUFFIX)
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
            how = _clone_into(src, dst)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        named(exc, target)
        raise
    return how


def _clone_into(src, dst) -> str:
    try:
        import fcntl

        fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
        return "reflink"
    except (ImportError, OSError):
        pass
    size = os.fstat(src.fileno()).st_size
    if hasattr(os, "copy_file_range"):
        try:
            done = 0
            while done < size:
                n = os.copy_file_range(src.fileno(), dst.fileno(), size - done)
                if n == 0:
                    break
                done += n
            if done == size:
                return "copy_file_range"
        except OSError:
            pass
        src.seek(0)
        dst.seek(0)
        dst.truncate()
    shutil.copyfileobj(src, dst, 1 << 20)
    return "copy"
