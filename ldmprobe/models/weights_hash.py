"""Whole-file hashes of model weight files, each computed once and remembered (issue 17).

A model folder's identity covers every byte of every weight file. Hashing a 4 GB checkpoint
takes seconds, so the sha256 is remembered by the file's (path, size, mtime_ns, inode) in a
small JSON file in the cache folder (``weight-hashes.json``) and in memory: an unchanged file
is hashed once per machine, not per run. Any write to a file changes its mtime (and a
replacement its inode), so a changed file is hashed again. The JSON file is rewritten
atomically; two processes updating it at once may drop each other's new entries, which only
costs a re-hash later, never a wrong answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from pathlib import Path

from ldmprobe.store.files import atomic_write_text, cache_root

CACHE_NAME = "weight-hashes.json"
CHUNK = 8 << 20
#: How many files were hashed in full this process (tests count re-hashes with it).
HASH_CALLS = 0
_MEMORY: dict[tuple, str] = {}
_LOCK = threading.Lock()


def _state(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def _cache_file() -> Path:
    return cache_root() / CACHE_NAME


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def hash_file(path: Path) -> str:
    """sha256 of every byte of the file (no memory: use :func:`file_digest`)."""
    global HASH_CALLS
    HASH_CALLS += 1
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


#: Files up to this size are hashed again every time they are checked (issue 28): bytes damaged
#: with size, mtime and inode unchanged (a disk error, a tool that restores the mtime) are then
#: found. Tiny models (17 and 14 MB), configs and tokenizers cost milliseconds; a multi-GB
#: checkpoint is trusted through its remembered hash, except under :func:`fresh_hashes`.
CHEAP_BYTES = 64 << 20
_FRESH = threading.local()


@contextlib.contextmanager
def fresh_hashes():
    """Within this block every file is hashed again, whatever is remembered (``cache verify``)."""
    before = getattr(_FRESH, "on", False)
    _FRESH.on = True
    try:
        yield
    finally:
        _FRESH.on = before


def file_digest(path: Path) -> str:
    """The whole-file sha256 of ``path``, hashed only when its (path, size, mtime, inode) is new,
    or when it is small (:data:`CHEAP_BYTES`), or inside :func:`fresh_hashes`. A fresh hash
    replaces the remembered one."""
    path = Path(path)
    state = _state(path)
    if state[1] <= CHEAP_BYTES or getattr(_FRESH, "on", False):
        value = hash_file(path)
        if _state(path) == state:
            with _LOCK:
                _MEMORY[state] = value
        return value
    with _LOCK:
        known = _MEMORY.get(state)
    if known is not None:
        return known
    store = _cache_file()
    entries = _read_cache(store)
    entry = entries.get(state[0])
    if isinstance(entry, dict) and [entry.get(k) for k in ("size", "mtime_ns", "ino")] == list(state[1:]) \
            and isinstance(entry.get("sha256"), str):
        value = entry["sha256"]
    else:
        value = hash_file(path)
        if _state(path) == state:  # not changed while being hashed: remember it
            entries = _read_cache(store)  # others' entries written meanwhile
            entries[state[0]] = {"size": state[1], "mtime_ns": state[2], "ino": state[3], "sha256": value}
            try:
                atomic_write_text(store, json.dumps(entries, sort_keys=True, indent=0))
            except OSError:
                pass  # a read-only or full cache: the hash is still right, just not remembered
    with _LOCK:
        _MEMORY[state] = value
    return value


def forget_memory() -> None:
    """Drop the in-process memory (the cache file still answers)."""
    with _LOCK:
        _MEMORY.clear()


def cached_entries() -> int:
    """How many files the cache file remembers (for diagnostics)."""
    return len(_read_cache(_cache_file()))


__all__ = ["file_digest", "fresh_hashes", "hash_file", "forget_memory", "cached_entries", "CACHE_NAME", "CHEAP_BYTES"]
