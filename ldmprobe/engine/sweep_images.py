"""Make a sweep's missing images and embed every image, through the cache."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ldmprobe.store.images import ImageStore, LIST_FAILURES_FROM
from ldmprobe.store.packed_cache import embedding_store
from ldmprobe.engine.distributed import check_stop
from ldmprobe.engine.progress import GenerationProgress
from ldmprobe.engine.sweep_setup import SweepSetup
from ldmprobe.engine.row_file import RowFile
from ldmprobe.engine.workitems import PlanItems, WorkItem, unique_items
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


#: Embeddings read from the store per batch of this many keys (memory flat in the number of images).
READ_CHUNK = 4096


def cached_work(store: ImageStore, emb_store, keys) -> tuple[set[str], set[str]]:
    """(keys whose image must be made, keys whose cached image must still be embedded).

    The warm path in O(1) file operations per item: one ``stat`` per image answered by the
    save-time manifest (``ImageStore.valid_many``), one checked, batched read of the embeddings
    (``emb_store.has_many``), and a failure-record check only for images with no embedding.
    """
    keys = list(dict.fromkeys(keys))
    to_make = set(keys) - store.valid_many(keys)
    rest = [key for key in keys if key not in to_make]
    found = np.zeros(len(rest), bool)
    for start in range(0, len(rest), READ_CHUNK):  # values read and checked per batch, then let go
        found[start: start + READ_CHUNK] = emb_store.has_many(rest[start: start + READ_CHUNK])
        if hasattr(emb_store, "forget"):
            emb_store.forget()
    to_embed = {key for key, ok in zip(rest, found) if not ok and store.failure(key) is None}
    return to_make, to_embed


#: From this many keys on, failure records are found by listing the cache's folders once
#: (a few entries per key) instead of one ``stat`` of a missing file per key.
LIST_FAILURES_FROM = LIST_FAILURES_FROM


def failure_records(store: ImageStore, keys: list[str]) -> set[str] | None:
    """The keys among ``keys`` that have a failure record file, from one listing of each folder
    they live in (``ImageStore.failures``); None (ask ``store.failure`` per key) for few keys."""
    if len(keys) < LIST_FAILURES_FROM:
        return None
    return store.failures(keys, list_from=LIST_FAILURES_FROM)


def generate_missing(setup: SweepSetup, loaded: ModelLoader, reporter, store: ImageStore,
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


#: Images encoded per measurer call.
ENCODE_BATCH = 64


class ItemRecords(Mapping):
    """Each item's :class:`ItemRecord` by key, held compactly: the embeddings in one
    :class:`~ldmprobe.engine.row_file.RowFile` (a temporary file, read back a block at a time)
    and a few flag arrays instead of an object and an array per image, so that a run's records
    cost a few bytes per image in memory. A record is made when it is asked for.

    ``items``: the items (the first of each key kept), a :class:`~ldmprobe.engine.workitems.PlanItems`
    (keys found through its sorted table) or any list of objects with a ``key``.
    ``in_memory``: hold the embeddings in memory instead of a temporary file."""

    def __init__(self, items, *, in_memory: bool = False):
        self.items = unique_items(items)
        self._plan = self.items if isinstance(self.items, PlanItems) else None
        self._row = None if self._plan is not None else {item.key: i for i, item in enumerate(self.items)}
        n = len(self.items)
        self.cached = np.ones(n, bool)
        self.nsfw = np.full(n, -1, np.int8)  # -1: unknown (None)
        self.has = np.zeros(n, bool)
        self.failed: dict[int, str] = {}
        self._flags: dict[int, Any] = {}  # a safety flag other than None, True or False, as recorded
        self.rows: RowFile | None = None  # (n, *shape) once one embedding is set; NaN rows: none
        self._in_memory = in_memory
        self._odd: dict[int, np.ndarray] = {}  # embeddings of another shape or dtype than the first

    def row(self, key: str) -> int:
        return self._plan.index_of(key) if self._plan is not None else self._row[key]

    def key(self, i: int) -> str:
        return self._plan.key(i) if self._plan is not None else self.items[i].key

    def __getitem__(self, key: str) -> ItemRecord:
        return self.record(self.row(key))

    def record(self, i: int, item: WorkItem | None = None, *, embedding: bool = True) -> ItemRecord:
        """The record of row ``i`` (``item``: its item, when the caller has it already; without
        ``embedding``, the record's embedding is None: its flags alone, nothing read)."""
        nsfw = int(self.nsfw[i])
        return ItemRecord(item=self.items[i] if item is None else item, cached=bool(self.cached[i]),
                          failed=self.failed.get(i), nsfw=self._flags.get(i) if nsfw < 0 else bool(nsfw),
                          embedding=self.embedding(i) if embedding else None)

    def flag_records(self, items) -> Iterator[tuple[WorkItem, ItemRecord]]:
        """(item, its record without the embedding) for each of ``items`` (KeyError for an item
        not held); the rows of a compact plan's items are found at once."""
        if self._plan is not None and isinstance(items, PlanItems):
            rows = self._plan.positions(items)
            for item, i in zip(items, rows.tolist()):
                if i < 0:
                    raise KeyError(item.key)
                yield item, self.record(i, item, embedding=False)
        else:
            for item in items:
                yield item, self.record(self.row(item.key), item, embedding=False)

    def set_nsfw(self, i: int, flag) -> None:
        if flag is True or flag is False:
            self.nsfw[i] = flag
        elif flag is not None:
            self._flags[i] = flag

    def flagged(self) -> np.ndarray:
        """Per row: the safety flag is truthy."""
        flagged = self.nsfw == 1
        flagged[[i for i, flag in self._flags.items() if flag]] = True
        return flagged

    def __iter__(self):
        if self._plan is not None:
            return iter(self._plan.keys())
        return iter(self._row)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, key) -> bool:
        try:
            self.row(key)
        except KeyError:
            return False
        return True

    def embedding(self, i: int) -> np.ndarray | None:
        if i in self._odd:
            return self._odd[i]
        return self.rows.take(i) if self.has[i] else None

    @property
    def vectors(self) -> np.ndarray | None:
        """Every row of embeddings as one array (NaN rows: none); read whole, for a small run or an export."""
        return None if self.rows is None else self.rows.read()

    def set_embedding(self, i: int, vector) -> None:
        vector = np.asarray(vector)
        if self.rows is None:
            self.rows = RowFile(len(self.items), vector.shape, vector.dtype, in_memory=self._in_memory)
        if vector.shape == self.rows.row_shape and vector.dtype == self.rows.dtype:
            self.rows.set(i, vector)
            self.has[i] = True
        else:
            self._odd[i] = vector

    @property
    def uniform(self) -> bool:
        """Every embedding is a row of ``rows`` (one shape and dtype)."""
        return not self._odd


def embed_items(setup: SweepSetup, loaded: ModelLoader, store: ImageStore, made: set[str],
                items: list[WorkItem] | None = None, merge: bool = False) -> ItemRecords:
    """Image embeddings of every item (or of ``items``) by the measurer (cached per image key + measurer).

    ``merge`` (rank 0 of a distributed run, after every rank embedded its share) embeds
    nothing: every item must have a cached embedding or failure record, else it is an error.
    Cached embeddings are read :data:`READ_CHUNK` keys at a time and images still to embed are
    encoded :data:`ENCODE_BATCH` at a time, so only the records grow with the number of images.
    """
    emb_store = embedding_store(models.measurer_identity(setup.measurer_ref))
    records = ItemRecords(unique_items(setup.items) if items is None else items)
    todo_items = records.items
    to_embed: list[tuple[int, Any]] = []
    absent: list[str] = []
    recorded = store.failures(_keys(todo_items))  # one listing per folder when many
    for start in range(0, len(todo_items), READ_CHUNK):
        chunk = list(todo_items[start: start + READ_CHUNK])
        cached_vectors = emb_store.get_many([item.key for item in chunk])  # one checked read per batch
        emb_store.forget()  # the records keep the values; the store need not keep them too
        for i, (item, vector) in enumerate(zip(chunk, cached_vectors), start):
            records.cached[i] = item.key not in made
            failure = store.failure(item.key) if item.key in recorded else None
            if failure is not None:
                records.failed[i] = failure.get("failed", "failed")
                continue
            # Images were validated when the work list was made; decode again only those still
            # to embed, and read just the safety flag of the rest (from the manifest: one stat).
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
            records.set_nsfw(i, nsfw)
            if vector is None:
                to_embed.append((i, loaded_image[0]))
                if len(to_embed) == ENCODE_BATCH:
                    _encode(loaded, emb_store, records, to_embed)
            else:
                records.set_embedding(i, vector)
    if absent:
        raise LdmprobeError(
            f"merging the ranks' work: {len(records) - len(absent)} of {len(records)} planned images have a cached "
            f"image and embedding (or failure record); {len(absent)} do not (e.g. {', '.join(absent[:3])}). No rank "
            "wrote them, or they were removed from the cache meanwhile. Rerun the same command to make them."
        )
    if to_embed:
        _encode(loaded, emb_store, records, to_embed)
    return records


def _keys(items) -> list[str]:
    return items.keys() if isinstance(items, PlanItems) else [item.key for item in items]


def _encode(loaded: ModelLoader, emb_store, records: ItemRecords, batch: list[tuple[int, Any]]) -> None:
    """Embed one batch of decoded images, cache the embeddings, keep them in ``records``; empties ``batch``."""
    from ldmprobe.engine.encode import encode_images

    check_stop()
    vectors = encode_images(loaded.get_measurer(), [image for _, image in batch])
    emb_store.put_many([records.key(i) for i, _ in batch], list(vectors))
    emb_store.forget()
    for (i, _), vector in zip(batch, vectors):
        records.set_embedding(i, vector)
    batch.clear()
