"""Speed of ``ldmprobe neighbours`` on a ~30k-entry vocabulary with the tiny measurer.

Measures (1) the first query, which encodes the whole vocabulary (words/s, batched) and
caches it, and (2) a cached query beyond model load: reading the vocabulary, reading and
checking the cached embeddings, embedding the term and ranking (target: under 0.1 s).

    HF_HUB_OFFLINE=1 python benchmarks/bench_neighbours.py            # fresh temp cache
    python benchmarks/bench_neighbours.py --size 30000 --repeat 20 --context "a photo of a {} house"

The tiny measurer has a real CLIP text architecture with small random weights, so its
words/s is an upper bound far above a real ViT-L/14's on the same CPU; the cached-query time
depends on the vocabulary size and embedding width (64 here, 768 for ViT-L/14).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=30000, help="vocabulary entries (first N of clip-bpe)")
    parser.add_argument("--repeat", type=int, default=10, help="cached queries to time")
    parser.add_argument("--context", action="append", default=[], help="context template (repeatable)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--keep-cache", action="store_true",
                        help="use $LDMPROBE_CACHE as it is (default: a fresh temporary cache)")
    args = parser.parse_args()
    if not args.keep_cache:
        os.environ["LDMPROBE_CACHE"] = tempfile.mkdtemp(prefix="ldmprobe-bench-")

    from ldmprobe.models import load as model_load

    from ldmprobe.models import sources as models
    from ldmprobe.usecases import neighbours
    from ldmprobe.specs import vocab

    t0 = time.perf_counter()
    measurer = model_load.load_measurer(models.resolve_measurer("tiny"), device="cpu")
    load_s = time.perf_counter() - t0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    def load_words() -> vocab.Vocabulary:
        vocab.clip_bpe_words.cache_clear()  # time the parse as a fresh process would
        full = vocab.load_vocabulary()
        return vocab.Vocabulary(words=full.words[: args.size], sources=full.sources)

    table = load_words()
    print(f"cache: {os.environ.get('LDMPROBE_CACHE')}")
    print(f"torch threads: {torch.get_num_threads()}; measurer load: {load_s:.2f} s; "
          f"vocabulary: {len(table)} entries; contexts: {args.context or 'none'}")

    t0 = time.perf_counter()
    first = neighbours.find_neighbours(measurer, "fancy", table, contexts=args.context, k=20)
    first_s = time.perf_counter() - t0
    encode_s = first.timings["vocabulary_s"]
    texts = len(table) * max(1, len(args.context))
    print(f"first query ({first.cache['status']}): {first_s:.2f} s, of which encoding "
          f"{encode_s:.2f} s = {len(table) / encode_s:,.0f} words/s ({texts / encode_s:,.0f} texts/s)")

    terms = ["house", "doctor", "African", "poor", "wealthy", "nurse", "car", "modern", "hut", "fancy"]
    times, parts = [], []
    for i in range(args.repeat):
        t0 = time.perf_counter()
        words = load_words()
        result = neighbours.find_neighbours(measurer, terms[i % len(terms)], words, contexts=args.context, k=20)
        times.append(time.perf_counter() - t0)
        parts.append(result.timings)
        assert result.cache["status"] == "hit", result.cache
    median = statistics.median(times)
    detail = {key: statistics.median(p[key] for p in parts) for key in parts[0]}
    print(f"cached query beyond model load: median {median * 1000:.1f} ms, max {max(times) * 1000:.1f} ms "
          f"over {args.repeat} (vocabulary read + " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in detail.items())
          + ")")
    print(f"target < 100 ms: {'met' if median < 0.1 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
