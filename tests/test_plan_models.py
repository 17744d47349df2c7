"""A plan's models read in one pass (models.plan) agree with each piece read on its own, and a
spec checked once by load_spec equals one checked the ordinary way."""

from __future__ import annotations

import tomllib

import pytest

from ldmprobe.models import configs, runtime, sources
from ldmprobe.models.plan import resolve_models

PROMPTS = ["a photo of a car", "a photo of a red car", "blurry"]


@pytest.mark.parametrize("name", ["tiny", "tiny-sd3"])
def test_resolve_models_agrees_with_each_piece(cache_root, name):
    from transformers import AutoTokenizer

    got = resolve_models(name, None, "tiny", offline=True, device="cpu", dtype="auto", prompts=PROMPTS,
                         guidances=[None, 3.0], negative_prompt=None)
    ref = sources.resolve_generator(name)
    folder = sources.locate_generator(ref, offline=True, configs_only=True)
    assert got.folder == folder and got.generator_tiny and (got.device, got.dtype) == runtime.pick_device("cpu")
    assert got.pipeline == sources.generator_identity(ref, folder)  # read again, piece by piece
    assert got.configs.native_size == configs.native_image_size(folder)
    assert got.configs.scheduler == configs.scheduler_identity(folder)
    assert got.configs.default_guidance == configs.default_guidance(folder)
    assert got.configs.t5 == configs.t5_tokenizer(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
    assert got.texts.clip_counts == {p: len(tokenizer(p, truncation=False).input_ids) for p in PROMPTS}
    if name == "tiny-sd3":
        t5 = AutoTokenizer.from_pretrained(str(folder / got.configs.t5[0]))
        assert got.texts.t5_counts == {p: len(t5(p, truncation=False).input_ids) for p in PROMPTS}
        assert got.texts.t5_limit == 256
    else:
        assert got.texts.t5_counts is None
    assert got.texts.clip_limit == 77 and got.texts.measurer_context == 77 and got.notes == ()


def test_guidance_notes_keep_each_levels_order():
    """Levels in order, each note once (the negative prompt's after the first level's)."""
    notes = runtime.guidance_notes("distilled", [3.0, 5.0, 3.0], "blurry")
    assert [n.split(" is ")[0].split(" has ")[0] for n in notes] == ["guidance 3", "the negative prompt", "guidance 5"]
    assert runtime.guidance_notes("none", [0.0], None) == [] and runtime.guidance_notes("cfg", [7.5], "x") == []


def test_a_spec_checked_once_equals_one_checked_twice(tmp_path):
    from ldmprobe.specs.sweep import load_spec, spec_from_dict

    text = ('name = "n"\ntemplates = ["a {} car", "the  {} house"]\nbaseline = ""\nterms = ["red", " old "]\n'
            'controls = ["small"]\nprobes = ["fire"]\nseeds = [3, 1]\nguidance = [3, 5]\nsteps = 7\nwidth = 64\n'
            '[attributes.colour]\nred = "a red thing"\nblue = "a blue thing"\n')
    path = tmp_path / "s.toml"
    path.write_text(text)
    assert load_spec(path) == spec_from_dict(tomllib.loads(text), source=str(path))
