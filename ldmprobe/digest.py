"""The one digest of the project: sha256 of canonical JSON, and cache keys built from it.

Every cache entry's key is ``cache_key(kind, version, payload)``: the kind says what is
stored, the version is bumped when what is stored for the same payload changes. Image keys
(:func:`ldmprobe.engine.workitems.item_key`) are the digest of their key document, which
carries ``key_version`` and is itself written into the PNG.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

#: Every kind of cache entry and its current version.
CACHE_KINDS = {
    "image": 1,  # engine.workitems.KEY_VERSION
    "text-embedding": 1,
    "conditioning": 1,
    "vocab-text-embeddings": 1,
    "token-counts": 1,
    "trace-image": 2,  # engine.trace_cache.TRACE_CACHE_VERSION (2: jobs made at their slots in fixed-shape calls)
    "trace-attention": 1,
    "user-image": 1,  # engine.assoc_images.user_image_key: a user's image embedding, keyed by file content
}


def canonical_json(obj: Any) -> str:
    """The one JSON text for ``obj``: sorted keys, no spaces, UTF-8 kept, NaN/inf refused."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def sha256_hex(text: str | bytes) -> str:
    """Hex sha256 of ``text`` (str is encoded as UTF-8)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def digest(document: Any) -> str:
    """Hex sha256 of the canonical JSON of ``document``."""
    return sha256_hex(canonical_json(document))


def cache_key(kind: str, version: int, payload: Mapping[str, Any]) -> str:
    """The key of one cache entry: the digest of its kind, version and everything it depends on."""
    if kind not in CACHE_KINDS:
        raise ValueError(f"unknown cache kind {kind!r}; add it to ldmprobe.digest.CACHE_KINDS")
    return digest({"kind": kind, "version": int(version), **payload})
