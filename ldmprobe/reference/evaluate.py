"""Measure the reference world's models against the world's truth; print the quality table.

    python -m ldmprobe.reference.evaluate [--weights DIR] [--seeds 32] [--format json]

Independent of ldmprobe's statistics: images come from a plain diffusers loop and are read
back with the world's pixel reader (`world.read_attributes`), so what it reports is what the
generator draws, not what the measurer thinks it draws.
- planted: for every planted association, the share of generated images with the planted
  attribute under the term against under the bare noun (paired seeds), and the planted rates;
- following: how often an explicit colour, size or background word is drawn;
- measurer: zero-shot accuracy of the measurer on fresh world images for background colour,
  object colour and size, with probes "a {colour} background", "a {colour} object", "a {size} object".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import world

TEMPLATE = "a photo of the {} {}"
GUIDANCE = 7.5
STEPS = 25


def load_pipeline(folder: Path):
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(folder), torch_dtype=torch.float32,
                                                   safety_checker=None, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompts: list[str], seeds: list[int], *, batch: int = 64) -> np.ndarray:
    """uint8 images, one per (prompt, seed), each from its own CPU generator."""
    import torch

    out = []
    for start in range(0, len(prompts), batch):
        chunk = slice(start, start + batch)
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds[chunk]]
        result = pipe(prompts[chunk], generator=gens, num_inference_steps=STEPS,
                      guidance_scale=GUIDANCE, output_type="np")
        out.append(np.round(result.images * 255).astype(np.uint8))
    return np.concatenate(out)


def _share(images: np.ndarray, attribute: str, value: str) -> float:
    return float(np.mean([world.read_attributes(im)[attribute] == value for im in images]))


def planted_recovery(pipe, n_seeds: int) -> list[dict]:
    """Rates of each planted attribute under the term and under the bare noun, same seeds."""
    rows = []
    for plant in world.PLANTED:
        nouns = world.NOUNS if plant["noun"] == "any" else (plant["noun"],)
        terms = (plant["term"], "") + world.CONTROL_WORDS
        prompts, seeds, labels = [], [], []
        for noun in nouns:
            for term in terms:
                for seed in range(n_seeds):
                    prompts.append(" ".join(TEMPLATE.format(term, noun).split()))
                    seeds.append(seed)
                    labels.append(term)
        images = generate(pipe, prompts, seeds)
        labels = np.array(labels)
        row = {"term": plant["term"], "noun": plant["noun"], "attribute": plant["attribute"],
               "value": plant["value"], "planted_rate": plant["rate"], "planted_otherwise": plant["otherwise"],
               "n_images_per_term": int((labels == plant["term"]).sum())}
        for term in terms:
            row[f"rate[{term or 'bare'}]"] = _share(images[labels == term], plant["attribute"], plant["value"])
        rows.append(row)
    return rows


def word_following(pipe, n_seeds: int) -> dict[str, float]:
    """Share of images that show the colour, size or background a prompt names."""
    cases = {"colour": [], "size": [], "background": []}
    for noun in world.NOUNS:
        for colour in world.COLOURS:
            cases["colour"].append((f"a photo of the {colour} {noun}", colour))
        for size in world.SIZES:
            cases["size"].append((f"a photo of the {size} {noun}", size))
        for bg in world.BACKGROUNDS:
            cases["background"].append((f"a photo of the {noun} on a {bg} background", bg))
    result = {}
    for attribute, pairs in cases.items():
        prompts = [p for p, _ in pairs for _ in range(n_seeds)]
        seeds = [s for _ in pairs for s in range(n_seeds)]
        wanted = [w for _, w in pairs for _ in range(n_seeds)]
        images = generate(pipe, prompts, seeds)
        result[attribute] = float(np.mean([world.read_attributes(im)[attribute] == w
                                           for im, w in zip(images, wanted)]))
    return result


def measurer_accuracy(folder: Path, n_images: int = 1000, seed: int = 12345) -> dict[str, float]:
    """Zero-shot accuracy of the measurer on fresh world images, per probed attribute."""
    import open_clip
    import torch

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    images, scenes = world.dataset(n_images, seed)
    from PIL import Image

    with torch.no_grad():
        pix = torch.stack([preprocess(Image.fromarray(im)) for im in images])
        img = torch.nn.functional.normalize(model.encode_image(pix), dim=-1)
        result = {}
        for attribute, values, text in (
            ("background", list(world.BACKGROUNDS), "a {} background"),
            ("colour", list(world.COLOURS), "a {} object"),
            ("size", list(world.SIZES), "a {} object"),
        ):
            txt = torch.nn.functional.normalize(model.encode_text(tokenizer([text.format(v) for v in values])), dim=-1)
            guess = (img @ txt.T).argmax(dim=1).numpy()
            truth = np.array([values.index(getattr(s, attribute)) for s in scenes])
            result[attribute] = float((guess == truth).mean())
    return result


def evaluate(weights: Path, n_seeds: int) -> dict:
    started = time.time()
    pipe = load_pipeline(weights / "generator")
    t0 = time.time()
    planted = planted_recovery(pipe, n_seeds)
    following = word_following(pipe, max(4, n_seeds // 4))
    gen_seconds = time.time() - t0
    measurer = measurer_accuracy(weights / "measurer")
    return {"planted": planted, "following": following, "measurer_zero_shot": measurer,
            "settings": {"template": TEMPLATE, "guidance": GUIDANCE, "steps": STEPS, "seeds": n_seeds},
            "generation_seconds": round(gen_seconds, 1), "total_seconds": round(time.time() - started, 1)}


def targets_met(report: dict) -> dict[str, bool]:
    """The issue's quality targets: planted rates within 15 points, words followed, zero-shot."""
    checks = {}
    for row in report["planted"]:
        name = f"{row['term']}/{row['noun']} -> {row['value']} {row['attribute']}"
        got = row[f"rate[{row['term']}]"]
        checks[name + " within 15 points of planted"] = abs(got - row["planted_rate"]) <= 0.15
        for control in world.CONTROL_WORDS + ("bare",):
            checks[f"{name}: {control} within 15 points of otherwise"] = (
                abs(row[f"rate[{control}]"] - row["planted_otherwise"]) <= 0.15)
    for attribute, share in report["following"].items():
        checks[f"{attribute} words followed >= 0.8"] = share >= 0.8
    for attribute, acc in report["measurer_zero_shot"].items():
        checks[f"measurer zero-shot {attribute} >= 0.9"] = acc >= 0.9
    return checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=Path(__file__).parent / "weights")
    parser.add_argument("--seeds", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    report = evaluate(args.weights, args.seeds)
    report["targets"] = targets_met(report)
    if args.format == "json":
        print(json.dumps(report, indent=2))
        return 0
    for row in report["planted"]:
        rates = ", ".join(f"{k[5:-1]} {v:.3f}" for k, v in row.items() if k.startswith("rate["))
        print(f"{row['term']:>6} / {row['noun']:<4} -> {row['value']} {row['attribute']}: planted "
              f"{row['planted_rate']:.2f} (otherwise {row['planted_otherwise']:.2f}); drawn: {rates}")
    print("words followed:", ", ".join(f"{k} {v:.3f}" for k, v in report["following"].items()))
    print("measurer zero-shot:", ", ".join(f"{k} {v:.3f}" for k, v in report["measurer_zero_shot"].items()))
    for name, ok in report["targets"].items():
        print(f"  [{'ok' if ok else 'MISS'}] {name}")
    print(f"generation {report['generation_seconds']} s, total {report['total_seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
