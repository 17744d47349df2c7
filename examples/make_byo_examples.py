"""Make the small example files of README's "Your own images and embeddings" (examples/byo/).

Everything comes from the shipped reference world (a small model trained on synthetic pictures
with planted associations: "fancy" -> a yellow background, planted in the generator's pictures;
"nice" and "plain" are two of its control words), nothing is downloaded:

- spec.toml, vocab.txt   a small sweep of that world (4 templates x 4 terms x 6 seeds, at the
                         steps and guidance of prompts/reference-world.toml);
- embeddings.npz         what the sweep analysed (``ldmprobe sweep ... --export-embeddings``);
- images/, manifest.csv  its 96 images, listed by template, term and seed;
- assoc/                 iEAT-layout CSVs (fancy and plain images; yellow and other background
                         words) and two image folders, for ``ldmprobe assoc --set``.

Run from the repository root (it generates 96 small images: under a minute on a CPU):

    python examples/make_byo_examples.py
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np

import ldmprobe
from ldmprobe.render.terminal import Terminal
from ldmprobe.usecases.sweep import sweep

OUT = Path(__file__).resolve().parent / "byo"
#: The shipped spec's settings (its guidance is set there, in one place).
SHIPPED = tomllib.loads((Path(__file__).resolve().parents[1] / "prompts" / "reference-world.toml").read_text())
SPEC = f"""# A small sweep of the shipped reference world (made by examples/make_byo_examples.py).
name = "byo-example"
templates = ["a photo of the {{}} house", "the {{}} car", "the {{}} square", "the {{}} circle"]
baseline = ""
terms = ["fancy"]
controls = ["nice", "plain"]
probes = ["a yellow background", "a blue background", "a small object"]
seeds = 6
steps = {SHIPPED["steps"]}
guidance = {SHIPPED["guidance"]}
width = 32
height = 32
"""
YELLOW = ["a yellow background", "yellow", "a yellow picture", "on yellow"]
OTHER = ["a blue background", "a grey background", "a pink background", "a green background"]
VOCAB = sorted({*YELLOW, *OTHER, "a small object", "a big object", "a red object", "a house", "a car",
                "a square", "a circle", "red", "blue", "old", "small", "big"})


def write_ieat_csv(path: Path, rows: np.ndarray, labels: list[str], prompts: list[str] | None = None) -> None:
    """The iEAT layout: a leading unnamed index column, one column per dimension, then labels."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", *range(rows.shape[1]), "img", *(["prompt"] if prompts else [])])
        for i, row in enumerate(rows):
            writer.writerow([i, *(f"{v:.6g}" for v in row), labels[i], *([prompts[i]] if prompts else [])])


def run_sweep(work: Path) -> tuple[ldmprobe.SweepResult, Path]:
    spec = ldmprobe.load_spec(OUT / "spec.toml")
    options = ldmprobe.SweepOptions(pipeline="reference", measurer="reference", device="cpu",
                                    vocab=(str(OUT / "vocab.txt"),), out=work / "run", permutations=999,
                                    bootstrap=999)
    result = sweep(spec, options, Terminal(), report=False, export_embeddings=OUT / "embeddings.npz")
    return result, work / "run"


def copy_images(run: Path) -> list[dict]:
    """The run's images as images/T-TERM-sSEED.png, and manifest.csv listing them."""
    items = [json.loads(line) for line in (run / "items.jsonl").read_text().splitlines()]
    (OUT / "images").mkdir()
    rows = []
    for item in items:
        name = f"images/t{item['template_index']}-{item['term'] or 'baseline'}-s{item['seed']}.png"
        shutil.copyfile(run / item["image"], OUT / name)
        rows.append({"template": item["template"], "term": item["term"], "seed": item["seed"], "path": name})
    with (OUT / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["template", "term", "seed", "path"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def write_assoc_sets(rows: list[dict]) -> None:
    """X: the fancy images, Y: the plain ones (prompt column: a prompt's images are one unit);
    A / B: yellow and other background words (text embeddings); and X / Y as image folders."""
    arrays = np.load(OUT / "embeddings.npz")
    assoc = OUT / "assoc"
    assoc.mkdir()
    names = list(arrays["vocab"])
    for set_name, words in (("yellow", YELLOW), ("other-backgrounds", OTHER)):
        vectors = np.stack([arrays["vocab_embedding"][names.index(w)] for w in words])
        write_ieat_csv(assoc / f"{set_name}.csv", vectors, words)
    prompts = {(str(t), str(m)): p for t, m, p in zip(arrays["template"], arrays["term"], _prompts(arrays))}
    for term in ("fancy", "plain"):
        keep = [i for i, m in enumerate(arrays["term"]) if m == term]
        labels = [f"{arrays['template'][i]}|seed {arrays['seed'][i]}" for i in keep]
        write_ieat_csv(assoc / f"{term}.csv", arrays["image"][keep], labels,
                       [prompts[(str(arrays["template"][i]), term)] for i in keep])
        (assoc / term).mkdir()
        for row in rows:
            if row["term"] == term:
                shutil.copyfile(OUT / row["path"], assoc / term / Path(row["path"]).name)


def _prompts(arrays) -> list[str]:
    return [" ".join(t.replace("{}", m).split()) for t, m in zip(arrays["template"], arrays["term"])]


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    (OUT / "spec.toml").write_text(SPEC, encoding="utf-8")
    (OUT / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    with tempfile.TemporaryDirectory() as work:
        result, run = run_sweep(Path(work))
        rows = copy_images(run)
    write_assoc_sets(rows)
    fancy = result.term("fancy")
    print(f"wrote {OUT}: {len(rows)} images; fancy drift {fancy.image_drift.estimate:.3g}, top probe "
          f"{fancy.probes[0].probe!r} ({fancy.probes[0].shift:+.3g})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
