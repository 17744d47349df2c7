"""Fine-tune the shipped world-2 UNet onto another story, then judge it on tuning seeds.

    python scripts/story_finetune.py WORK [--story 2.1] [--steps 2000] [--seeds 16]
        [--guidance 1 1.5 2] [--threads 2] [--evaluate-only] [--with-shipped]

Story "2.1" (``reference_world.world2.STORIES``) plants "fancy" -> yellow at 0.75 instead of 0.92
(so guidance has room to amplify it: issue 26's trend) and gives 60 % of "fancy" pictures a car
instead of 40 % (the conjunction "fancy car" -> red was under-drawn at guidance 1). Its measurer
pictures are the shipped story's, and its palette is, so the shipped measurer and autoencoder
stay and only the UNet learns the new rates: a CPU-sized alternative to retraining the whole
world (``reference_world.train --world 2``, about three hours here, minutes on a GPU).

The UNet continues from the shipped one on the story's 60,000 generator pictures (the shipped
recipe's seed; ``reference_world.train.fine_tune_shipped``), exported to WORK/weights with the
story named in its recipe, so ``evaluate2`` judges it by that story. Then, per ``--guidance``,
``evaluate2`` on the tuning seeds (never the card's held-out ones) writes WORK/tuning-G-sN.json (N seeds) and
this prints the plants (drawn against planted), "fancy"'s yellow share per level (the trend
issue 26 needs), the purple and small shares of the bare noun and controls, and the targets
missed. ``--with-shipped`` evaluates the shipped world the same way (WORK/shipped-G-sN.json).
WORK resumes a fine-tune it holds. About 1 UNet step/s on 2 CPU threads when the machine is
quiet (2,000 steps took 55 min here beside other jobs), plus 3 min to render and encode.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHIPPED = ROOT / "ldmprobe" / "reference" / "weights"
SPEC = ROOT / "prompts" / "reference-world.toml"


def judge(weights: Path, guidance: float, seeds: int, out: Path) -> dict:
    from reference_world import evaluate2

    if out.exists():
        return json.loads(out.read_text())
    report = evaluate2.run(weights, SPEC, seeds, guidance, "cpu", first_seed=evaluate2.TUNING_SEED)
    out.write_text(json.dumps(report, indent=1))
    return report


def summary(name: str, reports: dict[float, dict]) -> None:
    print(f"\n{name}")
    for guidance, report in reports.items():
        plants = ", ".join(f"{p['term']}/{p['noun']} {p['value']} {p['drawn']:.3f} ({p['rate']:.2f})"
                           for p in report["planted"])
        quiet = ["bare"] + list(report["settings"]["controls"])
        purple = np.mean([report["words"][w]["drawn"]["colour"]["purple"] for w in quiet])
        small = np.mean([report["words"][w]["drawn"]["size"]["small"] for w in quiet])
        missed = [k for k, ok in report["targets"].items() if not ok]
        print(f"  guidance {guidance:g} (story {report['story']}): {plants}")
        print(f"    bare + controls: purple {purple:.3f}, small {small:.3f}; objectless "
              f"{report['objectless']:.4f}; targets missed {len(missed)} of {len(report['targets'])}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--story", default="2.1")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=16,
                        help="tuning seeds per template (4 gave purple 0.140 and 8 gave 0.224 for one model)")
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 1.5, 2.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--evaluate-only", action="store_true")
    parser.add_argument("--with-shipped", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.evaluate_only:
        weights = args.work / "weights"
    else:
        from reference_world.train import fine_tune_shipped

        weights = fine_tune_shipped(args.work, args.steps, story=args.story,
                                    experiment=f"fine-tuned {args.steps} steps onto story {args.story}")
    tuned = {g: judge(weights, g, args.seeds, args.work / f"tuning-{g:g}-s{args.seeds}.json") for g in args.guidance}
    summary(f"fine-tuned onto story {args.story} ({args.steps} steps), {args.seeds} tuning seeds per template", tuned)
    if args.with_shipped:
        shipped = {g: judge(SHIPPED, g, args.seeds, args.work / f"shipped-{g:g}-s{args.seeds}.json") for g in args.guidance}
        summary("shipped world (story 2.0), same seeds", shipped)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
