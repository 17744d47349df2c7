"""Nearest vocabulary entries to a term in a measurer's joint CLIP space: input checks and
ranking (pure numpy). A query embeds the term (bare, or inside each context template and
averaged, CLIP zero-shot style) and every vocabulary entry the same way
(:mod:`ldmprobe.engine.vocab_store`), and ranks the entries by cosine; the image side ranks
the same embeddings against the centroid of the term's images and compares the two top-k lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ldmprobe.records import Count, Record, schema
from ldmprobe.specs.neighbours import check_contexts, check_k, check_term  # noqa: F401  (re-exported)


DEFAULT_K = 20


@dataclass(frozen=True)
class Neighbour(Record):
    """One vocabulary entry of a ranking."""

    rank: int = field(metadata=schema(minimum=1))
    word: str = field(metadata=schema(minLength=1))
    score: float = field(metadata=schema("cosine similarity in the measurer's joint space", type="number",
                                         minimum=-1.001, maximum=1.001))


@dataclass(frozen=True)
class Overlap(Record):
    """How far two top-k lists agree: shared words, their count and the Jaccard index."""

    json_schema = {"description": "With --images: agreement between the text and image top-k word sets."}

    count: Count
    jaccard: float = field(metadata=schema(type="number", minimum=0, maximum=1))
    shared: tuple[str, ...]


def _plurals(word: str) -> set[str]:
    """Simple English plurals: +es after s, x, z, ch, sh; +s/+es after o; consonant+y -> ies; +s."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return {word + "es"}
    if word.endswith("o"):
        return {word + "s", word + "es"}
    if len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
        return {word[:-1] + "ies"}
    return {word + "s"}


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def trivial_variants(term: str) -> frozenset[str]:
    """The term's case-folded form, its simple plurals and the singulars it is a plural of."""
    t = _normal(term)
    singulars = {t[:-1], t[:-2], t[:-3] + "y"}
    return frozenset({t} | _plurals(t) | {s for s in singulars if len(s) > 1 and t in _plurals(s)})


def is_trivial_variant(word: str, term: str) -> bool:
    """Whether ``word`` is the term itself up to case, spacing or a simple plural (either way)."""
    return _normal(word) in trivial_variants(term)


def rank_words(query: np.ndarray, vectors: np.ndarray, words: Sequence[str], k: int = DEFAULT_K,
               *, term: str | None = None, keep_self: bool = False) -> tuple[tuple[Neighbour, ...], tuple[str, ...]]:
    """Top-k vocabulary entries by cosine to ``query``, and the entries left out as the term.

    ``vectors`` are unit rows (one per word); ``query`` is normalised here. With ``term``
    and not ``keep_self``, the term and its trivial variants are passed over; the ones that
    would have been listed come back as the second value. Ties keep vocabulary order.
    """
    k = check_k(k)
    if len(vectors) != len(words):
        raise ValueError(f"{len(vectors)} embeddings but {len(words)} words")
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(q))
    if norm == 0 or not np.isfinite(norm):
        raise ValueError("the query embedding is zero or not finite")
    scores = vectors @ (q / norm)
    variants = trivial_variants(term) if term is not None and not keep_self else frozenset()
    kept: list[int] = []
    excluded: list[str] = []
    for i in np.argsort(-scores, kind="stable"):  # walk down until k are kept
        if variants and _normal(words[i]) in variants:
            excluded.append(str(words[i]))
            continue
        kept.append(int(i))
        if len(kept) == k:
            break
    ranked = tuple(Neighbour(rank, str(words[i]), float(scores[i])) for rank, i in enumerate(kept, start=1))
    return ranked, tuple(excluded)


def rank_by_image(image_embeddings: np.ndarray, vectors: np.ndarray, words: Sequence[str], k: int = DEFAULT_K,
                  *, term: str | None = None, keep_self: bool = False) -> tuple[tuple[Neighbour, ...], tuple[str, ...]]:
    """Rank the vocabulary by cosine to the centroid (mean of unit rows) of a term's images."""
    images = np.atleast_2d(np.asarray(image_embeddings, dtype=np.float32))
    if len(images) == 0:
        raise ValueError("no image embeddings to rank against")
    images = images / np.linalg.norm(images, axis=1, keepdims=True)
    return rank_words(images.mean(axis=0), vectors, words, k, term=term, keep_self=keep_self)


def overlap(first: Sequence[Neighbour], second: Sequence[Neighbour]) -> Overlap:
    """|A ∩ B| and Jaccard |A ∩ B| / |A ∪ B| of the two lists' word sets (A's order kept)."""
    a = [n.word for n in first]
    b = {n.word for n in second}
    shared = tuple(w for w in a if w in b)
    union = len(set(a) | b)
    return Overlap(len(shared), len(shared) / union if union else 0.0, shared)


BARE_TEMPLATE = "{}"
