"""Cache of trace images and attention maps: a rerun makes only what is missing.

The plain images of a trace are the sweep's own (made and stored by the sweep's engine under
their sweep keys); this store holds what only a trace makes: hybrids, step switches and traced
images with their attention maps. A job's key is the digest of the sweep's recipe document
(generator identity, scheduler, steps, guidance, size, dtype, negative prompt and a call shape
other than the device's default), the seed and the job's ``label`` (the prompts, hybrid parts and
switch step that define its conditioning exactly). Jobs are made at their
slots in calls of the recipe's shape, as sweep images are, so a key's image does not depend on
what else a run makes. Images go to the ordinary image store (PNG with the key document in its
text chunk; failures as ``.failed.json``); attention maps (tokens x h x w, float32) to the
``trace-attention`` array store.

The keys are ``digest.cache_key`` with kind ``trace-image`` / ``trace-attention`` (both in
``ldmprobe.digest.CACHE_KINDS``), version :data:`TRACE_CACHE_VERSION`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ldmprobe.digest import CACHE_KINDS, cache_key
from ldmprobe.engine.trace_generate import CondJob, JobImages, generate_jobs
from ldmprobe.engine.workitems import Recipe

TRACE_CACHE_VERSION = CACHE_KINDS["trace-image"]


def job_key(document: dict, job: CondJob) -> str:
    """The key of ``job`` made at the recipe whose ``Recipe.to_dict()`` is ``document``."""
    if not job.label:
        raise ValueError("a cached trace job needs a label naming its conditioning")
    return cache_key("trace-image", TRACE_CACHE_VERSION, {**document, "seed": int(job.seed), "label": job.label})


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


def cached_generate(loaded, jobs: Sequence[CondJob], recipe: Recipe, store, *, shape: int | None = None,
                    recorder=None, on_batch=None) -> tuple[JobImages, int]:
    """Like :func:`generate_jobs`, reading cached images from ``store`` (an ``ImageStore``) and maps
    (with ``recorder``) from the store beside it first; (the images of every job, how many were
    made now)."""
    from PIL import Image

    from ldmprobe.store.array_store import ArrayStore

    maps_store = ArrayStore("trace_attention", root=store.base.parent)
    document = recipe.to_dict()
    keys = [job_key(document, job) for job in jobs]
    hits = _load_hits(store, maps_store, keys, recorder is not None)
    todo = [i for i in range(len(jobs)) if i not in hits]
    if on_batch is not None:
        on_batch(len(hits))  # first report: what the cache already holds (0: none)
    made = generate_jobs(loaded, [jobs[i] for i in todo], recipe, shape=shape, recorder=recorder,
                         on_batch=on_batch)
    for n, i in enumerate(todo):
        meta = {**document, "key": keys[i], "seed": int(jobs[i].seed), "label": jobs[i].label}
        if made.failed[n] is None:
            store.save(keys[i], Image.fromarray(made.pixels[n]), meta)
        else:
            store.save_failure(keys[i], {**meta, "failed": made.failed[n]})
        if made.maps is not None:
            maps_store.save(keys[i], made.maps[n])
        hits[i] = (made.pixels[n] if made.failed[n] is None else None, made.failed[n],
                   None if made.maps is None else made.maps[n])
    shape_px = next((p.shape for p, _, _ in hits.values() if p is not None), (1, 1, 3))
    pixels = np.stack([hits[i][0] if hits[i][0] is not None else np.zeros(shape_px, np.uint8)
                       for i in range(len(jobs))]) if jobs else np.zeros((0,) + shape_px, np.uint8)
    maps = np.stack([hits[i][2] for i in range(len(jobs))]) if recorder is not None and jobs else None
    return JobImages(pixels, tuple(hits[i][1] for i in range(len(jobs))), made.seconds, maps), len(todo)
