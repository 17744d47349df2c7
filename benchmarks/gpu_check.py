"""Check ldmprobe's CUDA path with the built-in tiny models (no downloads), and time it.

    python benchmarks/gpu_check.py               # on a CUDA machine (skips, exit 0, without one)
    python benchmarks/gpu_check.py --device cpu  # smoke run of the same checks on CPU (no OOM check)

Checks, each PASS or FAIL (exit 1 if any fails):
  1. generation in the CUDA dtype (float16): every image finite and not all black, first try;
  2. batching: a batch of 8 against the same 8 items one at a time, within tolerance;
  3. out-of-memory stops: the process is capped (torch.cuda.set_per_process_memory_fraction)
     just above what a call of 2 large images needs; a call of 16 must stop with ldmprobe's
     CallTooLarge (exit 2, naming --call-shape 8), not halve (issue 28: halving mixed call shapes);
  3b. slots (issue 28): an image made at its slot of a call of 8 is bit-identical whether the
     other positions hold other images or copies of itself (what sweep's exactness rests on);
  4. per architecture (tiny SDXL, SD 3, Flux; benchmarks/gpu_arch.py): a batch of 8 in the dtype each
     gets (float16 / bfloat16 / bfloat16 on CUDA) finite and not black, batched against one at a
     time, conditioning per encoder, peak memory (--architectures none skips them);
then images/s of ldmprobe's BatchGenerator (batch 8 and 32) against a plain diffusers loop
(one pipe() call per image, as a researcher would write it) on the same device and pipeline.
Prints the card, versions and figures; --json adds one JSON document at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tiny models only; must precede huggingface_hub's import

SPEC = """\
name = "gpu-check"
templates = ["a photo of a {} house", "a {} street at night"]
baseline = ""
terms = ["fancy", "poor", "modern"]
seeds = SEEDS
"""


class Checks:
    def __init__(self) -> None:
        self.results: list[dict] = []

    def record(self, name: str, ok: bool | None, detail: str, **figures) -> None:
        tag = {True: "PASS", False: "FAIL", None: "SKIP"}[ok]
        print(f"[{tag}] {name}: {detail}", flush=True)
        self.results.append({"check": name, "ok": ok, "detail": detail, **figures})

    @property
    def failed(self) -> bool:
        return any(r["ok"] is False for r in self.results)


def make_items(tmp: Path, device: str, *, seeds: int, steps: int, size: int | None = None):
    """(recipe, items) through ldmprobe's own planning (same keys and recipe as a sweep)."""
    from ldmprobe.specs.sweep import load_spec
    from ldmprobe.engine.sweep_setup import SweepOptions, make_plan

    path = tmp / f"spec-{seeds}.toml"
    path.write_text(SPEC.replace("SEEDS", str(seeds)))
    options = SweepOptions(pipeline="tiny", measurer="tiny", device=device, steps=steps, guidance=7.5,
                           width=size, height=size)
    plan = make_plan(load_spec(path), options)
    return plan.recipe, plan.items


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def check_generation(checks: Checks, loaded, recipe, items) -> None:
    from ldmprobe.engine.generate import BatchGenerator, image_problem

    batcher = BatchGenerator(loaded, recipe, 8)
    raw = [image_problem(image) for start in range(0, len(items), 8) for image in batcher._run(items[start:start + 8])]
    results = [r for start in range(0, len(items), 8) for r in batcher.generate(items[start:start + 8])]
    first_try = sum(p is None for p in raw)
    retried = sum(r.dtype_used != loaded.dtype for r in results)  # float16 images redone in float32
    made = sum(r.pixels is not None for r in results)
    brightness = [float(r.pixels.mean()) / 255 for r in results if r.pixels is not None]
    problems = ", ".join(sorted({p for p in raw if p})) or "no problems"
    checks.record(
        f"generation in {loaded.dtype}", first_try == len(items) and made == len(items),
        f"{first_try}/{len(items)} finite and not black on the first try ({problems}); "
        f"{made}/{len(items)} made after {retried} float32 retries; mean brightness "
        f"{min(brightness, default=0):.3f}..{max(brightness, default=0):.3f}",
        first_try=first_try, made=made, retried=retried, n=len(items),
    )


def check_batching(checks: Checks, loaded, recipe, items) -> None:
    import numpy as np

    from ldmprobe.engine.generate import BatchGenerator

    batched = BatchGenerator(loaded, recipe, 8)._run(items[:8])
    single = np.concatenate([BatchGenerator(loaded, recipe, 1)._run([item]) for item in items[:8]])
    diff = np.abs(batched - single)
    # float32 on CPU differs by ~1e-6; float16 / TF32 kernels chosen per batch shape differ more.
    tolerance = 1e-4 if loaded.dtype == "float32" and not loaded.device.startswith("cuda") else 4 / 255
    ok = bool(np.isfinite(diff).all() and diff.max() <= tolerance)
    checks.record(
        "batching", ok,
        f"batch of 8 vs one at a time ({loaded.dtype}): max |diff| {diff.max():.2e}, mean {diff.mean():.2e} "
        f"(pixel scale 0..1, tolerance {tolerance:.1e}); uint8 max diff "
        f"{int(np.abs((batched * 255).round() - (single * 255).round()).max())}",
        max_abs=float(diff.max()), mean_abs=float(diff.mean()), tolerance=tolerance,
    )


def check_slots(checks: Checks, loaded, recipe, items) -> None:
    """Issue 28: at its slot an image is the same in any company (needs 16 items)."""
    import numpy as np

    from ldmprobe.engine.generate import BatchGenerator

    batcher = BatchGenerator(loaded, recipe, 8)
    clean = batcher._run(items[:8])
    diffs = []
    for slot in (0, 3, 7):
        company = list(items[8:16])
        company[slot] = items[slot]
        diffs.append(float(np.abs(batcher._run(company)[slot] - clean[slot]).max()))
        diffs.append(float(np.abs(batcher._run([None] * slot + [items[slot]])[slot] - clean[slot]).max()))
    moved = float(np.abs(batcher._run(list(items[1:8]) + [items[0]])[7] - clean[0]).max())
    checks.record(
        "slots", max(diffs) == 0.0,
        f"an image at slot 0, 3, 7 of a call of 8 ({loaded.dtype}), in other company or alone: max |diff| "
        f"{max(diffs):.2e} (must be 0); the same image at another position: {moved:.2e}",
        max_abs=max(diffs), other_position=moved,
    )


def check_oom_stops(checks: Checks, loaded, tmp: Path, size: int, device: str) -> None:
    import torch

    from ldmprobe.engine.generate import BatchGenerator, CallTooLarge

    recipe, items = make_items(tmp, device, seeds=4, steps=2, size=size)
    items = items[:16]
    index = torch.device(loaded.device).index or 0
    total = torch.cuda.get_device_properties(index).total_memory

    def peak_for(n: int) -> int:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        BatchGenerator(loaded, recipe, n)._run(items[:n])
        sync(device)
        return torch.cuda.max_memory_allocated() - base

    one, two = peak_for(1), peak_for(2)
    slope = max(two - one, 1)  # memory per extra image; the rest of ``one`` is fixed overhead
    fixed = max(one - slope, 0)
    torch.cuda.empty_cache()
    cap = torch.cuda.memory_reserved() + fixed + int(2.5 * slope) + (64 << 20)  # room for 2 images, not 4
    needed_16 = fixed + 16 * slope
    fraction = min(1.0, cap / total)
    torch.cuda.set_per_process_memory_fraction(fraction, index)
    try:
        start = time.perf_counter()
        try:
            BatchGenerator(loaded, recipe, 16).generate(items)
            error = None
        except (RuntimeError, CallTooLarge) as exc:
            error = exc
        seconds = time.perf_counter() - start
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, index)
        torch.cuda.empty_cache()
    ok = isinstance(error, CallTooLarge) and "--call-shape 8" in str(error)
    said = "no error" if error is None else f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    checks.record(
        "out-of-memory stops", ok,
        f"{size}x{size}, 2 steps: one image needs {one / 2**20:.0f} MiB, each more {slope / 2**20:.0f} MiB; "
        f"capped at {cap / 2**30:.2f} GiB (fraction {fraction:.4f}) where 16 need ~{needed_16 / 2**30:.2f} GiB; "
        f"a call of 16: {said} after {seconds:.1f} s",
        cap_bytes=cap,
    )


def throughput(checks: Checks, loaded, recipe, items, device: str) -> dict:
    import torch

    from ldmprobe.engine.generate import BatchGenerator

    def ldmprobe_rate(batch: int) -> float:
        batcher = BatchGenerator(loaded, recipe, batch)
        batcher.generate(items[:batch])  # warm-up (kernels, cuDNN autotune)
        sync(device)
        start = time.perf_counter()
        for i in range(0, len(items), batch):
            batcher.generate(items[i:i + batch])
        sync(device)
        return len(items) / (time.perf_counter() - start)

    def plain_rate() -> float:
        pipe = loaded.pipe

        def one(item):
            with torch.inference_mode():
                return pipe(prompt=item.prompt, num_inference_steps=recipe.steps, guidance_scale=recipe.guidance,
                            width=recipe.width, height=recipe.height,
                            generator=torch.Generator("cpu").manual_seed(item.seed), output_type="np").images

        one(items[0])  # warm-up
        sync(device)
        start = time.perf_counter()
        for item in items:
            one(item)
        sync(device)
        return len(items) / (time.perf_counter() - start)

    rates = {"plain_loop": plain_rate(), "ldmprobe_batch8": ldmprobe_rate(8),
             "ldmprobe_batch32": ldmprobe_rate(min(32, len(items)))}
    best = max(rates["ldmprobe_batch8"], rates["ldmprobe_batch32"])
    checks.record(
        "throughput", None if rates["plain_loop"] <= 0 else best >= rates["plain_loop"],
        f"{len(items)} images, {recipe.steps} steps, {recipe.width}x{recipe.height}, {loaded.dtype}: "
        f"ldmprobe BatchGenerator batch 8 {rates['ldmprobe_batch8']:.1f} img/s, batch 32 "
        f"{rates['ldmprobe_batch32']:.1f} img/s; plain diffusers loop {rates['plain_loop']:.1f} img/s "
        f"({best / rates['plain_loop']:.1f}x)",
        **{f"{k}_img_s": round(v, 2) for k, v in rates.items()},
    )
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA or skip), cuda, cuda:N, or cpu (smoke run)")
    parser.add_argument("--items", type=int, default=None, help="images per throughput run (CUDA 96, CPU 16)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (CUDA 20, CPU 2)")
    parser.add_argument("--oom-size", type=int, default=512, help="image side for the out-of-memory check")
    parser.add_argument("--json", action="store_true", help="also print a JSON summary")
    parser.add_argument("--architectures", default="tiny-sdxl,tiny-sd3,tiny-flux",
                        help="tiny builds to check per architecture, comma-separated, or none")
    args = parser.parse_args()
    started = time.perf_counter()

    import torch

    if args.device == "auto" or args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("no CUDA device; skipped (run with --device cpu for a CPU smoke run of the same checks)")
            return 0
    device = "cuda" if args.device == "auto" else args.device
    on_cuda = device.startswith("cuda")
    import diffusers

    from ldmprobe import __version__
    from ldmprobe.store.files import models_dir
    from ldmprobe.models import load as model_load
    from ldmprobe.models import sources as models

    if on_cuda:
        index = torch.device(device).index or 0
        memory = torch.cuda.get_device_properties(index).total_memory / 2**30
        card = f"{torch.cuda.get_device_name(index)} ({device}, {memory:.0f} GiB)"
    else:
        card = "CPU"
    print(f"device: {card}; torch {torch.__version__}, diffusers {diffusers.__version__}, ldmprobe {__version__}; "
          f"models cached in {models_dir()}", flush=True)
    steps = args.steps or (20 if on_cuda else 2)
    n_items = args.items or (96 if on_cuda else 16)
    checks = Checks()
    arch_figures: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        seeds = max(2, -(-n_items // 8))
        recipe, items = make_items(tmp, device, seeds=seeds, steps=steps)
        items = items[:n_items]
        t0 = time.perf_counter()
        loaded = model_load.load_generator(models.resolve_generator("tiny"), device=device, dtype=recipe.dtype)
        print(f"tiny pipeline loaded in {time.perf_counter() - t0:.1f} s ({recipe.dtype}, "
              f"{recipe.width}x{recipe.height})", flush=True)
        check_generation(checks, loaded, recipe, items[:16])
        check_batching(checks, loaded, recipe, items)
        check_slots(checks, loaded, recipe, items[:16])
        if on_cuda:
            check_oom_stops(checks, loaded, tmp, args.oom_size, device)
        else:
            checks.record("out-of-memory stops", None, "needs CUDA")
        throughput(checks, loaded, recipe, items, device)
        del loaded
        names = [n for n in args.architectures.split(",") if n.strip() and n.strip() != "none"]
        if names:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from gpu_arch import check_architectures

            arch_figures = check_architectures(checks, tmp, device, min(steps, 8), [n.strip() for n in names])
    total = time.perf_counter() - started
    print(f"{'FAILED' if checks.failed else 'all checks passed'} in {total:.0f} s", flush=True)
    if args.json:
        print(json.dumps({"device": card, "torch": torch.__version__, "diffusers": diffusers.__version__,
                          "seconds": round(total, 1), "checks": checks.results,
                          "architectures": arch_figures}, indent=2))
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
