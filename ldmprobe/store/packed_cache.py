"""The sweep's embedding caches (image, text, conditioning) on the packed store, every value verified.

``VerifiedStore`` is what :func:`embedding_store` and ``engine.embeddings`` hand out: a
:class:`~ldmprobe.store.packed_store.PackedStore` for one namespace (the old per-file
``<namespace>/ab/<key>.npy`` cache read through and imported as it is met), with the per-key
``has`` / ``load`` / ``save`` of the old ``ArrayStore`` kept for callers that work key by key
and ``get_many`` / ``put_many`` per batch. ``has`` answers for a *verified* value
(its crc32 checked), so a corrupt entry is planned as missing and remade, never used.

Every failed check is counted by cache kind in the run's state
(:meth:`~ldmprobe.store.run_state.RunState.repair_summary` gives the one stderr line a command
prints at its end, issue 17).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ldmprobe.digest import digest
from ldmprobe.store.files import atomic_write_text, cache_root
from ldmprobe.store.packed_store import PackedStore
from ldmprobe.store import run_state

#: Written beside a namespace's values: which model the folder belongs to (``ldmprobe cache info``).
IDENTITY_FILE = "identity.json"


def _reporter(kind: str):
    """The repair callback of a store of ``kind``: each failed value counted once per run by its key
    (a bad value stays in its shard until compaction, so every store opened on it meets it again)."""
    return lambda key, reason: run_state.current.record_repair(kind, reason, key=key)


class VerifiedStore:
    """Arrays by key in one packed namespace; ``kind`` names it in repair reports."""

    def __init__(self, namespace: str, kind: str, root: Path | None = None):
        self.kind = kind
        self.namespace = namespace
        self.store = PackedStore.for_namespace(namespace, root=Path(root or cache_root()), on_repair=_reporter(kind))
        self._memo: dict[str, np.ndarray] = {}
        self._labelled = False

    # ----------------------------------------------------------------- per batch

    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        """Each key's verified value, or None (missing, or failed its check: remake it)."""
        keys = list(keys)
        out: list[np.ndarray | None] = [self._memo.get(k) for k in keys]
        todo = [i for i, v in enumerate(out) if v is None]
        if not todo:
            return out
        try:
            values, found = self.store.get_many([keys[i] for i in todo])
            got = [values[j] if found[j] else None for j in range(len(todo))]
        except ValueError:  # mixed shapes or dtypes in one namespace: one key at a time
            got = [self.store.get(keys[i]) for i in todo]
        for i, value in zip(todo, got):
            if value is not None:
                out[i] = self._memo[keys[i]] = value
        return out

    def has_many(self, keys: Sequence[str]) -> np.ndarray:
        """Which keys have a value that passes its check (reads and checks the values)."""
        return np.array([v is not None for v in self.get_many(keys)], bool)

    def put_many(self, keys: Sequence[str], values) -> None:
        """Append values durably (one write and one fsync per file for the batch)."""
        keys, arrays = list(keys), [np.asarray(v) for v in values]
        self.store.put_many(keys, arrays)
        self._memo.update(zip(keys, arrays))
        if not self._labelled:
            self._label()

    def _label(self) -> None:
        """Write which model this namespace belongs to (for ``ldmprobe cache``), once."""
        self._labelled = True
        path = self.store.directory.parent / IDENTITY_FILE
        identity = run_state.current.namespace_identity(self.namespace.rsplit("/", 1)[-1])
        if identity is not None and not path.is_file():
            import json

            atomic_write_text(path, json.dumps({"kind": self.kind, "identity": identity}, sort_keys=True))

    # ----------------------------------------------------------------- per key (ArrayStore's API)

    def has(self, key: str) -> bool:
        return self.get_many([key])[0] is not None

    def load(self, key: str):
        return self.get_many([key])[0]

    def save(self, key: str, array) -> None:
        self.put_many([key], [array])

    def forget(self) -> None:
        """Drop the values held in memory (they are re-read and re-checked on the next use)."""
        self._memo.clear()
        self.store.unmap()

    def close(self) -> None:
        self._memo.clear()
        self.store.close()


def identity_namespace(identity: dict) -> str:
    """A short stable folder name for a model identity (sha256 of its canonical JSON); the
    identity is remembered (``RunState.namespace_identity``) for the namespace's ``identity.json``."""
    namespace = digest(identity)[:20]
    run_state.current.remember_namespace(namespace, identity)
    return namespace


def identity_store(folder: str, identity: dict, kind: str, root: Path | None = None) -> VerifiedStore:
    """The values one model made, in ``<folder>/<identity_namespace(identity)>`` (``text``,
    ``conditioning``, ...); ``kind`` names them in repair reports."""
    return VerifiedStore(f"{folder}/{identity_namespace(identity)}", kind, root)


def embedding_store(measurer_identity: dict, root: Path | None = None) -> VerifiedStore:
    """Image embeddings by one measurer, keyed by image key: a packed store whose values are
    checked before use (the old per-file ``ab/<key>.npy`` cache is read through and imported)."""
    return identity_store("embeddings", measurer_identity, "image embeddings", root)
