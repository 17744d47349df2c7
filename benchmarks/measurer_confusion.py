"""Where a reference-world run's attribute corrections fail: the measurer's confusion per term.

    ldmprobe sweep reference-world --out runs/rw && python benchmarks/measurer_confusion.py runs/rw [--group colour]

A corrected rate (issue 26) assumes that the measurer's confusion P(label | true option) is the
same for every term's pictures as for the calibration set's. This script tests that assumption
on a reference-world run: it reads every image's true options with the world's own pixel reader
(``reference_world.world.read_attributes``), labels it with the measurer exactly as the sweep does
(the spec's option texts in the probe templates, the measurer's own logit scale, argmax), and
prints, for the chosen group:
- the calibration set's confusion matrix (the one the sweep inverts) and the run's;
- per term (and per true background), the rate of each frequent confusion, with its count, beside
  the calibration set's, so a confusion that depends on the pictures (not only on the true option)
  shows as rates that differ between terms.
Needs the reference world (shipped) and a checkout (``reference_world/`` is not installed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # reference_world/ lives at the repository root

from reference_world import world  # noqa: E402


def measurer_labels(measurer, spec, images, scale: float) -> dict[str, np.ndarray]:
    from ldmprobe.analysis.rates import zero_shot
    from ldmprobe.engine.encode import encode_images, encode_in_templates

    vectors = encode_images(measurer, images)
    return {g.name: zero_shot(vectors, encode_in_templates(measurer, list(g.texts)), scale).argmax(1)
            for g in spec.attributes}


def confusion(truth: list[str], labels: np.ndarray, options: tuple[str, ...]) -> np.ndarray:
    out = np.zeros((len(options), len(options)), dtype=int)
    for t, j in zip(truth, labels):
        out[options.index(t), j] += 1
    return out


def print_matrix(title: str, m: np.ndarray, options: tuple[str, ...]) -> None:
    width = max(len(o) for o in options) + 1
    print(f"\n{title} (rows: true option by pixels; columns: the measurer's label)")
    print(" " * width + "".join(f"{o[:6]:>7}" for o in options))
    for o, row in zip(options, m):
        print(f"{o:<{width}}" + "".join(f"{v:>7d}" for v in row))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a reference-world sweep's run folder")
    ap.add_argument("--group", default="colour")
    ap.add_argument("--top", type=int, default=4, help="how many off-diagonal confusions to follow")
    args = ap.parse_args(argv)

    from ldmprobe.store.images import ImageStore
    from ldmprobe.models.loader import ModelLoader
    from ldmprobe.specs.calibration import calibration_files
    from ldmprobe.specs.sweep import load_spec

    run = Path(args.run)
    document = json.loads((run / "results.json").read_text())
    spec = load_spec(document["spec"]["source"])
    groups = {g.name: g for g in spec.attributes}
    if args.group not in groups:
        print(f"error: the spec has no attribute group {args.group!r} (it has {sorted(groups)})", file=sys.stderr)
        return 2
    options = tuple(groups[args.group].options)
    loader = ModelLoader.from_names(pipeline=None, revision=None, measurer=document["config"]["measurer"]["spec"],
                                    needs_generator=False)
    measurer = loader.get_measurer()
    raw = getattr(measurer.model, "logit_scale", None)
    scale = float(raw.detach().float().exp().clamp(max=100).item()) if raw is not None else 100.0

    store = ImageStore()
    items = [json.loads(line) for line in (run / "items.jsonl").read_text().splitlines()]
    images = [Image.open(run / i["image"] if i.get("image") else store.path(i["key"])).convert("RGB") for i in items]
    run_truth = [world.read_attributes(np.asarray(im)) for im in images]
    run_labels = measurer_labels(measurer, spec, images, scale)[args.group]

    files = calibration_files(spec.calibration, tuple((g.name, g.options) for g in spec.attributes))[args.group]
    cal_images = [Image.open(p).convert("RGB") for p, _ in files]
    cal_truth = [options[i] for _, i in files]
    cal_bg = [world.read_attributes(np.asarray(im))["background"] for im in cal_images]
    cal_labels = measurer_labels(measurer, spec, cal_images, scale)[args.group]

    cal_m = confusion(cal_truth, cal_labels, options)
    run_m = confusion([t[args.group] for t in run_truth], run_labels, options)
    print(f"# {run}: {len(items)} images; calibration set {spec.calibration}: {len(files)} pictures; "
          f"accuracy {np.trace(cal_m) / cal_m.sum():.3f} on the calibration set, "
          f"{np.trace(run_m) / run_m.sum():.3f} on the run")
    print_matrix("calibration set", cal_m, options)
    print_matrix("run", run_m, options)

    off = [(run_m[i, j], i, j) for i in range(len(options)) for j in range(len(options)) if i != j]
    pairs = [(i, j) for _, i, j in sorted(off, reverse=True)[: args.top]]

    def rate(truth, labels, i, j, keep) -> str:
        idx = [k for k, t in enumerate(truth) if t == options[i] and keep(k)]
        return f"{np.mean(labels[idx] == j):.2f} ({len(idx)})" if idx else "- (0)"

    heads = [f"{options[i]}->{options[j]}" for i, j in pairs]
    print("\nrate of each confusion among the pictures of that true option (count): per term")
    print("| term | " + " | ".join(heads) + " |\n|---|" + "---|" * len(heads))
    truth_g = [t[args.group] for t in run_truth]
    for term in sorted({i["term"] for i in items}):
        cells = [rate(truth_g, run_labels, i, j, lambda k, term=term: items[k]["term"] == term) for i, j in pairs]
        print(f"| {term or '(bare)'} | " + " | ".join(cells) + " |")
    print("| calibration set | " + " | ".join(rate(cal_truth, cal_labels, i, j, lambda k: True) for i, j in pairs) + " |")
    print("\nper true background: the run, then the calibration set")
    print("| background | " + " | ".join(f"{h} run | {h} cal." for h in heads) + " |\n|---|"
          + "---|" * (2 * len(heads)))
    for bg in groups["background"].options if "background" in groups else ():
        cells = [rate(truth_g, run_labels, i, j, lambda k, bg=bg: run_truth[k]["background"] == bg) + " | "
                 + rate(cal_truth, cal_labels, i, j, lambda k, bg=bg: cal_bg[k] == bg) for i, j in pairs]
        print(f"| {bg} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
