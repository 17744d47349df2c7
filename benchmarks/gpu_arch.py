"""gpu_check's per-architecture runs: the tiny SDXL, SD 3 and Flux builds through ldmprobe's own
planning and BatchGenerator in the dtype each gets on the device (SDXL float16, SD 3 and Flux
bfloat16 on CUDA; float32 on CPU), a few seconds each.

For each: the images of a batch of 8 are finite and not black on the first try; the same 8
made one call at a time agree with them (the batch-invariance tolerance of ``check_batching``);
the per-encoder conditioning has every part the architecture reads; trace's three parts
(hybrids, step switches, attention maps: joint attention on SD 3 and Flux) run in that dtype, the
traced images equal the untraced ones and the maps sum to 1 over the text; peak GPU memory.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

ARCHITECTURES = ("tiny-sdxl", "tiny-sd3", "tiny-flux")
#: Expected (encoder, part) outputs per tiny build.
PARTS = {
    "tiny-sdxl": {("text_encoder", "tokens"), ("text_encoder_2", "tokens"), ("text_encoder_2", "pooled")},
    "tiny-sd3": {("text_encoder", "tokens"), ("text_encoder", "pooled"), ("text_encoder_2", "tokens"),
                 ("text_encoder_2", "pooled"), ("text_encoder_3", "tokens")},
    "tiny-flux": {("text_encoder", "pooled"), ("text_encoder_2", "tokens")},
}
SPEC = """\
name = "gpu-arch"
templates = ["a photo of a {} house", "a {} street at night"]
baseline = ""
terms = ["fancy", "poor", "modern"]
seeds = 2
"""


def _plan(tmp: Path, name: str, device: str, steps: int):
    from ldmprobe.engine.sweep_setup import SweepOptions, make_plan
    from ldmprobe.specs.sweep import load_spec

    path = tmp / f"{name}.toml"
    path.write_text(SPEC)
    plan = make_plan(load_spec(path), SweepOptions(pipeline=name, measurer="tiny", device=device, steps=steps,
                                                   guidance=3.5))
    return plan.recipe, plan.items


def check_architecture(checks, tmp: Path, name: str, device: str, steps: int) -> dict:
    """One architecture's checks (recorded in ``checks``); returns its figures."""
    import torch

    from ldmprobe.engine.conditioning_arch import encode_by_encoder
    from ldmprobe.engine.generate import BatchGenerator, image_problem
    from ldmprobe.models import load as model_load
    from ldmprobe.models import sources as models

    recipe, items = _plan(tmp, name, device, steps)
    items = items[:8]
    on_cuda = device.startswith("cuda")
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    loaded = model_load.load_generator(models.resolve_generator(name), device=device, dtype=recipe.dtype)
    load_s = time.perf_counter() - t0
    batcher = BatchGenerator(loaded, recipe, 8)
    t0 = time.perf_counter()
    batched = batcher._run(items)
    if on_cuda:
        torch.cuda.synchronize()
    batch_s = time.perf_counter() - t0
    problems = [image_problem(image) for image in batched]
    ok = all(p is None for p in problems)
    checks.record(f"{name} generation ({recipe.dtype})", ok,
                  f"{sum(p is None for p in problems)}/8 images finite and not black on the first try, "
                  f"{recipe.width}x{recipe.height}, {steps} steps, {batch_s:.2f} s for the batch")
    single = np.concatenate([BatchGenerator(loaded, recipe, 1)._run([item]) for item in items])
    diff = float(np.abs(single - batched).max())
    tolerance = 2e-2 if recipe.dtype != "float32" else 1e-3
    checks.record(f"{name} batching", diff <= tolerance,
                  f"batch of 8 against one at a time: max |diff| {diff:.2e} (tolerance {tolerance:g})")
    parts = encode_by_encoder(loaded, [item.prompt for item in items])
    finite = all(np.isfinite(a).all() for a in parts.values())
    checks.record(f"{name} conditioning by encoder", set(parts) == PARTS[name] and finite,
                  ", ".join(f"{c}/{p} {tuple(a.shape[1:])}" for (c, p), a in sorted(parts.items())))
    trace_s = check_trace(checks, loaded, name, steps)
    peak = torch.cuda.max_memory_allocated() / 2**20 if on_cuda else None
    del loaded, batcher
    if on_cuda:
        torch.cuda.empty_cache()
    return {"architecture": name, "dtype": recipe.dtype, "load_s": round(load_s, 2), "batch8_s": round(batch_s, 3),
            "batch_vs_single_max_diff": diff, "trace_s": trace_s,
            "peak_mib": None if peak is None else round(peak, 1)}


def check_trace(checks, loaded, name: str, steps: int) -> float:
    """trace's engine on the device: hybrids of every part, a mid switch, attention maps (no cache)."""
    from ldmprobe.engine import trace_text
    from ldmprobe.engine.trace_attention import AttentionRecorder, tracing
    from ldmprobe.engine.trace_condition import build_hybrids
    from ldmprobe.engine.trace_generate import CondJob, _denoiser, encode_prompts, generate_jobs
    from ldmprobe.engine.workitems import Recipe
    from ldmprobe.models import configs

    t0 = time.perf_counter()
    height, width = configs.native_image_size(loaded.folder)  # the sweep's recipe at the generator's defaults
    settings = Recipe(pipeline=loaded.identity, scheduler={}, steps=max(2, steps),
                      guidance=configs.default_guidance(loaded.folder), width=width, height=height, dtype=loaded.dtype)
    layout = trace_text.layout(loaded)
    (hyb,) = build_hybrids(loaded, "a photo of a {} house", ["fancy"], "", ["none", "all", *layout.parts])
    base, term = encode_prompts(loaded, ["a photo of a house", "a photo of a fancy house"])
    jobs = [CondJob(0, c) for c in hyb.states.values()] + [CondJob(0, base, term, max(1, settings.steps // 2))]
    made = generate_jobs(loaded, jobs, settings, shape=4)
    ok = all(f is None for f in made.failed)
    recorder = AttentionRecorder((16, 16))
    plain = generate_jobs(loaded, jobs[:2], settings, shape=2)
    with tracing(_denoiser(loaded.pipe), recorder, family=layout.family, text_rows=layout.rows):
        traced = generate_jobs(loaded, jobs[:2], settings, shape=2, recorder=recorder)
    maps = traced.maps
    same = bool(np.array_equal(traced.pixels, plain.pixels))
    sums = float(np.abs(maps.sum(1) - 1).max()) if maps.size else float("nan")
    seconds = time.perf_counter() - t0
    checks.record(f"{name} trace", ok and same and sums < 1e-2,
                  f"{len(jobs)} hybrid/switch images finite: {ok}; traced = untraced: {same}; maps {maps.shape}, "
                  f"max |sum - 1| {sums:.1e}; {seconds:.1f} s")
    return round(seconds, 2)


def check_architectures(checks, tmp: Path, device: str, steps: int, names=ARCHITECTURES) -> list[dict]:
    figures = []
    for name in names:
        try:
            figures.append(check_architecture(checks, tmp, name, device, steps))
        except Exception as exc:  # one architecture failing must not hide the others' results
            checks.record(f"{name} run", False, f"{type(exc).__name__}: {exc}")
    return figures
