"""Does the measurer's confusion depend on how pictures were made? Two labelled sets compared.

    python -m reference_world.calibration /tmp/cal5 --generated --world 2 --guidance 5
    python benchmarks/measurer_confusion_sets.py prompts/calibration/reference-world /tmp/cal5

A corrected rate inverts the confusion matrix the spec's calibration set gives; a sweep over
several guidance levels corrects every level with that one matrix, which is right only if the
measurer confuses options alike on pictures made at each level. This labels both sets (folders
laid out GROUP/OPTION/*.png, read with the spec's attribute groups) with the measurer exactly as
the sweep does and prints, per group and true option, each frequent label's rate in both sets
and a chi-square test of homogeneity of the two rows (scipy; options neither set uses dropped;
approximate where a confusion has few pictures, so a screen, not a verdict).

Measured (docs/NOTES.md, ninth session): the shipped set (guidance 2) against one made at
guidance 5, 100 pictures per option: no true option's row differs (colour p >= 0.12; brown read
as red 0.12 against 0.18, p 0.45; background and size read perfectly in both).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--spec", type=Path, default=ROOT / "prompts" / "reference-world.toml")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from PIL import Image
    from scipy.stats import chi2_contingency

    from ldmprobe.models.loader import ModelLoader
    from ldmprobe.specs.calibration import calibration_files
    from ldmprobe.specs.sweep import load_spec
    from measurer_confusion import confusion, measurer_labels

    spec = load_spec(str(args.spec))
    measurer = ModelLoader.from_names(pipeline=None, revision=None, measurer=spec.measurer or "reference",
                                      needs_generator=False).get_measurer()
    raw = getattr(measurer.model, "logit_scale", None)
    scale = float(raw.detach().float().exp().clamp(max=100).item()) if raw is not None else 100.0
    groups = tuple((g.name, g.options) for g in spec.attributes)
    matrices = {}
    for folder in (args.first, args.second):
        files = calibration_files(folder, groups)
        for name, options in groups:
            pictures = [Image.open(p).convert("RGB") for p, _ in files[name]]
            labels = measurer_labels(measurer, spec, pictures, scale)[name]
            matrices[folder, name] = confusion([options[i] for _, i in files[name]], labels, tuple(options))
    for name, options in groups:
        a, b = matrices[args.first, name], matrices[args.second, name]
        print(f"\n## {name}: accuracy {np.trace(a) / a.sum():.3f} ({args.first}) against "
              f"{np.trace(b) / b.sum():.3f} ({args.second})")
        print("| true option | p (same row) | labels: first / second |\n|---|---|---|")
        for i, option in enumerate(options):
            ra, rb = a[i] / max(a[i].sum(), 1), b[i] / max(b[i].sum(), 1)
            table = np.array([a[i], b[i]])
            table = table[:, table.sum(0) > 0]
            p = chi2_contingency(table)[1] if table.shape[1] > 1 else 1.0
            cells = ", ".join(f"{options[j]} {ra[j]:.2f} / {rb[j]:.2f}" for j in range(len(options))
                              if max(ra[j], rb[j]) >= 0.03)
            print(f"| {option} | {p:.2g} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
