"""The cache folder and atomic writes: what every other store module builds on (no heavy imports).

Also where an error about a cached file says which cache it is (:func:`cache_hint`), and copies
that share no bytes with their source (:func:`clone_file`, for run folders)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


#: The suffix of every temp file the store writes (the stale-temp cleanup looks for it).
TEMP_SUFFIX = ".tmp"


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


@contextlib.contextmanager
def _replacing(path: Path):
    """A temp file beside ``path`` as (fd, name), renamed over ``path`` when the block ends; removed
    (and the error named after ``path``) when the block raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=TEMP_SUFFIX)
    try:
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        named(exc, path)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers only ever see the old or the complete new content."""
    with _replacing(path) as (fd, _tmp):
        if hasattr(os, "fchmod"):  # not on Windows before Python 3.13
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


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


# --------------------------------------------------------------------------- hints

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
    with _replacing(target) as (fd, tmp):
        with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
            how = _clone_into(src, dst)
        os.chmod(tmp, _FILE_MODE)
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
