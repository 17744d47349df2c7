"""Sweep speed: ldmprobe (cold cache, then warm rerun) against a hand-written loop.

The hand loop is what a researcher would write without ldmprobe: load the diffusers
pipeline and the open_clip model, then for each (template, term, seed) make one image with
its own seeded generator and embed it. No cache, no batching. All three are timed as whole
processes (imports and model loading included), in this run, on this machine.

    python benchmarks/bench_sweep.py [--seeds 4] [--batch-size 8]
Targets: cold <= 1.0x the hand loop; warm rerun <= 0.2x the cold run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SPEC = """\
name = "bench"
templates = ["a photo of a {} house", "a photo of the {} family's car", "a {} street at night"]
baseline = ""
terms = ["fancy", "poor", "African", "American", "modern"]
probes = ["mansion", "hut", "luxury", "poverty"]
seeds = SEEDS
"""

HAND_LOOP = textwrap.dedent("""
    import sys, tomllib, torch, open_clip
    from diffusers import DiffusionPipeline
    spec = tomllib.load(open(sys.argv[1], "rb"))
    pipe = DiffusionPipeline.from_pretrained(sys.argv[2], local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + sys.argv[3])
    model.eval()
    rows = []
    for template in spec["templates"]:
        for term in [spec["baseline"], *spec["terms"]]:
            prompt = " ".join(template.replace("{}", term).split())
            for seed in range(spec["seeds"]):
                g = torch.Generator("cpu").manual_seed(seed)
                image = pipe(prompt, num_inference_steps=4, guidance_scale=7.5, generator=g).images[0]
                with torch.no_grad():
                    rows.append(model.encode_image(preprocess(image).unsqueeze(0)))
    print(len(rows))
""")


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, HF_HUB_OFFLINE="1", LDMPROBE_CACHE=str(tmp / "cache"))
        # Build the tiny models once, outside every timing.
        subprocess.run([sys.executable, "-m", "ldmprobe", "check", "--pipeline", "tiny", "--measurer", "tiny",
                        "--format", "json"], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        models_dir = tmp / "cache" / "models"
        generator = next(models_dir.glob("tiny-generator-v*"))
        measurer = next(models_dir.glob("tiny-measurer-v*"))
        spec = tmp / "bench.toml"
        spec.write_text(SPEC.replace("SEEDS", str(args.seeds)))
        n_images = 3 * 6 * args.seeds
        script = tmp / "hand_loop.py"
        script.write_text(HAND_LOOP)

        hand = timed([sys.executable, str(script), str(spec), str(generator), str(measurer)], env)
        sweep = [sys.executable, "-m", "ldmprobe", "sweep", str(spec), "--pipeline", "tiny", "--measurer", "tiny",
                 "--device", "cpu", "--batch-size", str(args.batch_size), "--format", "json"]
        # A second, empty image cache (same built models) for the cold run without report.html.
        bare = tmp / "cache-bare"
        bare.mkdir()
        (bare / "models").symlink_to(models_dir, target_is_directory=True)
        cold_bare = timed(sweep + ["--out", str(tmp / "run-bare"), "--no-report"], dict(env, LDMPROBE_CACHE=str(bare)))
        cold = timed(sweep + ["--out", str(tmp / "run-cold")], env)
        warm = timed(sweep + ["--out", str(tmp / "run-warm")], env)

    print(f"tiny sweep, {n_images} images (3 templates x 6 terms x {args.seeds} seeds, 4 steps), "
          f"batch size {args.batch_size}, CPU")
    print(f"hand-written loop (no cache):   {hand:7.2f} s  ({n_images / hand:.1f} img/s)")
    print(f"ldmprobe sweep, cold cache:     {cold:7.2f} s  ({n_images / cold:.1f} img/s)  "
          f"ratio cold/hand = {cold / hand:.2f}  (target <= 1.0)")
    print(f"  the same without report.html: {cold_bare:7.2f} s  ratio = {cold_bare / hand:.2f}")
    print(f"ldmprobe sweep, warm rerun:     {warm:7.2f} s  ratio warm/cold = {warm / cold:.2f}  (target <= 0.2)")
    print("ldmprobe's cold time includes everything the hand loop skips: prompt-length check, "
          "text/probe/vocabulary/conditioning embeddings, permutation and bootstrap statistics, run folder, "
          "contact sheets (and report.html with its plots, unless --no-report). On a CPU, batching gains little; "
          "on a GPU it is where the time goes (benchmarks/gpu_check.py).")


if __name__ == "__main__":
    main()
