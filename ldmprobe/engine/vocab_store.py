"""Vocabulary embeddings in a measurer's space, cached.

The vocabulary's embeddings are the expensive part of a neighbours query (tens of thousands
of texts), so they are cached per (measurer identity, vocabulary content, contexts) as one
``.npy`` in the ``text/vocab`` array store of the cache, written atomically and checked on
every read: a file that is unreadable, of the wrong shape, non-finite or not made of unit
rows is rebuilt. Importing this module does not import torch; encoding does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ldmprobe.specs.neighbours import check_contexts, check_term
from ldmprobe.store.array_store import ArrayStore
from ldmprobe.engine import encode as embed
from ldmprobe.digest import CACHE_KINDS, cache_key
from ldmprobe.errors import BadInputError
from ldmprobe.reporting import Reporter, or_silent
from ldmprobe.specs.vocab import Vocabulary


CACHE_VERSION = CACHE_KINDS["vocab-text-embeddings"]


_CHUNK_WORDS = 2048


_UNIT_TOLERANCE = 1e-3


ENCODING_LABEL = "encoding vocabulary entries (cached for the next query)"


def surely_fits(text: str, limit: int = 77) -> bool:
    """True when ``text`` cannot be over ``limit`` tokens whatever the tokenizer: each token
    covers at least one byte, even after lowercasing (at most 1.5x longer)."""
    return 3 * len(text.encode("utf-8")) <= 2 * (limit - 2)


def check_lengths(measurer, texts: Sequence[str], what: str) -> None:
    """Refuse texts the measurer's tokenizer would cut off (open_clip truncates silently).
    ``measurer``: anything with the open_clip ``tokenizer``."""
    tokenizer = measurer.tokenizer
    encode = getattr(tokenizer, "encode", None)
    limit = int(getattr(tokenizer, "context_length", 77) or 77)
    if not callable(encode):
        return
    for text in texts:
        if surely_fits(text, limit):
            continue
        n = len(encode(text)) + 2  # + start and end tokens
        if n > limit:
            raise BadInputError(
                f"{what} {text!r} is {n} tokens long, over the measurer's limit of {limit} "
                "(counting the start and end tokens); CLIP would silently drop the rest. "
                "Shorten the context or the entry."
            )


@dataclass
class VocabEmbeddings:
    """Unit text embeddings of a vocabulary (one row per entry) and how they were obtained."""

    vectors: np.ndarray
    path: Path
    status: str  # "hit" | "built" | "rebuilt"
    problem: str | None = None  # why a cached file was rejected ("rebuilt" only)
    seconds: float = 0.0


def text_cache_key(identity: dict[str, Any], vocabulary: Vocabulary, contexts: Sequence[str]) -> str:
    """sha256 of everything that changes the vocabulary's embeddings."""
    return cache_key("vocab-text-embeddings", CACHE_VERSION, {
        "measurer": identity,
        "vocabulary": vocabulary.content_hash,
        "size": len(vocabulary),
        "contexts": list(contexts),
    })


def _store() -> ArrayStore:
    return ArrayStore("text/vocab")


def _cache_problem(vectors: np.ndarray, rows: int, dim: int) -> str | None:
    """Why a cached matrix cannot be the vocabulary's embeddings (None when it can)."""
    if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[0] != rows or (
        dim > 0 and vectors.shape[1] != dim
    ):
        return f"of the wrong shape or type ({vectors.dtype}, {vectors.shape}; expected float32, ({rows}, {dim}))"
    norms = np.linalg.norm(vectors, axis=1)
    if not np.all(np.isfinite(norms)) or np.any(np.abs(norms - 1.0) > _UNIT_TOLERANCE):
        return "not made of finite unit vectors"
    return None


def _encode(measurer, words: Sequence[str], contexts: Sequence[str], reporter: Reporter) -> np.ndarray:
    """Embed words (inside every context, averaged) in chunks, reporting progress."""
    chunks = []
    reporter.progress(ENCODING_LABEL, 0, len(words))
    for start in range(0, len(words), _CHUNK_WORDS):
        chunks.append(embed.encode_in_templates(measurer, words[start : start + _CHUNK_WORDS], tuple(contexts)))
        reporter.progress(ENCODING_LABEL, min(start + _CHUNK_WORDS, len(words)), len(words))
    if not chunks:
        return np.zeros((0, measurer.embed_dim), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def cached_vocabulary(identity: dict[str, Any], vocabulary: Vocabulary,
                      contexts: Sequence[str] = ()) -> np.ndarray | None:
    """The vocabulary's cached embeddings by the measurer with ``identity``, if valid (no model load)."""
    vectors = _store().load(text_cache_key(identity, vocabulary, check_contexts(contexts)))
    if vectors is None or _cache_problem(vectors, len(vocabulary), 0) is not None:
        return None
    return vectors


def embed_vocabulary(measurer, vocabulary: Vocabulary, contexts: Sequence[str] = (),
                     *, reporter: Reporter | None = None) -> VocabEmbeddings:
    """The vocabulary's unit embeddings, from the cache or encoded once and cached atomically."""
    contexts = check_contexts(contexts)
    t0 = time.perf_counter()
    store, key = _store(), text_cache_key(measurer.identity, vocabulary, contexts)
    existed = store.has(key)
    vectors = store.load(key)  # None when missing or unreadable
    problem = "unreadable" if vectors is None and existed else None
    if vectors is not None:
        problem = _cache_problem(vectors, len(vocabulary), measurer.embed_dim)
        if problem is None:
            return VocabEmbeddings(vectors, store.path(key), "hit", seconds=time.perf_counter() - t0)
    check_lengths(measurer, embed.fill_templates(vocabulary.words, contexts) if contexts else vocabulary.words,
                   "The vocabulary entry" if not contexts else "The vocabulary prompt")
    vectors = _encode(measurer, vocabulary.words, contexts, or_silent(reporter))
    store.save(key, vectors)
    return VocabEmbeddings(vectors, store.path(key), "rebuilt" if problem else "built", problem,
                           seconds=time.perf_counter() - t0)


def embed_term(measurer, term: str, contexts: Sequence[str] = ()) -> np.ndarray:
    """The term's unit embedding: bare, or averaged over the contexts and renormalised."""
    contexts = check_contexts(contexts)
    term = check_term(term)
    check_lengths(measurer, embed.fill_templates([term], contexts) if contexts else [term], "The prompt")
    return embed.encode_in_templates(measurer, [term], contexts)[0]
