"""The distributed work list at scale: rank 0 broadcasts the keys of N items (what
``usecases.sweep._work_list`` sends) and every rank takes its strided share, over gloo on CPU.

    OMP_NUM_THREADS=1 python benchmarks/bench_broadcast.py [--items 1000000] [--ranks 2 3]

Prints, per world size, the broadcast time of the N-key work list and of a 1,000-key one
measured in the same job (the fixed cost of a collective), the time to take a share, and the
stall per million items. Each figure is the median of ``--repeats`` broadcasts.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time

import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keys(n: int) -> list[str]:
    """n distinct 64-hex keys, sorted as the work list is."""
    return sorted(f"{i:064x}" for i in range(n))


def worker(rank: int, world: int, port: int, n: int, repeats: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from ldmprobe.engine import distributed

    ctx = distributed.setup()
    big, small = (keys(n), keys(1000)) if rank == 0 else (None, None)
    timings = {"small": [], "big": [], "shard": []}
    for _ in range(repeats):
        for name, payload in (("small", small), ("big", big)):
            ctx.barrier()
            t0 = time.perf_counter()
            view = ctx.broadcast(("digest", payload, 0, None))
            timings[name].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        mine = ctx.shard(view[1])
        timings["shard"].append(time.perf_counter() - t0)
        assert len(view[1]) == n and len(mine) in (n // world, n // world + 1)
    ctx.close()
    queue.put((rank, {k: statistics.median(v) for k, v in timings.items()}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"| ranks | items | broadcast {args.items:,} keys (s) | broadcast 1,000 keys (s) | ratio | "
          "take a share (s) | stall per 1M items (s) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for world in args.ranks:
        queue = mp.get_context("spawn").SimpleQueue()
        mp.spawn(worker, args=(world, free_port(), args.items, args.repeats, queue), nprocs=world, join=True)
        results = dict(queue.get() for _ in range(world))
        slowest = {k: max(r[k] for r in results.values()) for k in ("big", "small", "shard")}
        stall = (slowest["big"] + slowest["shard"]) * 1e6 / args.items
        print(f"| {world} | {args.items:,} | {slowest['big']:.3f} | {slowest['small']:.4f} | "
              f"{slowest['big'] / max(slowest['small'], 1e-9):,.0f}x | {slowest['shard']:.3f} | {stall:.3f} |")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
