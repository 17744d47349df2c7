"""Attribute rates: zero-shot labels, crossed intervals, correction, and the spec's attribute keys."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats as sps

from ldmprobe.analysis import rates
from ldmprobe.analysis.inference_crossed import crossed_test
from ldmprobe.errors import ExitCode, SpecError
from ldmprobe.specs.sweep import spec_from_dict


def planted_labels(rng, rate: float, n_t=8, n_s=8, sd_t=0.4, sd_s=0.3) -> np.ndarray:
    """Binary labels (1 = the option) with template and seed effects on the logit scale,
    whose population share is ``rate`` (the effects are centred so the mean share is exact)."""
    a, b = rng.normal(0, sd_t, n_t), rng.normal(0, sd_s, n_s)
    logit = special.logit(rate) + a[:, None] + b[None, :]
    return (rng.random((n_t, n_s)) < special.expit(logit)).astype(int)


def test_zero_shot_is_the_softmax_at_the_logit_scale():
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(5, 8)), rng.normal(size=(3, 8))
    got = rates.zero_shot(img, txt, 37.5)
    assert np.allclose(got, special.softmax(37.5 * img @ txt.T, axis=1))
    assert np.allclose(got.sum(1), 1)


def test_group_rates_against_brute_force():
    rng = np.random.default_rng(1)
    term, base = rng.integers(0, 3, (4, 5)), rng.integers(0, 3, (4, 5))
    rows = rates.group_rates(term, base, "bg", ("a", "b", "c"), reference={"b": 0.25})
    for j, row in enumerate(rows):
        assert row.rate == pytest.approx(np.mean(term == j)) and row.n_images == 20
        test = crossed_test((term == j).astype(float))
        assert (row.ci_low, row.ci_high) == pytest.approx((max(0, test.ci_low), min(1, test.ci_high)))
        diff = crossed_test((term == j).astype(float) - (base == j))
        assert row.difference == pytest.approx(np.mean((term == j).astype(float) - (base == j)))
        assert row.p_value == pytest.approx(diff.p_value)
        assert row.baseline_rate == pytest.approx(np.mean(base == j))
        assert row.corrected is False and row.raw_rate == pytest.approx(row.rate)
    assert rows[1].reference_rate == 0.25 and rows[1].amplification == pytest.approx(rows[1].rate / 0.25)
    assert rows[1].amplification_ci_high == pytest.approx(rows[1].ci_high / 0.25)
    assert rows[0].amplification is None
    adjusted = rates.adjust_rows(rows)
    p = [r.p_value for r in rows]
    assert [r.p_adjusted for r in adjusted] == pytest.approx(sps.false_discovery_control(p))


def test_a_missing_image_is_left_out_not_counted_as_absent():
    labels = np.zeros((4, 5), dtype=int)
    labels[:, 0] = 1
    labels[0, 0] = -1  # no image here
    row = rates.group_rates(labels, None, "g", ("a", "b"))[1]
    assert row.n_images == 19 and row.rate == pytest.approx(
        crossed_test(np.where(labels >= 0, labels == 1, np.nan).astype(float)).estimate)


def test_constant_table_gets_a_wilson_interval_not_zero_width():
    labels = np.zeros((5, 4), dtype=int)
    row = rates.group_rates(labels, None, "g", ("yes", "no"))[1]
    assert row.rate == 0 and row.ci_low == 0
    assert 0.1 < row.ci_high < 0.25  # Wilson upper bound of 0/20 at 95 %: 0.161
    assert row.ci_high == pytest.approx(sps.binomtest(0, 20).proportion_ci(method="wilson").high, abs=1e-9)


@pytest.mark.slow
def test_planted_rate_is_covered_and_no_effect_rejects_at_about_alpha():
    rng = np.random.default_rng(2)
    covered, rejected, n = 0, 0, 200
    for _ in range(n):
        term, base = planted_labels(rng, 0.3), planted_labels(rng, 0.3)
        row = rates.group_rates(1 - term, 1 - base, "g", ("yes", "no"))[0]  # label 0 = "yes"
        covered += row.ci_low <= _population_share(0.3) <= row.ci_high
        rejected += row.p_value is not None and row.p_value < 0.05
    assert covered / n >= 0.9
    assert 0.01 <= rejected / n <= 0.09


def _population_share(rate, sd_t=0.4, sd_s=0.3):
    """The share the planted model draws on average over new templates and seeds."""
    z = np.random.default_rng(99).normal(0, math.hypot(sd_t, sd_s), 400_000)
    return float(special.expit(special.logit(rate) + z).mean())


def test_a_planted_difference_is_found():
    rng = np.random.default_rng(3)
    term, base = planted_labels(rng, 0.8), planted_labels(rng, 0.1)
    row = rates.group_rates(1 - term, 1 - base, "g", ("yes", "no"))[0]
    assert row.difference > 0.5 and row.p_value < 1e-3 and row.difference_ci_low > 0.3


def test_correction_recovers_the_true_share_and_carries_calibration_uncertainty():
    rng = np.random.default_rng(4)
    conf = np.array([[0.8, 0.15, 0.05], [0.1, 0.85, 0.05], [0.1, 0.1, 0.8]])
    true_cal = np.repeat(np.arange(3), 400)
    pred_cal = np.array([rng.choice(3, p=conf[i]) for i in true_cal])
    corr = rates.correction_from_labels(true_cal, pred_cal, 3, n_boot=200)
    assert np.allclose(corr.weights @ corr.confusion, np.eye(3))
    truth = np.array([0.6, 0.3, 0.1])
    true_img = rng.choice(3, size=(40, 50), p=truth)
    labels = np.vectorize(lambda i: rng.choice(3, p=conf[i]))(true_img)
    raw = rates.group_rates(labels, None, "g", ("a", "b", "c"))
    fixed = rates.group_rates(labels, None, "g", ("a", "b", "c"), correction=corr)
    assert abs(raw[0].rate - 0.6) > 0.05  # the measurer's errors pull the raw share toward the others
    assert all(r.corrected for r in fixed)
    for row, share in zip(fixed, truth):
        drawn = np.mean(true_img == list(truth).index(share))  # the share these images truly have
        assert abs(row.rate - drawn) < 0.05 and row.ci_low <= share <= row.ci_high
    # Rogan–Gladen for the two-option case is the same formula
    sens, spec = 0.9, 0.8
    c2 = np.array([[sens, 1 - sens], [1 - spec, spec]])
    q = 0.5
    assert (np.array([q, 1 - q]) @ np.linalg.inv(c2))[0] == pytest.approx((q + spec - 1) / (sens + spec - 1))
    wider = rates.table_mean(np.where(labels == 0, 1.0, 0.0), extra_var=0.01)
    narrow = rates.table_mean(np.where(labels == 0, 1.0, 0.0))
    assert wider.high - wider.low > narrow.high - narrow.low


def test_near_singular_calibration_is_refused():
    true = np.repeat([0, 1], 100)
    pred = np.where(np.random.default_rng(5).random(200) < 0.5, 0, 1)  # a coin: cannot tell them apart
    with pytest.raises(ValueError, match="too near singular"):
        rates.correction_from_labels(true, pred, 2)
    with pytest.raises(ValueError, match="no image of option"):
        rates.correction_from_labels(np.zeros(10, int), np.zeros(10, int), 2)


# ----------------------------------------------------------------------------- the spec keys

BASE = {"templates": ["a {} house"], "baseline": "", "terms": ["fancy"]}


def test_attribute_tables_are_read_and_round_trip():
    spec = spec_from_dict({**BASE, "attributes": {"bg": {"yellow": "a yellow background", "grey": "a grey one"}},
                           "reference_rates": {"": {"bg": {"yellow": 0.1, "grey": 0.9}}},
                           "reference_source": "a census"})
    assert spec.attributes[0].options == ("yellow", "grey")
    assert spec.reference_rates[0].term == "" and spec.reference_rates[0].rate("yellow") == 0.1
    again = spec_from_dict({k: v for k, v in spec.to_dict().items() if k != "source"})
    assert again.attributes == spec.attributes and again.reference_rates == spec.reference_rates
    assert "attributes" not in spec_from_dict(BASE).to_dict()  # specs without them are unchanged


@pytest.mark.parametrize("extra, message", [
    ({"attributes": {"bg": {"yellow": "a yellow background"}}}, "needs two or more"),
    ({"attributes": {"bg": {"a": "a yellow background", "b": "A  yellow background"}}}, "same text"),
    ({"attributes": {"b g": {"a": "x", "b": "y"}}}, "group name"),
    ({"attributes": {"bg": {"1a": "x", "b": "y"}}}, "option name"),
    ({"attributes": {"bg": {"a": "x", "b": ""}}}, "non-empty probe text"),
    ({"attributes": {"bg": {"a": "x", "b": "y"}}, "reference_rates": {"old": {"bg": {"a": 0.5}}},
      "reference_source": "s"}, "names no term"),
    ({"attributes": {"bg": {"a": "x", "b": "y"}}, "reference_rates": {"fancy": {"bg": {"c": 0.5}}},
      "reference_source": "s"}, "not an option"),
    ({"attributes": {"bg": {"a": "x", "b": "y"}}, "reference_rates": {"fancy": {"bg": {"a": 0.7, "b": 0.6}}},
      "reference_source": "s"}, "more than 1"),
    ({"attributes": {"bg": {"a": "x", "b": "y"}}, "reference_rates": {"fancy": {"bg": {"a": 0.5}}}},
     "without reference_source"),
    ({"attributes": {"bg": {"a": "x", "b": "y"}}, "calibration": "/no/such/folder"}, "does not exist"),
])
def test_bad_attribute_specs_exit_2(extra, message):
    with pytest.raises(SpecError, match=message) as caught:
        spec_from_dict({**BASE, **extra})
    assert caught.value.exit_code == ExitCode.BAD_INPUT == 2


@pytest.mark.slow
def test_a_bad_attribute_spec_exits_2_on_the_command_line(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "bad.toml"
    path.write_text('templates = ["a {} house"]\nbaseline = ""\nterms = ["fancy"]\n'
                    '[attributes.bg]\nyellow = "a yellow background"\n')
    proc = subprocess.run([sys.executable, "-m", "ldmprobe", "sweep", str(path), "--dry-run"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "needs two or more" in proc.stderr
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- through analyse_sweep


def test_analyse_sweep_finds_a_planted_rate_and_writes_schema_valid_rows():
    """Images planted on two option directions: 'fancy' draws option a 90 % of the time, the
    baseline 20 %; the sweep's rates find it and every row validates against the schema."""
    import json
    from pathlib import Path

    import jsonschema

    from ldmprobe.analysis.sweep import ImageCell, StatisticsSettings, SweepEmbeddings, analyse_sweep

    rng = np.random.default_rng(7)
    d, templates, seeds = 16, ("a {} house", "the {} house", "one {} house", "my {} house"), tuple(range(8))
    options = np.eye(d)[:2]
    images, prompts = {}, {}
    for t, template in enumerate(templates):
        for term, share in (("", 0.2), ("fancy", 0.9)):
            prompts[(t, term)] = template.replace("{}", term)
            for s in seeds:
                v = options[0 if rng.random() < share else 1] + 0.3 * rng.normal(size=d)
                images[(t, term, s)] = ImageCell(v / np.linalg.norm(v))
    attrs = rates.AttributeInput(groups=(("g", ("a", "b")),), option_embeddings=(options,), logit_scale=100.0,
                                 reference={("fancy", "g"): {"a": 0.6, "b": 0.4}})
    data = SweepEmbeddings(templates=templates, baseline="", terms=("fancy",), seeds=seeds, images=images,
                           prompts=prompts, prompt_embeddings={p: np.eye(d)[2] for p in prompts.values()},
                           attributes=attrs)
    analysis = analyse_sweep(data, StatisticsSettings(permutations=99, bootstrap=99))
    row = analysis.term("fancy").rates[0]
    assert row.option == "a" and 0.75 < row.rate <= 1 and row.p_adjusted < 0.05 and row.difference > 0.5
    assert row.reference_rate == 0.6 and row.amplification == pytest.approx(row.rate / 0.6)
    base = analysis.baseline_result
    assert base.term == "" and 0.05 < base.rates[0].rate < 0.4 and base.rates[0].difference is None
    assert analysis.term("fancy").diversity.groups[0].reference_effective_number == pytest.approx(
        math.exp(sps.entropy([0.6, 0.4])))
    schema = json.loads((Path(rates.__file__).parents[1] / "schemas" / "sweep.schema.json").read_text())
    document = analysis.to_dict()
    for term in document["terms"]:
        jsonschema.validate({**term, "$defs": schema["$defs"]}, {**schema["$defs"]["term"], "$defs": schema["$defs"]})
    jsonschema.validate(document["baseline_result"], {**schema["properties"]["baseline_result"],
                                                       "$defs": schema["$defs"]})


# ----------------------------------------------------------------------------- calibration sets


def test_the_shipped_calibration_set_covers_every_option_of_the_reference_world():
    from ldmprobe.specs.calibration import calibration_files
    from ldmprobe.specs.sweep import load_spec

    spec = load_spec("reference-world")
    groups = tuple((g.name, g.options) for g in spec.attributes)
    folder = __import__("pathlib").Path(__file__).parents[1] / "prompts" / "calibration" / "reference-world"
    files = calibration_files(folder, groups)
    for name, options in groups:
        assert sorted({i for _, i in files[name]}) == list(range(len(options)))


def test_calibration_layouts_and_their_errors(tmp_path):
    from ldmprobe.specs.calibration import calibration_files
    from ldmprobe.errors import BadInputError

    from PIL import Image

    groups = (("bg", ("yellow", "grey")),)
    for option in ("yellow", "grey"):
        (tmp_path / "set" / "bg" / option).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "set" / "bg" / option / "a.png")
    files = calibration_files(tmp_path / "set", groups)
    assert sorted(i for _, i in files["bg"]) == [0, 1]
    (tmp_path / "m.csv").write_text("path,group,option\nset/bg/yellow/a.png,bg,yellow\nset/bg/grey/a.png,bg,grey\n")
    assert sorted(i for _, i in calibration_files(tmp_path / "m.csv", groups)["bg"]) == [0, 1]
    (tmp_path / "set" / "bg" / "pink").mkdir()
    with pytest.raises(BadInputError, match="'pink' is not an option"):
        calibration_files(tmp_path / "set", groups)
    (tmp_path / "m.csv").write_text("path,group,option\nset/bg/yellow/a.png,bg,yellow\n")
    with pytest.raises(BadInputError, match="no image of grey"):
        calibration_files(tmp_path / "m.csv", groups)
    with pytest.raises(SpecError, match="not an option") as caught:  # refused when the spec loads
        spec_from_dict({**BASE, "attributes": {"bg": {"yellow": "a yellow one", "grey": "a grey one"}},
                        "calibration": str(tmp_path / "set")})
    assert caught.value.exit_code == 2


def test_the_rates_table_fits_80_columns_and_says_raw_or_corrected():
    from rich.console import Console

    from ldmprobe.render.rates import rates_parts
    from ldmprobe.render.rates_html import rates_html

    options = ("red", "orange", "purple", "white", "black", "brown", "teal")
    row = dict(group="colour", ci_low=0.1, ci_high=0.4, corrected=False, baseline_rate=0.2, difference=0.1,
               p_value=0.001, p_adjusted=0.004, reference_rate=0.14, amplification=1.8)
    term = {"term": "a rather long term", "rates": [{**row, "option": o, "rate": 0.25} for o in options],
            "diversity": {"vendi": 9.3, "ci_low": 7.5, "ci_high": 11.0, "baseline_vendi": 10.4, "verdict": "narrows",
                          "groups": [{"group": "colour", "effective_number": 5.6, "versus_baseline": "narrows",
                                      "versus_reference": None}]}}
    document = {"terms": [term], "controls": [], "baseline_result": {
        "term": "", "rates": [{**row, "option": o, "rate": 0.14, "baseline_rate": None, "difference": None,
                               "p_value": None, "p_adjusted": None} for o in options], "diversity": None}}
    console = Console(width=80, record=True, color_system=None)
    for part in rates_parts(document):
        console.print(part)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "raw zero-shot labels" in text and "0.25*" in text and "5.6↓" in text and "narrows" in text
    assert "[0.10, 0.40]" in text and "1.80x" in text
    html = "\n".join(rates_html(document))
    assert 'id="rates"' in html and "not corrected" in html and "a rather long term" in html
    assert rates_parts({"terms": [], "controls": []}) == [] and rates_html({"terms": []}) == []


def test_a_corrected_rates_p_agrees_with_its_interval():
    """With the calibration's variance added, the p is the one the widened interval implies:
    p < 0.05 exactly when the 95 % interval excludes 0 (the crossed test's descriptive df once
    gave p 0.66 beside an interval of [+0.009, +0.176])."""
    from ldmprobe.analysis.rates import table_mean

    rng = np.random.default_rng(0)
    agree = 0
    for _ in range(300):
        y = rng.normal(0.03, 0.1, (8, 4)) + rng.normal(0, 0.06, (1, 4)) + rng.normal(0, 0.02, (8, 1))
        m = table_mean(y, extra_var=float(rng.uniform(1e-5, 2e-3)))
        agree += (m.low > 0 or m.high < 0) == (m.p_value < 0.05)
    assert agree == 300
