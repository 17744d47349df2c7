"""What fixed-shape model calls cost (issue 28): every generation call is padded to the batch size
and every text / image embedding call to a fixed number of rows, so that no value depends on
what else was made with it. Measured against the same calls unpadded (what ran before), on
the tiny models (CPU):

    OMP_NUM_THREADS=1 python benchmarks/bench_fixed_shape.py [--batch-size 4] [--repeats 3]

Generation: k missing images (k = 1, 3, 5, 8, 9) in calls of --batch-size, padded vs not.
Embedding: 5 prompts' text embeddings and 5 images' embeddings, padded (64 and 16 rows) vs not.
Prints one table of median seconds and the padded / unpadded ratio.
"""

from __future__ import annotations

import argparse
import os
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from PIL import Image

    from ldmprobe.engine import encode, generate
    from ldmprobe.engine.workitems import Recipe, WorkItem
    from ldmprobe.models import load, sources

    loaded = load.load_generator(sources.resolve_generator("tiny"), device="cpu", dtype="float32")
    measurer = load.load_measurer(sources.resolve_measurer("tiny"), device="cpu")
    recipe = Recipe(pipeline={"id": "tiny"}, scheduler={"class": "DDIM"}, steps=args.steps, guidance=7.5, width=64,
                    height=64, dtype="float32")
    words = ["red", "blue", "old", "new", "fancy", "plain", "big", "small", "tall"]
    items = [WorkItem("a {} car", 0, w, False, i, f"a photo of a {w} car", recipe, f"k{i}") for i, w in enumerate(words)]
    padded_run = generate.BatchGenerator._run

    def unpadded_run(self, batch):  # what ran before: the call holds only the batch's own items
        size, self.batch_size = self.batch_size, len(batch)
        try:
            return padded_run(self, batch)
        finally:
            self.batch_size = size

    rows = []
    for k in (1, 3, 5, 8, 9):
        def make(run):
            generate.BatchGenerator._run = run
            batcher = generate.BatchGenerator(loaded, recipe, args.batch_size)
            for start in range(0, k, args.batch_size):
                batcher.generate(items[start: min(k, start + args.batch_size)])
        before = _median(lambda: make(unpadded_run), args.repeats)
        after = _median(lambda: make(padded_run), args.repeats)
        rows.append((f"generate {k} image(s), batch {args.batch_size}", before, after))
    generate.BatchGenerator._run = padded_run

    texts = [f"a photo of a {w} car" for w in words[:5]]
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(5)]
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
        rows.append((f"{name} (padded to {fixed})", before, after))

    print(f"| work | before (unpadded) s | after (fixed shape) s | after / before |  (torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s))")
    print("|---|---:|---:|---:|")
    for name, before, after in rows:
        print(f"| {name} | {before:.3f} | {after:.3f} | {after / before:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
