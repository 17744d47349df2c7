"""A warm rerun at scale: the whole command per cached image, and the plan and embedding load per item.

    OMP_NUM_THREADS=1 python benchmarks/bench_scale.py [--sizes 1000 10000 100000] [--dir /tmp]
        [--sweep-args '--permutations 99 --bootstrap 99'] [--compare OTHER_CHECKOUT] [--profile FILE]
    OMP_NUM_THREADS=1 python benchmarks/bench_scale.py --parts [--sizes 1000 10000] [--dim 768]

**Whole command** (the default; issue 32): the largest size's cache is built as a finished sweep
leaves it. A one-seed sweep with the tiny models (64 x 64, 2 steps) makes the cell's real images
and caches the text, probe and vocabulary embeddings; every other planned key then gets its
PNG (a real image of its cell re-keyed: its own recipe and digest chunk, recorded in the
save-time manifest, as ``ImageStore.save`` leaves it) and its image embedding written straight
through the stores' APIs (generating 100,000 images would take hours here). Then, for each
size, ``ldmprobe sweep`` runs as a user runs it, in a new process (cold start, imports, plan,
analysis with the default permutations and bootstrap, the run folder and report.html included),
on a spec of 4 templates x (baseline + 4 terms + 1 control) x N/24 seeds. Its wall time and
peak memory (the child's ru_maxrss; the cache is built in another child, so the parent stays small
and a forked child inherits no large resident set) are put beside a new process that reads the same N
embeddings with ``numpy.load`` from one .npy file. Figures: seconds, ms per extra cached image
between the sizes, and the ratio. Targets (issue 32): <= 0.5 ms per extra cached image, 100,000
in < 60 s, peak memory flat in N: the last line puts the largest size's peak over the smallest's
(criterion: <= 1.15), also less the N x d float32 embeddings' size (a run no longer holds them at
once: they wait in a temporary file, ``engine/row_file.py``). ``--compare`` also says whether
results.json (but provenance and the folder's path) and items.jsonl (byte for byte) are the same.
``--keep`` builds the cache once in ``--dir`` (``bench-whole-SEEDS``) and reuses it in later runs.
Where the memory goes: ``benchmarks/mem_profile.py`` (resident memory by ldmprobe function, and
a tracemalloc snapshot) run in that folder: ``LDMPROBE_CACHE=DIR/bench-whole-SEEDS/cache python
benchmarks/mem_profile.py -m ldmprobe sweep DIR/bench-whole-SEEDS/scale-N.toml --pipeline tiny
--measurer tiny --steps 2 --width 64 --height 64 -q --format json --out OUT``.

**--parts** (issue 16): with N real 512 x 512 PNGs and N packed embeddings, the warm plan before
and after the manifest, the embedding load, and the statistics per item:
- **plan, before**: what the warm path did before the manifest, per item: the failure-record
  check, the header check of the PNG (open, read the chunks before the pixels, the end) and a
  per-key checked embedding lookup;
- **plan, after**: ``engine.sweep_images.cached_work`` (one ``stat`` per image answered from
  the manifest, one checked batched read of the embeddings);
- **load**: the N embeddings read and checked from the packed store in one ``get_many``;
- **stats**: ``analyse_sweep`` on N cells (4 templates x 5 terms with 1 control, seeds to fill N;
  99 permutations and bootstrap resamples), up to ``--stats-max`` items.

Figures are per item, with after/before ratios and growth between sizes. Targets (issue 16): warm
per-item overhead <= 0.1 ms, 100,000 embeddings loaded in <= 2 s.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ldmprobe.store import images, png_check  # noqa: E402
from ldmprobe.store.files import atomic_write_bytes  # noqa: E402
from ldmprobe.store.packed_cache import VerifiedStore, embedding_store  # noqa: E402
from ldmprobe.engine.sweep_images import cached_work  # noqa: E402

BASE_PICTURES = 6
NAMESPACE = "embeddings/bench"


def pictures(n: int, seed: int = 0):
    """A few 512 x 512 pictures with photo-like PNG sizes (smooth fields plus noise)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:512, 0:512] / 512.0
    out = []
    for _ in range(n):
        f = rng.uniform(1, 6, size=3)
        field = np.stack([np.sin(2 * np.pi * (f[c] * x + rng.uniform() * y) + rng.uniform(0, 6))
                          for c in range(3)], -1)
        pixels = (127 + 90 * field + rng.normal(0, 12, field.shape)).clip(0, 255).astype(np.uint8)
        out.append(Image.fromarray(pixels, "RGB"))
    return out


def build(root: Path, n: int, dim: int) -> list[str]:
    """N cached images (through ImageStore.save) and N packed embeddings; returns the keys."""
    store = images.ImageStore(root)
    encoded = []
    for picture in pictures(BASE_PICTURES):  # encode each picture once; ImageStore.save re-encodes
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    keys = [hashlib.sha256(f"item {i}".encode()).hexdigest() for i in range(n)]
    for i, key in enumerate(keys):
        recipe = {"key": key, "prompt": f"a photo of a term{i % 5} house", "seed": i, "nsfw": False}
        png = encoded[i % BASE_PICTURES]
        text = png_check.PNG_RECIPE_KEY.encode() + b"\0" + json.dumps(recipe, sort_keys=True).encode()
        at = 8 + 12 + int.from_bytes(png[8:12], "big")  # after IHDR, where Pillow writes text chunks
        path = store.path(key)
        atomic_write_bytes(path, png_check.png_with_digest(png[:at] + png_check._chunk(b"tEXt", text) + png[at:]))
        store.index.record(key, path, recipe)  # what ImageStore.save records
    assert store.load(keys[-1])[1] == recipe  # a valid image, decoded and digest-checked
    emb = VerifiedStore(NAMESPACE, "image embeddings", root)
    rng = np.random.default_rng(1)
    for start in range(0, n, 64):
        chunk = keys[start:start + 64]
        vectors = rng.normal(size=(len(chunk), dim)).astype(np.float32)
        emb.put_many(chunk, list(vectors / np.linalg.norm(vectors, axis=1, keepdims=True)))
    emb.close()
    return keys


def plan_before(root: Path, keys: list[str]) -> tuple[set, set]:
    """The warm plan as it was: a failure check and a header check per image, a lookup per key."""
    store = images.ImageStore(root)
    emb = VerifiedStore(NAMESPACE, "image embeddings", root)
    to_make = set()
    for key in keys:
        if store.failure(key) is None and png_check.light_check(store.path(key), key) is not None:
            to_make.add(key)
    to_embed = {k for k in keys if k not in to_make and store.failure(k) is None and not emb.has(k)}
    return to_make, to_embed


def plan_after(root: Path, keys: list[str]) -> tuple[set, set]:
    return cached_work(images.ImageStore(root), VerifiedStore(NAMESPACE, "image embeddings", root), keys)


def load_all(root: Path, keys: list[str]) -> np.ndarray:
    values, found = VerifiedStore(NAMESPACE, "image embeddings", root).store.get_many(keys)
    assert found.all()
    return values


def stats_time(vectors: np.ndarray) -> tuple[float, int]:
    from ldmprobe.analysis.sweep import ImageCell, StatisticsSettings, SweepEmbeddings, analyse_sweep

    templates = tuple(f"a photo of a {{}} thing {t}" for t in range(4))
    names = ("", "t1", "t2", "t3", "t4", "ctrl")
    seeds = len(vectors) // (len(templates) * len(names))
    images, i = {}, 0
    for t in range(len(templates)):
        for term in names:
            for s in range(seeds):
                images[(t, term, s)] = ImageCell(vectors[i])
                i += 1
    rng = np.random.default_rng(2)
    dim = vectors.shape[1]
    prompts = {(t, term): tpl.replace("{}", term) for t, tpl in enumerate(templates) for term in names}
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    data = SweepEmbeddings(
        templates=templates, baseline="", terms=("t1", "t2", "t3", "t4"), seeds=tuple(range(seeds)),
        images=images, prompts=prompts,
        prompt_embeddings={p: unit(rng.normal(size=dim)) for p in prompts.values()},
        probes=("a", "b", "c"), probe_embeddings=unit(rng.normal(size=(3, dim))),
        vocabulary=tuple(f"w{j}" for j in range(200)), vocabulary_embeddings=unit(rng.normal(size=(200, dim))),
        controls=("ctrl",),
    )
    start = time.perf_counter()
    analyse_sweep(data, StatisticsSettings(permutations=99, bootstrap=99, seed=0))
    return time.perf_counter() - start, i


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


WHOLE_SPEC = """\
name = "scale"
templates = ["a photo of a {{}} house", "a drawing of a {{}} car", "a painting of a {{}} dog", "a {{}} tree"]
baseline = ""
terms = ["red", "old", "small", "fancy"]
controls = ["blue"]
probes = ["fire", "ocean", "gold"]
seeds = {seeds}
"""
CELLS = 24  # 4 templates x (baseline + 4 terms + 1 control)
TINY = ["--pipeline", "tiny", "--measurer", "tiny", "--steps", "2", "--width", "64", "--height", "64"]


def _env(cache_root: Path) -> dict:
    return {**os.environ, "LDMPROBE_CACHE": str(cache_root), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def run_process(args: list[str], env: dict, log: Path) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB) of one new process."""
    with open(log, "wb") as out:
        start = time.perf_counter()
        # run in the log's folder: ``python -m`` puts the working folder first on sys.path, where a
        # checkout would shadow the one PYTHONPATH names (--compare)
        child = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])} ... exited {child.returncode}:\n{log.read_text()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024


def _spec_file(folder: Path, seeds: int) -> Path:
    path = folder / f"scale-{seeds}.toml"
    path.write_text(WHOLE_SPEC.format(seeds=seeds))
    return path


def build_whole(work: Path, seeds: int) -> tuple[Path, np.ndarray]:
    """A cache holding every image and embedding of the ``seeds``-seed sweep; returns the
    cache root and the image embeddings in plan order (for the numpy baseline)."""
    from PIL import Image

    root = work / "cache"
    env = _env(root)
    run_process([sys.executable, "-m", "ldmprobe", "sweep", str(_spec_file(work, 1)), *TINY, "--no-report", "-q",
                 "--out", str(work / "seed0")], env, work / "seed0.log")
    os.environ["LDMPROBE_CACHE"] = str(root)
    from ldmprobe.engine.sweep_setup import SweepOptions, make_plan
    from ldmprobe.models import sources
    from ldmprobe.specs.sweep import load_spec

    setup = make_plan(load_spec(_spec_file(work, seeds)), SweepOptions(pipeline="tiny", measurer="tiny", steps=2,
                                                                        width=64, height=64))
    store = images.ImageStore(root)
    emb = embedding_store(sources.measurer_identity(setup.measurer_ref), root)
    cells = {(i.template_index, i.term): i for i in setup.items if i.seed == setup.spec.seeds[0]}
    plain, recipes = {}, {}
    for cell, item in cells.items():  # each cell's real image, re-encoded without ldmprobe's chunks
        with Image.open(store.path(item.key)) as image:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
        plain[cell], recipes[cell] = buffer.getvalue(), png_check.png_recipe(store.path(item.key))
    base = dict(zip(cells, emb.get_many([i.key for i in cells.values()])))
    rng = np.random.default_rng(0)
    todo = [i for i in setup.items if not store.path(i.key).is_file()]
    for start in range(0, len(todo), 4096):
        chunk = todo[start:start + 4096]
        for item in chunk:
            cell = (item.template_index, item.term)
            recipe = {**recipes[cell], "key": item.key, "seed": item.seed}
            png = plain[cell]
            text = png_check.PNG_RECIPE_KEY.encode() + b"\0" + json.dumps(recipe, sort_keys=True).encode()
            at = 8 + 12 + int.from_bytes(png[8:12], "big")  # after IHDR, where Pillow writes text chunks
            path = store.path(item.key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png_check.png_with_digest(png[:at] + png_check._chunk(b"tEXt", text) + png[at:]))
            store.index.record(item.key, path, recipe)
        vectors = np.stack([base[(i.template_index, i.term)] for i in chunk])
        vectors = vectors + 0.05 * rng.normal(size=vectors.shape).astype(vectors.dtype)
        emb.put_many([i.key for i in chunk], list(vectors / np.linalg.norm(vectors, axis=1, keepdims=True)))
    emb.close()
    emb = embedding_store(sources.measurer_identity(setup.measurer_ref), root)
    keys = [i.key for i in setup.items]
    values = emb.get_many(keys)
    assert all(v is not None for v in values)
    return root, np.stack(values).astype(np.float32)


def whole(sizes: list[int], folder: Path, extra: list[str], compare: Path | None = None,
          profile: Path | None = None, keep: bool = False) -> int:
    seeds = {n: max(1, n // CELLS) for n in sizes}
    if keep:  # one folder per largest size, built once and reused by later runs
        work = folder / f"bench-whole-{max(seeds.values())}"
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="bench-whole-", dir=folder))
    try:
        t0 = time.perf_counter()
        if not (work / "vectors.npy").is_file():  # written last by the build: its presence means a whole cache
            shutil.rmtree(work / "cache", ignore_errors=True)
            # built in a child process: a forked child starts with its parent's resident memory, so a
            # parent that held the build would inflate every peak measured below
            subprocess.run([sys.executable, __file__, "--build-whole", str(work), str(max(seeds.values()))],
                           env={**os.environ, "PYTHONPATH": _env(work)["PYTHONPATH"]}, check=True)
            print(f"# cache built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        else:
            print(f"# reusing the cache in {work}", file=sys.stderr)
        root, vectors = work / "cache", np.load(work / "vectors.npy", mmap_mode="r")
        env, rows = _env(root), []
        for n in sizes:
            items = seeds[n] * CELLS
            spec, out = _spec_file(work, seeds[n]), work / f"run-{items}"
            command = ["-m", "ldmprobe", "sweep", str(spec), *TINY, "-q", "--format", "json", "--out", str(out), *extra]
            other = {}
            if compare is not None:  # the other checkout first, on the same cache, back to back
                other["compare_s"], other["compare_peak_mb"] = run_process(
                    [sys.executable, *command], {**env, "PYTHONPATH": str(compare.resolve())}, work / f"cmp-{items}.log")
                compared = json.loads((out / "results.json").read_text())
                compared_items = hashlib.sha256((out / "items.jsonl").read_bytes()).hexdigest()
                shutil.rmtree(out, ignore_errors=True)
            seconds, peak = run_process([sys.executable, *command], env, work / f"run-{items}.log")
            document = json.loads((out / "results.json").read_text())
            assert document["counts"]["generated"] == 0 and (out / "report.html").is_file()
            if compare is not None:  # the same results: every key but provenance (timings) and the folder's path
                other["same_results"] = _comparable(document) == _comparable(compared)
                other["same_items"] = hashlib.sha256((out / "items.jsonl").read_bytes()).hexdigest() == compared_items
            if profile is not None and n == sizes[-1]:
                shutil.rmtree(out, ignore_errors=True)
                try:
                    run_process([sys.executable, "-m", "cProfile", "-o", str(profile), *command], env,
                                work / f"profile-{items}.log")
                except SystemExit as exc:  # the timings above still stand
                    print(f"# the profiled run failed: {exc}", file=sys.stderr)
                    profile = None
            npy = work / f"emb-{items}.npy"
            np.save(npy, vectors[:items])
            base, base_peak = run_process([sys.executable, "-c", f"import numpy; numpy.load({str(npy)!r})"], env,
                                          work / "numpy.log")
            rows.append({"items": items, "seconds": seconds, "peak_mb": peak, "numpy_s": base,
                         "numpy_peak_mb": base_peak, "folder_mb": _size_mb(out),
                         "embeddings_mb": vectors[:items].nbytes / 2**20, **other})
            shutil.rmtree(out, ignore_errors=True)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'items':>8} {'ldmprobe s':>10} {'numpy s':>8} {'ratio':>7} {'peak MB':>8} {'numpy MB':>8} "
          f"{'folder MB':>9}   (whole process, cold start, all cached)")
    for row in rows:
        print(f"{row['items']:>8} {row['seconds']:>10.2f} {row['numpy_s']:>8.3f} {row['seconds'] / row['numpy_s']:>7.1f} "
              f"{row['peak_mb']:>8.0f} {row['numpy_peak_mb']:>8.0f} {row['folder_mb']:>9.1f}")
    for a, b in zip(rows, rows[1:]):
        extra = b["items"] - a["items"]
        print(f"{a['items']} -> {b['items']}: {1e3 * (b['seconds'] - a['seconds']) / extra:.3f} ms per extra cached "
              f"image (numpy {1e3 * (b['numpy_s'] - a['numpy_s']) / extra:.4f}), peak memory "
              f"{1e3 * (b['peak_mb'] - a['peak_mb']) / extra:.2f} kB per extra image")
    if len(rows) > 1:  # issue 32's criterion: the peak at the largest size within 1.15 x the smallest's
        a, b = rows[0], rows[-1]
        rest = (b["peak_mb"] - b["embeddings_mb"]) / (a["peak_mb"] - a["embeddings_mb"])
        print(f"peak memory {b['items']} / {a['items']}: x{b['peak_mb'] / a['peak_mb']:.2f}; less the N x d "
              f"embeddings' size ({a['embeddings_mb']:.1f} and {b['embeddings_mb']:.1f} MB): x{rest:.2f}")
    if compare is not None:
        print(f"\ncompared with {compare} (run just before each row above, same cache):")
        print(f"{'items':>8} {'other s':>8} {'this s':>8} {'this/other':>10} {'other MB':>9} {'this MB':>8} "
              "same results.json / items.jsonl bytes")
        for row in rows:
            print(f"{row['items']:>8} {row['compare_s']:>8.2f} {row['seconds']:>8.2f} "
                  f"{row['seconds'] / row['compare_s']:>10.2f} {row['compare_peak_mb']:>9.0f} {row['peak_mb']:>8.0f} "
                  f"{row['same_results']} / {row['same_items']}")
        if len(rows) > 1:
            a, b = rows[0], rows[-1]
            print(f"peak memory {b['items']} / {a['items']}: x{b['compare_peak_mb'] / a['compare_peak_mb']:.2f} with the "
                  f"other checkout, x{b['peak_mb'] / a['peak_mb']:.2f} with this one")
        for a, b in zip(rows, rows[1:]):
            extra = b["items"] - a["items"]
            print(f"{a['items']} -> {b['items']}: {1e3 * (b['compare_s'] - a['compare_s']) / extra:.3f} ms per extra "
                  f"cached image with the other checkout, {1e3 * (b['seconds'] - a['seconds']) / extra:.3f} with this one")
    if profile is not None:
        import pstats

        print(f"\n# cProfile of the {rows[-1]['items']}-item run ({profile}), by cumulative time:", file=sys.stderr)
        pstats.Stats(str(profile), stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    print(json.dumps(rows), file=sys.stderr)
    return 0


def _comparable(document: dict) -> dict:
    return {**{k: v for k, v in document.items() if k != "provenance"},
            "run": {k: v for k, v in document.get("run", {}).items() if k != "out"}}


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", action="store_true", help="the plan, load and statistics per item (issue 16)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--sweep-args", default="", help="more sweep options, e.g. '--permutations 99 --bootstrap 99'")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--stats-max", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the best is kept)")
    parser.add_argument("--compare", type=Path, default=None,
                        help="another checkout of ldmprobe (e.g. a git worktree of the previous commit): each size is "
                             "also run with it, just before, on the same cache, and the two are put side by side")
    parser.add_argument("--profile", type=Path, default=None,
                        help="also run the largest size once more under cProfile, writing the profile here")
    parser.add_argument("--keep", action="store_true",
                        help="keep the built cache in --dir (bench-whole-SEEDS) and reuse it when it is there")
    parser.add_argument("--build-whole", nargs=2, metavar=("WORK", "SEEDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build_whole:  # the child process of the whole-command benchmark that builds its cache
        _, vectors = build_whole(Path(args.build_whole[0]), int(args.build_whole[1]))
        done = Path(args.build_whole[0]) / "vectors.npy"
        with open(done.with_suffix(".part"), "wb") as fh:  # renamed when whole: --keep trusts its presence
            np.save(fh, vectors)
        os.replace(done.with_suffix(".part"), done)
        return 0
    if not args.parts:
        return whole(args.sizes or [1000, 10000, 100000], args.dir, args.sweep_args.split(), args.compare, args.profile,
                     args.keep)
    args.sizes = args.sizes or [1000, 10000]
    rows = []
    for n in args.sizes:
        root = Path(tempfile.mkdtemp(prefix=f"bench-scale-{n}-", dir=args.dir))
        try:
            t_build, keys = timed(build, root, n, args.dim)
            png_mb = sum(p.stat().st_size for p in (root / "images").glob("??/*.png")) / n / 1e6
            print(f"# {n} items built in {t_build:.0f} s ({png_mb:.2f} MB per PNG)", file=sys.stderr)
            plan_before(root, keys)  # warm the page cache, as a rerun finds it
            before = min(timed(plan_before, root, keys)[0] for _ in range(args.repeats))
            after, (to_make, to_embed) = min((timed(plan_after, root, keys) for _ in range(args.repeats)),
                                             key=lambda r: r[0])
            assert not to_make and not to_embed, "the warm plan must find everything cached"
            load = min(timed(load_all, root, keys)[0] for _ in range(args.repeats))
            stats = None
            if n <= args.stats_max:
                seconds, used = stats_time(load_all(root, keys))
                stats = seconds / used
            rows.append({"items": n, "plan_before_ms": 1e3 * before / n, "plan_after_ms": 1e3 * after / n,
                         "load_ms": 1e3 * load / n, "stats_ms": None if stats is None else 1e3 * stats,
                         "png_mb": png_mb})
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{'items':>8} {'plan before':>12} {'plan after':>11} {'after/before':>12} {'load':>9} "
          f"{'stats':>9}   (ms per item; warm page cache)")
    for row in rows:
        stats = "-" if row["stats_ms"] is None else f"{row['stats_ms']:.4f}"
        print(f"{row['items']:>8} {row['plan_before_ms']:>12.4f} {row['plan_after_ms']:>11.4f} "
              f"{row['plan_after_ms'] / row['plan_before_ms']:>12.3f} {row['load_ms']:>9.4f} {stats:>9}")
    for a, b in zip(rows, rows[1:]):
        growth = {k: b[k] / a[k] for k in ("plan_before_ms", "plan_after_ms", "load_ms") if a[k]}
        print(f"per-item growth {a['items']} -> {b['items']}: "
              + ", ".join(f"{k.removesuffix('_ms')} x{v:.2f}" for k, v in growth.items()))
    last = rows[-1]
    print(f"extrapolated to 100,000 items: plan {last['plan_after_ms'] * 100:.1f} s after "
          f"(before {last['plan_before_ms'] * 100:.1f} s), embedding load {last['load_ms'] * 100:.2f} s")
    print(json.dumps(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
