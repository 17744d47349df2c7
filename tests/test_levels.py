"""Guidance and steps as factors of a sweep (issue 26): spec lists, one plan per level, the
trends of the rates over guidance (against an independent computation and on planted data),
their table and report section, and a tiny sweep over two guidance levels end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ldmprobe.analysis import rates
from ldmprobe.analysis.inference_crossed import crossed_test
from ldmprobe.analysis.trends import cell_slopes, option_trends
from ldmprobe.errors import ExitCode, SpecError
from ldmprobe.specs.sweep import load_spec, spec_from_dict
from tests.support import assert_whole, render_text

BASE = {"templates": ["a {} house"], "baseline": "", "terms": ["fancy"]}
GUIDANCE = (3.0, 5.0, 7.5)


# ----------------------------------------------------------------------------- the spec


def test_guidance_and_steps_lists_are_levels_and_round_trip():
    spec = spec_from_dict({**BASE, "guidance": [3, 5, 7.5], "steps": [10, 20]})
    assert spec.guidance == 3.0 and spec.guidance_levels == GUIDANCE  # the first level, and all of them
    assert spec.steps == 10 and spec.steps_levels == (10, 20)
    assert spec.levels == tuple((g, s) for g in GUIDANCE for s in (10, 20))  # crossed, guidance-major
    document = spec.to_dict()
    assert document["guidance"] == [3.0, 5.0, 7.5] and document["steps"] == [10, 20]
    again = spec_from_dict({k: v for k, v in document.items() if k != "source"})
    assert again.guidance_levels == GUIDANCE and again.steps_levels == (10, 20)


def test_a_single_value_or_a_list_of_one_is_a_single_level_as_before():
    for value in (7.5, [7.5]):
        spec = spec_from_dict({**BASE, "guidance": value})
        assert spec.guidance == 7.5 and spec.guidance_levels == () and spec.to_dict()["guidance"] == 7.5
        assert spec.levels == ((7.5, None),)
    assert spec_from_dict(BASE).levels == ((None, None),)


@pytest.mark.parametrize("extra, message", [
    ({"guidance": []}, "an empty list"),
    ({"guidance": [3, 5, 3]}, "3 listed twice"),
    ({"guidance": [3, "high"]}, "guidance item 2: guidance must be a number"),
    ({"guidance": [3, -1]}, "finite number ≥ 0"),
    ({"steps": [20, 0]}, "steps must be at least 1"),
    ({"steps": [20, 2.5]}, "steps must be a whole number"),
    ({"guidance": list(range(9)), "steps": [1, 2, 3, 4]}, "36 levels"),
])
def test_bad_level_lists_are_refused(extra, message):
    with pytest.raises(SpecError) as info:
        spec_from_dict({**BASE, **extra})
    assert message in str(info.value)


def test_a_bad_level_list_exits_2_before_any_model_loads(tmp_path, cli):
    path = tmp_path / "bad.toml"
    path.write_text('templates = ["a {} house"]\nbaseline = ""\nterms = ["fancy"]\nguidance = [3, 3]\n')
    result = CliRunner().invoke(cli, ["sweep", str(path), "--pipeline", "tiny", "--measurer", "tiny", "--dry-run"])
    assert result.exit_code == ExitCode.BAD_INPUT and "listed twice" in result.output


def test_the_shipped_guidance_variant_is_the_reference_world_at_three_scales():
    from reference_world import world2

    plain, levels = load_spec("reference-world").to_dict(), load_spec("reference-world-guidance").to_dict()
    assert levels["name"] == "reference-world-guidance" and len(set(levels["guidance"])) == 3
    # the first level is the main spec's own guidance (set in one place: prompts/reference-world.toml)
    assert levels["guidance"][0] == plain["guidance"] and len(set(levels["guidance"])) == len(levels["guidance"]) == 3
    assert set(plain["terms"]) == set(world2.TERMS) and plain["controls"] == list(world2.CONTROL_WORDS)
    same = ("name", "source", "guidance")
    assert {k: v for k, v in levels.items() if k not in same} == {k: v for k, v in plain.items() if k not in same}


def test_command_line_guidance_or_steps_set_one_value():
    from ldmprobe.engine.sweep_setup import SweepOptions, plan_levels

    spec = spec_from_dict({**BASE, "guidance": [3, 5], "steps": [10, 20]})
    assert plan_levels(spec, SweepOptions()) == [(3.0, 10), (3.0, 20), (5.0, 10), (5.0, 20)]
    assert plan_levels(spec, SweepOptions(guidance=4.0)) == [(4.0, 10), (4.0, 20)]
    assert plan_levels(spec, SweepOptions(guidance=4.0, steps=2)) == [(4.0, 2)]


@pytest.mark.slow
def test_each_level_is_planned_with_its_own_recipe_and_keys(tiny_generator):
    from ldmprobe.engine.sweep_setup import SweepOptions, dry_run_document, make_plan

    spec = spec_from_dict({**BASE, "seeds": 2, "guidance": [1.5, 4]})
    setup = make_plan(spec, SweepOptions(pipeline="tiny", measurer="tiny", steps=2))
    assert [(level.guidance, level.steps) for level in setup.levels] == [(1.5, 2), (4.0, 2)]
    assert setup.recipe == setup.levels[0].recipe and len(setup.items) == 2 * 4
    assert len({item.key for item in setup.items}) == 8  # every level's images are other images
    single = make_plan(spec_from_dict({**BASE, "seeds": 2, "guidance": 4}),
                       SweepOptions(pipeline="tiny", measurer="tiny", steps=2))
    assert [i.key for i in single.items] == [i.key for i in setup.levels[1].items]  # so the cache is shared
    assert not single.several_levels and "levels" not in dry_run_document(single)
    plan = dry_run_document(setup)
    assert plan["levels"] == [{"guidance": 1.5, "steps": 2}, {"guidance": 4.0, "steps": 2}]
    assert [(i["guidance"], i["steps"]) for i in plan["items"]] == [(1.5, 2)] * 4 + [(4.0, 2)] * 4


# ----------------------------------------------------------------------------- the trend statistic


def test_cell_slopes_are_least_squares_slopes_per_cell():
    rng = np.random.default_rng(0)
    values = rng.random((4, 5, 6))
    values[1, 0, 0] = values[2, 0, 0] = values[3, 0, 0] = np.nan  # one level left: no slope
    values[0, 1, 1] = np.nan  # three levels left
    x = np.array([1.0, 3.0, 5.0, 7.5])
    got = cell_slopes(values, x)
    for t in range(5):
        for s in range(6):
            ok = np.isfinite(values[:, t, s])
            if ok.sum() < 2:
                assert np.isnan(got[t, s])
                continue
            design = np.column_stack([x[ok], np.ones(ok.sum())])
            slope = np.linalg.lstsq(design, values[ok, t, s], rcond=None)[0][0]
            assert got[t, s] == pytest.approx(slope, abs=1e-12)


def test_option_trends_against_a_brute_force_computation():
    rng = np.random.default_rng(1)
    labels = [rng.integers(0, 3, (4, 5)) for _ in GUIDANCE]
    labels[2][0, 0] = -1  # a missing image at one level
    rows = option_trends(labels, GUIDANCE, term="fancy", group="bg", options=("a", "b", "c"), steps=15)
    for j, row in enumerate(rows):
        slopes = np.full((4, 5), np.nan)
        for t in range(4):
            for s in range(5):
                pts = [(g, float(lab[t, s] == j)) for g, lab in zip(GUIDANCE, labels) if lab[t, s] >= 0]
                slopes[t, s] = np.polyfit([g for g, _ in pts], [y for _, y in pts], 1)[0]
        test = crossed_test(slopes)
        assert row.slope == pytest.approx(test.estimate) and row.p_value == pytest.approx(test.p_value)
        assert (row.ci_low, row.ci_high) == pytest.approx((test.ci_low, test.ci_high))
        assert row.rates[0] == pytest.approx(np.mean(labels[0] == j)) and row.steps == 15
        assert row.term == "fancy" and row.option == "abc"[j] and row.corrected is False
    from scipy import stats as sps

    assert [r.p_adjusted for r in rows] == pytest.approx(sps.false_discovery_control([r.p_value for r in rows]))


def test_a_corrected_trend_is_the_slope_of_the_corrected_rates_and_wider():
    """The corrected rate is linear in the labels, so with every image present the mean of the
    cells' corrected slopes is the least-squares slope of the levels' corrected rates; the
    calibration's own uncertainty widens the interval."""
    rng = np.random.default_rng(2)
    true = np.repeat([0, 1], 60)
    predicted = np.where(rng.random(120) < 0.15, 1 - true, true)
    correction = rates.correction_from_labels(true, predicted, 2, n_boot=200)
    labels = [(rng.random((6, 6)) < p).astype(int) for p in (0.7, 0.5, 0.3)]
    corrected = option_trends(labels, GUIDANCE, term="t", group="g", options=("a", "b"), correction=correction)[0]
    level_rates = [np.mean(correction.weights[lab][..., 0]) for lab in labels]
    assert corrected.slope == pytest.approx(np.polyfit(GUIDANCE, level_rates, 1)[0])
    assert corrected.corrected and corrected.rates == pytest.approx(level_rates)
    raw = option_trends(labels, GUIDANCE, term="t", group="g", options=("a", "b"))[0]
    assert abs(corrected.slope) > abs(raw.slope)  # the correction undoes the errors' pull toward the middle
    assert corrected.ci_high - corrected.ci_low > (raw.ci_high - raw.ci_low) * abs(corrected.slope / raw.slope)


def planted_trend_labels(rng, slope: float, n_t=10, n_s=10, guidance=GUIDANCE) -> list[np.ndarray]:
    """Labels (0 = the option) per guidance level, the option's share p0 + template and seed
    effects + (slope + template and seed slope effects) × (guidance − mean): a population slope
    of exactly ``slope``, templates and seeds random."""
    g = np.asarray(guidance) - np.mean(guidance)
    a, b = rng.normal(0, 0.08, n_t)[:, None], rng.normal(0, 0.05, n_s)[None, :]
    u, v = rng.normal(0, 0.01, n_t)[:, None], rng.normal(0, 0.005, n_s)[None, :]
    shares = [np.clip(0.5 + a + b + (slope + u + v) * x, 0.02, 0.98) for x in g]
    return [(rng.random((n_t, n_s)) >= p).astype(int) for p in shares]


@pytest.mark.slow
def test_a_planted_slope_is_found_and_no_slope_rejects_at_about_alpha():
    rng = np.random.default_rng(3)
    n = 200
    found = covered = false_pos = 0
    for _ in range(n):
        up = option_trends(planted_trend_labels(rng, 0.06), GUIDANCE, term="t", group="g", options=("a", "b"))[0]
        found += up.p_value < 0.05 and up.slope > 0
        covered += up.ci_low <= 0.06 <= up.ci_high
        flat = option_trends(planted_trend_labels(rng, 0.0), GUIDANCE, term="t", group="g", options=("a", "b"))[0]
        false_pos += flat.p_value < 0.05
    assert found / n >= 0.85
    assert covered / n >= 0.90
    assert 0.01 <= false_pos / n <= 0.10


# ----------------------------------------------------------------------------- results and rendering


def _trend(term, option, slope, p_adjusted, rates_=(0.8, 0.93, 0.98)):
    return {"term": term, "group": "background", "option": option, "slope": slope, "ci_low": slope - 0.01,
            "ci_high": slope + 0.012, "p_value": p_adjusted / 2, "p_adjusted": p_adjusted, "corrected": True,
            "steps": 15, "guidance": list(GUIDANCE), "rates": list(rates_), "n_cells": 100, "method": "crossed",
            "generalises_to": "templates and seeds"}


def levels_document():
    trends = [_trend("fancy", "yellow", 0.0312, 0.001), _trend("", "grey", 0.0213, 0.02, (0.7, 0.8, 0.84)),
              _trend("neighbourhood-watch", "yellow", -0.00042, 0.3), _trend("old", "pink", 0.0, 1.0)]
    level = {"baseline": "", "terms": [], "controls": [], "summary": {}}
    return {"levels": [{**level, "guidance": g, "steps": 15} for g in GUIDANCE], "trends": trends}


def test_the_trend_table_fits_80_columns_and_shows_the_significant_slopes():
    from rich.console import Group

    from ldmprobe.render.rates import trends_parts

    text = render_text(Group(*trends_parts(levels_document())))
    assert_whole(text, ["fancy", "background:yellow", "0.80→0.93→0.98", "+0.031*", "(baseline)", "+0.021*",
                        "3/5/7.5"])
    assert "neighbourhood-watch" not in text  # not significant: in the JSON only
    document = levels_document()
    for t in document["trends"]:
        t["p_adjusted"] = 0.5
    text = render_text(Group(*trends_parts(document)))
    assert "none differs from 0; the largest" in " ".join(text.split()) and "neighbourhood-watch" in text
    assert trends_parts({"terms": []}) == []  # a single-level sweep: no trend section


@pytest.mark.slow
def test_the_report_section_has_a_trend_table_and_a_plot_per_term():
    from ldmprobe.render.rates_html import rates_html
    from ldmprobe.render.report import trend_plot

    document = {**levels_document(), "terms": [], "controls": [], "baseline_result": {
        "term": "", "rates": [{"group": "background", "option": "grey", "rate": 0.7, "ci_low": 0.6, "ci_high": 0.8,
                               "corrected": True}], "diversity": None}}
    html = "\n".join(rates_html(document, trend_plot))
    assert 'id="trends"' in html and "+0.0312*" in html and html.count("<svg") == 2  # fancy and the baseline
    assert "rate against guidance" in html and "guidance 7.5, 15 steps" in html
    assert 'id="trends"' not in "\n".join(rates_html({**document, "levels": []}, trend_plot))


# ----------------------------------------------------------------------------- end to end

SPEC = """name = "two-levels"
templates = ["a photo of a {} house", "a {} house", "the {} house"]
baseline = ""
terms = ["red"]
controls = ["nice"]
seeds = 2
guidance = [1.5, 6]

[attributes.colour]
red = "a red house"
blue = "a blue house"
green = "a green house"
"""
FAST = ("--pipeline", "tiny", "--measurer", "tiny", "--steps", "2", "--permutations", "99", "--bootstrap", "99")


def _sweep(cli, folder, spec_text, name, *extra):
    (folder / f"{name}.toml").write_text(spec_text)
    (folder / "vocab.txt").write_text("brick\ntree\nhouse\nred\nsky\n")
    result = CliRunner().invoke(cli, ["sweep", str(folder / f"{name}.toml"), *FAST, "--vocab", str(folder / "vocab.txt"),
                                      "--out", str(folder / name), "--format", "json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_a_tiny_sweep_over_two_guidance_levels_end_to_end(tmp_path, cli, fresh_cache):
    import jsonschema

    from ldmprobe.results.provenance import load_schema
    from ldmprobe.results.sweep import SweepResult

    document = _sweep(cli, tmp_path, SPEC, "levels")
    jsonschema.validate(document, load_schema("sweep"))
    assert [(lv["guidance"], lv["steps"]) for lv in document["levels"]] == [(1.5, 2), (6.0, 2)]
    first = document["levels"][0]
    assert {k: first[k] for k in ("terms", "controls", "summary")} == {k: document[k] for k in
                                                                       ("terms", "controls", "summary")}
    assert document["config"]["guidance"] == 1.5 and document["counts"]["planned"] == 2 * 3 * 3 * 2
    trends = document["trends"]
    assert {(t["term"], t["option"]) for t in trends} == {(term, o) for term in ("", "red", "nice")
                                                          for o in ("red", "blue", "green")}
    assert all(t["guidance"] == [1.5, 6.0] and t["steps"] == 2 and len(t["rates"]) == 2 for t in trends)
    for t in trends:  # the trend's rates are the levels' own rates
        rows = [lv["baseline_result"]["rates"] if t["term"] == "" else
                next(x for x in lv["terms"] + lv["controls"] if x["term"] == t["term"])["rates"]
                for lv in document["levels"]]
        level_rates = [next(r["rate"] for r in rs if r["option"] == t["option"]) for rs in rows]
        assert t["rates"] == pytest.approx(level_rates)
        assert t["slope"] == pytest.approx((level_rates[1] - level_rates[0]) / 4.5)  # two levels, every image
    items = [json.loads(line) for line in (tmp_path / "levels" / "items.jsonl").read_text().splitlines()]
    assert len(items) == 36 and len({i["key"] for i in items}) == 36
    assert sorted({(i["guidance"], i["steps"]) for i in items}) == [(1.5, 2), (6.0, 2)]
    assert all(i["image"] is None for i in items if i["guidance"] == 6.0)  # the first level's are copied in
    html = (tmp_path / "levels" / "report.html").read_text()
    assert 'id="trends"' in html
    from ldmprobe.render.sweep import render_sweep

    text = render_text(render_sweep(document))
    assert_whole(text, ["(levels),"])
    assert "levels: guidance 1.5, 2 steps; guidance 6, 2 steps." in " ".join(text.split())
    assert "trend over guidance 1.5/6" in text
    assert SweepResult.from_dict(document).to_dict()["trends"] == trends

    # the second level alone, as a single-level sweep: all cached, and no levels or trends keys
    single = _sweep(cli, tmp_path, SPEC.replace("guidance = [1.5, 6]", "guidance = 6"), "single")
    assert "levels" not in single and "trends" not in single
    assert single["counts"]["cached"] == 18 and single["counts"]["generated"] == 0
    assert single["terms"] == document["levels"][1]["terms"]
    items = (tmp_path / "single" / "items.jsonl").read_text().splitlines()
    assert {(json.loads(i)["guidance"], json.loads(i)["steps"]) for i in items} == {(6.0, 2)}  # one level: its own


def test_the_trend_plot_joins_levels_in_increasing_guidance():
    """A spec may list guidance 7.5, 1, 3: the line runs 1 -> 3 -> 7.5, not back and forth."""
    from ldmprobe.render.report import trend_points

    row = {"guidance": [7.5, 1.0, 3.0, 5.0], "rates": [0.9, 0.2, None, 0.6]}
    assert trend_points(row) == [(1.0, 0.2), (5.0, 0.6), (7.5, 0.9)]
    assert trend_points({"guidance": [2.0], "rates": None}) == []
