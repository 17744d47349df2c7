"""The images and embeddings of an association test's sets (generated ones and the user's own
folders), through the sweep's caches."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ldmprobe.errors import BadInputError, LdmprobeError
from ldmprobe.reporting import Reporter, or_silent
from ldmprobe.specs.assoc_types import AssocSet
from ldmprobe.specs.generation import DEFAULT_GUIDANCE, DEFAULT_STEPS


def embed_word_set(measurer, aset: AssocSet):
    """Unit text embeddings of a word set: bare words, or averaged over its templates."""
    from ldmprobe.engine.encode import encode_in_templates, encode_texts

    if aset.templates:
        return encode_in_templates(measurer, aset.words, aset.templates)
    return encode_texts(measurer, aset.words)


@dataclass(frozen=True)
class ImageRecord:
    """One generated image of a prompt set: which set, prompt and seed, and its cache key."""

    set: str
    prompt: str
    seed: int
    key: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class BadImagesError(LdmprobeError):
    """Generated images that are NaN or all black; they must not reach the statistics."""


def _image_size(pipe) -> tuple[int, int]:
    """Default (height, width) of an SD-style pipeline: UNet sample size × VAE scale factor."""
    sample = getattr(getattr(pipe, "unet", None), "config", None)
    sample = getattr(sample, "sample_size", None)
    factor = getattr(pipe, "vae_scale_factor", 8)
    if isinstance(sample, (list, tuple)):
        return int(sample[0]) * factor, int(sample[1]) * factor
    if sample is None:
        return 512, 512
    return int(sample) * factor, int(sample) * factor


def generation_recipe(generator, *, steps: int, guidance: float, negative_prompt: str | None,
                      call_shape: int | None = None):
    """The :class:`~ldmprobe.engine.workitems.Recipe` the images are made with (keys match the sweep's;
    ``call_shape``: images per pipeline call, None or the device's default leaves keys as they were)."""
    from ldmprobe.models import sources as models
    from ldmprobe.engine.workitems import Recipe, recipe_call_shape

    height, width = generator.image_size if hasattr(generator, "image_size") else _image_size(generator.pipe)
    return Recipe(
        pipeline=generator.identity, scheduler=models.scheduler_identity(generator.folder),
        steps=int(steps), guidance=float(guidance), width=width, height=height,
        dtype=generator.dtype, negative_prompt=negative_prompt,
        call_shape=recipe_call_shape(call_shape, getattr(generator, "device", "cpu")),
    )


def embed_prompt_sets(
    generator,
    measurer,
    sets: Sequence[AssocSet],
    *,
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
    negative_prompt: str | None = None,
    batch_size: int = 8,
    call_shape: int | None = None,
    reporter: Reporter | None = None,
) -> tuple[dict[str, Any], list[ImageRecord], Any]:
    """Generate every (prompt, seed) image of the prompt sets, embed them, return per set.

    Returns ``(embeddings, records, recipe)``: ``embeddings[set_name]`` is an (n, d) array of
    unit image embeddings in the set's prompt-major order; ``records`` lists each image's
    set, prompt, seed and cache key (:func:`ldmprobe.engine.workitems.item_key`); ``recipe`` is the
    :class:`~ldmprobe.engine.workitems.Recipe`. Each image gets its own CPU ``torch.Generator`` seeded
    with its seed, so an image does not depend on its batch. An image shared by two sets
    (same prompt and seed) is made once. NaN or all-black images raise
    :class:`BadImagesError` listing them.

    Images and embeddings go through the sweep's caches (keyed exactly as a sweep keys
    them), so a rerun, or a sweep that made the same images, generates nothing.
    """
    import numpy as np

    from ldmprobe.store.images import ImageStore
    from ldmprobe.engine.generate import embed_stored_images, generate_into_store, missing_items
    from ldmprobe.engine.workitems import WorkItem, item_key

    recipe = generation_recipe(generator, steps=steps, guidance=guidance,
                               negative_prompt=negative_prompt, call_shape=call_shape)
    records: list[ImageRecord] = []
    unique: dict[str, WorkItem] = {}
    for aset in sets:
        for prompt, seed in aset.images():
            key = item_key(recipe, prompt, seed)
            records.append(ImageRecord(aset.name, prompt, seed, key))
            unique.setdefault(key, WorkItem(template=prompt, template_index=0, term="", is_baseline=False,
                                            seed=seed, prompt=prompt, recipe=recipe, key=key))

    store = ImageStore()
    items = list(unique.values())
    done = [sum(store.has(k) for k in unique)]

    def advance(n: int) -> None:
        done[0] += n
        or_silent(reporter).progress("images", done[0], len(items))

    advance(0)  # first report: what the cache already holds
    generate_into_store(generator, recipe, missing_items(items, store), store, batch_size=batch_size,
                        on_batch=advance, plan=items)
    _refuse_bad_images(items, store)
    rows = embed_stored_images(measurer, list(unique), store)
    embeddings = {
        aset.name: np.stack([rows[r.key] for r in records if r.set == aset.name]) for aset in sets
    }
    return embeddings, records, recipe


def _refuse_bad_images(items, store) -> None:
    """NaN or all-black images must not reach the statistics: name them and stop."""
    bad = [f"{item.prompt!r} seed {item.seed} ({store.failure(item.key)['failed']})"
           for item in items if store.failure(item.key) is not None]
    if bad:
        raise BadImagesError(
            f"{len(bad)} generated image{'s are' if len(bad) != 1 else ' is'} unusable: "
            f"{'; '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}. The test was not run, "
            f"because dropping them would change the sets and keeping them would average "
            f"garbage in. NaN images usually mean float16 overflow (try --dtype float32); "
            f"black ones can come from a safety checker or a broken VAE."
        )


#: Kind and version in every user-image key (bump the version when what is stored changes).
USER_IMAGE_KIND = "user-image"


def user_image_key(sha256: str) -> str:
    """The embedding-cache key of a user's image: its content digest (not its name or folder)."""
    from ldmprobe.digest import CACHE_KINDS, cache_key

    return cache_key(USER_IMAGE_KIND, CACHE_KINDS[USER_IMAGE_KIND], {"sha256": sha256})


def _read_as_recorded(path, sha256: str):
    """The image at ``path`` decoded from the very bytes whose digest is its cache key (issue 28):
    read once, hashed and decoded; a file changed since the folder was listed is refused, so a
    new content's embedding is never stored under the old content's key."""
    import hashlib
    import io

    from PIL import Image

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be read ({exc.strerror or exc}); replace or remove it.") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise BadInputError(f"{path} changed while this run was reading the folder (its content is not what was "
                            "listed a moment ago); leave the folder unchanged and rerun.")
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadInputError(f"{path}: cannot be read as an image ({exc}); replace or remove it.") from exc


def embed_image_folder(measurer, source, *, batch_size: int = 32, reporter: Reporter | None = None):
    """Unit image embeddings (n, d) of a folder set (:class:`~ldmprobe.specs.embedding_files.SetSource`),
    in its file order, through the measurer's image-embedding cache keyed by each file's content."""
    import numpy as np
    from pathlib import Path

    from ldmprobe.store.packed_cache import embedding_store
    from ldmprobe.engine.encode import encode_images

    store = embedding_store(measurer.identity)
    keys = [user_image_key(digest) for _, digest in source.files]
    vectors = dict(zip(keys, store.get_many(keys)))
    todo = [(name, key) for (name, _), key in zip(source.files, keys) if vectors[key] is None]
    recorded = dict(source.files)
    if todo:
        or_silent(reporter).progress(f"images of {source.set}", 0, len(todo))
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        images = []
        for name, _ in chunk:
            images.append(_read_as_recorded(Path(source.path) / name, recorded[name]))
        rows = encode_images(measurer, images, batch_size=batch_size)
        store.put_many([key for _, key in chunk], list(rows))
        vectors.update(zip((key for _, key in chunk), rows))
        or_silent(reporter).progress(f"images of {source.set}", start + len(chunk), len(todo))
    return np.stack([vectors[key] for key in keys])
