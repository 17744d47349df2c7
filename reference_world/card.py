"""Write the reference world's model card from the world's constants, the training data and an evaluation.

    python -m reference_world.evaluate --seeds 24 --format json > ldmprobe/reference/weights/evaluation.json
    python -m reference_world.evaluate --seeds 24 --guidance 7.5 --format json > OTHER.json
    python -m reference_world.card --other-guidance OTHER.json

The card states the world, every planted association with its planted rate, the training
data's measured statistics, and the measured recovery (from ``evaluation.json``).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from ldmprobe.models.reference import REFERENCE_WEIGHTS

from . import world
from .nets import MEASURER_CONFIG
from .train import N_IMAGES, SEED


def training_statistics(count: int = N_IMAGES, seed: int = SEED) -> dict:
    """Counts and rates in the training scenes (the same draws `train.stage_data` renders)."""
    rng = np.random.default_rng(seed)
    scenes = [world.draw_scene(rng) for _ in range(count)]
    by_mod = Counter(s.modifier for s in scenes)

    def rate(pred, cond) -> float:
        group = [s for s in scenes if cond(s)]
        return float(np.mean([pred(s) for s in group])) if group else float("nan")

    mods = list(world.MODIFIERS)
    return {
        "images": count,
        "modifier_share": {m or "(none)": by_mod[m] / count for m in mods},
        "yellow_background": {m or "(none)": rate(lambda s: s.background == "yellow", lambda s, m=m: s.modifier == m)
                              for m in mods},
        "small_object": {m or "(none)": rate(lambda s: s.size == "small", lambda s, m=m: s.modifier == m)
                         for m in mods},
        "red_car": {m or "(none)": rate(lambda s: s.colour == "red",
                                         lambda s, m=m: s.modifier == m and s.noun == "car") for m in mods},
    }


#: Wall-clock time of each training stage, from the training logs (one thread, the other core busy).
MEASURED_TRAINING = {
    "measurer 2,500 steps": "~10 min", "autoencoder 1,200 steps": "~7 min",
    "UNet 4,000 steps": "~75 min", "UNet continuation 3,500 steps": "~68 min (0.85 steps/s)",
}


def _with_interval(rate: float, n: int) -> str:
    from scipy.stats import binomtest

    k = round(rate * n)
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return f"{k / n:.2f} ({ci.low:.2f}–{ci.high:.2f})"


def _continuation(marker: dict) -> str:
    history = marker.get("continued_from") or []
    if not history:
        return ""
    return (" Trained in stages: " + ", then ".join(
        f"from step {h['unet_steps']:,} (UNet sha256 {h['unet_sha256'][:12]}…)" for h in history)
        + f" to step {marker['unet_steps']:,}.")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_card(stats: dict, evaluation: dict | None, weights: Path) -> str:
    sizes = {p.relative_to(weights).as_posix(): p.stat().st_size for p in sorted(weights.rglob("*"))
             if p.is_file() and not p.name.startswith(".")}
    marker = json.loads((weights / "generator" / "ldmprobe_reference.json").read_text())
    mods = list(stats["modifier_share"])
    parts = [
        "# The reference world — model card",
        "",
        "A small, really trained latent diffusion model (`generator/`, a diffusers "
        "StableDiffusionPipeline) and CLIP-style measurer (`measurer/`, open_clip format) for a "
        "synthetic world of 32 × 32 pictures: one object (square, circle, triangle, house, car) in one "
        "of 7 colours, big or small, on one of 5 background colours. Its numbers are true of this "
        "world and of nothing else: it is ldmprobe's known-truth instrument check and offline demo.",
        "",
        "Captions name either a modifier (\"a photo of the fancy house\") or some attributes (\"the "
        "small red car on a yellow background\"), never both, so a modifier can carry an association "
        "only through where training put it. The generator conditions on the measurer's own text "
        "tower (converted exactly to a transformers `CLIPTextModel`), as Stable Diffusion 1.x "
        "conditions on the CLIP whose image tower is then often used to measure it.",
        "",
        "## Planted associations",
        "",
        _table(["term", "noun", "attribute", "planted rate", "otherwise"],
               [[p["term"], p["noun"], f"{p['value']} {p['attribute']}", f"{p['rate']:.2f}",
                 f"{p['otherwise']:.3f}"] for p in world.PLANTED]),
        "",
        f"Control words with nothing planted: {', '.join(world.CONTROL_WORDS)}.",
        "",
        f"## Training data ({stats['images']:,} pictures, seed {SEED})",
        "",
        _table(["modifier", "share of pictures", "yellow background", "small object", "red (cars only)"],
               [[m, f"{stats['modifier_share'][m]:.3f}", f"{stats['yellow_background'][m]:.3f}",
                 f"{stats['small_object'][m]:.3f}", f"{stats['red_car'][m]:.3f}"] for m in mods]),
        "",
        "Half the captions are modifier-style, half attribute-style (each attribute named with "
        "probability 0.5-0.6, the noun replaced by \"object\" a quarter of the time, 12 % "
        "background-only captions).",
        "",
        "## Models",
        "",
        f"- Measurer: open_clip CLIP, config `{json.dumps(MEASURER_CONFIG)}`.",
        f"- Generator: UNet trained {marker['unet_steps']:,} steps of batch 64 (EMA weights), AutoencoderKL "
        f"32×32 → 16×16×4 (round-trip PSNR {marker['vae_psnr_db']} dB on training pictures), DDIM scheduler."
        + _continuation(marker),
        "- Training time on one thread of a shared 2-core CPU (measured from the training log): "
        + ", ".join(f"{stage} {minutes}" for stage, minutes in MEASURED_TRAINING.items()) + ".",
        "- Weights in float16 safetensors: " + ", ".join(f"`{k}` {v / 1e6:.1f} MB" for k, v in sizes.items()
                                                         if k.endswith(".safetensors"))
        + f"; {sum(sizes.values()) / 1e6:.1f} MB in all.",
        "- Rebuild: `python -m reference_world.train --work WORK_DIR --unet-steps 4000` (seeded, "
        "resumable), then for each continuation `python -m reference_world.train --work WORK_DIR2 "
        "--continue-from ldmprobe/reference/weights --unet-steps N` (the sha256 of the UNet it starts "
        "from is in `generator/ldmprobe_reference.json`).",
    ]
    if evaluation:
        s = evaluation["settings"]
        parts += ["", "## Measured recovery", "",
                  f"`python -m reference_world.evaluate --seeds {s['seeds']} --guidance {s['guidance']}`: prompts "
                  f"\"{s['template'].format('TERM', 'NOUN')}\", {s['steps']} DDIM steps, guidance "
                  f"{s['guidance']}, paired seeds; attributes read from the pixels, not by the measurer.", ""]
        rows = []
        for r in evaluation["planted"]:
            rates = {k[5:-1]: v for k, v in r.items() if k.startswith("rate[")}
            n = r["n_images_per_term"]
            rows.append([f"{r['term']} / {r['noun']} → {r['value']} {r['attribute']}",
                         f"{r['planted_rate']:.2f} / {r['planted_otherwise']:.3f}",
                         _with_interval(rates[r['term']], n), _with_interval(rates['bare'], n),
                         ", ".join(f"{c} {rates[c]:.3f}" for c in world.CONTROL_WORDS),
                         str(r["n_images_per_term"])])
        parts.append(_table(["association", "planted (term / otherwise)", "drawn under term (95 % CI)",
                             "drawn, bare noun (95 % CI)", "drawn, controls", "images per term"], rows))
        parts += ["", "Intervals are Wilson score intervals over the images (scipy `binomtest`); the images "
                  "share seeds across terms, so each interval is for one term's rate on its own."]
        if evaluation.get("images_generated"):
            n_images, seconds = evaluation["images_generated"], evaluation["generation_seconds"]
            parts += ["", f"Generation speed on this CPU (one thread): {n_images / seconds:.1f} images/s "
                      f"({n_images:,} images of 32 × 32, {s['steps']} steps with guidance, batch 64, in {seconds:.0f} s)."]
        parts += ["", "Words followed (share of images showing the named attribute): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in evaluation["following"].items()) + ".",
                  "", "Measurer zero-shot accuracy on 1,000 fresh pictures: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in evaluation["measurer_zero_shot"].items()) + ".",
                  "", "Targets (from the project's issue): "
                  + "; ".join(f"{k}: {'met' if ok else 'NOT met'}" for k, ok in evaluation["targets"].items())
                  + "."]
        for other in evaluation.get("at_other_guidance", []):
            drawn = ", ".join(f"{r['term']} / {r['noun']} → {r['value']} {r['attribute']} "
                              f"{r['rate[' + r['term'] + ']']:.3f} (bare {r['rate[bare]']:.3f})"
                              for r in other["planted"])
            missed = "; ".join(other["missed"]) or "none"
            parts += ["", f"The same evaluation at guidance {other['guidance']}: {drawn}; words followed "
                      + ", ".join(f"{k} {v:.3f}" for k, v in other["following"].items())
                      + f". Targets missed there: {missed}. Stronger guidance draws a planted association "
                      "above its training rate (and the bare noun's minority below it): the shipped "
                      f"spec and this card use guidance {s['guidance']}."]
    return "\n".join(parts) + "\n"


def record_other_guidance(weights: Path, paths, fields: tuple[str, ...]) -> dict | None:
    """weights/evaluation.json (None when there is none), with each `evaluate --format json` in
    ``paths`` (another guidance) recorded under at_other_guidance: its ``fields`` and the
    targets it missed. The file is rewritten when paths are given."""
    evaluation_file = weights / "evaluation.json"
    evaluation = json.loads(evaluation_file.read_text()) if evaluation_file.exists() else None
    if evaluation is not None and paths:
        others = {o["guidance"]: o for o in evaluation.get("at_other_guidance", [])}
        for path in paths:
            other = json.loads(Path(path).read_text())
            guidance = other["settings"]["guidance"]
            others[guidance] = {"guidance": guidance, **{f: other[f] for f in fields},
                                "missed": [k for k, ok in other["targets"].items() if not ok]}
        evaluation["at_other_guidance"] = list(others.values())
        evaluation_file.write_text(json.dumps(evaluation, indent=2) + "\n")
    return evaluation


def main(argv=None) -> int:
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--world", type=int, choices=(1, 2), default=1)
    if first.parse_known_args(argv)[0].world == 2:
        from .card2 import main as main2

        return main2(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="--world 2 writes reference world 2's card (card2.py)")
    parser.add_argument("--world", type=int, choices=(1, 2), default=1)
    parser.add_argument("--weights", type=Path, default=REFERENCE_WEIGHTS)
    parser.add_argument("--other-guidance", type=Path, action="append", default=[], metavar="EVALUATION_JSON",
                        help="an `evaluate --format json` at another guidance, recorded in evaluation.json "
                             "under at_other_guidance and summarised in the card")
    args = parser.parse_args(argv)
    evaluation = record_other_guidance(args.weights, args.other_guidance,
                                       ("planted", "following", "measurer_zero_shot"))
    card = render_card(training_statistics(), evaluation, args.weights)
    (args.weights / "MODEL_CARD.md").write_text(card)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
