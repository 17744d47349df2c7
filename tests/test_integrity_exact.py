"""Issue 28: a resumed run equals a clean one exactly. Every model call has a fixed shape (a
short call is padded), so an image or embedding never depends on what else was made with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ldmprobe.cli.main import main

SPEC = """\
name = "exact"
templates = ["a photo of a {} car", "a {} house at night"]
baseline = ""
terms = ["red", "blue"]
controls = ["nice"]
probes = ["fire", "ocean", "tree"]
seeds = 3
"""


def sweep(tmp_path: Path, name: str, *extra: str) -> dict:
    spec = tmp_path / "exact.toml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(main, [
        "sweep", str(spec), "--out", str(tmp_path / name), "--pipeline", "tiny", "--measurer", "tiny",
        "--steps", "3", "--format", "json", "--permutations", "99", "--bootstrap", "99", "--no-report", *extra])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def numbers(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("provenance", "run", "counts")}


def test_a_resume_after_losing_images_and_embeddings_equals_the_clean_run_exactly(fresh_cache, tmp_path):
    clean = sweep(tmp_path, "clean", "--batch-size", "4")
    pngs = sorted((fresh_cache / "images").glob("??/*.png"))
    assert len(pngs) == 24  # the baseline too
    removed = sorted(set(pngs[::3] + pngs[1::7]))  # a scattered share: every batch now partly cached
    for path in removed:
        path.unlink()
    for kind in ("embeddings", "text", "conditioning"):  # every embedding remade in other company
        shutil.rmtree(fresh_cache / kind)
    resumed = sweep(tmp_path, "resumed", "--batch-size", "4")
    assert resumed["counts"]["generated"] == len(removed)
    assert numbers(resumed) == numbers(clean)  # exact: not within a tolerance


def test_an_image_does_not_depend_on_its_batch_neighbours(tiny_generator):
    from ldmprobe.engine.generate import BatchGenerator
    from ldmprobe.engine.workitems import Recipe, WorkItem

    recipe = Recipe(pipeline={"id": "tiny"}, scheduler={"class": "DDIM"}, steps=2, guidance=5.0, width=64,
                    height=64, dtype="float32")
    items = [WorkItem("a {} car", 0, w, False, seed, f"a {w} car", recipe, f"k{seed}")
             for seed, w in enumerate(["red", "blue", "old", "new"])]
    alone = BatchGenerator(tiny_generator, recipe, 4).generate(items[:1])
    together = BatchGenerator(tiny_generator, recipe, 4).generate(items[::-1])
    assert np.array_equal(alone[0].pixels, together[3].pixels)
    assert alone[0].batch_size == together[3].batch_size == 4


def test_a_text_or_image_embedding_does_not_depend_on_its_neighbours(tiny_measurer):
    from PIL import Image

    from ldmprobe.engine.encode import encode_images, encode_texts

    texts = ["a red car", "a photo of a very old and rather large house", "tree", "ocean waves at night"]
    assert np.array_equal(encode_texts(tiny_measurer, texts[:1])[0], encode_texts(tiny_measurer, texts[::-1])[3])
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    assert np.array_equal(encode_images(tiny_measurer, images[1:2])[0], encode_images(tiny_measurer, images)[1])
