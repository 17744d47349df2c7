"""Tests for ldmprobe.engine.workitems: recipes, item keys, plan order, seed pairing, shared keys."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import defaultdict

import pytest

from ldmprobe.engine.workitems import (
    KEY_VERSION,
    Recipe,
    canonical_json,
    item_key,
    key_document,
    work_items as plan,
    sha256_hex,
    unique_items,
)
from ldmprobe.specs.sweep import Spec, expand, load_spec


def make_recipe(**changes) -> Recipe:
    fields = dict(
        pipeline={"id": "stable-diffusion-v1-5/stable-diffusion-v1-5", "revision": "abc123"},
        scheduler={"class": "PNDMScheduler", "config": {"beta_start": 0.00085, "steps_offset": 1}},
        steps=30,
        guidance=7.5,
        width=512,
        height=512,
        dtype="float16",
        negative_prompt=None,
    )
    fields.update(changes)
    return Recipe(**fields)


def make_spec(**changes) -> Spec:
    fields = dict(
        name="t",
        templates=("a photo of a {} house", "a photo of the {} family's house"),
        baseline="",
        terms=("fancy", "poor", "African"),
        seeds=(0, 1, 2),
    )
    fields.update(changes)
    return Spec(**fields)


# --------------------------------------------------------------------------------------------
# Helpers


def test_canonical_json():
    obj = {"b": 1, "a": [1, 2.5, None, True], "é": "ü"}
    text = canonical_json(obj)
    assert text == '{"a":[1,2.5,null,true],"b":1,"é":"ü"}'
    assert canonical_json({"a": 1, "b": 2}) == canonical_json({"b": 2, "a": 1})
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_sha256_hex():
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert sha256_hex("") == empty == sha256_hex(b"")
    assert sha256_hex("é") == hashlib.sha256("é".encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# Keys


def test_item_key_is_sha256_of_the_documented_canonical_json():
    recipe = make_recipe()
    doc = {
        "pipeline": {"id": "stable-diffusion-v1-5/stable-diffusion-v1-5", "revision": "abc123"},
        "scheduler": {"class": "PNDMScheduler",
                      "config": {"beta_start": 0.00085, "steps_offset": 1}},
        "steps": 30,
        "guidance": 7.5,
        "width": 512,
        "height": 512,
        "dtype": "float16",
        "negative_prompt": None,
        "prompt": "a photo of a house",
        "seed": 3,
        "key_version": 1,
    }
    assert key_document(recipe, "a photo of a house", 3) == doc
    expected = hashlib.sha256(
        json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert item_key(recipe, "a photo of a house", 3) == expected
    assert KEY_VERSION == 1


def test_item_key_is_deterministic():
    a = item_key(make_recipe(), "a photo of a house", 0)
    b = item_key(make_recipe(), "a photo of a house", 0)
    assert a == b and len(a) == 64 and set(a) <= set("0123456789abcdef")  # a sha256 hex digest
    assert plan(make_spec(), make_recipe()) == plan(make_spec(), make_recipe())


@pytest.mark.parametrize(
    "changes",
    [
        {"steps": 31},
        {"guidance": 7.0},
        {"width": 768},
        {"height": 640},
        {"dtype": "float32"},
        {"negative_prompt": "blurry"},
        {"negative_prompt": ""},  # "" and None are different recipes (SDXL treats them apart)
        {"call_shape": 2},  # images per generation call, when not the device's default (issue 28)
        {"pipeline": {"id": "stable-diffusion-v1-5/stable-diffusion-v1-5", "revision": "def"}},
        {"pipeline": {"local": "sha256-of-config-files"}},
        {"scheduler": {"class": "DDIMScheduler",
                       "config": {"beta_start": 0.00085, "steps_offset": 1}}},
        {"scheduler": {"class": "PNDMScheduler",
                       "config": {"beta_start": 0.001, "steps_offset": 1}}},
    ],
)
def test_key_changes_with_every_recipe_field(changes):
    base = item_key(make_recipe(), "a photo of a house", 0)
    assert item_key(make_recipe(**changes), "a photo of a house", 0) != base


def test_key_changes_with_prompt_and_seed():
    recipe = make_recipe()
    base = item_key(recipe, "a photo of a house", 0)
    assert item_key(recipe, "a photo of a fancy house", 0) != base
    assert item_key(recipe, "a photo of a House", 0) != base  # the key hashes exact text
    assert item_key(recipe, "a photo of a house", 1) != base


def test_equal_recipes_give_equal_keys():
    base = make_recipe()
    # guidance 7 vs 7.0; dtype spellings; mapping order; JSON text of the mapping
    assert make_recipe(guidance=7) == make_recipe(guidance=7.0)
    assert item_key(make_recipe(guidance=7), "p", 0) == item_key(make_recipe(guidance=7.0), "p", 0)
    for spelling in ("fp16", "half", "torch.float16", "FP16"):
        assert make_recipe(dtype=spelling) == base
    reordered = make_recipe(pipeline={"revision": "abc123",
                                      "id": "stable-diffusion-v1-5/stable-diffusion-v1-5"})
    assert reordered == base and hash(reordered) == hash(base)
    as_text = make_recipe(pipeline=base.pipeline, scheduler=base.scheduler)
    assert as_text == base
    assert dataclasses.replace(base, steps=30) == base


def test_recipe_validation():
    for bad in (
        {"steps": 0},
        {"steps": True},
        {"guidance": -1},
        {"guidance": float("inf")},
        {"width": 0},
        {"pipeline": "not json"},
        {"pipeline": ["a", "list"]},
        {"scheduler": {"x": object()}},
        {"negative_prompt": 3},
    ):
        with pytest.raises(ValueError):
            make_recipe(**bad)
    with pytest.raises(ValueError):
        item_key(make_recipe(), "p", -1)
    with pytest.raises(ValueError):
        item_key(make_recipe(), "p", True)


def test_recipe_to_dict_is_json_safe_and_round_trips():
    recipe = make_recipe(negative_prompt="blurry")
    d = recipe.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["pipeline"]["revision"] == "abc123"
    assert Recipe(**d) == recipe


def test_call_shape_is_in_the_key_only_when_it_is_not_the_devices_default():
    """Issue 28: the default shape (None) keeps the keys every cache already holds (the documented
    document above has no ``call_shape``); any other shape is another recipe."""
    from ldmprobe.engine.workitems import call_shape, default_call_shape, recipe_call_shape

    assert default_call_shape("cuda:1") == 8 and default_call_shape("cpu") == default_call_shape("mps") == 4
    assert recipe_call_shape(None, "cpu") is None and recipe_call_shape(4, "cpu") is None
    assert recipe_call_shape(8, "cuda") is None and recipe_call_shape(8, "cpu") == 8 and recipe_call_shape(4, "cuda") == 4
    shaped = make_recipe(call_shape=2)
    assert call_shape(shaped, "cuda") == 2 and call_shape(make_recipe(), "cuda") == 8
    doc = key_document(shaped, "a photo of a house", 3)
    assert doc["call_shape"] == 2 and "call_shape" not in key_document(make_recipe(), "a photo of a house", 3)
    assert Recipe(**shaped.to_dict()) == shaped
    for item in plan(make_spec(), shaped):  # the plan's hashed-once key text agrees with the document
        assert item.key == sha256_hex(canonical_json(key_document(shaped, item.prompt, item.seed)))
    for bad in (0, -1, True, 2.0, "4"):
        with pytest.raises(ValueError, match="call_shape"):
            make_recipe(call_shape=bad)


# --------------------------------------------------------------------------------------------
# The plan


def test_plan_covers_every_template_term_seed_in_order():
    spec = make_spec()
    items = plan(spec, make_recipe())
    assert len(items) == len(spec.templates) * len(spec.all_terms) * len(spec.seeds) == 24
    expected = [
        (t, term, seed)
        for t in range(len(spec.templates))
        for term in ("", "fancy", "poor", "African")
        for seed in (0, 1, 2)
    ]
    assert [(i.template_index, i.term, i.seed) for i in items] == expected
    first = items[0]
    assert first.is_baseline and first.prompt == "a photo of a house"
    assert first.template == "a photo of a {} house"
    assert [i.is_baseline for i in items[:6]] == [True] * 3 + [False] * 3
    for item in items:
        assert item.prompt == expand(item.template, item.term)
        assert item.key == item_key(item.recipe, item.prompt, item.seed)
        assert item.is_baseline == (item.term == spec.baseline)
    assert len({i.key for i in items}) == len(items)


def test_seeds_are_paired():
    spec = make_spec(seeds=(11, 4, 7))
    items = plan(spec, make_recipe())
    seeds = defaultdict(list)
    for item in items:
        seeds[(item.template_index, item.term)].append(item.seed)
    assert len(seeds) == len(spec.templates) * len(spec.all_terms)
    for (t, term), got in seeds.items():
        assert got == [11, 4, 7]
        assert got == seeds[(t, spec.baseline)]


def test_keys_do_not_depend_on_position_or_other_terms():
    recipe = make_recipe()
    full = {(i.template, i.term, i.seed): i.key for i in plan(make_spec(), recipe)}
    # fewer terms, reversed templates, different seed order
    small = make_spec(templates=("a photo of the {} family's house", "a photo of a {} house"),
                      terms=("African",), seeds=(2, 0))
    for item in plan(small, recipe):
        assert item.key == full[(item.template, item.term, item.seed)]
    # a term's key is the same whether it is a term or the baseline
    swapped = make_spec(baseline="fancy", terms=("poor",))
    for item in plan(swapped, recipe):
        assert item.key == full[(item.template, item.term, item.seed)]


def test_shipped_specs_plan_with_distinct_keys():
    for name in ("fancy-house", "descriptors"):
        spec = load_spec(name)
        items = plan(spec, make_recipe())
        assert len(items) == len(spec.templates) * len(spec.all_terms) * len(spec.seeds)
        assert len({i.key for i in items}) == len(items)  # no two items share a key
        assert unique_items(items) == items


def test_items_with_the_same_prompt_share_a_key_and_both_are_kept():
    # both templates give "a house" for the empty baseline
    spec = make_spec(templates=("a {} house", "a house {}"), terms=("fancy",), seeds=(0, 1))
    items = plan(spec, make_recipe())
    assert len(items) == 2 * 2 * 2
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(item.key, []).append(item)
    shared = {key: group for key, group in groups.items() if len(group) > 1}
    assert len(shared) == 2  # one per seed
    for key, group in shared.items():
        assert [(i.template_index, i.term) for i in group] == [(0, ""), (1, "")]
        assert {i.prompt for i in group} == {"a house"}
    unique = unique_items(items)
    assert len(unique) == 6
    assert [i.key for i in unique] == list(dict.fromkeys(i.key for i in items))
    assert unique == unique_items(list(items))  # deterministic


def test_call_shape_is_refused_where_nothing_is_generated_and_below_one(tmp_path):
    from click.testing import CliRunner

    from ldmprobe.cli.main import main

    manifest = tmp_path / "images.csv"
    manifest.write_text("template,term,seed,path\n")
    refused = CliRunner().invoke(main, ["sweep", "fancy-house", "--images", str(manifest), "--call-shape", "2"])
    assert refused.exit_code == 2 and "--call-shape cannot be used with --images" in refused.output
    zero = CliRunner().invoke(main, ["sweep", "fancy-house", "--call-shape", "0", "--dry-run"])
    assert zero.exit_code == 2 and "--call-shape" in zero.output
