"""Find a term's neighbours: the text side always, the image side with generation."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ldmprobe.analysis.neighbours import (
    BARE_TEMPLATE, DEFAULT_K, check_contexts, check_k, check_term, overlap, rank_by_image, rank_words,
)
from ldmprobe.store.images import ImageStore
from ldmprobe.engine.sweep_images import embed_items, generate_missing, model_loader
from ldmprobe.engine.sweep_setup import GenerationOptions, as_sweep_options, make_plan, models_for, recipe_settings
from ldmprobe.engine.workitems import unique_items
from ldmprobe.engine.vocab_store import embed_term, embed_vocabulary
from ldmprobe.errors import BadInputError
from ldmprobe.reporting import Reporter, or_silent
from ldmprobe.results.neighbours import NeighbourResult
from ldmprobe.results.provenance import now_iso, provenance
from ldmprobe.specs.sweep import Spec
from ldmprobe.specs.vocab import Vocabulary


@dataclass
class TermImages:
    """Unit image embeddings of a term's generated images and the recipe that made them."""

    embeddings: np.ndarray  # (n_usable, dim)
    config: dict[str, Any]


def term_images(term: str, contexts: Sequence[str], count: int, options, *, reporter: Reporter | None = None,
                measurer=None) -> TermImages:
    """Generate (or read from the image cache) ``count`` seeds of the term in each context.

    Uses the sweep's machinery (:mod:`ldmprobe.engine.sweep_images`): the items are the term's items of a
    one-term sweep over the contexts with seeds 0..count-1, keyed and cached exactly like a
    sweep's, so a sweep with the same recipe shares the images. ``options`` is a
    :class:`~ldmprobe.engine.sweep_setup.SweepOptions`. Images that came out NaN or black are left out.
    """
    import dataclasses

    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count <= 0:
        raise BadInputError(f"--images must be a positive number of images (got {count!r}).")
    term, contexts = check_term(term), check_contexts(contexts)
    spec = Spec(name="neighbours", templates=contexts or (BARE_TEMPLATE,), baseline="", terms=(term,),
                seeds=tuple(range(int(count))))
    term_setup = make_plan(spec, options)
    term_setup = dataclasses.replace(term_setup, items=[item for item in term_setup.items if not item.is_baseline])
    store = ImageStore()
    loaded = model_loader(term_setup, measurer=measurer)
    made, _ = generate_missing(term_setup, loaded, or_silent(reporter), store)
    records = embed_items(term_setup, loaded, store, made)
    items = unique_items(term_setup.items)
    usable = [records[item.key] for item in items if records[item.key].failed is None
              and not (options.nsfw == "drop" and records[item.key].nsfw)]
    failed = sum(records[item.key].failed is not None for item in items)
    if not usable:
        raise BadInputError(
            f"none of the {len(items)} images of {term!r} can be used ({failed} came out NaN or "
            "black, the rest were flagged and dropped); try another pipeline, --dtype float32, or "
            "--nsfw keep."
        )
    recipe = term_setup.recipe
    config = {
        "count": int(count),
        "made": len(made),
        "cached": len(items) - len(made),
        "used": len(usable),
        "failed": failed,
        "pipeline": {"spec": term_setup.generator_ref.spec, "identity": recipe.pipeline_dict},
        **recipe_settings(recipe),
        "seeds": list(spec.seeds),
        "prompts": sorted({item.prompt for item in items}),
        "keys": [item.key for item in items],
    }
    return TermImages(np.stack([r.embedding for r in usable]).astype(np.float32), config)


def find_neighbours(measurer, term: str, vocabulary: Vocabulary, *, contexts: Sequence[str] = (),
                    k: int = DEFAULT_K, keep_self: bool = False, images: TermImages | None = None,
                    reporter: Reporter | None = None, started: str | None = None) -> NeighbourResult:
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
    table = embed_vocabulary(measurer, vocabulary, contexts, reporter=reporter)
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
        provenance=provenance(started=started, tiny=ref.is_tiny, reference=ref.is_reference, device=measurer.device, dtype="float32"),
        cache=cache_info, timings=timings, image_neighbours=image_ranked, overlap=shared,
    )


@dataclass(frozen=True)
class NeighboursOptions(GenerationOptions):
    """What ``ldmprobe neighbours TERM`` takes besides the term: ``k`` words, ranked in each of
    ``contexts`` (templates with one {}; none: the bare term) among the words of ``vocabs`` (shipped
    list names or files; none: the default lists), the term itself left out unless ``keep_self``.
    With ``images`` N, N seeds of the term in each context are also generated (cached, as a
    sweep's images are) with the generation settings, and the vocabulary ranked against their
    mean embedding. A model left None is the default (``sd15``, ``ViT-L-14-quickgelu:openai``)."""

    k: int = DEFAULT_K
    contexts: tuple[str, ...] = ()
    vocabs: tuple[str, ...] = ()
    keep_self: bool = False
    images: int | None = None


def query_neighbours(term: str, options: NeighboursOptions = NeighboursOptions(), *,
                     reporter: Reporter | None = None) -> NeighbourResult:
    """Resolve and load the measurer (and, with ``options.images``, the generator), then find
    the neighbours, reporting warnings and progress to ``reporter``."""
    reporter = or_silent(reporter)
    from ldmprobe.models import sources as models
    from ldmprobe.models.loader import ModelLoader
    from ldmprobe.specs.vocab import load_vocabulary

    started = now_iso()
    term, k, contexts = check_term(term), check_k(options.k), check_contexts(options.contexts)
    vocabulary = load_vocabulary(options.vocabs)
    pipeline, measurer = models_for(None, options)
    options = dataclasses.replace(options, pipeline=pipeline, measurer=measurer)
    loader = ModelLoader.from_names(pipeline=options.pipeline, revision=options.revision, measurer=options.measurer,
                                    device=options.device, dtype=options.dtype, offline=options.offline,
                                    needs_generator=options.images is not None)
    if loader.tiny:
        reporter.warn(models.TINY_WARNING)
    t0 = time.perf_counter()
    loaded = loader.measurer()
    timings = {"load_measurer_s": time.perf_counter() - t0}
    found_images = None
    if options.images is not None:
        t0 = time.perf_counter()
        found_images = term_images(term, contexts, options.images, as_sweep_options(options), reporter=reporter,
                                   measurer=loaded)
        timings["images_s"] = time.perf_counter() - t0
    result = find_neighbours(loaded, term, vocabulary, contexts=contexts, k=k, keep_self=options.keep_self,
                             images=found_images, reporter=reporter, started=started)
    result.timings = {**timings, **result.timings}
    _warn_about(result, found_images, k, reporter)
    return result


def _warn_about(result: NeighbourResult, images: TermImages | None, k: int, reporter) -> None:
    if images is not None and images.config["failed"]:
        reporter.warn(f"{images.config['failed']} of the term's images came out NaN or black "
                      "and were left out of the image centroid.")
    if result.cache["status"] == "rebuilt":
        reporter.warn(f"the cached vocabulary embeddings {result.cache['path']} were "
                      f"{result.cache['problem']}; rebuilt them.")
    if len(result.neighbours) < k:
        reporter.warn(f"the vocabulary has only {len(result.neighbours)} entries to rank "
                      f"(after leaving out the term), fewer than -k {k}.")
