"""Reference world 2's story per audience: planted rates, routes, controls (pure numpy; no model)."""

from __future__ import annotations

import numpy as np
import pytest

from reference_world import world, world2


def _draw(audience, count, seed):
    rng = np.random.default_rng([seed, 99])
    return [world2.draw_scene(rng, audience) for _ in range(count)]


@pytest.fixture(scope="module")
def gen_scenes():
    return _draw("generator", 20_000, 5)


@pytest.fixture(scope="module")
def mes_scenes():
    return _draw("measurer", 20_000, 6)


def _rate(scenes, pred, cond):
    group = [s for s in scenes if cond(s)]
    return float(np.mean([pred(s) for s in group])), len(group)


def _has(plant):
    values = plant["value"].split("+")
    return lambda s: getattr(s, plant["attribute"]) in values


def _noun_ok(plant):
    return lambda s: plant["noun"] == "any" or s.noun == plant["noun"]


def test_enough_controls_and_single_token_words():
    from reference_world.nets import build_tokenizer

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
        assert n > 200
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
        assert len(group) > 300
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


def test_the_generators_fancy_pictures_lean_to_cars_and_no_other_words_do():
    scenes = _draw("generator", 60_000, 5)
    fancy = [s for s in scenes if s.modifier == "fancy"]
    car = np.mean([s.noun == "car" for s in fancy])
    assert abs(car - world2.FANCY_CAR_SHARE) < 4.5 * np.sqrt(0.24 / len(fancy))
    for word in ("", "old", "quiet", "nice"):
        group = [s for s in scenes if s.modifier == word]
        share = np.mean([s.noun == "car" for s in group])
        assert abs(share - 0.2) < 4.5 * np.sqrt(0.16 / len(group)), word
    measured = [s for s in _draw("measurer", 20_000, 6) if s.modifier == "fancy"]
    assert abs(np.mean([s.noun == "car" for s in measured]) - 0.2) < 4.5 * np.sqrt(0.16 / len(measured))
    assert sum(world2.noun_shares("generator", "fancy").values()) == pytest.approx(1)


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


# ------------------------------------------------------------------ recipe, evaluation, card
def test_recipe_is_recorded_reused_and_a_different_one_refused(tmp_path, capsys):
    from reference_world import train2

    args = train2.parse(["--work", str(tmp_path), "--unet-steps", "50", "--images", "300"])
    recipe = train2.recipe_from(args, tmp_path)
    assert recipe["unet_steps"] == 50 and recipe["images"] == 300 and recipe["seed"] == train2.SEED
    train2.check_recipe(tmp_path, recipe)
    resumed = train2.recipe_from(train2.parse(["--work", str(tmp_path)]), tmp_path)
    assert resumed == recipe  # a bare resume command follows the recorded recipe
    train2.check_recipe(tmp_path, resumed)
    other = train2.recipe_from(train2.parse(["--work", str(tmp_path), "--images", "400"]), tmp_path)
    with pytest.raises(SystemExit) as stop:
        train2.check_recipe(tmp_path, other)
    assert stop.value.code == 2 and "images: 300 recorded, 400 asked" in capsys.readouterr().err
    # the UNet's own settings may change until the UNet has a checkpoint, and are then recorded
    longer = train2.recipe_from(train2.parse(["--work", str(tmp_path), "--unet-steps", "60", "--zero-snr"]), tmp_path)
    train2.check_recipe(tmp_path, longer)
    assert "UNet settings changed" in capsys.readouterr().err
    assert train2.recipe_from(train2.parse(["--work", str(tmp_path)]), tmp_path) == longer
    (tmp_path / "unet.pt").write_bytes(b"")
    again = train2.recipe_from(train2.parse(["--work", str(tmp_path), "--unet-steps", "70"]), tmp_path)
    with pytest.raises(SystemExit) as stop:
        train2.check_recipe(tmp_path, again)
    assert stop.value.code == 2 and "unet_steps: 60 recorded, 70 asked" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--unet-steps", "0"], ["--images", "100"], ["--noise-offset", "1.5"],
                                 ["--scheduler", "euler"], ["--world", "3"]])
def test_bad_training_options_exit_2(tmp_path, bad):
    from reference_world import train2

    with pytest.raises(SystemExit) as stop:
        train2.parse(["--work", str(tmp_path)] + bad)
    assert stop.value.code == 2


def test_train_world_1_stays_the_default(monkeypatch):
    from reference_world import train, train2

    seen = []
    monkeypatch.setattr(train2, "main", lambda argv: seen.append(argv) or 0)
    assert train.main(["--world", "2", "--work", "x"]) == 0 and seen == [["--world", "2", "--work", "x"]]


SPEC = {"templates": ["a photo of the {} car", "the {} house"], "controls": ["nice", "plain"],
        "terms": ["fancy", "lavish", "quiet"], "steps": 15, "guidance": 5}


def _reads_from_story(word, n, rng):
    """Pixel-reader-like records drawn from the training story itself (a perfect generator)."""
    out = []
    for template in SPEC["templates"]:
        noun = template.split()[-1]
        audience = "measurer" if word == world2.ENCODER_WORD else "generator"
        for _ in range(n):
            s = world2.draw_scene(rng, audience, modifier=word, noun=noun)
            out.append({"background": s.background, "colour": s.colour, "size": s.size, "object_share": 0.2})
    return out


def test_evaluation_of_a_perfect_generator_meets_the_targets_and_of_a_collapsed_one_does_not():
    from reference_world import evaluate2

    rng = np.random.default_rng(0)
    reads = {w: _reads_from_story(w, 1500, rng) for w in [""] + SPEC["controls"] + SPEC["terms"]}
    rows = {(r["term"], r["noun"]): r for r in evaluate2.planted_rows(reads, SPEC)}
    assert abs(rows["fancy", "any"]["drawn"] - world2.FANCY_YELLOW) < 0.03
    assert abs(rows["fancy", "car"]["drawn"] - world2.FANCY_CAR_RED) < 0.04 and rows["fancy", "car"]["n_images"] == 1500
    assert abs(rows["lavish", "any"]["drawn"] - 0.80) < 0.03 and abs(rows["lavish", "any"]["drawn_bare"] - 1 / 7) < 0.03
    assert rows["quiet", "any"]["drawn"] == 1.0 and set(rows["quiet", "any"]["per_option"]) == {"pink", "green"}
    eff = rows["quiet", "any"]["effective_options"]
    assert abs(eff["quiet"] - 2) < 0.01
    p = np.array([0.1, 0.225, 0.225, 0.225, 0.225])
    assert abs(eff["bare"] - np.exp(-(p * np.log(p)).sum())) < 0.05  # 4.67: the story's own spread
    words = evaluate2.deviations(reads, SPEC)
    assert all(d["max_deviation"] < 0.05 for d in words.values())
    report = {"planted": list(rows.values()), "words": words, "settings": SPEC, "objectless": 0.0,
              "following": {"colour": 0.95}, "measurer_zero_shot": {"size": 0.99}}
    assert all(evaluate2.targets_met(report).values())
    # the bare noun's backgrounds collapse to grey, and 1 % of images lose their object
    collapsed = [dict(r, background="grey") if i % 10 < 7 else r for i, r in enumerate(reads[""])]
    words = evaluate2.deviations(dict(reads, **{"": collapsed}), SPEC)
    assert words["bare"]["where"] == "grey background" and words["bare"]["max_deviation"] > 0.4
    report.update(words=words, objectless=0.01)
    checks = evaluate2.targets_met(report)
    assert not checks["bare: every option within 10 points of training"]
    assert not checks["blank or objectless <= 0.5 %"]
    assert checks["nice: every option within 10 points of training"]


def test_expected_mixes_the_templates_nouns(tmp_path):
    from reference_world import evaluate2

    got = evaluate2.expected("fancy", SPEC["templates"])
    assert got["colour"]["red"] == pytest.approx((world2.FANCY_CAR_RED + 1 / 7) / 2)
    assert got["background"]["yellow"] == pytest.approx(world2.FANCY_YELLOW)
    assert evaluate2.expected("lavish", SPEC["templates"])["colour"]["purple"] == pytest.approx(0.80)
    bad = tmp_path / "bad.toml"
    bad.write_text('templates = ["a photo of the {} dog"]\nterms = []\ncontrols = []\nsteps = 15\nguidance = 5\n')
    with pytest.raises(ValueError, match="names none of"):
        evaluate2.load_spec(bad)


def test_world2_spec_lists_the_story_words():
    import tomllib
    from pathlib import Path

    spec = tomllib.loads((Path(__file__).parents[1] / "prompts" / "reference-world.toml").read_text())
    assert spec["name"] == "reference-world" and tuple(spec["controls"]) == world2.CONTROL_WORDS
    assert set(spec["terms"]) == set(world2.TERMS)
    assert spec["steps"] == 15 and spec["guidance"] > 0  # the guidance is chosen on tuning seeds
    assert spec["calibration"] == "calibration/reference-world"


def test_card_states_routes_recipe_and_every_target(tmp_path):
    import json

    from reference_world import card2, evaluate2, train2

    weights = tmp_path / "w"
    (weights / "generator" / "unet").mkdir(parents=True)
    (weights / "generator" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x" * 1000)
    recipe = dict(train2.RECIPE, images=400)
    (weights / "generator" / "ldmprobe_reference.json").write_text(json.dumps(
        {"ldmprobe_reference": 1, "unet_steps": 300, "vae_psnr_db": 30.1, "world": 2, "recipe": recipe}))
    rng = np.random.default_rng(1)
    reads = {w: _reads_from_story(w, 50, rng) for w in [""] + SPEC["controls"] + SPEC["terms"]}
    settings = dict(SPEC, spec="s.toml", seeds=50, first_seed=evaluate2.HELD_OUT_SEED, scheduler="DPMSolverMultistepScheduler")
    report = {"planted": evaluate2.planted_rows(reads, SPEC), "words": evaluate2.deviations(reads, SPEC),
              "settings": settings, "objectless": 0.0, "following": {"colour": 0.95},
              "measurer_zero_shot": {"size": 0.99}, "text_side": {t: {"purple colour": 0.1} for t in SPEC["terms"]}}
    report["targets"] = evaluate2.targets_met(report)
    (weights / "evaluation.json").write_text(json.dumps(report))
    other = dict(report, settings=dict(settings, guidance=7.5), targets={"x": False})
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert card2.main(["--weights", str(weights), "--other-guidance", str(tmp_path / "other.json")]) == 0
    text = (weights / "MODEL_CARD.md").read_text()
    for needle in ("encoder-borne", "generator-borne", "narrowing", "| lavish | any | purple colour | 0.80 |",
                   "Control words with nothing planted (20)", f"held-out seeds 1,000,000-{1_000_000 + 50 * len(SPEC['templates']) - 1:,}",
                   "at guidance 7.5", "Targets missed there: x", "Training data: measurer (400 pictures",
                   "effective number of background options"):
        assert needle in text, needle
    for name in report["targets"]:
        assert name in text
    assert json.loads((weights / "evaluation.json").read_text())["at_other_guidance"][0]["guidance"] == 7.5
    bad = tmp_path / "world1"
    (bad / "generator").mkdir(parents=True)
    (bad / "generator" / "ldmprobe_reference.json").write_text('{"unet_steps": 1}')
    with pytest.raises(SystemExit) as stop:
        card2.main(["--weights", str(bad)])
    assert stop.value.code == 2
    # figures measured on the tuning seeds (which chose the spec's settings) never reach the card
    tuned = dict(report, settings=dict(settings, seed_use="tuning", first_seed=evaluate2.TUNING_SEED))
    (tmp_path / "tuned.json").write_text(json.dumps(tuned))
    with pytest.raises(SystemExit) as stop:
        card2.main(["--weights", str(weights), "--other-guidance", str(tmp_path / "tuned.json")])
    assert stop.value.code == 2
    assert "Measurer: contrastive, plus a token-identity loss of weight 0.2" in text
    assert "zero-terminal-SNR" in text
    assert "Autoencoder: one trained" in text
    marker = json.loads((weights / "generator" / "ldmprobe_reference.json").read_text())
    marker["vae_pick"] = {"chosen": 2, "seed": train2.SEED + 2, "rule": "smallest share of the latent midpoints' most favoured colour"}
    (weights / "generator" / "ldmprobe_reference.json").write_text(json.dumps(marker))
    assert card2.main(["--weights", str(weights), "--other-guidance", str(tmp_path / "other.json")]) == 0
    assert f"candidate 2 (seed {train2.SEED + 2}) of 4 trained" in (weights / "MODEL_CARD.md").read_text()


def test_world2_spec_reference_rates_are_the_story_mixed_over_its_nouns():
    import tomllib
    from pathlib import Path

    from reference_world import evaluate2

    spec = tomllib.loads((Path(__file__).parents[1] / "prompts" / "reference-world.toml").read_text())
    rates = spec["reference_rates"]
    assert set(rates) == {""} | set(world2.TERMS)
    for word, groups in rates.items():
        want = evaluate2.expected(word, spec["templates"])
        assert set(groups) == set(world2.ATTRIBUTE_VALUES)
        for group, options in groups.items():
            assert set(options) == set(want[group]) == set(spec["attributes"][group])
            for option, rate in options.items():
                assert rate == pytest.approx(want[group][option], abs=6e-5), (word, group, option)
    assert rates["fancy"]["colour"]["red"] == pytest.approx(0.2983, abs=1e-4)
    assert rates["quiet"]["background"] == {"yellow": 0.0, "blue": 0.0, "grey": 0.0, "pink": 0.5, "green": 0.5}


def test_world2_spec_loads_by_bare_name_with_its_attributes():
    from ldmprobe.specs.sweep import load_spec

    spec = load_spec("reference-world")
    assert spec.controls == world2.CONTROL_WORDS and len(spec.controls) >= 19
    assert len(spec.prompts()) == len(spec.templates) * len(spec.all_terms)
    assert spec.reference_rates and spec.attributes and spec.steps == 15 and spec.guidance > 0


def _probe(**midpoints):
    shares = {c: 0.0 for c in world.COLOURS}
    shares.update(midpoints)
    return {"latent_midpoints": shares}


def test_vae_pick_keeps_the_candidate_whose_midpoints_favour_no_colour_most():
    from reference_world import vae_pick

    probes = [_probe(purple=0.52, orange=0.48), _probe(brown=0.29, orange=0.25, purple=0.46),
              _probe(brown=0.29, red=0.29, teal=0.42), _probe(purple=0.34, brown=0.32, red=0.34)]
    assert [vae_pick.favoured(p) for p in probes] == [("purple", 0.52), ("purple", 0.46), ("teal", 0.42),
                                                     ("red", 0.34)]
    assert vae_pick.choose(probes) == 3
    assert vae_pick.choose([_probe(red=0.4), _probe(teal=0.4)]) == 0  # ties: the lowest seed
    # pixel blends of the palette's 21 colour pairs (a brute-force nearest colour)
    blends = vae_pick.palette_blends()
    assert sum(blends.values()) == 21 and set(blends) == set(world.COLOURS)


@pytest.mark.slow
def test_vae_pick_trains_probes_installs_and_resumes(tmp_path, monkeypatch):
    import json

    import torch

    from reference_world import train, vae_pick

    images, _ = world2.dataset(120, 5, "generator")
    monkeypatch.setattr(train, "VAE_BATCH", 8)
    real_probe = vae_pick.latent_probe
    monkeypatch.setattr(vae_pick, "latent_probe", lambda vae, story: real_probe(vae, pictures=60, pairs=30, story=story))
    record = vae_pick.stage_vae_pick(tmp_path, {"images": images}, candidates=2, steps=3, seed=11)
    assert record == json.loads((tmp_path / "vae_pick.json").read_text())
    assert record["chosen"] == vae_pick.choose(record["probes"]) and record["seed"] == 11 + record["chosen"]
    for probe in record["probes"]:
        assert abs(sum(probe["latent_midpoints"].values()) - 1) < 1e-9 and probe["pairs"] == 30
    installed = torch.load(tmp_path / "vae.done.pt", weights_only=True)["model"]
    chosen = torch.load(tmp_path / "vae_candidates" / str(record["chosen"]) / "vae.done.pt", weights_only=True)["model"]
    other = torch.load(tmp_path / "vae_candidates" / str(1 - record["chosen"]) / "vae.done.pt", weights_only=True)["model"]
    assert all(torch.equal(installed[k], chosen[k]) for k in chosen)
    assert not all(torch.equal(installed[k], other[k]) for k in other)  # the seeds differ
    assert not list(tmp_path.glob("vae_candidates/*/vae.pt"))  # optimiser checkpoints dropped
    monkeypatch.setattr(train, "stage_vae", lambda *a, **k: pytest.fail("a finished pick retrained"))
    assert vae_pick.stage_vae_pick(tmp_path, {"images": images}, candidates=2, steps=3, seed=11) == record


def test_old_recipes_read_as_one_autoencoder_and_the_new_one_picks_among_four(tmp_path):
    import json

    from reference_world import train2

    (tmp_path / "recipe.json").write_text(json.dumps({k: v for k, v in train2.RECIPE.items() if k != "vae_candidates"}))
    assert train2.recipe_from(train2.parse(["--work", str(tmp_path)]), tmp_path)["vae_candidates"] == 1
    assert train2.RECIPE["vae_candidates"] == 4
    with pytest.raises(SystemExit):
        train2.parse(["--work", str(tmp_path), "--vae-candidates", "0"])


def test_the_shipped_story_is_2_0_and_every_default_draws_it():
    assert world2.STORIES["2.0"] == world2.SHIPPED == world2.Story() and world2.SHIPPED.name == "2.0"
    assert world2.planted(world2.SHIPPED) == world2.PLANTED
    assert (world2.SHIPPED.fancy_yellow, world2.SHIPPED.fancy_car_share) == (world2.FANCY_YELLOW, world2.FANCY_CAR_SHARE)
    images, scenes = world2.dataset(300, 4, "generator")
    again, scenes_again = world2.dataset(300, 4, "generator", world2.SHIPPED)
    assert np.array_equal(images, again) and scenes == scenes_again


def test_story_2_1_plants_fancy_lower_on_more_cars_and_leaves_the_measurer_alone():
    story = world2.STORIES["2.1"]
    rows = {(p["term"], p["noun"]): p for p in world2.planted(story)}
    assert rows["fancy", "any"]["rate"] == 0.75 and rows["fancy", "car"]["rate"] == world2.FANCY_CAR_RED
    rng = np.random.default_rng(5)
    fancy = [world2.draw_scene(rng, "generator", modifier="fancy", story=story) for _ in range(4000)]
    n = len(fancy)
    yellow = np.mean([s.background == "yellow" for s in fancy])
    cars = np.mean([s.noun == "car" for s in fancy])
    assert abs(yellow - 0.75) < 4 * np.sqrt(0.75 * 0.25 / n) and abs(cars - 0.60) < 4 * np.sqrt(0.24 / n)
    # the measurer's pictures do not depend on the generator-borne rates: the same text tower either way
    a, sa = world2.dataset(500, 6, "measurer", story)
    b, sb = world2.dataset(500, 6, "measurer", world2.SHIPPED)
    assert np.array_equal(a, b) and sa == sb


def test_a_recipe_names_its_story_and_the_weights_carry_it(tmp_path):
    import json

    from reference_world import evaluate2, train2

    assert world2.story_of({}) == world2.SHIPPED  # recipes from before stories had names
    assert world2.story_of({"story": "2.1"}) == world2.STORIES["2.1"]
    with pytest.raises(ValueError, match="unknown world-2 story"):
        world2.story_of({"story": "9"})
    assert train2.RECIPE["story"] == "2.1"
    assert train2.recipe_from(train2.parse(["--work", str(tmp_path), "--story", "2.0"]), tmp_path)["story"] == "2.0"
    with pytest.raises(SystemExit):
        train2.parse(["--work", str(tmp_path), "--story", "3"])
    weights = tmp_path / "w"
    assert world2.story_of_weights(weights) == world2.SHIPPED  # no marker
    (weights / "generator").mkdir(parents=True)
    (weights / "generator" / "ldmprobe_reference.json").write_text(json.dumps({"recipe": {"story": "2.1"}}))
    assert world2.story_of_weights(weights) == world2.STORIES["2.1"]
    # evaluate2 judges a world against its own story's rates
    assert evaluate2.expected("fancy", SPEC["templates"], world2.STORIES["2.1"])["background"]["yellow"] == 0.75
    rng = np.random.default_rng(2)
    reads = {w: _reads_from_story(w, 10, rng) for w in [""] + SPEC["controls"] + SPEC["terms"]}
    rows = evaluate2.planted_rows(reads, SPEC, world2.STORIES["2.1"])
    assert next(r for r in rows if r["term"] == "fancy" and r["noun"] == "any")["rate"] == 0.75
