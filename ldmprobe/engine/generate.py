"""Image generation for work items: batched, one CPU generator per item, checked before saving."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from ldmprobe.engine.workitems import Recipe, WorkItem, call_shape, key_document
from ldmprobe.errors import BadInputError

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
    batch_size: int = 1  # the shape of the pipeline call that made it (issue 17; fixed per recipe since issue 28)


def image_problem(pixels: np.ndarray) -> str | None:
    """'nan' for non-finite pixels, 'black' for an all-black image, else None."""
    if not np.isfinite(pixels).all():
        return "nan"
    if float(np.max(pixels)) < BLACK_THRESHOLD:
        return "black"
    return None


class CallTooLarge(BadInputError):
    """CUDA ran out of memory in a generation call: the call shape is too large for this GPU (exit 2)."""


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _too_large(shape: int, recipe: Recipe) -> CallTooLarge:
    if shape > 1:
        advice = (f"Rerun with --call-shape {shape // 2} (images per call): images made at another call shape "
                  "are kept apart from these, since a call's shape changes an image's float noise.")
    else:
        advice = f"Even one image per call does not fit: lower --width / --height (now {recipe.width} x " \
                 f"{recipe.height}) or use a GPU with more memory."
    return CallTooLarge(f"CUDA ran out of memory in a generation call of {shape} image(s). Every image made before "
                        f"it is cached. {advice}")


def place(slots: Sequence[int], shape: int) -> list[list[int | None]]:
    """Indices laid out in calls of ``shape``: index i at position ``slots[i] % shape`` of the first
    call with that position free (None: an empty position)."""
    calls: list[list[int | None]] = []
    for index, slot in enumerate(slots):
        call = next((call for call in calls if call[slot % shape] is None), None)
        if call is None:
            call = [None] * shape
            calls.append(call)
        call[slot % shape] = index
    return calls


class BatchGenerator:
    """Generates items in pipeline calls of one fixed shape, each item at its own slot (issue 28).

    The shape is the recipe's call shape, else the device's default
    (:func:`~ldmprobe.engine.workitems.call_shape`). ``slots`` maps an item's key to its index in
    the plan; the item is always made at position ``index % shape`` of a call. Measured on the
    tiny models: an image's pixels depend on its position in the call (position 0 and 3 differ by
    ~1e-6, some uint8 pixels by 1) but not on what the other positions hold, so an image made at
    its slot, in any company, is the image of the clean run, whatever was cached, where a resume
    started, how many ranks shared the work and how many images --batch-size makes per step.

    A CUDA out-of-memory stops with :class:`CallTooLarge` (exit 2) instead of halving the shape,
    which would make the rest of the images in calls of another shape than the first.
    """

    def __init__(self, loaded, recipe: Recipe, shape: int | None = None, slots: Mapping[str, int] | None = None):
        self.loaded = loaded
        self.recipe = recipe
        self.shape = max(1, int(shape)) if shape is not None else call_shape(recipe, loaded.device)
        self.slots = slots

    def _run(self, items: Sequence[WorkItem | None]) -> np.ndarray:
        """One pipeline call of exactly ``self.shape`` images; ``items[i]`` at position i.

        Positions left empty (None, or past the end) are filled with a copy of the call's first
        item, and their rows, returned as they come, are the caller's to drop.
        """
        import torch

        recipe = self.recipe
        real = len(items)
        filler = next(item for item in items if item is not None)
        items = [filler if item is None else item for item in items] + [filler] * max(0, self.shape - real)
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

    def _retry_fp32(self, item: WorkItem, slot: int) -> np.ndarray:
        """Regenerate one item, at its slot, with the pipeline temporarily in float32 (fp16 overflow)."""
        import torch

        pipe = self.loaded.pipe
        pipe.to(torch.float32)
        try:
            return self._run([None] * slot + [item])[slot]
        finally:
            pipe.to(torch.float16)

    def _nsfw_flags(self, by_slot: dict[int, np.ndarray]) -> dict[int, bool | None]:
        """The safety checker's flag of each image, each at its slot of a call of the fixed shape."""
        checker = self.loaded.safety_checker
        extractor = getattr(self.loaded.pipe, "feature_extractor", None)
        if checker is None or extractor is None:
            return dict.fromkeys(by_slot)
        import torch

        filler = next(iter(by_slot.values()))
        pixels = np.stack([by_slot.get(slot, filler) for slot in range(self.shape)])
        images = [(np.clip(p, 0, 1) * 255).round().astype(np.uint8) for p in pixels]
        clip_input = extractor(images, return_tensors="pt").pixel_values.to(self.loaded.device)
        with torch.inference_mode():
            _, flags = checker(images=pixels.copy(), clip_input=clip_input.to(checker.dtype))
        return {slot: bool(flags[slot]) for slot in by_slot}

    def layouts(self, items: Sequence[WorkItem]) -> list[list[WorkItem | None]]:
        """``items`` laid out in calls: each item at its slot (first fit); without ``slots``, in
        consecutive calls in the given order."""
        slots = range(len(items)) if self.slots is None else [self.slots[item.key] for item in items]
        return [[None if i is None else items[i] for i in call] for call in place(slots, self.shape)]

    def generate(self, items: Sequence[WorkItem]) -> list[Generated]:
        """Generate ``items`` in calls of ``self.shape`` (:meth:`layouts`)."""
        return [r for layout in self.layouts(items) for r in self.call(layout)]

    def call(self, layout: Sequence[WorkItem | None]) -> list[Generated]:
        """One call: the items of ``layout`` (None: an empty position) made and checked."""
        try:
            pixels = self._run(layout)
        except RuntimeError as exc:
            if not _is_oom(exc):
                raise
            import torch

            torch.cuda.empty_cache()
            raise _too_large(self.shape, self.recipe) from None
        dtype = self.loaded.dtype
        results = {}
        for slot, (item, image) in enumerate(zip(layout, pixels)):
            if item is None:
                continue
            problem = image_problem(image)
            used = dtype
            if problem and dtype == "float16" and self.loaded.device.startswith("cuda"):
                image = self._retry_fp32(item, slot)
                problem, used = image_problem(image), "float32"
            results[slot] = Generated(item=item, pixels=None if problem else image, failed=problem, dtype_used=used,
                                      batch_size=self.shape)
        good = {slot: r.pixels for slot, r in results.items() if r.pixels is not None}
        for slot, flag in (self._nsfw_flags(good) if good else {}).items():
            results[slot].nsfw = flag
        for result in results.values():
            if result.pixels is not None:
                result.pixels = (np.clip(result.pixels, 0, 1) * 255).round().astype(np.uint8)
        return list(results.values())


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
                        on_batch: Callable[[int], None] | None = None, poll: float = 0.5,
                        plan: Sequence[WorkItem] | None = None) -> tuple[set[str], int]:
    """Make the ``missing`` items (see :func:`missing_items`) and store each image or failure.

    Returns (keys made now, the call shape). Every pipeline call has the recipe's call shape and
    each item its slot, its index in ``plan`` (default: ``missing``) modulo the shape
    (:class:`BatchGenerator`), so an image is the same whatever else is made with it. A step
    takes up to ``batch_size`` items, rounded up to whole calls, at most a call's worth per slot:
    ``batch_size`` changes no image. Each call's images are written before the next call starts,
    so an interruption, or a CUDA out-of-memory (:class:`CallTooLarge`), loses at most one call.
    Items are claimed first (:mod:`ldmprobe.store.claims`): items another live process has
    claimed are left to it and waited for, so processes sharing a cache divide the work.
    """
    from ldmprobe.store.claims import Claims
    from ldmprobe.engine.distributed import check_stop

    slots: dict[str, int] = {}
    for item in [*(plan or ()), *missing]:  # an item the plan does not list (none should) goes after it
        slots.setdefault(item.key, len(slots))
    batcher = BatchGenerator(loaded, recipe, None, slots)
    per_slot = -(-max(1, int(batch_size)) // batcher.shape)  # calls per step
    made: set[str] = set()
    by_key = {item.key: item for item in missing}
    queues: list[deque[str]] = [deque() for _ in range(batcher.shape)]
    for key in sorted(by_key, key=slots.__getitem__):  # plan order within each slot
        queues[slots[key] % batcher.shape].append(key)
    waiting: list[str] = []
    with Claims(store.base) as claims:
        while waiting or any(queues):
            check_stop()
            if not any(queues):
                back, waiting = _after_wait(store, claims, waiting, on_batch, poll)
                for key in back:
                    queues[slots[key] % batcher.shape].append(key)
                continue
            mine, done_elsewhere = [], 0
            for queue in queues:
                taken = 0
                while queue and taken < per_slot:
                    key = queue.popleft()
                    if not claims.try_take(key):
                        waiting.append(key)
                    elif store.valid(key):  # made by another process since this list was drawn up
                        claims.release([key])
                        done_elsewhere += 1
                    else:
                        mine.append(key)
                        taken += 1
            if done_elsewhere and on_batch is not None:
                on_batch(done_elsewhere)
            if mine:
                made |= _make_batch(batcher, [by_key[key] for key in mine], store)
                claims.release(mine)
                if on_batch is not None:
                    on_batch(len(mine))
    return made, batcher.shape


def _make_batch(batcher, batch: Sequence[WorkItem], store) -> set[str]:
    """Make ``batch`` call by call, each call's images stored before the next call starts."""
    made = set()
    for layout in batcher.layouts(batch):
        made |= _store_results(batcher.call(layout), store)
    return made


def _store_results(results: Sequence[Generated], store) -> set[str]:
    from PIL import Image

    made = set()
    for result in results:
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
    from ldmprobe.store.packed_cache import embedding_store
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
