"""What fixed-shape model calls cost (issue 28): every generation call has one shape (the recipe's
call shape, whatever --batch-size says) and holds each image at its own slot (its plan index modulo
the shape), and every text / image embedding call has a fixed number of rows, so that no value
depends on what else was made with it. Measured on the tiny models (CPU):

    OMP_NUM_THREADS=1 python benchmarks/bench_fixed_shape.py [--shape 4] [--repeats 3]

1. Padding: k missing images (k = 1, 3, 5, 8, 9) in calls of --shape, padded vs not (the calls
   before issue 28 held only their own items).
2. Slots: a resume that lost a random share of a plan makes each image at its slot; calls counted
   (no model) for plans of 24 and 1,000 images against the calls a resume without slots makes
   (ceil(missing / shape)), and timed on the tiny models for the 24-image plan.
3. --batch-size 1: before, it made calls of one image; now a step of one call of --shape.
4. Embedding: 5 prompts' text embeddings and 5 images' embeddings, padded (64 and 16 rows) vs not.
Prints tables of median seconds and ratios.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

import numpy as np


def _median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def slot_calls(n_plan: int, missing: list[int], shape: int) -> int:
    """Calls a resume makes when each missing plan index sits at its slot (``BatchGenerator.layouts``)."""
    from ldmprobe.engine.generate import BatchGenerator

    items = [_Item(f"k{i}") for i in missing]
    return len(BatchGenerator(None, None, shape, {f"k{i}": i for i in range(n_plan)}).layouts(items))


class _Item:
    def __init__(self, key: str):
        self.key = key


def call_counts(shape: int, repeats: int = 20) -> list[tuple]:
    """(plan, share lost, mean calls with slots, mean calls without) over random losses."""
    rng = random.Random(0)
    rows = []
    for n_plan in (24, 1000):
        for share in (0.01, 0.1, 0.3, 0.5, 0.9):
            with_slots, without = [], []
            for _ in range(repeats):
                missing = sorted(rng.sample(range(n_plan), max(1, round(n_plan * share))))
                with_slots.append(slot_calls(n_plan, missing, shape))
                without.append(-(-len(missing) // shape))
            rows.append((n_plan, share, statistics.mean(with_slots), statistics.mean(without)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, default=4, help="images per generation call (4: the CPU default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from PIL import Image

    from ldmprobe.engine import encode, generate
    from ldmprobe.engine.workitems import Recipe, WorkItem
    from ldmprobe.models import load, sources

    shape = args.shape
    loaded = load.load_generator(sources.resolve_generator("tiny"), device="cpu", dtype="float32")
    measurer = load.load_measurer(sources.resolve_measurer("tiny"), device="cpu")
    recipe = Recipe(pipeline={"id": "tiny"}, scheduler={"class": "DDIM"}, steps=args.steps, guidance=7.5, width=64,
                    height=64, dtype="float32")
    words = ["red", "blue", "old", "new", "fancy", "plain", "big", "small", "tall", "short", "dark", "pale"]
    items = [WorkItem("a {} car", 0, words[i % 12], False, i, f"a photo of a {words[i % 12]} car", recipe, f"k{i}")
             for i in range(24)]
    padded_run = generate.BatchGenerator._run

    def unpadded_run(self, batch):  # before issue 28: the call holds only the batch's own items
        size, self.shape = self.shape, len(batch)
        try:
            return padded_run(self, batch)
        finally:
            self.shape = size

    def make(run, todo, size, slots=None):
        generate.BatchGenerator._run = run
        try:
            batcher = generate.BatchGenerator(loaded, recipe, size, slots)
            for layout in batcher.layouts(todo):
                batcher.call(layout)
        finally:
            generate.BatchGenerator._run = padded_run

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), tiny models, {args.steps} steps, "
          f"call shape {shape}, median of {args.repeats}\n")
    print("| work | before s | after s | after / before | images made / needed |")
    print("|---|---:|---:|---:|---:|")
    for k in (1, 3, 5, 2 * shape, 2 * shape + 1):
        before = _median(lambda: make(unpadded_run, items[:k], shape), args.repeats)
        after = _median(lambda: make(padded_run, items[:k], shape), args.repeats)
        print(f"| generate {k} image(s), calls of {shape}: padded | {before:.3f} | {after:.3f} | {after / before:.2f} "
              f"| {-(-k // shape) * shape / k:.2f} |")
    rng = random.Random(1)
    lost = sorted(rng.sample(range(24), 7))  # a resume after losing 30 % of a 24-image plan
    slots = {item.key: i for i, item in enumerate(items)}
    todo = [items[i] for i in lost]
    before = _median(lambda: make(padded_run, todo, shape), args.repeats)
    after = _median(lambda: make(padded_run, todo, shape, slots), args.repeats)
    calls = slot_calls(24, lost, shape)
    print(f"| resume 7 of 24 images: each at its slot ({calls} calls) vs packed ({-(-7 // shape)}) | {before:.3f} | "
          f"{after:.3f} | {after / before:.2f} | {calls * shape / 7:.2f} |")
    before = _median(lambda: make(unpadded_run, items[:8], 1), args.repeats)
    after = _median(lambda: make(padded_run, items[:8], shape, slots), args.repeats)
    print(f"| 8 images at --batch-size 1: 8 calls of 1 before, {-(-8 // shape)} of {shape} now | {before:.3f} | "
          f"{after:.3f} | {after / before:.2f} | 1.00 |")

    texts = [f"a photo of a {w} car" for w in words[:5]]
    images = [Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
              for _ in range(5)]
    for name, fn, attr in (("embed 5 texts", lambda: encode.encode_texts(measurer, texts), "TEXT_ROWS"),
                           ("embed 5 images", lambda: encode.encode_images(measurer, images), "IMAGE_ROWS")):
        fixed = getattr(encode, attr)
        after = _median(fn, args.repeats)
        real_padded = encode._padded
        encode._padded = lambda batch, rows: batch  # no padding: the call holds only its own rows
        try:
            before = _median(fn, args.repeats)
        finally:
            encode._padded = real_padded
        print(f"| {name} (padded to {fixed}) | {before:.3f} | {after:.3f} | {after / before:.2f} | - |")

    print("\nCalls of a resume, each image at its slot vs packed without slots (no model; mean of 20 random losses):\n")
    print("| plan | share lost | calls with slots | calls packed | ratio |")
    print("|---:|---:|---:|---:|---:|")
    for big in (shape, 8) if shape != 8 else (8,):
        for n_plan, share, with_slots, without in call_counts(big):
            print(f"| {n_plan} (shape {big}) | {share:.0%} | {with_slots:.1f} | {without:.1f} | "
                  f"{with_slots / without:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
