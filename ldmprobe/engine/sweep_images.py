"""Make a sweep's missing images and embed every image, through the cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ldmprobe.engine import cache
from ldmprobe.engine.distributed import check_stop
from ldmprobe.engine.progress import GenerationProgress
from ldmprobe.engine.sweep_setup import SweepSetup
from ldmprobe.engine.workitems import WorkItem, unique_items
from ldmprobe.errors import ExitCode, LdmprobeError
from ldmprobe.models import sources as models
from ldmprobe.models.loader import ModelLoader


class Interrupted(LdmprobeError):
    exit_code = ExitCode.INTERRUPTED


def model_loader(setup: SweepSetup, measurer: Any = None) -> ModelLoader:
    """The sweep's lazy models on its chosen device (a fully cached rerun loads none)."""
    return ModelLoader(setup.generator_ref, setup.measurer_ref, device=setup.device,
                       dtype=setup.dtype, offline=setup.options.offline, measurer=measurer)


#: What :meth:`ImageStore.nsfw` answers for an image that is not in the cache (any more).
_VANISHED = object()


@dataclass
class ItemRecord:
    item: WorkItem
    cached: bool
    failed: str | None = None
    nsfw: bool | None = None
    embedding: np.ndarray | None = None


def cached_work(store: cache.ImageStore, emb_store, keys) -> tuple[set[str], set[str]]:
    """(keys whose image must be made, keys whose cached image must still be embedded).

    The warm path in O(1) file operations per item: one ``stat`` per image answered by the
    save-time manifest (``ImageStore.valid_many``), one checked, batched read of the embeddings
    (``emb_store.has_many``), and a failure-record check only for images with no embedding.
    """
    keys = list(dict.fromkeys(keys))
    to_make = set(keys) - store.valid_many(keys)
    rest = [key for key in keys if key not in to_make]
    found = emb_store.has_many(rest) if rest else np.zeros(0, bool)
    to_embed = {key for key, ok in zip(rest, found) if not ok and store.failure(key) is None}
    return to_make, to_embed


#: From this many keys on, failure records are found by listing the cache's folders once
#: (a few entries per key) instead of one ``stat`` of a missing file per key.
LIST_FAILURES_FROM = cache.LIST_FAILURES_FROM


def failure_records(store: cache.ImageStore, keys: list[str]) -> set[str] | None:
    """The keys among ``keys`` that have a failure record file, from one listing of each folder
    they live in (``ImageStore.failures``); None (ask ``store.failure`` per key) for few keys."""
    if len(keys) < LIST_FAILURES_FROM:
        return None
    return store.failures(keys, list_from=LIST_FAILURES_FROM)


def generate_missing(setup: SweepSetup, loaded: ModelLoader, reporter, store: cache.ImageStore,
                     items: list[WorkItem] | None = None, progress: GenerationProgress | None = None) -> tuple[set[str], int]:
    """Make every image not yet cached; return (keys generated now, the call shape).

    ``items`` limits the work to those items (a rank's share); a given ``progress`` is
    advanced but left open (the caller closes it).
    """
    from ldmprobe.engine.generate import CallTooLarge, generate_into_store, missing_items
    from ldmprobe.engine.workitems import call_shape

    unique = unique_items(setup.items)
    missing = missing_items(unique if items is None else items, store)
    shape = call_shape(setup.recipe, setup.device)
    if not missing:
        return set(), shape
    own_progress = progress is None
    if own_progress:
        progress = GenerationProgress(reporter, len(unique), len(unique) - len(missing), "generating")
    try:
        made, shape = generate_into_store(
            loaded.get_generator(), setup.recipe, missing, store, batch_size=setup.options.batch_size or shape,
            on_batch=progress.advance, plan=unique,
        )
    except KeyboardInterrupt:
        progress.close()
        done = sum(store.has(item.key) for item in unique)
        raise Interrupted(
            f"Interrupted: {done} of {len(unique)} images are cached (nothing half-written). "
            "Run the same command again to resume; only the missing images will be made."
        ) from None
    except CallTooLarge:
        progress.close()
        raise
    if own_progress:
        progress.close()
    return made, shape


def embed_items(setup: SweepSetup, loaded: ModelLoader, store: cache.ImageStore, made: set[str],
                items: list[WorkItem] | None = None, merge: bool = False) -> dict[str, ItemRecord]:
    """Image embeddings of every item (or of ``items``) by the measurer (cached per image key + measurer).

    ``merge`` (rank 0 of a distributed run, after every rank embedded its share) embeds
    nothing: every item must have a cached embedding or failure record, else it is an error.
    """
    from ldmprobe.engine.encode import encode_images

    emb_store = cache.embedding_store(models.measurer_identity(setup.measurer_ref))
    records: dict[str, ItemRecord] = {}
    to_embed: list[tuple[str, Any]] = []
    absent: list[str] = []
    todo_items = unique_items(setup.items) if items is None else items
    keys = [item.key for item in todo_items]
    cached_vectors = dict(zip(keys, emb_store.get_many(keys)))  # one checked read per batch, not per key
    recorded = store.failures([item.key for item in todo_items])  # one listing per folder when many
    for item in todo_items:
        record = ItemRecord(item=item, cached=item.key not in made)
        failure = store.failure(item.key) if item.key in recorded else None
        if failure is not None:
            record.failed = failure.get("failed", "failed")
        else:
            # Images were validated when the work list was made; decode again only those still
            # to embed, and read just the safety flag of the rest (from the manifest: one stat).
            vector = cached_vectors[item.key]
            loaded_image = store.load(item.key) if vector is None else None
            if loaded_image is not None:
                nsfw = loaded_image[1].get("nsfw")
            else:
                nsfw = store.nsfw(item.key, missing=_VANISHED) if vector is not None else _VANISHED
            if merge and (nsfw is _VANISHED or vector is None):
                absent.append(item.key)
                continue
            if nsfw is _VANISHED:
                raise LdmprobeError(f"image {item.key} vanished from the cache during the run; rerun to regenerate it.")
            record.nsfw = nsfw
            if vector is None:
                to_embed.append((item.key, loaded_image[0]))
            else:
                record.embedding = vector
        records[item.key] = record
    if absent:
        raise LdmprobeError(
            f"merging the ranks' work: {len(records)} of {len(records) + len(absent)} planned images have a cached "
            f"image and embedding (or failure record); {len(absent)} do not (e.g. {', '.join(absent[:3])}). No rank "
            "wrote them, or they were removed from the cache meanwhile. Rerun the same command to make them."
        )
    for start in range(0, len(to_embed), 64):
        check_stop()
        chunk = to_embed[start : start + 64]
        vectors = encode_images(loaded.get_measurer(), [image for _, image in chunk])
        emb_store.put_many([key for key, _ in chunk], list(vectors))
        for (key, _), vector in zip(chunk, vectors):
            records[key].embedding = vector
    return records
