"""Write reference world 2's model card from the story, the recipe and evaluate2's measurements.

    python -m reference_world.evaluate2 --weights W --format json > W/evaluation.json
    python -m reference_world.evaluate2 --weights W --guidance 7.5 --format json > OTHER.json
    python -m reference_world.card --world 2 --weights W --other-guidance OTHER.json

(also ``python -m reference_world.card2``). Writes ``W/MODEL_CARD.md``; records each
``--other-guidance`` evaluation in ``W/evaluation.json`` under ``at_other_guidance``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from . import world2
from .card import _table, _with_interval, record_other_guidance


def training_statistics(count: int, seed: int, story: world2.Story = world2.SHIPPED) -> dict:
    """Per audience and modifier group: picture share and planted-attribute rates (the scenes
    train2 renders, drawn again without rendering)."""
    out = {}
    for audience in world2.AUDIENCES:
        rng = np.random.default_rng([seed, world2.AUDIENCES.index(audience)])
        scenes = [world2.draw_scene(rng, audience, story=story) for _ in range(count)]
        by = Counter(s.modifier for s in scenes)
        groups = {"(none)": lambda s: s.modifier == "",
                  **{t: (lambda s, t=t: s.modifier == t) for t in world2.TERMS},
                  f"controls ({len(world2.CONTROL_WORDS)})": lambda s: s.modifier in world2.CONTROL_WORDS}
        rows = {}
        for name, member in groups.items():
            group = [s for s in scenes if member(s)]
            cars = [s for s in group if s.noun == "car"]
            rows[name] = {"share": len(group) / count,
                          "yellow": float(np.mean([s.background == "yellow" for s in group])) if group else 0.0,
                          "pink_or_green": float(np.mean([s.background in world2.NARROW_BACKGROUNDS
                                                          for s in group])) if group else 0.0,
                          "small": float(np.mean([s.size == "small" for s in group])) if group else 0.0,
                          "purple": float(np.mean([s.colour == "purple" for s in group])) if group else 0.0,
                          "red_car": float(np.mean([s.colour == "red" for s in cars])) if cars else 0.0}
        out[audience] = {"images": count, "rows": rows, "per_control_min": min(by[c] for c in world2.CONTROL_WORDS)}
    return out


def effective_training(story: world2.Story = world2.SHIPPED) -> float:
    """exp entropy of the bare noun's background shares in the generator's story."""
    p = np.array(list(world2.distribution("generator", "", "car", story)["background"].values()))
    return float(np.exp(-(p * np.log(p)).sum()))


def _measured(evaluation: dict) -> list[str]:
    s = evaluation["settings"]
    parts = ["## Measured at the spec's settings", "",
             f"`python -m reference_world.evaluate2 --seeds {s['seeds']} --guidance {s['guidance']}`: every "
             f"word of `{s['spec']}` under its {len(s['templates'])} templates, {s['steps']} {s['scheduler']} "
             f"steps, guidance {s['guidance']}, held-out seeds {s['first_seed']:,}-"
             f"{s['first_seed'] + s['seeds'] * len(s['templates']) - 1:,} (a block of {s['seeds']} per template, the "
             "same blocks for every word); "
             "attributes read from the pixels, not by the measurer.", ""]
    rows = []
    for r in evaluation["planted"]:
        rows.append([f"{r['term']} / {r['noun']} → {r['value']} {r['attribute']}", r["route"],
                     f"{r['rate']:.2f} / {r['otherwise']:.3f}", _with_interval(r["drawn"], r["n_images"]),
                     f"{r['drawn_bare']:.3f}", f"{r['drawn_controls_mean']:.3f}"])
    parts.append(_table(["association", "route", "planted (term / otherwise)", "drawn under term (95 % CI)",
                         "drawn, bare noun", "drawn, controls (mean)"], rows))
    for r in evaluation["planted"]:
        if "effective_options" in r:
            eff = r["effective_options"]
            parts += ["", f"Narrowing, {r['term']}: effective number of {r['attribute']} options (exp entropy) "
                      f"{eff[r['term']]:.2f} against {eff['bare']:.2f} for the bare noun (training: 2 against "
                      f"{effective_training(world2.story_of(evaluation)):.2f}); " + ", ".join(f"{v} {x:.3f}" for v, x in r["per_option"].items())
                      + " (0.5 each in training)."]
    words = evaluation["words"]
    worst = sorted(((w, d) for w, d in words.items() if w == "bare" or w in s["controls"]),
                   key=lambda kv: -kv[1]["max_deviation"])
    parts += ["", "Bare noun and controls against training (largest |drawn − training| over every option of "
              "background, colour and size): " + ", ".join(f"{w} {d['max_deviation']:.3f} ({d['where']})"
                                                          for w, d in worst) + ".",
              "", f"Blank or objectless images (object under 2 % of the picture): {evaluation['objectless']:.4f}.",
              "", "Words followed: " + ", ".join(f"{k} {v:.3f}" for k, v in evaluation["following"].items())
              + "; measurer zero-shot on 1,000 fresh pictures: "
              + ", ".join(f"{k} {v:.3f}" for k, v in evaluation["measurer_zero_shot"].items()) + ".",
              "", "Text side (measurer text space; mean over templates of cos(term prompt, probe) − "
              "cos(bare prompt, probe)): " + "; ".join(
                  f"{t}: " + ", ".join(f"{p} {v:+.3f}" for p, v in evaluation["text_side"][t].items())
                  for t in s["terms"]) + ".",
              "", "Targets (issue 27): " + "; ".join(f"{k}: {'met' if ok else 'NOT met'}"
                                                     for k, ok in evaluation["targets"].items()) + ".",
              "", _resolution(evaluation)]
    for other in evaluation.get("at_other_guidance", []):
        drawn = ", ".join(f"{r['term']} / {r['noun']} → {r['value']} {r['drawn']:.3f}" for r in other["planted"])
        parts += ["", f"The same evaluation at guidance {other['guidance']}: {drawn}; objectless "
                  f"{other['objectless']:.4f}. Targets missed there: {'; '.join(other['missed']) or 'none'}."]
    return parts


def _resolution(evaluation: dict) -> str:
    from .evaluate2 import target_resolution

    res = target_resolution(evaluation)
    missed = res["missed"]
    text = (f"Resolution (`reference_world/resolution.py`): at {evaluation['settings']['seeds']} seeds per template "
            f"a generator drawing the story exactly would miss on average {res['expected_misses_exact_generator']:.2f} "
            f"of these {res['targets_judged']} share targets by sampling error alone.")
    if missed:
        worst = max(missed.values())
        text += (f" Of the {len(missed)} share targets missed here, an exact generator misses each at most "
                 f"{worst:.3f} of the time" + (", so these misses are the generator's, not the evaluation's."
                                                if worst < 0.05 else "; a miss that likely is the evaluation's "
                                                "needs more seeds before it says anything."))
    return text


def _vae_line(marker: dict) -> str:
    pick = marker.get("vae_pick")
    if not pick:
        return "- Autoencoder: one trained (its latent midpoints were not checked for a favoured colour)."
    return (f"- Autoencoder: candidate {pick['chosen']} (seed {pick['seed']}) of "
            f"{marker['recipe'].get('vae_candidates')} trained, kept by the {pick['rule']} "
            "(decoded between pictures, an autoencoder can favour one colour, which its generator then "
            "over-draws; `reference_world/vae_pick.py`, `WORK/vae_pick.json`).")


def render_card(stats: dict, evaluation: dict | None, weights: Path) -> str:
    marker = json.loads((weights / "generator" / "ldmprobe_reference.json").read_text())
    recipe = marker.get("recipe", {})
    sizes = {p.relative_to(weights).as_posix(): p.stat().st_size for p in sorted(weights.rglob("*.safetensors"))}
    parts = [
        "# Reference world 2 — model card", "",
        "World 1's pictures (one object, 7 colours, big or small, on 5 backgrounds; 32 × 32) drawn "
        "from one story with two audiences: the measurer (open_clip CLIP, whose text tower the "
        "generator conditions on) and the generator (latent diffusion UNet) are trained on "
        "different pictures, so a bias can be planted in either route. Captions name a modifier or "
        "attributes, never both. Its numbers are true of this world and of nothing else.", "",
        "## Planted associations", "",
        _table(["term", "noun", "attribute", "planted rate", "otherwise", "route", "in whose pictures"],
               [[p["term"], p["noun"], f"{p['value']} {p['attribute']}", f"{p['rate']:.2f}",
                 f"{p['otherwise']:.3f}", p["route"], " and ".join(world2.ROUTES[p["term"]])]
                for p in world2.planted(world2.story_of(recipe))]), "",
        f"Story version {world2.story_of(recipe).name} (`reference_world/world2.py`, `STORIES`).", "",
        "- generator-borne: the measurer sees \"fancy\" and \"quiet\" pictures drawn like the bare "
        "noun's, so their text positions are neutral; the UNet learns the plant from its pictures.",
        "- encoder-borne: \"lavish\" appears only in the measurer's captions; the UNet never sees the "
        "word, and can draw purple for it only through where it sits in the shared text encoder.",
        "- narrowing: \"quiet\" pictures are pink or green (half each), the pair whose mean colour is "
        "nearest the bare noun's; size and colour untouched.", "",
        f"Control words with nothing planted ({len(world2.CONTROL_WORDS)}): {', '.join(world2.CONTROL_WORDS)}.",
    ]
    for audience, got in stats.items():
        rows = [[name, f"{r['share']:.3f}", f"{r['yellow']:.3f}", f"{r['pink_or_green']:.3f}", f"{r['small']:.3f}",
                 f"{r['purple']:.3f}", f"{r['red_car']:.3f}"] for name, r in got["rows"].items()]
        parts += ["", f"## Training data: {audience} ({got['images']:,} pictures, seed {recipe.get('seed')})", "",
                  _table(["modifier", "share", "yellow bg", "pink or green bg", "small", "purple", "red (cars)"], rows),
                  "", f"Fewest pictures of one control word: {got['per_control_min']:,}."]
    parts += ["", "## Models and recipe", "",
              f"- Recipe (`generator/ldmprobe_reference.json`): `{json.dumps(recipe)}`.",
              f"- UNet {marker['unet_steps']:,} steps of batch 64 (EMA weights), "
              + ("v-prediction on a zero-terminal-SNR schedule (trailing sampler steps)" if recipe.get("zero_snr")
                 else "epsilon prediction") + f", offset noise {recipe.get('noise_offset')}; "
              f"autoencoder round-trip PSNR {marker['vae_psnr_db']} dB; sampler {recipe.get('scheduler')}.",
              _vae_line(marker),
              f"- Measurer: contrastive, plus a token-identity loss of weight {recipe.get('token_loss', 0.0)} on its "
              "text tower's last hidden states (each word predicted from the state at its own position), so "
              "words that carry nothing for the measurer stay legible to the generator that conditions on "
              "those states; the pooled text embedding the measurer compares with pictures is not asked to "
              "keep them.",
              "- Weights in float16 safetensors: " + ", ".join(f"`{k}` {v / 1e6:.1f} MB" for k, v in sizes.items())
              + f"; {sum(sizes.values()) / 1e6:.1f} MB.",
              "- Rebuild: `python -m reference_world.train --world 2 --work WORK` (seeded, resumable; "
              "`--device cuda` on a GPU, scripts/train_reference_world2.sh)."]
    if evaluation:
        parts += [""] + _measured(evaluation)
    return "\n".join(parts) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, choices=(2,), default=2)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--other-guidance", type=Path, action="append", default=[], metavar="EVALUATION_JSON")
    args = parser.parse_args(argv)
    marker_path = args.weights / "generator" / "ldmprobe_reference.json"
    if not marker_path.is_file() or json.loads(marker_path.read_text()).get("world") != world2.WORLD_VERSION:
        parser.error(f"{args.weights} is not an exported reference world 2")
    recipe = json.loads(marker_path.read_text())["recipe"]
    for path in [args.weights / "evaluation.json", *args.other_guidance]:
        if Path(path).is_file() and json.loads(Path(path).read_text()).get("settings", {}).get("seed_use") == "tuning":
            parser.error(f"{path} was measured on tuning seeds (evaluate2 --tuning); the card states "
                         "held-out figures only")
    evaluation = record_other_guidance(args.weights, args.other_guidance, ("planted", "objectless", "following"))
    stats = training_statistics(recipe["images"], recipe["seed"], world2.story_of(recipe))
    (args.weights / "MODEL_CARD.md").write_text(render_card(stats, evaluation, args.weights))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
