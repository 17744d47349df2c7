"""Image generation for work items: batched, one CPU generator per item, checked before saving."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ldmprobe.engine.workitems import Recipe, WorkItem, key_document

#: An image whose brightest pixel is below this (on 0..1) counts as all black.
BLACK_THRESHOLD = 1.0 / 255.0


@dataclass
class Generated:
    """One item's outcome: an image (uint8 HxWx3) or a failure reason."""

    item: WorkItem
    pixels: np.ndarray | None
    failed: str | None = None
    nsfw: bool | None = None
    dtype_used: str = ""
    batch_size: int = 1  # how many images the pipeline call that made this one made (issue 17)


def image_problem(pixels: np.ndarray) -> str | None:
    """'nan' for non-finite pixels, 'black' for an all-black image, else None."""
    if not np.isfinite(pixels).all():
        return "nan"
    if float(np.max(pixels)) < BLACK_THRESHOLD:
        return "black"
    return None


def default_batch_size(device: str) -> int:
    return 8 if device.startswith("cuda") else 4


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


class BatchGenerator:
    """Generates items in batches; on CUDA out-of-memory halves the batch and remembers it."""

    def __init__(self, loaded, recipe: Recipe, batch_size: int):
        self.loaded = loaded
        self.recipe = recipe
        self.batch_size = max(1, int(batch_size))
        self.halvings = 0

    def _run(self, items: Sequence[WorkItem]) -> np.ndarray:
        """One pipeline call of exactly ``self.batch_size`` images (issue 28).

        A call with fewer items is padded by repeating its last item, and the padding's images
        are dropped: every call has the same shape, so an image's pixels depend only on its own
        prompt, seed and recipe, never on which other images were made with it (what was cached,
        how many ranks, where a resume started). Calls of another shape sum floats in another
        order (measured: 1 vs 2 images per call differ by ~2e-6, some uint8 pixels by 1).
        """
        import torch

        recipe = self.recipe
        real = len(items)
        items = list(items) + [items[-1]] * max(0, self.batch_size - real)
        kwargs = {}
        if recipe.negative_prompt is not None:
            kwargs["negative_prompt"] = [recipe.negative_prompt] * len(items)
        with torch.inference_mode():
            output = self.loaded.pipe(
                prompt=[item.prompt for item in items],
                num_inference_steps=recipe.steps,
                guidance_scale=recipe.guidance,
                width=recipe.width,
                height=recipe.height,
                generator=[torch.Generator("cpu").manual_seed(item.seed) for item in items],
                output_type="np",
                **kwargs,
            )
        return np.asarray(output.images, dtype=np.float32)[:real]

    def _retry_fp32(self, item: WorkItem) -> np.ndarray:
        """Regenerate one item with the pipeline temporarily in float32 (fp16 overflow)."""
        import torch

        pipe = self.loaded.pipe
        pipe.to(torch.float32)
        try:
            return self._run([item])[0]
        finally:
            pipe.to(torch.float16)

    def _nsfw_flags(self, pixels: np.ndarray) -> list[bool | None]:
        checker = self.loaded.safety_checker
        extractor = getattr(self.loaded.pipe, "feature_extractor", None)
        if checker is None or extractor is None:
            return [None] * len(pixels)
        import torch

        real = len(pixels)  # padded to the call's shape too: a flag never depends on the other images
        pixels = np.concatenate([pixels, np.repeat(pixels[-1:], max(0, self.batch_size - real), axis=0)])
        images = [(np.clip(p, 0, 1) * 255).round().astype(np.uint8) for p in pixels]
        clip_input = extractor(images, return_tensors="pt").pixel_values.to(self.loaded.device)
        with torch.inference_mode():
            _, flags = checker(images=pixels.copy(), clip_input=clip_input.to(checker.dtype))
        return [bool(f) for f in flags][:real]

    def generate(self, items: Sequence[WorkItem]) -> list[Generated]:
        """Generate a batch (split further if CUDA runs out of memory)."""
        try:
            pixels = self._run(items)
        except RuntimeError as exc:
            if not _is_oom(exc) or self.batch_size == 1:
                raise
            import torch

            torch.cuda.empty_cache()
            self.batch_size = max(1, self.batch_size // 2)
            self.halvings += 1
            size = self.batch_size
            return [r for start in range(0, len(items), size) for r in self.generate(items[start: start + size])]
        dtype = self.loaded.dtype
        results = []
        for item, image in zip(items, pixels):
            problem = image_problem(image)
            used, made_with = dtype, self.batch_size
            if problem and dtype == "float16" and self.loaded.device.startswith("cuda"):
                image = self._retry_fp32(item)
                problem, used = image_problem(image), "float32"
            results.append(Generated(item=item, pixels=None if problem else image, failed=problem, dtype_used=used,
                                     batch_size=made_with))
        good = [r for r in results if r.pixels is not None]
        for result, flag in zip(good, self._nsfw_flags(np.stack([r.pixels for r in good])) if good else []):
            result.nsfw = flag
        for result in results:
            if result.pixels is not None:
                result.pixels = (np.clip(result.pixels, 0, 1) * 255).round().astype(np.uint8)
        return results


def png_metadata(item: WorkItem, result: Generated) -> dict:
    """What goes into the PNG text chunk: the full key document plus how it was made."""
    return {
        **key_document(item.recipe, item.prompt, item.seed),
        "key": item.key,
        "template": item.template,
        "term": item.term,
        "nsfw": result.nsfw,
        "dtype_used": result.dtype_used,
        "batch_size": result.batch_size,
    }


def encode_conditioning(loaded, prompts: Sequence[str]) -> np.ndarray | None:
    """The generator's own text conditioning: the (77, d) hidden states the UNet attends to.

    None for pipelines without a CLIP-style ``tokenizer`` + ``text_encoder`` pair.
    """
    import torch

    pipe = loaded.pipe
    tokenizer, encoder = getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None)
    if tokenizer is None or encoder is None:
        return None
    from ldmprobe.engine.encode import _padded

    ids = tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
        truncation=True, return_tensors="pt",
    ).input_ids
    rows = []
    with torch.inference_mode():  # calls of a fixed shape: a prompt's value never depends on the others
        for start in range(0, len(ids), CONDITIONING_ROWS):
            chunk = ids[start: start + CONDITIONING_ROWS]
            hidden = encoder(_padded(chunk, CONDITIONING_ROWS).to(encoder.device))[0]
            rows.append(hidden[: len(chunk)].float().cpu().numpy())
    return np.concatenate(rows)


#: Prompts per text-encoder call in :func:`encode_conditioning` (padded to it, see ``encode``).
CONDITIONING_ROWS = 8




def missing_items(items: Sequence[WorkItem], store) -> list[WorkItem]:
    """The items with neither a readable cached image nor a failure record (corrupt files are removed)."""
    return [item for item in items if not store.valid(item.key)]


def generate_into_store(loaded, recipe: Recipe, missing: Sequence[WorkItem], store, *, batch_size: int,
                        on_batch: Callable[[int], None] | None = None,
                        poll: float = 0.5) -> tuple[set[str], int, int]:
    """Make the ``missing`` items (see :func:`missing_items`) and store each image or failure.

    Returns (keys made now, batch size in use at the end, number of out-of-memory halvings).
    Each batch is written before the next starts, so an interruption loses at most one batch.
    Items are claimed first (:mod:`ldmprobe.engine.claims`): items another live process has
    claimed are left to it and waited for, so processes sharing a cache divide the work.
    """
    from ldmprobe.engine.claims import Claims
    from ldmprobe.engine.distributed import check_stop

    batcher = BatchGenerator(loaded, recipe, batch_size)
    made: set[str] = set()
    by_key = {item.key: item for item in missing}
    pending, waiting = list(by_key), []
    with Claims(store.base) as claims:
        while pending or waiting:
            check_stop()
            if not pending:
                pending, waiting = _after_wait(store, claims, waiting, on_batch, poll)
                continue
            mine, done_elsewhere = [], 0
            while pending and len(mine) < batcher.batch_size:
                key = pending.pop(0)
                if not claims.try_take(key):
                    waiting.append(key)
                elif store.valid(key):  # made by another process since this list was drawn up
                    claims.release([key])
                    done_elsewhere += 1
                else:
                    mine.append(key)
            if done_elsewhere and on_batch is not None:
                on_batch(done_elsewhere)
            if mine:
                made |= _make_batch(batcher, [by_key[key] for key in mine], store)
                claims.release(mine)
                if on_batch is not None:
                    on_batch(len(mine))
    return made, batcher.batch_size, batcher.halvings


def _make_batch(batcher, batch: Sequence[WorkItem], store) -> set[str]:
    from PIL import Image

    made = set()
    for result in batcher.generate(batch):
        metadata = png_metadata(result.item, result)
        if result.pixels is None:
            store.save_failure(result.item.key, {**metadata, "failed": result.failed})
        else:
            store.save(result.item.key, Image.fromarray(result.pixels), metadata)
        made.add(result.item.key)
    return made


def _after_wait(store, claims, waiting: list[str], on_batch, poll: float) -> tuple[list[str], list[str]]:
    """Items other processes claimed: drop those now stored, take back those whose holder died."""
    time.sleep(poll)
    left = [key for key in waiting if not store.valid(key)]
    if on_batch is not None and len(left) < len(waiting):
        on_batch(len(waiting) - len(left))  # made by another process
    held = {key for key in left if claims.claimed_by_others(key)}
    return [key for key in left if key not in held], [key for key in left if key in held]


def embed_stored_images(measurer, keys: Sequence[str], store, *, batch_size: int = 64) -> dict:
    """Image embeddings by key, from the measurer's embedding cache or computed and cached."""
    from ldmprobe.engine.cache import embedding_store
    from ldmprobe.engine.encode import encode_images

    emb_store = embedding_store(measurer.identity)
    vectors: dict[str, np.ndarray] = {}
    todo = []
    for key in keys:
        vector = emb_store.load(key)
        if vector is None:
            todo.append(key)
        else:
            vectors[key] = vector
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        images = []
        for key in chunk:
            loaded_image = store.load(key)
            if loaded_image is None:
                raise FileNotFoundError(f"image {key} is not in the cache (failed or removed)")
            images.append(loaded_image[0])
        for key, vector in zip(chunk, encode_images(measurer, images, batch_size=batch_size)):
            emb_store.save(key, vector)
            vectors[key] = vector
    return vectors
