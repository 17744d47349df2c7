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
    """At its slot an image is the same in any company; at another position it may not be."""
    from ldmprobe.engine.generate import BatchGenerator
    from ldmprobe.engine.workitems import Recipe, WorkItem

    recipe = Recipe(pipeline={"id": "tiny"}, scheduler={"class": "DDIM"}, steps=3, guidance=7.5, width=64,
                    height=64, dtype="float32")
    items = [WorkItem("a {} car", 0, w, False, seed, f"a photo of a {w} car", recipe, f"k{seed}")
             for seed, w in enumerate(["red", "blue", "old", "new", "fancy", "plain"])]
    slots = {item.key: i for i, item in enumerate(items)}  # plan order: k0 at 0, ..., k3 at 3, k4 at 0, k5 at 1
    alone = BatchGenerator(tiny_generator, recipe, 4, slots).generate([items[3]])
    together = BatchGenerator(tiny_generator, recipe, 4, slots).generate([items[5], items[3], items[4]])
    clean = BatchGenerator(tiny_generator, recipe, 4, slots).generate(items[:4])
    assert np.array_equal(alone[0].pixels, clean[3].pixels)
    assert np.array_equal([r.pixels for r in together if r.item.key == "k3"][0], clean[3].pixels)
    assert alone[0].batch_size == clean[3].batch_size == 4
    layouts = BatchGenerator(tiny_generator, recipe, 4, slots).layouts([items[5], items[1], items[3]])
    assert [[i and i.key for i in call] for call in layouts] == [[None, "k5", None, "k3"], [None, "k1", None, None]]


def test_a_text_or_image_embedding_does_not_depend_on_its_neighbours(tiny_measurer):
    from PIL import Image

    from ldmprobe.engine.encode import encode_images, encode_texts

    texts = ["a red car", "a photo of a very old and rather large house", "tree", "ocean waves at night"]
    assert np.array_equal(encode_texts(tiny_measurer, texts[:1])[0], encode_texts(tiny_measurer, texts[::-1])[3])
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    assert np.array_equal(encode_images(tiny_measurer, images[1:2])[0], encode_images(tiny_measurer, images)[1])


# ---------------------------------------------------------------------- the call shape (issue 28)


def other_cache(tmp_path: Path, cache_root: Path, name: str) -> Path:
    root = tmp_path / name
    root.mkdir()
    (root / "models").symlink_to(cache_root / "models", target_is_directory=True)
    return root


def png_bytes(cache: Path) -> dict:
    return {p.stem: p.read_bytes() for p in (cache / "images").glob("??/*.png")}


def killed_after(tmp_path: Path, cache: Path, n_images: int, *extra: str) -> int:
    """A sweep subprocess killed (-9) once ``n_images`` images are cached; how many were."""
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = tmp_path / "exact.toml"
    spec.write_text(SPEC)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ldmprobe", "sweep", str(spec), "--out", str(tmp_path / "killed"), "--pipeline", "tiny",
         "--measurer", "tiny", "--steps", "3", "--no-report", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "LDMPROBE_CACHE": str(cache), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 240
    while len(png_bytes(cache)) < n_images and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return len(png_bytes(cache))


def test_batch_size_changes_no_number_and_no_pixel(fresh_cache, cache_root, tmp_path, monkeypatch):
    """--batch-size 1, 4, and a run killed at --batch-size 2 then resumed at 2: every results.json
    number and every PNG byte identical (the calls keep the device's shape, 4 on the CPU)."""
    four = sweep(tmp_path, "four", "--batch-size", "4")
    runs = {}
    for name, extra in (("one", ("--batch-size", "1")), ("resumed", ("--batch-size", "2"))):
        cache = other_cache(tmp_path, cache_root, f"cache-{name}")
        monkeypatch.setenv("LDMPROBE_CACHE", str(cache))
        if name == "resumed":
            left = killed_after(tmp_path, cache, 5, *extra)
            assert 5 <= left < 24, left  # stopped part-way: the rest is made by the resume
        runs[name] = (sweep(tmp_path, name, *extra), png_bytes(cache))
    assert runs["resumed"][0]["counts"]["generated"] == 24 - left
    reference = png_bytes(fresh_cache)
    assert len(reference) == 24
    for doc, pngs in runs.values():
        assert numbers(doc) == numbers(four)  # exact
        assert pngs == reference  # byte for byte
    assert four["config"]["batch_size"] == four["config"]["call_shape"] == 4  # whatever --batch-size said


def test_another_call_shape_is_another_recipe_never_mixed(fresh_cache, tmp_path):
    from ldmprobe.store.png_check import png_recipe

    default = sweep(tmp_path, "default")
    assert sweep(tmp_path, "four", "--call-shape", "4")["counts"]["generated"] == 0  # the CPU's default: same keys
    two = sweep(tmp_path, "two", "--call-shape", "2", "--batch-size", "8")
    assert two["counts"]["generated"] == 24  # no image of shape 4 reused
    assert two["config"]["batch_size"] == 2 and default["config"]["batch_size"] == 4
    recipes = [png_recipe(p) for p in (fresh_cache / "images").glob("??/*.png")]
    assert {(r.get("call_shape"), r["batch_size"]) for r in recipes} == {(2, 2), (None, 4)}
    assert sweep(tmp_path, "two-again", "--call-shape", "2")["counts"]["generated"] == 0


def test_out_of_memory_stops_with_exit_2_keeping_what_was_made(fresh_cache, tmp_path, monkeypatch):
    from ldmprobe.engine import generate

    real, calls = generate.BatchGenerator._run, []

    def run_then_oom(self, items):
        calls.append(len(items))
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, items)

    monkeypatch.setattr(generate.BatchGenerator, "_run", run_then_oom)
    spec = tmp_path / "exact.toml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(main, [
        "sweep", str(spec), "--out", str(tmp_path / "oom"), "--pipeline", "tiny", "--measurer", "tiny",
        "--steps", "3", "--batch-size", "12", "--no-report"])
    assert result.exit_code == 2, result.output
    assert "ran out of memory in a generation call of 4 image(s)" in result.stderr
    assert "--call-shape 2" in result.stderr and "Traceback" not in result.output
    assert len(png_bytes(fresh_cache)) == 8  # the two calls before it, stored though their step was not done
    assert not (tmp_path / "oom" / "results.json").exists()
    monkeypatch.setattr(generate.BatchGenerator, "_run", real)
    assert sweep(tmp_path, "after", "--batch-size", "12")["counts"]["generated"] == 16
