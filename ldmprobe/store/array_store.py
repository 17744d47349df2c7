"""Float arrays by key, one ``.npy`` file each, each followed by a digest of its bytes (issue 28).

Used for vocabulary embeddings (``text/vocab``) and trace attention maps. The blake2b-128 of the
``.npy`` bytes follows them behind a tag; ``np.load`` ignores trailing bytes, so the files stay
ordinary ``.npy`` files to any tool. Every read checks the digest: flipped signs, which keep unit
norms, are found.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from ldmprobe.store.files import atomic_write_bytes, cache_root, read_for_check
from ldmprobe.store import run_state


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _sharded(base: Path, key: str, suffix: str) -> Path:
    return base / key[:2] / f"{key}{suffix}"


_ARRAY_KINDS = {"text/vocab": "vocabulary embeddings", "trace_attention": "trace attention maps"}


#: After the ``.npy`` bytes of an :class:`ArrayStore` file: this tag and the blake2b-128 (hex) of
#: those bytes (issue 28: flipped signs keep unit norms; only a digest finds them). ``np.load``
#: ignores trailing bytes, so the files stay loadable by any tool.
NPY_DIGEST_TAG = b"\nldmprobe-b2b128:"
_NPY_TRAILER = len(NPY_DIGEST_TAG) + 32
NPY_NO_DIGEST = "no digest (written by an older version)"


def npy_with_digest(npy: bytes) -> bytes:
    return npy + NPY_DIGEST_TAG + _digest(npy).encode()


def check_npy(data: bytes):
    """(array, None) when ``data`` is an ArrayStore file whose digest matches, else (None, why)."""
    import numpy as np

    if len(data) < _NPY_TRAILER or data[-_NPY_TRAILER:-32] != NPY_DIGEST_TAG:
        return None, NPY_NO_DIGEST
    npy = data[:-_NPY_TRAILER]
    if _digest(npy).encode() != data[-32:]:
        return None, "changed since it was cached (digest mismatch)"
    try:
        return np.load(io.BytesIO(npy), allow_pickle=False), None
    except (OSError, ValueError, EOFError):
        return None, "unreadable"


class ArrayStore:
    """Float arrays by key under a namespace (e.g. one measurer), one ``.npy`` file each, each
    followed by a digest of its bytes checked on every read (:func:`check_npy`)."""

    def __init__(self, namespace: str, root: Path | None = None, kind: str | None = None):
        self.base = (root or cache_root()) / namespace
        self.kind = kind or _ARRAY_KINDS.get(namespace, namespace)

    def path(self, key: str) -> Path:
        return _sharded(self.base, key, ".npy")

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def save(self, key: str, array) -> None:
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array), allow_pickle=False)
        atomic_write_bytes(self.path(key), npy_with_digest(buffer.getvalue()))

    def load(self, key: str):
        """The array, or None when missing, written without a digest (an older version: it is
        made again, no repair reported) or damaged (removed and reported once)."""
        path = self.path(key)
        data = read_for_check(path)
        if data is None:
            return None
        array, reason = check_npy(data)
        if reason is not None:
            path.unlink(missing_ok=True)
            if reason != NPY_NO_DIGEST:
                run_state.current.record_repair(self.kind, reason)
        return array
