"""The per-file cache a packed store replaces (``ArrayStore``: ``<namespace>/ab/<key>.npy``).

Read through for the keys a packed store lacks, and imported into it as they are found.
Duck-typed on the store (``legacy_dir``, ``import_legacy``, ``report``, ``put_many``) so that
neither store module imports the other's upkeep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def legacy_path(legacy_dir: Path, key: str) -> Path:
    """Where ``ArrayStore`` keeps a key: ``<namespace>/ab/<key>.npy``."""
    return Path(legacy_dir) / key[:2] / f"{key}.npy"


def load_legacy(store, key: str):
    """The key's ``.npy`` value, or None when missing or unreadable (then removed and reported)."""
    path = legacy_path(store.legacy_dir, key)
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError):
        path.unlink(missing_ok=True)  # as ArrayStore.load does: corrupt, remade by the caller
        store.report(key, "unreadable legacy file")
        return None


def read_legacy(store, keys: Sequence[str], out: np.ndarray, found: np.ndarray):
    """Fill misses from the per-file cache (one stat per miss); import what was found."""
    got_keys, got = [], []
    for j in np.flatnonzero(~found):
        value = load_legacy(store, keys[j])
        if value is None:
            continue
        if out.shape[1:] != value.shape:
            if found.any() or got:
                raise ValueError(f"legacy value {keys[j]} has shape {value.shape}, not {out.shape[1:]}")
            out = np.zeros((len(keys),) + value.shape, value.dtype)
        out[j] = value
        found[j] = True
        got_keys.append(keys[j])
        got.append(value)
    if got and store.import_legacy:
        store.put_many(got_keys, got)
    return out, found
