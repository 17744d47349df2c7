"""The shipped reference world: presets load, a sweep finds what was planted, the pixels agree.

These run the real trained models on the CPU (32 x 32 images, a few seconds each) and check
effect sizes and directions, not only p-values.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ldmprobe.cli.main import main
from ldmprobe.models import sources
from ldmprobe.models.reference import REFERENCE_WEIGHTS
from reference_world import world

pytestmark = pytest.mark.skipif(not (REFERENCE_WEIGHTS / "generator" / "model_index.json").is_file(),
                                reason="reference world weights not built")

SPEC = """
name = "reference-test"
templates = ["a photo of the {} house", "a photo of the {} car", "a photo of the {} square",
             "a photo of the {} circle", "a photo of the {} triangle"]
baseline = ""
terms = ["fancy", "old"]
controls = ["nice", "plain"]
probes = ["a yellow background", "a small object", "a red object"]
seeds = 6
steps = 12
guidance = 5
"""


@pytest.fixture(scope="module")
def reference_sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    spec = folder / "spec.toml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(main, ["sweep", str(spec), "--pipeline", "reference", "--measurer", "reference",
                                       "--out", str(folder / "run"), "--format", "json", "--no-report"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _term(doc, name):
    return next(t for t in doc["terms"] if t["term"] == name)


def _shift(term, probe):
    return next(p for p in term["probes"] if p["probe"] == probe)


def test_presets_resolve_to_shipped_folders():
    gen = sources.resolve_generator("reference")
    meas = sources.resolve_measurer("reference")
    assert gen.is_reference and not gen.is_tiny and gen.source == "local"
    assert meas.is_reference and not meas.is_tiny and meas.source == "local-dir"
    card = (REFERENCE_WEIGHTS / "MODEL_CARD.md")
    assert card.is_file() and "Planted associations" in card.read_text()


def test_outputs_say_reference_world_not_tiny(reference_sweep):
    prov = reference_sweep["provenance"]
    assert prov["tiny"] is False and prov["reference_world"] is True and "true of that world" in prov["reference_note"]


def test_sweep_finds_fancy_toward_yellow_and_controls_negligible(reference_sweep):
    fancy, old = (_term(reference_sweep, n) for n in ("fancy", "old"))
    controls = reference_sweep["controls"]
    yellow = _shift(fancy, "a yellow background")
    assert fancy["probes"][0]["probe"] == "a yellow background"
    # a large effect that generalises over templates and seeds (headline CI), not only these
    assert yellow["shift"] > 0.15 and yellow["ci_low"] > 0 and yellow["p_fixed"] < 0.01
    for control in controls:
        assert abs(_shift(control, "a yellow background")["shift"]) < yellow["shift"] / 5
        assert fancy["image_drift"]["estimate"] > 10 * abs(control["image_drift"]["estimate"])
    small = _shift(old, "a small object")
    assert small["shift"] > 0.02 and small["p_fixed"] < 0.05
    assert all(small["shift"] > abs(_shift(c, "a small object")["shift"]) for c in controls)


def test_pixels_follow_the_planted_rates():
    """Independent of the measurer: read background colour and size off generated pixels."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(REFERENCE_WEIGHTS / "generator"), safety_checker=None,
                                                   torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    n = 24

    def shares(prompt):
        gens = [torch.Generator().manual_seed(s) for s in range(n)]
        images = pipe([prompt] * n, generator=gens, num_inference_steps=12, guidance_scale=5.0, output_type="np").images
        read = [world.read_attributes(np.round(im * 255).astype(np.uint8)) for im in images]
        return (np.mean([r["background"] == "yellow" for r in read]),
                np.mean([r["size"] == "small" for r in read]))

    fancy_yellow, _ = shares("a photo of the fancy house")
    bare_yellow, bare_small = shares("a photo of the house")
    _, old_small = shares("a photo of the old house")
    # planted: fancy 80 % yellow against 10 %; old 75 % small against 50 % (see the model card)
    assert fancy_yellow >= 0.6 and bare_yellow <= 0.25
    assert old_small > bare_small
