"""The cache folder and atomic writes: the storage every stage builds on (no heavy imports)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers only ever see the old or the complete new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # not on Windows before Python 3.13
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
    return Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{final_dir.name}."))
