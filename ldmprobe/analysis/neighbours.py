"""Nearest vocabulary entries to a term in a measurer's joint CLIP space.

A query embeds the term (bare, or inside each context template and averaged, CLIP
zero-shot style), embeds every vocabulary entry the same way, and ranks the entries by
cosine. The vocabulary's embeddings are the expensive part (tens of thousands of texts), so
they are cached per (measurer identity, vocabulary content, contexts) as one ``.npy`` in the
``text/vocab`` array store of the cache, written atomically and checked on every read: a file
that is unreadable, of the wrong shape, non-finite or not made of unit rows is rebuilt.

The image side (``term_images``, ``rank_by_image``, ``overlap``) generates the term's images
with the sweep's machinery (cached like a sweep), ranks the same vocabulary embeddings against
the centroid of their embeddings, and compares the two top-k lists.

Importing this module does not import torch; encoding does, through :mod:`ldmprobe.engine.encode`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ldmprobe import SCHEMA_VERSION
from ldmprobe.engine import cache
from ldmprobe.engine import encode as embed
from ldmprobe.errors import BadInputError
from ldmprobe.engine.workitems import canonical_json, sha256_hex
from ldmprobe.results.provenance import now_iso, provenance
from ldmprobe.specs.vocab import Vocabulary

__all__ = [
    "CACHE_VERSION",
    "DEFAULT_K",
    "Neighbour",
    "NeighbourResult",
    "Overlap",
    "TermImages",
    "VocabEmbeddings",
    "check_contexts",
    "check_k",
    "check_term",
    "embed_term",
    "embed_vocabulary",
    "find_neighbours",
    "is_trivial_variant",
    "overlap",
    "rank_by_image",
    "rank_words",
    "term_images",
    "text_cache_key",
    "trivial_variants",
]

#: Bumped when the cached file's layout or the way it is computed changes.
CACHE_VERSION = 1
DEFAULT_K = 20
#: Words encoded per chunk when building a vocabulary's embeddings (for progress reports).
_CHUNK_WORDS = 2048
_UNIT_TOLERANCE = 1e-3

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Neighbour:
    rank: int
    word: str
    score: float  # cosine similarity in the measurer's joint space

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "word": self.word, "score": self.score}


@dataclass(frozen=True)
class Overlap:
    """How far two top-k lists agree: shared words, their count and the Jaccard index."""

    count: int
    jaccard: float
    shared: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "jaccard": self.jaccard, "shared": list(self.shared)}


@dataclass
class NeighbourResult:
    """One ``neighbours`` query: the ranked lists and everything needed to reproduce them."""

    term: str
    config: dict[str, Any]
    neighbours: tuple[Neighbour, ...]
    excluded: tuple[str, ...]
    provenance: dict[str, Any]
    cache: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    image_neighbours: tuple[Neighbour, ...] | None = None
    overlap: Overlap | None = None

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "kind": "neighbours",
            "term": self.term,
            "config": self.config,
            "neighbours": [n.to_dict() for n in self.neighbours],
            "excluded": list(self.excluded),
            "cache": self.cache,
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "provenance": self.provenance,
        }
        if self.image_neighbours is not None:
            document["image_neighbours"] = [n.to_dict() for n in self.image_neighbours]
        if self.overlap is not None:
            document["overlap"] = self.overlap.to_dict()
        return document

    def records(self) -> list[dict[str, Any]]:
        """One flat record per neighbour (``space`` is "text" or "image"), for JSON Lines."""
        tiny = bool(self.provenance.get("tiny"))
        lists = [("text", self.neighbours)]
        if self.image_neighbours is not None:
            lists.append(("image", self.image_neighbours))
        return [
            {"term": self.term, "space": space, **n.to_dict(), "tiny": tiny}
            for space, ranked in lists for n in ranked
        ]


# --------------------------------------------------------------------------- input checks


def check_term(term: str) -> str:
    text = " ".join((term or "").split())
    if not text:
        raise BadInputError("The term is empty. Give the word or phrase to find neighbours of, e.g. "
                            "`ldmprobe neighbours fancy`.")
    return text


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise BadInputError(f"-k must be a positive whole number of neighbours to list (got {k!r}).")
    return int(k)


def check_contexts(contexts: Sequence[str]) -> tuple[str, ...]:
    """Each context must hold exactly one ``{}`` (where the term goes); no duplicates."""
    out: list[str] = []
    for context in contexts:
        text = " ".join(context.split())
        n = text.count("{}")
        if n != 1:
            problem = "has no {} placeholder" if n == 0 else f"has {n} {{}} placeholders"
            raise BadInputError(
                f"--context {context!r} {problem}; a context takes exactly one {{}} where the term "
                "(and each vocabulary entry) goes, e.g. --context \"a photo of a {} house\"."
            )
        if text in out:
            raise BadInputError(f"--context {context!r} is given twice; remove the repeat (it would "
                                "weigh that context double in the average).")
        out.append(text)
    return tuple(out)


def _check_lengths(measurer, texts: Sequence[str], what: str) -> None:
    """Refuse texts the measurer's tokenizer would cut off (open_clip truncates silently)."""
    tokenizer = measurer.tokenizer
    encode = getattr(tokenizer, "encode", None)
    limit = int(getattr(tokenizer, "context_length", 77) or 77)
    if not callable(encode):
        return
    for text in texts:
        # each token covers at least one byte, even after lowercasing (at most 1.5x longer)
        if 3 * len(text.encode("utf-8")) <= 2 * (limit - 2):
            continue
        n = len(encode(text)) + 2  # + start and end tokens
        if n > limit:
            raise BadInputError(
                f"{what} {text!r} is {n} tokens long, over the measurer's limit of {limit} "
                "(counting the start and end tokens); CLIP would silently drop the rest. "
                "Shorten the context or the entry."
            )


# --------------------------------------------------------------------------- embeddings


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
    return sha256_hex(canonical_json({
        "kind": "vocab-text-embeddings",
        "version": CACHE_VERSION,
        "measurer": identity,
        "vocabulary": vocabulary.content_hash,
        "size": len(vocabulary),
        "contexts": list(contexts),
    }))


def _store() -> cache.ArrayStore:
    return cache.ArrayStore("text/vocab")


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


def _encode(measurer, words: Sequence[str], contexts: Sequence[str], progress: Progress | None) -> np.ndarray:
    """Embed words (inside every context, averaged) in chunks, reporting progress."""
    chunks = []
    if progress is not None:
        progress(0, len(words))
    for start in range(0, len(words), _CHUNK_WORDS):
        chunks.append(embed.encode_in_templates(measurer, words[start : start + _CHUNK_WORDS], tuple(contexts)))
        if progress is not None:
            progress(min(start + _CHUNK_WORDS, len(words)), len(words))
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
                     *, progress: Progress | None = None) -> VocabEmbeddings:
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
    _check_lengths(measurer, embed.fill_templates(vocabulary.words, contexts) if contexts else vocabulary.words,
                   "The vocabulary entry" if not contexts else "The vocabulary prompt")
    vectors = _encode(measurer, vocabulary.words, contexts, progress)
    store.save(key, vectors)
    return VocabEmbeddings(vectors, store.path(key), "rebuilt" if problem else "built", problem,
                           seconds=time.perf_counter() - t0)


def embed_term(measurer, term: str, contexts: Sequence[str] = ()) -> np.ndarray:
    """The term's unit embedding: bare, or averaged over the contexts and renormalised."""
    contexts = check_contexts(contexts)
    term = check_term(term)
    _check_lengths(measurer, embed.fill_templates([term], contexts) if contexts else [term], "The prompt")
    return embed.encode_in_templates(measurer, [term], contexts)[0]


# --------------------------------------------------------------------------- ranking


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


# --------------------------------------------------------------------------- images


#: The prompt template for ``--images`` without a context: the bare term.
BARE_TEMPLATE = "{}"


@dataclass
class TermImages:
    """Unit image embeddings of a term's generated images and the recipe that made them."""

    embeddings: np.ndarray  # (n_usable, dim)
    config: dict[str, Any]


def term_images(term: str, contexts: Sequence[str], count: int, options, *, terminal,
                measurer=None) -> TermImages:
    """Generate (or read from the image cache) ``count`` seeds of the term in each context.

    Uses the sweep's machinery (:mod:`ldmprobe.usecases.sweep`): the items are the term's items of a
    one-term sweep over the contexts with seeds 0..count-1, keyed and cached exactly like a
    sweep's, so a sweep with the same recipe shares the images. ``options`` is a
    :class:`~ldmprobe.usecases.sweep.SweepOptions`. Images that came out NaN or black are left out.
    """
    import dataclasses

    from ldmprobe.usecases import sweep
    from ldmprobe.engine.workitems import unique_items
    from ldmprobe.specs.sweep import Spec

    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count <= 0:
        raise BadInputError(f"--images must be a positive number of images (got {count!r}).")
    term, contexts = check_term(term), check_contexts(contexts)
    spec = Spec(name="neighbours", templates=contexts or (BARE_TEMPLATE,), baseline="", terms=(term,),
                seeds=tuple(range(int(count))))
    plan = sweep.make_plan(spec, options)
    plan = dataclasses.replace(plan, items=[item for item in plan.items if not item.is_baseline])
    store = cache.ImageStore()
    loaded = sweep.Loaded(plan, measurer=measurer)
    made, _ = sweep.generate_missing(plan, loaded, terminal, store)
    records = sweep.embed_items(plan, loaded, store, made)
    items = unique_items(plan.items)
    usable = [records[item.key] for item in items if records[item.key].failed is None
              and not (options.nsfw == "drop" and records[item.key].nsfw)]
    failed = sum(records[item.key].failed is not None for item in items)
    if not usable:
        raise BadInputError(
            f"none of the {len(items)} images of {term!r} can be used ({failed} came out NaN or "
            "black, the rest were flagged and dropped); try another pipeline, --dtype float32, or "
            "--nsfw keep."
        )
    recipe = plan.recipe
    config = {
        "count": int(count),
        "made": len(made),
        "cached": len(items) - len(made),
        "used": len(usable),
        "failed": failed,
        "pipeline": {"spec": plan.generator_ref.spec, "identity": recipe.pipeline_dict},
        "scheduler": recipe.scheduler_dict,
        "steps": recipe.steps,
        "guidance": recipe.guidance,
        "width": recipe.width,
        "height": recipe.height,
        "dtype": recipe.dtype,
        "seeds": list(spec.seeds),
        "prompts": sorted({item.prompt for item in items}),
        "keys": [item.key for item in items],
    }
    return TermImages(np.stack([r.embedding for r in usable]).astype(np.float32), config)


# --------------------------------------------------------------------------- the query


def find_neighbours(measurer, term: str, vocabulary: Vocabulary, *, contexts: Sequence[str] = (),
                    k: int = DEFAULT_K, keep_self: bool = False, images: TermImages | None = None,
                    progress: Progress | None = None, started: str | None = None) -> NeighbourResult:
    """Rank ``vocabulary`` by cosine to ``term`` (bare or in ``contexts``) with a loaded measurer.

    With ``images`` (see :func:`term_images`), also rank it by cosine to the images' centroid
    and report the overlap of the two top-k lists.
    """
    started = started or now_iso()
    term, k, contexts = check_term(term), check_k(k), check_contexts(contexts)
    if len(vocabulary) == 0:
        raise BadInputError("The vocabulary is empty; give --vocab a list with at least one entry.")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    query = embed_term(measurer, term, contexts)
    timings["embed_term_s"] = time.perf_counter() - t0
    table = embed_vocabulary(measurer, vocabulary, contexts, progress=progress)
    timings["vocabulary_s"] = table.seconds
    t0 = time.perf_counter()
    ranked, excluded = rank_words(query, table.vectors, vocabulary.words, k, term=term, keep_self=keep_self)
    image_ranked = shared = None
    if images is not None:
        image_ranked, _ = rank_by_image(images.embeddings, table.vectors, vocabulary.words, k,
                                        term=term, keep_self=keep_self)
        shared = overlap(ranked, image_ranked)
    timings["rank_s"] = time.perf_counter() - t0
    ref = measurer.ref
    config = {
        "measurer": {"spec": ref.spec, "identity": measurer.identity},
        "vocabulary": vocabulary.to_dict(),
        "contexts": list(contexts),
        "k": k,
        "keep_self": keep_self,
        "images": images.config if images is not None else None,
    }
    cache_info = {"path": str(table.path), "status": table.status}
    if table.problem:
        cache_info["problem"] = table.problem
    return NeighbourResult(
        term=term, config=config, neighbours=ranked, excluded=excluded,
        provenance=provenance(started=started, tiny=ref.is_tiny, device=measurer.device, dtype="float32"),
        cache=cache_info, timings=timings, image_neighbours=image_ranked, overlap=shared,
    )
