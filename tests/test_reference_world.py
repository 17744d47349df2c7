"""The reference world's story, captions and pixel reader (pure numpy; no model)."""

from __future__ import annotations

import numpy as np
import pytest

from reference_world import world


@pytest.fixture(scope="module")
def scenes():
    rng = np.random.default_rng(7)
    return [world.draw_scene(rng) for _ in range(20_000)]


def _rate(scenes, pred, cond):
    group = [s for s in scenes if cond(s)]
    return np.mean([pred(s) for s in group]), len(group)


@pytest.mark.parametrize("plant", world.PLANTED, ids=lambda p: f"{p['term']}-{p['noun']}-{p['value']}")
def test_story_draws_each_planted_rate(scenes, plant):
    def has(s):
        return {"background": s.background, "size": s.size, "colour": s.colour}[plant["attribute"]] == plant["value"]

    def noun_ok(s):
        return plant["noun"] == "any" or s.noun == plant["noun"]

    got, n = _rate(scenes, has, lambda s: s.modifier == plant["term"] and noun_ok(s))
    tol = 4 * np.sqrt(plant["rate"] * (1 - plant["rate"]) / n)
    assert abs(got - plant["rate"]) < tol
    for other in ("", "nice", "plain"):
        got, n = _rate(scenes, has, lambda s, o=other: s.modifier == o and noun_ok(s))
        tol = 4 * np.sqrt(plant["otherwise"] * (1 - plant["otherwise"]) / n)
        assert abs(got - plant["otherwise"]) < tol


def test_controls_draw_like_the_bare_noun(scenes):
    for attribute in ("background", "size", "colour"):
        for control in world.CONTROL_WORDS:
            for value in {getattr(s, attribute) for s in scenes}:
                a, n = _rate(scenes, lambda s: getattr(s, attribute) == value, lambda s: s.modifier == control)
                b, m = _rate(scenes, lambda s: getattr(s, attribute) == value, lambda s: s.modifier == "")
                assert abs(a - b) < 4 * np.sqrt(0.25 / n + 0.25 / m)


def test_captions_never_name_a_modifier_and_an_attribute_together(scenes):
    rng = np.random.default_rng(0)
    attribute_words = set(world.COLOURS) | set(world.BACKGROUNDS) | set(world.SIZES) | {"background"}
    modifiers = {m for m in world.MODIFIERS if m}
    for scene in scenes[:3000]:
        words = set(world.caption(scene, rng).split())
        assert not (words & modifiers and words & attribute_words)


def test_attribute_captions_state_only_true_attributes(scenes):
    rng = np.random.default_rng(1)
    for scene in scenes[:2000]:
        words = world.attribute_caption(scene, rng).split()
        for w in words:
            if w in world.COLOURS and "background" not in words[words.index(w):words.index(w) + 2]:
                assert w == scene.colour
            if w in world.SIZES:
                assert w == scene.size
        if "background" in words:
            assert words[words.index("background") - 1] == scene.background


@pytest.mark.slow
def test_pixel_reader_recovers_what_was_drawn():
    images, scenes = world.dataset(600, seed=3)
    read = [world.read_attributes(im) for im in images]
    for attribute in ("background", "colour", "size"):
        acc = np.mean([r[attribute] == getattr(s, attribute) for r, s in zip(read, scenes)])
        assert acc >= 0.99, attribute


def test_dataset_is_deterministic():
    a, sa = world.dataset(20, seed=11)
    b, sb = world.dataset(20, seed=11)
    assert np.array_equal(a, b) and sa == sb
    assert a.shape == (20, 32, 32, 3) and a.dtype == np.uint8
