"""`ldmprobe compare` on attribute rates and diversity: B − A against independent computations
and on planted label tables (paired and unpaired runs, a planted narrowing)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats as sps

from ldmprobe.analysis import compare_rates as cr
from ldmprobe.analysis.rates import AttributeInput, correction_from_labels
from tests.test_compare import _crossed_ci_by_least_squares, _sweep, private_cache


def planted(rng, rate: float, *, n_t=8, n_s=6, sd_t=0.4, sd_s=0.3, template=None, seed=None) -> np.ndarray:
    """Binary (T, S) labels, 1 = the option, with template and seed effects on the logit scale
    (pass ``template`` / ``seed`` effects to share them between two runs)."""
    a = rng.normal(0, sd_t, n_t) if template is None else template
    b = rng.normal(0, sd_s, n_s) if seed is None else seed
    return (rng.random((n_t, n_s)) < special.expit(special.logit(rate) + a[:, None] + b[None, :])).astype(int)


def _anova_mean_se(y):
    """Mean, se and Satterthwaite df of a complete table's mean from its two-way ANOVA mean squares,
    Var(ȳ) = (MS_T + MS_S − MS_E) / (T·S) floored at the largest mean square / (T·S) (a negative
    variance component is not read as extra precision), computed without the package's code."""
    T, S = y.shape
    g, rm, cm = y.mean(), y.mean(1, keepdims=True), y.mean(0, keepdims=True)
    ms_t = S * ((rm - g) ** 2).sum() / (T - 1)
    ms_s = T * ((cm - g) ** 2).sum() / (S - 1)
    ms_e = ((y - rm - cm + g) ** 2).sum() / ((T - 1) * (S - 1))
    v = ms_t + ms_s - ms_e
    df = v * v / (ms_t**2 / (T - 1) + ms_s**2 / (S - 1) + ms_e**2 / ((T - 1) * (S - 1)))
    return g, math.sqrt(max(v, ms_t, ms_s, ms_e) / (T * S)), df


def test_paired_difference_is_the_crossed_test_of_the_cell_differences():
    rng = np.random.default_rng(0)
    tmpl, seed = rng.normal(0, 0.6, 8), rng.normal(0, 0.5, 6)
    a, b = planted(rng, 0.3, template=tmpl, seed=seed), planted(rng, 0.5, template=tmpl, seed=seed)
    yes, no = 1 - a, 1 - b  # label 0 = "yes"
    rows = cr.group_rate_changes("m", yes, no, "g", ("yes", "no"), paired=True)
    y = a.astype(float)
    diff = b.astype(float) - y
    low, high, p, _ = _crossed_ci_by_least_squares(diff)
    row = rows[0]
    assert row.paired and row.rate_a == pytest.approx(a.mean()) and row.rate_b == pytest.approx(b.mean())
    assert row.difference == pytest.approx(diff.mean())
    assert (row.ci_low, row.ci_high) == pytest.approx((low, high), rel=0.02, abs=2e-3)
    assert row.p_value == pytest.approx(p, rel=0.1, abs=2e-3)
    assert rows[1].difference == pytest.approx(-row.difference)  # two options: mirror images
    assert row.n_a == row.n_b == 48 and row.corrected is False


def test_unpaired_difference_combines_the_two_runs_own_crossed_intervals():
    """Each run's uncertainty is its own crossed interval (computed here by least squares and a
    fiducial Monte Carlo, without the package's code): half-widths in quadrature, normal quantile."""
    rng = np.random.default_rng(1)
    a, b = planted(rng, 0.3, sd_t=1.0, sd_s=0.8), planted(rng, 0.6, n_t=7, n_s=9, sd_t=1.0, sd_s=0.8)
    row = cr.group_rate_changes("m", 1 - a, 1 - b, "g", ("yes", "no"), paired=False)[0]
    (lo_a, hi_a, _, _), (lo_b, hi_b, _, _) = (_crossed_ci_by_least_squares(x.astype(float)) for x in (a, b))
    half = math.hypot((hi_a - lo_a) / 2, (hi_b - lo_b) / 2)
    diff = b.mean() - a.mean()
    assert row.paired is False and row.difference == pytest.approx(diff)
    assert (row.ci_low, row.ci_high) == pytest.approx((diff - half, diff + half), rel=0.03, abs=3e-3)
    z = sps.norm.ppf(0.975)
    assert row.p_value == pytest.approx(2 * sps.norm.sf(abs(diff) / (half / z)), rel=0.05, abs=2e-3)
    assert "unpaired" in row.generalises_to and "df" not in row.method


def test_unpaired_interval_on_a_small_design_is_no_wider_than_the_runs_own_intervals():
    """4 templates x 5 seeds (the design whose Welch df gave [-1, +1] even for identical data): the
    difference's interval is at most the two runs' own half-widths added, and identical tables
    give difference 0 with an interval narrower than [-1, +1]."""
    from ldmprobe.analysis.inference_crossed import crossed_test

    rng = np.random.default_rng(7)
    for _ in range(20):
        a, b = planted(rng, 0.4, n_t=4, n_s=5, sd_t=0.8), planted(rng, 0.4, n_t=4, n_s=5, sd_t=0.8)
        if a.min() == a.max() or b.min() == b.max():
            continue
        row = cr.group_rate_changes("m", 1 - a, 1 - b, "g", ("yes", "no"), paired=False)[0]
        ta, tb = crossed_test(a.astype(float)), crossed_test(b.astype(float))
        widest = (ta.ci_high - ta.ci_low) / 2 + (tb.ci_high - tb.ci_low) / 2
        assert row.ci_high - row.ci_low <= 2 * widest + 1e-12
        assert row.ci_high - row.difference <= math.hypot((ta.ci_high - ta.ci_low) / 2,
                                                          (tb.ci_high - tb.ci_low) / 2) + 1e-12
    same = planted(rng, 0.4, n_t=4, n_s=5, sd_t=0.3, sd_s=0.2)
    row = cr.group_rate_changes("m", 1 - same, 1 - same, "g", ("yes", "no"), paired=False)[0]
    assert row.difference == 0 and (row.ci_low, row.ci_high) != (-1.0, 1.0) and -1 < row.ci_low < 0 < row.ci_high < 1


def test_bh_across_options_and_verdicts():
    rng = np.random.default_rng(2)
    a = rng.choice(3, size=(8, 6), p=[0.1, 0.45, 0.45])
    b = rng.choice(3, size=(8, 6), p=[0.8, 0.1, 0.1])
    rows = cr.group_rate_changes("m", a, b, "bg", ("yellow", "blue", "grey"), paired=True)
    p = [r.p_value for r in rows]
    assert [r.p_adjusted for r in rows] == pytest.approx(sps.false_discovery_control(p))
    assert rows[0].verdict == "higher" and rows[0].difference > 0.5
    assert {r.verdict for r in rows[1:]} <= {"lower", "no clear change"}
    same = cr.group_rate_changes("m", a, a, "bg", ("yellow", "blue", "grey"), paired=True)
    assert all(r.difference == 0 and r.verdict == "no clear change" for r in same)


def test_a_corrected_difference_carries_the_calibration_uncertainty():
    rng = np.random.default_rng(3)
    true = np.repeat([0, 1], 60)
    predicted = np.where(rng.random(120) < 0.85, true, 1 - true)
    corr = correction_from_labels(true, predicted, 2, n_boot=300, seed=1)
    a, b = rng.integers(0, 2, (8, 6)), rng.integers(0, 2, (8, 6))
    raw = cr.group_rate_changes("m", a, b, "g", ("x", "y"), paired=True)[0]
    fixed = cr.group_rate_changes("m", a, b, "g", ("x", "y"), correction=corr, paired=True)[0]
    assert fixed.corrected and fixed.difference == pytest.approx(
        np.mean(corr.weights[b][..., 0] - corr.weights[a][..., 0]))
    assert fixed.ci_high - fixed.ci_low > raw.ci_high - raw.ci_low  # inverse confusion and its uncertainty


def test_a_run_with_no_variation_still_gets_an_interval():
    a, b = np.zeros((4, 5), int), np.ones((4, 5), int)  # A: every image "yes"; B: none
    row = cr.group_rate_changes("m", a, b, "g", ("yes", "no"), paired=False)[0]
    assert row.difference == -1 and row.ci_low is not None and row.ci_high < 0 and row.p_value < 0.05


def _embeddings(rng, labels, n_kinds, d=24, noise=0.05):
    """Unit embeddings whose direction is the label's (one of n_kinds axes) plus a little noise."""
    x = np.eye(d)[labels % n_kinds] + rng.normal(0, noise, labels.shape + (d,))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_a_planted_narrowing_is_found_paired_and_unpaired():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 4, (8, 6))  # four kinds, evenly
    b = np.where(rng.random((8, 6)) < 0.9, 0, a)  # mostly one kind
    ea, eb = _embeddings(rng, a, 4), _embeddings(rng, b, 4)
    for paired in (True, False):
        got = cr.diversity_change("m", ea, eb, [a], [b], ("kind",), [np.eye(4)], paired=paired, n_resamples=300,
                                  seed=0)
        assert got.verdict == "narrows" and got.difference < 0 and got.ci_high < 0 and got.p_value < 0.05
        assert got.groups[0].verdict == "narrows" and got.groups[0].effective_number_a > 3.5
        assert got.vendi_b - got.vendi_a == pytest.approx(got.difference)
    same = cr.diversity_change("m", ea, ea, [a], [a], ("kind",), [np.eye(4)], paired=True, n_resamples=100, seed=0)
    assert same.difference == 0 and same.verdict is None


def test_compare_attributes_labels_by_the_option_texts():
    rng = np.random.default_rng(5)
    d = 16
    texts = np.eye(d)[:3]
    a, b = rng.integers(0, 3, (5, 4)), np.zeros((5, 4), int)
    ea, eb = _embeddings(rng, a, 3, d), _embeddings(rng, b, 3, d)
    attrs = AttributeInput(groups=(("bg", ("x", "y", "z")),), option_embeddings=(texts,), logit_scale=100.0)
    runs = cr.AttributeRuns(terms=("",), images_a={"": ea}, images_b={"": eb}, paired=True)
    rates, diversity = cr.compare_attributes(runs, attrs, n_resamples=100)
    assert [r.rate_a for r in rates] == pytest.approx([np.mean(a == j) for j in range(3)])
    assert [r.rate_b for r in rates] == [1.0, 0.0, 0.0]
    assert diversity[0].groups[0].effective_number_b == pytest.approx(1.0)


@pytest.mark.slow
def test_the_paired_interval_covers_a_planted_difference():
    rng = np.random.default_rng(6)
    z = np.random.default_rng(99).normal(0, math.hypot(0.4, 0.3), 400_000)
    truth = float(special.expit(special.logit(0.5) + z).mean() - special.expit(special.logit(0.3) + z).mean())
    covered, n = 0, 200
    for _ in range(n):
        tmpl, seed = rng.normal(0, 0.4, 8), rng.normal(0, 0.3, 6)
        a, b = planted(rng, 0.3, template=tmpl, seed=seed), planted(rng, 0.5, template=tmpl, seed=seed)
        row = cr.group_rate_changes("m", 1 - a, 1 - b, "g", ("yes", "no"), paired=True)[0]
        covered += row.ci_low <= truth <= row.ci_high
    assert covered / n >= 0.9


# ----------------------------------------------------------------------------- end to end (tiny models)

SPEC = """name = "rates-pair"
templates = ["a photo of a {} house", "a {} house", "the {} house", "a drawing of a {} house"]
baseline = ""
terms = ["red"]
controls = ["nice"]
seeds = 3

[attributes.colour]
red = "a red house"
blue = "a blue house"
green = "a green house"
"""


@pytest.fixture(scope="module")
def rate_runs(tmp_path_factory, cache_root, tiny_generator, tiny_measurer):
    """Runs A and B of one spec (2 and 3 denoising steps), and C with other seeds, in a private cache."""
    root = tmp_path_factory.mktemp("compare-rates")
    with private_cache(root, cache_root):
        spec, other = root / "pair.toml", root / "other.toml"
        spec.write_text(SPEC)
        other.write_text(SPEC.replace("seeds = 3", "seeds = [10, 11, 12, 13]"))
        levels = root / "levels.toml"
        levels.write_text(SPEC.replace("seeds = 3", "seeds = 3\nguidance = [2, 6]"))
        docs = {name: _sweep(path, root / name, "--steps", steps)
                for name, path, steps in (("a", spec, 2), ("b", spec, 3), ("c", other, 3), ("lv", levels, 2))}
        yield {"root": root, "docs": docs}


def _compare(*args):
    import json

    from click.testing import CliRunner

    from ldmprobe.cli.main import main

    result = CliRunner().invoke(main, ["compare", *map(str, args), "--permutations", "99", "--bootstrap", "99",
                                       "--format", "json"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def _sweep_rate(doc, term, option):
    entry = doc["baseline_result"] if term == "" else next(t for t in doc["terms"] + doc["controls"]
                                                             if t["term"] == term)
    return next(r["rate"] for r in entry["rates"] if r["option"] == option)


@pytest.mark.slow
def test_compare_rates_end_to_end_paired_and_unpaired(rate_runs, tmp_path):
    from ldmprobe.results.provenance import validate_document

    root, docs = rate_runs["root"], rate_runs["docs"]
    doc = _compare(root / "a", root / "b", "--out", tmp_path / "ab")
    validate_document(doc, "compare")
    assert doc["summary"]["paired"] is True and doc["terms"]
    assert {(r["term"], r["option"]) for r in doc["rates"]} == {(t, o) for t in ("", "red", "nice")
                                                                for o in ("red", "blue", "green")}
    for r in doc["rates"]:  # each run's rate is the one its own sweep reported
        assert r["rate_a"] == pytest.approx(_sweep_rate(docs["a"], r["term"], r["option"]))
        assert r["rate_b"] == pytest.approx(_sweep_rate(docs["b"], r["term"], r["option"]))
        assert r["difference"] == pytest.approx(r["rate_b"] - r["rate_a"]) and r["paired"]
    assert [d["term"] for d in doc["diversity"]] == ["", "red", "nice"]
    html = (tmp_path / "ab" / "compare.html").read_text()
    assert 'id="rates"' in html and 'id="diversity"' in html

    unpaired = _compare(root / "a", root / "c")
    validate_document(unpaired, "compare")
    assert unpaired["summary"]["paired"] is False and unpaired["terms"] == []
    assert all(not r["paired"] and "unpaired" in r["generalises_to"] for r in unpaired["rates"])
    for r in unpaired["rates"]:
        assert r["rate_b"] == pytest.approx(_sweep_rate(docs["c"], r["term"], r["option"]))
        assert r["n_b"] == 16 and r["n_a"] == 12


@pytest.mark.slow
def test_a_run_over_several_levels_is_compared_at_its_top_level(rate_runs):
    root, docs = rate_runs["root"], rate_runs["docs"]
    doc = _compare(root / "lv", root / "a")
    top = docs["lv"]["levels"][0]
    assert top["guidance"] == 2.0 and doc["runs"]["a"]["n_items"] == 36  # 72 lines in items.jsonl, 36 at guidance 2
    assert doc["summary"]["paired"] is True
    for r in doc["rates"]:
        assert r["rate_a"] == pytest.approx(_sweep_rate(top, r["term"], r["option"]))


@pytest.mark.slow
def test_runs_whose_attributes_differ_compare_without_rates_and_other_seeds_need_them(rate_runs, tmp_path):
    from click.testing import CliRunner

    from ldmprobe.cli.main import main
    from tests.test_compare import _edited_copy

    root = rate_runs["root"]
    other = _edited_copy(root / "b", tmp_path / "b2", lambda d: d["spec"]["attributes"]["colour"].pop("green"))
    doc = _compare(root / "a", other)
    assert doc["rates"] == [] and doc["terms"] and any("attributes" in n for n in doc["summary"]["notes"])
    bare = _edited_copy(root / "c", tmp_path / "c2", lambda d: d["spec"].pop("attributes"))
    result = CliRunner().invoke(main, ["compare", str(root / "a"), str(bare), "--format", "json"])
    assert result.exit_code == 2 and "seeds" in result.output  # no attributes: other seeds cannot pair
