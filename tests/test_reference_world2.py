"""Reference world 2's story per audience: planted rates, routes, controls (pure numpy; no model)."""

from __future__ import annotations

import numpy as np
import pytest

from ldmprobe.reference import world, world2


def _draw(audience, count, seed):
    rng = np.random.default_rng([seed, 99])
    return [world2.draw_scene(rng, audience) for _ in range(count)]


@pytest.fixture(scope="module")
def gen_scenes():
    return _draw("generator", 30_000, 5)


@pytest.fixture(scope="module")
def mes_scenes():
    return _draw("measurer", 30_000, 6)


def _rate(scenes, pred, cond):
    group = [s for s in scenes if cond(s)]
    return float(np.mean([pred(s) for s in group])), len(group)


def _has(plant):
    values = plant["value"].split("+")
    return lambda s: getattr(s, plant["attribute"]) in values


def _noun_ok(plant):
    return lambda s: plant["noun"] == "any" or s.noun == plant["noun"]


def test_enough_controls_and_single_token_words():
    from ldmprobe.reference.nets import build_tokenizer

    assert len(world2.CONTROL_WORDS) >= 19
    words = world2.CONTROL_WORDS + world2.TERMS
    assert len(set(words)) == len(words)
    assert not set(words) & (set(world.COLOURS) | set(world.BACKGROUNDS) | set(world.SIZES) | set(world.NOUNS))
    ids = build_tokenizer()(list(words)).input_ids
    assert all(len(row) == 3 for row in ids)  # <start> word <end>: one token each


@pytest.mark.parametrize("plant", world2.PLANTED, ids=lambda p: f"{p['term']}-{p['noun']}-{p['value']}")
def test_each_plant_is_drawn_at_its_rate_in_its_audience_only(gen_scenes, mes_scenes, plant):
    has, noun_ok = _has(plant), _noun_ok(plant)
    for audience, scenes in (("generator", gen_scenes), ("measurer", mes_scenes)):
        planted_here = plant["route"] == "both" or (audience == "generator") == (plant["route"] == "generator-borne")
        if audience == "generator" and plant["term"] == world2.ENCODER_WORD:
            assert not any(s.modifier == plant["term"] for s in scenes)
            continue
        got, n = _rate(scenes, has, lambda s: s.modifier == plant["term"] and noun_ok(s))
        want = plant["rate"] if planted_here else plant["otherwise"]
        assert n > 250
        assert abs(got - want) <= 4 * np.sqrt(max(want * (1 - want), 0.01) / n) + 1e-9, (audience, got, want)
        for other in ("",) + world2.CONTROL_WORDS[:3]:
            got, n = _rate(scenes, has, lambda s, o=other: s.modifier == o and noun_ok(s))
            assert abs(got - plant["otherwise"]) <= 4 * np.sqrt(plant["otherwise"] * (1 - plant["otherwise"]) / n)


def test_narrowing_keeps_two_backgrounds_half_each_and_moves_the_mean_colour_little(gen_scenes):
    quiet = [s for s in gen_scenes if s.modifier == world2.NARROW_WORD]
    counts = {b: sum(s.background == b for s in quiet) / len(quiet) for b in world.BACKGROUNDS}
    assert {b for b, c in counts.items() if c > 0} == set(world2.NARROW_BACKGROUNDS)
    for b in world2.NARROW_BACKGROUNDS:
        assert abs(counts[b] - 0.5) < 4 * np.sqrt(0.25 / len(quiet))
    # size and colour are untouched
    for attribute in ("size", "colour"):
        for value in world2.ATTRIBUTE_VALUES[attribute]:
            a, n = _rate(gen_scenes, lambda s: getattr(s, attribute) == value, lambda s: s.modifier == "quiet")
            b, m = _rate(gen_scenes, lambda s: getattr(s, attribute) == value, lambda s: s.modifier == "")
            assert abs(a - b) < 4 * np.sqrt(0.25 / n + 0.25 / m)
    # the chosen pair's mean background colour is the nearest of every pair to the bare noun's
    bare = world2.distribution("generator", "", "car")["background"]
    mean = sum(np.array(world.BACKGROUNDS[b], float) * p for b, p in bare.items())
    names = list(world.BACKGROUNDS)
    dists = {(a, b): np.linalg.norm((np.array(world.BACKGROUNDS[a]) + world.BACKGROUNDS[b]) / 2 - mean)
             for i, a in enumerate(names) for b in names[i + 1:]}
    assert min(dists, key=dists.get) == world2.NARROW_BACKGROUNDS


def test_encoder_borne_word_never_appears_in_generator_captions(gen_scenes):
    rng = np.random.default_rng(3)
    for scene in gen_scenes[:20_000]:
        assert world2.ENCODER_WORD not in world2.caption(scene, rng).split()
    assert world2.ENCODER_WORD not in world2.modifier_shares("generator")
    with pytest.raises(ValueError):
        world2.distribution("generator", world2.ENCODER_WORD, "car")


def test_encoder_borne_word_is_captioned_for_the_measurer(mes_scenes):
    rng = np.random.default_rng(4)
    lavish = [s for s in mes_scenes if s.modifier == world2.ENCODER_WORD][:500]
    captions = [world2.caption(s, rng) for s in lavish]
    assert 150 < sum(world2.ENCODER_WORD in c.split() for c in captions) < 350  # about half modifier-style


@pytest.mark.parametrize("audience", world2.AUDIENCES)
def test_controls_carry_nothing(gen_scenes, mes_scenes, audience):
    scenes = gen_scenes if audience == "generator" else mes_scenes
    bare = [s for s in scenes if s.modifier == ""]
    for control in world2.CONTROL_WORDS:
        group = [s for s in scenes if s.modifier == control]
        assert len(group) > 350
        assert world2.distribution(audience, control, "car") == world2.distribution(audience, "", "car")
        for attribute, values in world2.ATTRIBUTE_VALUES.items():
            for value in values:
                a = np.mean([getattr(s, attribute) == value for s in group])
                b = np.mean([getattr(s, attribute) == value for s in bare])
                assert abs(a - b) < 4.5 * np.sqrt(0.25 / len(group) + 0.25 / len(bare)), (control, attribute, value)


def test_generator_borne_word_is_neutral_for_the_measurer():
    for noun in world.NOUNS:
        assert world2.distribution("measurer", "fancy", noun) == world2.distribution("measurer", "", noun)
        assert world2.distribution("measurer", "quiet", noun) == world2.distribution("measurer", "", noun)
    assert world2.distribution("generator", "fancy", "car")["colour"]["red"] == world2.FANCY_CAR_RED
    assert world2.distribution("generator", "fancy", "house")["colour"]["red"] == pytest.approx(1 / 7)


def test_distributions_sum_to_one_and_shares_match():
    for audience in world2.AUDIENCES:
        shares = world2.modifier_shares(audience)
        assert sum(shares.values()) == pytest.approx(1)
        for modifier in shares:
            for attribute, dist in world2.distribution(audience, modifier, "car").items():
                assert sum(dist.values()) == pytest.approx(1)
                assert set(dist) == set(world2.ATTRIBUTE_VALUES[attribute])
    with pytest.raises(ValueError):
        world2.modifier_shares("nobody")


def test_captions_never_name_a_modifier_and_an_attribute_together(gen_scenes):
    rng = np.random.default_rng(0)
    attribute_words = set(world.COLOURS) | set(world.BACKGROUNDS) | set(world.SIZES) | {"background"}
    modifiers = set(world2.TERMS + world2.CONTROL_WORDS)
    for scene in gen_scenes[:3000]:
        words = set(world2.caption(scene, rng).split())
        assert not (words & modifiers and words & attribute_words)


def test_dataset_is_deterministic_and_audiences_differ():
    a, sa = world2.dataset(30, seed=11, audience="generator")
    b, sb = world2.dataset(30, seed=11, audience="generator")
    c, sc = world2.dataset(30, seed=11, audience="measurer")
    assert np.array_equal(a, b) and sa == sb and sa != sc
    assert a.shape == (30, 32, 32, 3) and a.dtype == np.uint8
    read = [world2.read_attributes(im) for im in a]
    assert all(r["background"] == s.background for r, s in zip(read, sa))
