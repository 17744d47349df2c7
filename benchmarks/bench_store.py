"""Packed embedding store against today's one-``.npy``-per-key ArrayStore, in one run.

    OMP_NUM_THREADS=1 python benchmarks/bench_store.py [--sizes 1000 10000 100000]
        [--dim 768] [--per-file-max 10000] [--dir /tmp]

For each size: the time to write N embeddings (packed: appends of 64, as a sweep's batches;
per-file: one atomic file each, both fsynced), to read them all cold (a new store object and
the files evicted from the page cache with posix_fadvise) and warm (the same read again), per
item and as per-file / packed ratios. Per-file sizes above ``--per-file-max`` are extrapolated
linearly from the largest measured size (marked ``~``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ldmprobe.store.array_store import ArrayStore
from ldmprobe.store.packed_store import PackedStore  # noqa: E402

BATCH = 64


def evict(folder: Path) -> None:
    """Drop the folder's files from the page cache (clean pages; no root needed)."""
    for dirpath, _, names in os.walk(folder):
        for name in names:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_packed(root: Path, keys: list[str], values: np.ndarray) -> dict:
    directory = root / "packed"

    def write():
        store = PackedStore(directory)
        for start in range(0, len(keys), BATCH):
            store.put_many(keys[start:start + BATCH], values[start:start + BATCH])
        store.close()

    t_write, _ = timed(write)
    evict(directory)
    store = PackedStore(directory)
    t_cold, (got, found) = timed(lambda: store.get_many(keys))
    assert found.all() and np.array_equal(got, values), "packed store returned wrong values"
    t_warm, _ = timed(lambda: store.get_many(keys))
    store.close()
    size = sum(p.stat().st_size for p in directory.iterdir())
    return {"write": t_write, "cold": t_cold, "warm": t_warm, "files": len(os.listdir(directory)),
            "bytes": size}


def bench_per_file(root: Path, keys: list[str], values: np.ndarray) -> dict:
    store = ArrayStore("perfile", root=root)

    def write():
        for key, value in zip(keys, values):
            store.save(key, value)

    def read():
        return np.stack([store.load(k) for k in keys])

    t_write, _ = timed(write)
    evict(store.base)
    t_cold, got = timed(read)
    assert np.array_equal(got, values), "per-file store returned wrong values"
    t_warm, _ = timed(read)
    return {"write": t_write, "cold": t_cold, "warm": t_warm, "files": len(keys)}


def row(n: int, packed: dict, per_file: dict, measured: bool) -> str:
    mark = "" if measured else "~"
    cells = [f"{n:>7,}"]
    for what in ("write", "cold", "warm"):
        cells.append(f"{packed[what]:8.3f} s {packed[what] / n * 1e3:7.4f} ms/item")
        cells.append(f"{mark}{per_file[what]:8.2f} s ({mark}{per_file[what] / packed[what]:5.1f}x)")
    return " | ".join(cells)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--per-file-max", type=int, default=10000)
    parser.add_argument("--dir", default=None, help="where to build the caches (default: the temp folder)")
    args = parser.parse_args(argv)

    print(f"dim {args.dim} float32, packed appends of {BATCH}, all writes fsynced; "
          f"ratio = per-file time / packed time", flush=True)
    print("      N | packed write             | per-file write     | packed cold get_many     "
          "| per-file cold      | packed warm get_many     | per-file warm", flush=True)
    last_per_file = None
    for n in args.sizes:
        rng = np.random.default_rng(n)
        keys = [hashlib.sha256(f"{n}-{i}".encode()).hexdigest() for i in range(n)]
        values = rng.standard_normal((n, args.dim)).astype(np.float32)
        root = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.dir))
        try:
            packed = bench_packed(root, keys, values)
            if n <= args.per_file_max or last_per_file is None:
                per_file, measured = bench_per_file(root, keys, values), True
                last_per_file = (n, per_file)
            else:
                scale = n / last_per_file[0]
                per_file = {k: v * scale for k, v in last_per_file[1].items()}
                measured = False
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(row(n, packed, per_file, measured), flush=True)
        print(f"        packed: {packed['files']} files, {packed['bytes'] / 1e6:.1f} MB; "
              f"per-file: {per_file['files']:,.0f} files", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
