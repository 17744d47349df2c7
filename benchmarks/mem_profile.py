"""Where a command's peak memory is: run a module as ``python -m`` would, sampling as it goes.

    python benchmarks/mem_profile.py [--tracemalloc] [--out FILE] -m ldmprobe sweep SPEC ...

A thread samples the process's resident memory (``/proc/self/statm``) and the main thread's
stack every 10 ms; at exit it prints to stderr (or ``--out``) the resident-memory timeline by
the innermost ldmprobe function running, and the stack at the highest sample. With
``--tracemalloc`` it also traces Python allocations and keeps the snapshot taken at the
largest traced total (a new snapshot each time the traced total grows 15 % past the last
one), printed as the allocation sites holding the most bytes at that moment, each attributed
to its innermost ldmprobe line. For issue 32: see ``bench_scale.py``'s docstring for the command.
"""

from __future__ import annotations

import argparse
import atexit
import os
import runpy
import sys
import threading
import time
from collections import defaultdict

PAGE = os.sysconf("SC_PAGE_SIZE")
OWN = os.sep + "ldmprobe" + os.sep


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 2**20


def _innermost_own(frames) -> str:
    for filename, lineno, name in reversed(frames):
        if OWN in filename:
            return f"{filename.rsplit(OWN, 1)[-1]}:{lineno} {name}"
    return "(outside ldmprobe)"


class Sampler(threading.Thread):
    def __init__(self, main_id: int, interval: float, trace: bool, when: str | None = None):
        super().__init__(daemon=True)
        self.main_id, self.interval, self.trace, self.when = main_id, interval, trace, when
        self.by_place: dict[str, float] = defaultdict(float)
        self.peak = (0.0, [])
        self.snapshot, self.snapshot_mb, self.stop = None, 0.0, False
        self.timeline: list[tuple[float, float, str]] = []  # (seconds, MB, place) at each 5 MB rise
        self.start_time = time.perf_counter()

    def run(self) -> None:
        import tracemalloc

        while not self.stop:
            frame = sys._current_frames().get(self.main_id)
            frames = []
            while frame is not None:  # the stack without its source lines (linecache would hold them)
                frames.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
                frame = frame.f_back
            frames.reverse()
            rss = rss_mb()
            place = _innermost_own(frames)
            self.by_place[place] = max(self.by_place[place], rss)
            if rss > self.peak[0]:
                self.peak = (rss, frames)
            if not self.timeline or abs(rss - self.timeline[-1][1]) >= 5:
                self.timeline.append((time.perf_counter() - self.start_time, rss, place))
            if self.trace and self.when:  # one snapshot, the first time ``when`` is innermost
                if self.snapshot is None and self.when in place:
                    self.snapshot, self.snapshot_mb = tracemalloc.take_snapshot(), tracemalloc.get_traced_memory()[0] / 2**20
            elif self.trace:
                traced = tracemalloc.get_traced_memory()[0] / 2**20
                if traced > 1.15 * self.snapshot_mb:
                    self.snapshot, self.snapshot_mb = tracemalloc.take_snapshot(), traced
            time.sleep(self.interval)

    def report(self, out) -> None:
        self.stop = True
        print(f"# highest resident memory sampled: {self.peak[0]:.0f} MB, at:", file=out)
        for filename, lineno, name in self.peak[1][-14:]:
            print(f"#   {filename}:{lineno} {name}", file=out)
        print("# resident memory at each 5 MB change (seconds, MB, innermost ldmprobe function):", file=out)
        for seconds, mb, place in self.timeline:
            print(f"#   {seconds:7.2f} {mb:7.0f}  {place}", file=out)
        print("# highest resident memory (MB) while each ldmprobe function was innermost:", file=out)
        for place, mb in sorted(self.by_place.items(), key=lambda kv: -kv[1])[:25]:
            print(f"#   {mb:8.0f}  {place}", file=out)
        if self.snapshot is None:
            return
        totals: dict[str, list] = defaultdict(lambda: [0, 0])
        for stat in self.snapshot.statistics("traceback"):
            frames = [(f.filename, f.lineno, "") for f in stat.traceback]  # oldest first
            site = stat.traceback[-1]
            where = f"{_innermost_own(frames)}  <- {site.filename.rsplit(os.sep, 2)[-1]}:{site.lineno}"
            totals[where][0] += stat.size
            totals[where][1] += stat.count
        print(f"# traced Python allocations at {'the snapshot' if self.when else 'their largest'} ({self.snapshot_mb:.0f} MB), by site:", file=out)
        for where, (size, count) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:30]:
            print(f"#   {size / 2**20:8.1f} MB {count:>9} blocks  {where}", file=out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--when", default=None, help="with --tracemalloc: one snapshot, the first time the "
                        "innermost ldmprobe function's place contains this text (e.g. 'render/report.py')")
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--out", default=None)
    parser.add_argument("-m", dest="module", required=True)
    argv = sys.argv[1:]
    at = argv.index("-m") + 2 if "-m" in argv else len(argv)  # what follows the module is its own
    args, rest = parser.parse_args(argv[:at]), argv[at:]
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(25)
    sampler = Sampler(threading.get_ident(), args.interval, args.tracemalloc, args.when)

    def report() -> None:
        if args.out:
            with open(args.out, "w") as fh:
                sampler.report(fh)
        else:
            sampler.report(sys.stderr)

    atexit.register(report)
    sampler.start()
    sys.argv = [args.module, *rest]
    runpy.run_module(args.module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
