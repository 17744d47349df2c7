"""Measure reference world 2 against its story, at its spec's own steps and guidance, on held-out seeds.

    python -m reference_world.evaluate2 --weights DIR [--spec prompts/reference-world.toml]
        [--seeds 24] [--guidance G] [--device cpu] [--format json]

Every word of the spec (bare noun, controls, terms) is drawn under every template of the spec
with seeds from HELD_OUT_SEED on (never used by a sweep of the spec nor for any choice), read
back with the world's pixel reader and compared with the generator's training story
(:func:`world2.distribution`, mixed over the templates' nouns). Issue 27's targets:

- planted rates within 10 points (the encoder-borne word against its rate in the measurer's
  pictures, the only place it was planted; the narrowing word: share of its two backgrounds);
- bare noun and every control within 10 points of training for every option of every attribute;
- blank or objectless images (object covering < 2 % of the picture) at most 0.5 %;
- colour, size and background words followed >= 0.9; measurer zero-shot >= 0.95.

The text side (where each term sits in the measurer's text space against the bare noun, toward
its planted probe) is reported too: it is how the encoder-borne route shows.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
import tomllib
from pathlib import Path
from typing import Callable

import numpy as np

from . import evaluate, resolution, world, world2

HELD_OUT_SEED = 1_000_000
#: Seeds for choosing settings (the spec's guidance, a recipe): never the card's held-out ones.
TUNING_SEED = 2_000_000
DEFAULT_SPEC = Path(__file__).resolve().parents[1] / "prompts" / "reference-world.toml"
OBJECTLESS_SHARE = 0.02
TOLERANCE = 0.10
#: seeds per template for the card (see :mod:`reference_world.resolution` and --seeds' help)
DEFAULT_SEEDS = 24
PROBES = {"background": "a {} background", "colour": "a {} object", "size": "a {} object"}


def load_spec(path: Path) -> dict:
    spec = tomllib.loads(path.read_text())
    for key in ("templates", "terms", "controls", "steps", "guidance"):
        if key not in spec:
            raise ValueError(f"{path}: no {key!r}")
    for template in spec["templates"]:
        if _noun(template) is None:
            raise ValueError(f"{path}: template {template!r} names none of {world.NOUNS}")
    return spec


def _noun(template: str) -> str | None:
    found = [w for w in template.replace("{}", " ").split() if w in world.NOUNS]
    return found[0] if len(found) == 1 else None


def expected(word: str, templates: list[str], story: world2.Story = world2.SHIPPED) -> dict[str, dict[str, float]]:
    """The training story's distributions for ``word``, mixed over the templates' nouns."""
    audience = "measurer" if word == world2.ENCODER_WORD else "generator"
    dists = [world2.distribution(audience, word, _noun(t), story) for t in templates]
    return {a: {v: float(np.mean([d[a][v] for d in dists])) for v in values}
            for a, values in world2.ATTRIBUTE_VALUES.items()}


def word_prompts(words, templates, n_seeds: int) -> tuple[list[str], list[int], list[str]]:
    """Every (word, template, seed) picture to draw, word-major: its prompt, its seed (template
    ``t`` takes seeds ``t * n_seeds`` onwards, before any offset) and its word."""
    prompts, seeds, labels = [], [], []
    for word in words:
        for t, template in enumerate(templates):
            for seed in range(n_seeds):
                prompts.append(" ".join(template.format(word).split()))
                seeds.append(t * n_seeds + seed)
                labels.append(word)
    return prompts, seeds, labels


def word_images(pipe, spec: dict, n_seeds: int) -> dict[str, list[dict]]:
    """The pixel reader's attributes of every (word, template, seed) image, per word.

    Each template has its own block of ``n_seeds`` seeds, and every word uses the same blocks
    (paired across words). A picture's background is decided mostly by its starting noise, so
    seeds shared across templates would leave a word's background shares resting on only
    ``n_seeds`` draws; with a block per template they rest on templates x ``n_seeds``.
    """
    words = [""] + list(spec["controls"]) + list(spec["terms"])
    prompts, seeds, labels = word_prompts(words, spec["templates"], n_seeds)
    images = evaluate.generate(pipe, prompts, seeds)
    read = {w: [] for w in words}
    for label, image in zip(labels, images):
        read[label].append(world2.read_attributes(image))
    return read


def distributions(reads: list[dict]) -> dict[str, dict[str, float]]:
    return {a: {v: float(np.mean([r[a] == v for r in reads])) for v in values}
            for a, values in world2.ATTRIBUTE_VALUES.items()}


def effective_options(shares: dict[str, float]) -> float:
    """exp(Shannon entropy) of the shares: 1 when one option, k when k options equally common."""
    p = np.array([v for v in shares.values() if v > 0])
    return float(np.exp(-(p * np.log(p)).sum())) if p.size else float("nan")


def planted_rows(reads: dict[str, list[dict]], spec: dict, story: world2.Story = world2.SHIPPED) -> list[dict]:
    rows = []
    for plant in world2.planted(story):
        if plant["term"] not in reads:
            continue
        keep = [i for i, t in enumerate(spec["templates"]) if plant["noun"] in ("any", _noun(t))]
        n = len(reads[plant["term"]]) // len(spec["templates"])
        values = plant["value"].split("+")

        def rate(word):
            got = [r for i, r in enumerate(reads[word]) if i // n in keep]
            return float(np.mean([r[plant["attribute"]] in values for r in got])), len(got)

        drawn, count = rate(plant["term"])
        row = {**plant, "drawn": drawn, "drawn_bare": rate("")[0], "n_images": count,
               "drawn_controls_mean": float(np.mean([rate(c)[0] for c in spec["controls"]]))}
        if plant["kind"] == "narrowing":
            got = distributions(reads[plant["term"]])[plant["attribute"]]
            row["per_option"] = {v: got[v] for v in values}
            row["effective_options"] = {w or "bare": effective_options(distributions(reads[w])[plant["attribute"]])
                                        for w in (plant["term"], "")}
        rows.append(row)
    return rows


def deviations(reads: dict[str, list[dict]], spec: dict, story: world2.Story = world2.SHIPPED) -> dict[str, dict]:
    """Per word: the largest |drawn - training| over every option of every attribute."""
    out = {}
    for word, got in reads.items():
        drawn, want = distributions(got), expected(word, spec["templates"], story)
        worst = max(((abs(drawn[a][v] - want[a][v]), a, v) for a in drawn for v in drawn[a]))
        out[word or "bare"] = {"max_deviation": worst[0], "where": f"{worst[2]} {worst[1]}",
                               "drawn": drawn, "training": want,
                               "objectless": float(np.mean([r["object_share"] < OBJECTLESS_SHARE for r in got]))}
    return out


def text_side(folder: Path, spec: dict) -> dict[str, dict[str, float]]:
    """Per term: mean over templates of cos(text(term prompt), probe) - cos(text(bare prompt), probe)."""
    import open_clip
    import torch

    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    probes = {f"{v} {a}": PROBES[a].format(v) for p in world2.PLANTED for a in [p["attribute"]]
              for v in p["value"].split("+")}

    def embed(texts):
        with torch.no_grad():
            return torch.nn.functional.normalize(model.eval().encode_text(tokenizer(texts)).float(), dim=-1)

    probe_vecs = embed(list(probes.values()))
    bare = embed([" ".join(t.format("").split()) for t in spec["templates"]]) @ probe_vecs.T
    out = {}
    for word in list(spec["terms"]) + list(spec["controls"]):
        sims = embed([" ".join(t.format(word).split()) for t in spec["templates"]]) @ probe_vecs.T
        out[word] = {name: float((sims - bare)[:, j].mean()) for j, name in enumerate(probes)}
    return out


def _targets(report: dict) -> list[tuple[str, bool, Callable[[], float] | None]]:
    """(name, met, the chance that a generator drawing the story exactly meets it, when asked) per
    target; None for targets that are not a share within TOLERANCE of the story."""
    rows = []
    for row in report["planted"]:
        name = f"{row['term']}/{row['noun']} -> {row['value']} {row['attribute']} ({row['route']})"
        rows.append((f"{name} within 10 points of planted", abs(row["drawn"] - row["rate"]) <= TOLERANCE,
                     functools.partial(resolution.rate_chance, row["rate"], row["n_images"], TOLERANCE)))
        for value, share in row.get("per_option", {}).items():
            rows.append((f"{name}: {value} within 10 points of 0.5", abs(share - 0.5) <= TOLERANCE,
                         functools.partial(resolution.rate_chance, 0.5, row["n_images"], TOLERANCE)))
    for word, dev in report["words"].items():
        if word == "bare" or word in report["settings"]["controls"]:
            rows.append((f"{word}: every option within 10 points of training", dev["max_deviation"] <= TOLERANCE,
                         functools.partial(_word_chance, report, dev["training"])))
    rows.append(("blank or objectless <= 0.5 %", report["objectless"] <= 0.005, None))
    for attribute, share in report["following"].items():
        rows.append((f"{attribute} words followed >= 0.9", share >= 0.9, None))
    for attribute, acc in report["measurer_zero_shot"].items():
        rows.append((f"measurer zero-shot {attribute} >= 0.95", acc >= 0.95, None))
    return rows


def _word_chance(report: dict, training: dict) -> float:
    n_word = report["settings"]["seeds"] * len(report["settings"]["templates"])
    return resolution.options_chance(training, n_word, TOLERANCE)


def targets_met(report: dict) -> dict[str, bool]:
    return {name: ok for name, ok, _ in _targets(report)}


def target_resolution(report: dict) -> dict:
    """How often a generator drawing the story exactly would meet each share target here."""
    rows = _targets(report)
    return resolution.summary({name: chance() for name, _, chance in rows if chance is not None},
                              {name: ok for name, ok, _ in rows})


def run(weights: Path, spec_path: Path, n_seeds: int, guidance: float | None, device: str,
        first_seed: int = HELD_OUT_SEED) -> dict:
    spec = load_spec(spec_path)
    started = time.time()
    evaluate.SETTINGS.update(guidance=float(spec["guidance"] if guidance is None else guidance),
                             steps=int(spec["steps"]), seed_offset=first_seed)
    pipe = evaluate.load_pipeline(weights / "generator").to(device)
    reads = word_images(pipe, spec, n_seeds)
    story = world2.story_of_weights(weights)
    words = deviations(reads, spec, story)
    everything = [r for got in reads.values() for r in got]
    report = {
        "world": world2.WORLD_VERSION,
        "settings": {"spec": spec_path.name, "templates": spec["templates"], "controls": spec["controls"],
                     "terms": spec["terms"], "steps": int(spec["steps"]),
                     "guidance": evaluate.SETTINGS["guidance"], "seeds": n_seeds, "first_seed": first_seed,
                     "seed_use": "held-out" if first_seed == HELD_OUT_SEED else "tuning",
                     "scheduler": type(pipe.scheduler).__name__},
        "story": story.name,
        "planted": planted_rows(reads, spec, story),
        "words": words,
        "objectless": float(np.mean([r["object_share"] < OBJECTLESS_SHARE for r in everything])),
        "following": evaluate.word_following(pipe, max(1, n_seeds // 2)),
        "measurer_zero_shot": evaluate.measurer_accuracy(weights / "measurer", seed=first_seed),
        "text_side": text_side(weights / "measurer", spec),
        "images_generated": evaluate.GENERATED[0],
    }
    report["total_seconds"] = round(time.time() - started, 1)
    report["targets"] = targets_met(report)
    report["resolution"] = target_resolution(report)
    return report


def print_table(report: dict) -> None:
    for row in report["planted"]:
        print(f"{row['term']:>6} / {row['noun']:<4} -> {row['value']} {row['attribute']} [{row['route']}]: "
              f"planted {row['rate']:.2f} (otherwise {row['otherwise']:.3f}); drawn {row['drawn']:.3f}, "
              f"bare {row['drawn_bare']:.3f}, controls {row['drawn_controls_mean']:.3f}")
    worst = sorted(report["words"].items(), key=lambda kv: -kv[1]["max_deviation"])
    print("largest departures from training:", ", ".join(
        f"{w} {d['max_deviation']:.3f} ({d['where']})" for w, d in worst[:6]))
    print(f"objectless {report['objectless']:.4f}")
    print("words followed:", ", ".join(f"{k} {v:.3f}" for k, v in report["following"].items()))
    print("measurer zero-shot:", ", ".join(f"{k} {v:.3f}" for k, v in report["measurer_zero_shot"].items()))
    for term in report["settings"]["terms"]:
        print(f"text side {term}:", ", ".join(f"{k} {v:+.3f}" for k, v in report["text_side"][term].items()))
    chances = report["resolution"]["chance_exact_generator_meets"]
    for name, ok in report["targets"].items():
        chance = f"  (an exact generator meets it {chances[name]:.3f})" if name in chances else ""
        print(f"  [{'ok' if ok else 'MISS'}] {name}{chance}")
    res = report["resolution"]
    print(f"a generator drawing the story exactly would miss {res['expected_misses_exact_generator']:.2f} of "
          f"these {res['targets_judged']} share targets on average at {report['settings']['seeds']} seeds "
          "per template")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="an exported world-2 folder")
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                        help=f"held-out seeds per word and template (default {DEFAULT_SEEDS}). With the spec's 10 "
                             "templates a generator drawing the story exactly misses on average 0.06 of the share "
                             "targets at 24 seeds, 0.5 at 16 and 4.4 at 8 (the table prints this for each run)")
    parser.add_argument("--guidance", type=float, default=None, help="(the spec's by default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tuning", action="store_true",
                        help=f"seeds from {TUNING_SEED:,} on, for choosing settings; the card's figures use the "
                             f"held-out seeds from {HELD_OUT_SEED:,} (the default), which no choice may see")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if not (args.weights / "generator" / "model_index.json").is_file():
        parser.error(f"{args.weights} holds no generator/ model folder")
    try:
        load_spec(args.spec)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        parser.error(str(exc))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    report = run(args.weights, args.spec, args.seeds, args.guidance, args.device,
                 TUNING_SEED if args.tuning else HELD_OUT_SEED)
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    print(f"{report['images_generated']} images, {report['total_seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
