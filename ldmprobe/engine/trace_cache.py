"""Cache of trace images and attention maps: a rerun makes only what is missing.

A job's key is the digest of its key document: the generator's identity (which covers its
tokenizer and text encoder), scheduler class and config, dtype, the sampling settings, the
seed, and the job's conditioning: its ``label`` when it has one (the prompts, hybrid parts
and switch step that define it exactly; stable across batch sizes and devices), else the
sha256 of the conditioning bytes (``first``; ``after`` and ``switch_at`` for a switch). Images go to the ordinary
image store (PNG with the key document in its text chunk; failures as ``.failed.json``);
attention maps (tokens x h x w, float32) to the ``trace-attention`` array store.

The keys are ``digest.cache_key`` with kind ``trace-image`` / ``trace-attention`` (both in
``ldmprobe.digest.CACHE_KINDS``), version :data:`TRACE_CACHE_VERSION`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ldmprobe.digest import cache_key, sha256_hex
from ldmprobe.engine.trace_generate import CondJob, GenSettings, JobImages, generate_jobs

TRACE_CACHE_VERSION = 1


def _array_digest(cond) -> str | None:
    """The conditioning's bytes: token rows, and the pooled vector where there is one (so SD 1.x
    keys, which have none, are what they were)."""
    if cond is None:
        return None
    parts = []
    for array in cond.arrays():
        a = np.ascontiguousarray(array, dtype=np.float32)
        parts.append(repr(a.shape).encode() + a.tobytes())
    return sha256_hex(b"".join(parts))


def recipe_document(loaded, settings: GenSettings) -> dict:
    """Everything but the job that changes a trace image's pixels."""
    from ldmprobe.records import jsonable

    pipe = loaded.pipe
    settings = settings.for_generator(loaded)
    height, width = settings.size(loaded)
    return {
        "pipeline": jsonable(loaded.identity),
        "scheduler": {"class": type(pipe.scheduler).__name__, "config": jsonable(dict(pipe.scheduler.config))},
        "dtype": loaded.dtype,
        "steps": settings.steps, "guidance": float(settings.guidance), "height": height, "width": width,
        "negative_prompt": settings.negative_prompt,
    }


def job_key(recipe: dict, job: CondJob, kind: str = "trace-image") -> str:
    conditioning = {"label": job.label} if job.label else {
        "first": _array_digest(job.first), "after": _array_digest(job.after),
        "switch_at": int(job.switch_at) if job.after is not None else 0}
    return cache_key(kind, TRACE_CACHE_VERSION, {**recipe, "seed": int(job.seed), **conditioning})


@dataclass(frozen=True)
class CachedImages:
    """Images of all jobs (as :class:`JobImages`), how many were made now, and the maps if asked."""

    images: JobImages
    made: int
    maps: np.ndarray | None = None


def _load_hits(store, maps_store, keys, with_maps):
    hits = {}
    for i, key in enumerate(keys):
        failure = store.failure(key)
        loaded = None if failure else store.load(key)
        maps = maps_store.load(key) if with_maps else None
        if (failure is None and loaded is None) or (with_maps and maps is None):
            continue
        pixels = None if failure else np.asarray(loaded[0], np.uint8)
        hits[i] = (pixels, failure.get("failed") if failure else None, maps)
    return hits


def _uncached(loaded, jobs, settings, batch_size, recorder, on_batch) -> CachedImages:
    hooks = {"before_batch": recorder.begin, "after_batch": recorder.end} if recorder is not None else {}
    first_new = len(recorder.batches) if recorder is not None else 0
    made = generate_jobs(loaded, jobs, settings, batch_size=batch_size, on_batch=on_batch, **hooks)
    maps = np.concatenate(recorder.batches[first_new:]) if recorder is not None and jobs else None
    return CachedImages(made, len(jobs), maps)


def cached_generate(loaded, jobs: Sequence[CondJob], settings: GenSettings, *, cache: bool = True, root=None,
                    batch_size: int = 4, recorder=None, on_batch=None) -> CachedImages:
    """Like :func:`generate_jobs`, reading cached images (and maps, with ``recorder``) first.

    ``cache`` False: generate everything and store nothing. ``root``: the cache folder
    (default: the ldmprobe cache).
    """
    from PIL import Image

    from ldmprobe.engine.cache import ArrayStore, ImageStore

    if not cache:
        return _uncached(loaded, jobs, settings, batch_size, recorder, on_batch)
    store = ImageStore(root)
    maps_store = ArrayStore("trace_attention", root=root)
    recipe = recipe_document(loaded, settings)
    keys = [job_key(recipe, job) for job in jobs]
    hits = _load_hits(store, maps_store, keys, recorder is not None)
    todo = [i for i in range(len(jobs)) if i not in hits]
    if on_batch is not None and hits:
        on_batch(len(hits))
    fresh = _uncached(loaded, [jobs[i] for i in todo], settings, batch_size, recorder, on_batch)
    made, new_maps = fresh.images, fresh.maps
    for n, i in enumerate(todo):
        meta = {**recipe, "key": keys[i], "seed": int(jobs[i].seed), "label": jobs[i].label}
        if made.failed[n] is None:
            store.save(keys[i], Image.fromarray(made.pixels[n]), meta)
        else:
            store.save_failure(keys[i], {**meta, "failed": made.failed[n]})
        if new_maps is not None:
            maps_store.save(keys[i], new_maps[n])
        hits[i] = (made.pixels[n] if made.failed[n] is None else None, made.failed[n],
                   None if new_maps is None else new_maps[n])
    shape = next((p.shape for p, _, _ in hits.values() if p is not None), (1, 1, 3))
    pixels = np.stack([hits[i][0] if hits[i][0] is not None else np.zeros(shape, np.uint8)
                       for i in range(len(jobs))]) if jobs else np.zeros((0,) + shape, np.uint8)
    maps = np.stack([hits[i][2] for i in range(len(jobs))]) if recorder is not None and jobs else None
    return CachedImages(JobImages(pixels, tuple(hits[i][1] for i in range(len(jobs))), made.seconds),
                        len(todo), maps)
