"""Rates, calibration, diversity and guidance levels on the user's own data (no generator):
an embeddings file that carries its option embeddings, logit scale, calibration embeddings and
a guidance value per row; an image manifest with a guidance column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ldmprobe.errors import ExitCode
from ldmprobe.results.provenance import load_schema, validate_document
from tests.support import undeclared_keys

TEMPLATES = ["a {} house", "the {} house", "a photo of a {} house", "my {} house"]
SEEDS = [0, 1, 2, 3, 4]
OPTIONS = {"red": "a red house", "blue": "a blue house", "green": "a green house"}
SPEC = (f"templates = {json.dumps(TEMPLATES)}\nbaseline = \"\"\nterms = [\"fancy\"]\nseeds = {json.dumps(SEEDS)}\n"
        "[attributes.colour]\n" + "".join(f'{k} = "{v}"\n' for k, v in OPTIONS.items()))
D = 12
BAD = int(ExitCode.BAD_INPUT)


def _run(cli, *args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def planted_rows(rng, shares: dict[str, list[float]], guidance=None):
    """Rows of every cell: the image points (not unit: length 3) along its label's axis, plus noise."""
    rows = []
    for t in TEMPLATES:
        for term, p in shares.items():
            for s in SEEDS:
                label = int(rng.choice(3, p=p))
                rows.append((t, term, s, label, guidance))
    return rows


def arrays_of(rows, rng, *, calibration=True) -> dict:
    image = np.array([3 * np.eye(D)[label] + rng.normal(0, 0.05, D) for *_, label, _ in rows])
    out = {"image": image, "template": np.array([r[0] for r in rows]), "term": np.array([r[1] for r in rows]),
           "seed": np.array([r[2] for r in rows]), "option": np.array(list(OPTIONS.values())),
           "option_embedding": np.eye(D)[:3] * 2.0, "logit_scale": np.float64(100.0)}
    if rows[0][4] is not None:
        out["guidance"] = np.array([r[4] for r in rows], dtype=float)
    if calibration:  # the "measurer" reads blue as red a third of the time
        true = np.repeat([0, 1, 2], 30)
        seen = np.where((true == 1) & (np.arange(90) % 3 == 0), 0, true)
        out.update(calibration_embedding=np.eye(D)[seen] + rng.normal(0, 0.05, (90, D)),
                   calibration_group=np.array(["colour"] * 90),
                   calibration_option=np.array([list(OPTIONS)[i] for i in true]))
    return out


def _spec(tmp_path: Path) -> Path:
    path = tmp_path / "own.toml"
    path.write_text(SPEC)
    return path


def _rates(entry) -> dict:
    return {r["option"]: r for r in entry["rates"]}


def test_embeddings_file_gives_rates_corrected_rates_and_diversity(cli, tmp_path):
    rng = np.random.default_rng(0)
    rows = planted_rows(rng, {"": [0.2, 0.4, 0.4], "fancy": [0.97, 0.03, 0.0]})  # "fancy" narrows the colours
    arrays = arrays_of(rows, rng)
    np.savez(tmp_path / "e.npz", **arrays)
    raw = {k: v for k, v in arrays.items() if not k.startswith("calibration")}
    np.savez(tmp_path / "raw.npz", **raw)
    doc = json.loads(_run(cli, "sweep", _spec(tmp_path), "--embeddings", tmp_path / "raw.npz", "--bootstrap", "99",
                          "--permutations", "99", "--format", "json", "--out", tmp_path / "raw").stdout)
    validate_document(doc, "sweep")
    assert undeclared_keys(doc, load_schema("sweep")) == []  # the published schema names every key
    for term, entry in (("", doc["baseline_result"]), ("fancy", doc["terms"][0])):
        labels = [r[3] for r in rows if r[1] == term]
        for j, option in enumerate(OPTIONS):  # the share of the planted labels, counted here
            assert _rates(entry)[option]["rate"] == pytest.approx(np.mean(np.array(labels) == j))
            assert _rates(entry)[option]["corrected"] is False
        assert entry["diversity"]["groups"][0]["effective_number"] is not None
    narrowed = doc["terms"][0]["diversity"]  # 4 templates x 5 seeds: too few cells for a verdict, shown as such
    assert narrowed["groups"][0]["effective_number"] < narrowed["groups"][0]["baseline_effective_number"]
    assert narrowed["groups"][0]["versus_baseline"] is None and "too few" in narrowed["verdict_note"]

    fixed = json.loads(_run(cli, "sweep", _spec(tmp_path), "--embeddings", tmp_path / "e.npz", "--bootstrap", "99",
                            "--permutations", "99", "--format", "json", "--out", tmp_path / "fixed").stdout)
    conf = np.array([[1, 0, 0], [1 / 3, 2 / 3, 0], [0, 0, 1]])  # the calibration's confusion, by construction
    weights = np.linalg.inv(conf)
    labels = np.array([r[3] for r in rows if r[1] == "fancy"])
    for j, option in enumerate(OPTIONS):
        row = _rates(fixed["terms"][0])[option]
        assert row["corrected"] is True
        assert row["rate"] == pytest.approx(min(1, max(0, weights[labels, j].mean())), abs=1e-9)


def test_a_guidance_value_per_row_gives_levels_and_trends(cli, tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for g, red in ((3.0, 0.3), (5.0, 0.55), (7.5, 0.8)):  # "fancy" is red more often at higher guidance
        rows += planted_rows(rng, {"": [0.2, 0.4, 0.4], "fancy": [red, (1 - red) / 2, (1 - red) / 2]}, guidance=g)
    arrays = arrays_of(rows, rng, calibration=False)
    np.savez(tmp_path / "levels.npz", **arrays)
    doc = json.loads(_run(cli, "sweep", _spec(tmp_path), "--embeddings", tmp_path / "levels.npz", "--bootstrap",
                          "99", "--permutations", "99", "--format", "json", "--out", tmp_path / "run").stdout)
    validate_document(doc, "sweep")
    assert [(lv["guidance"], lv["steps"]) for lv in doc["levels"]] == [(3.0, None), (5.0, None), (7.5, None)]
    assert doc["terms"] == doc["levels"][0]["terms"]  # the top level is the lowest guidance
    trend = next(t for t in doc["trends"] if t["term"] == "fancy" and t["option"] == "red")
    level_rates = []
    for g in (3.0, 5.0, 7.5):
        labels = np.array([r[3] for r in rows if r[1] == "fancy" and r[4] == g])
        level_rates.append(np.mean(labels == 0))
    assert trend["rates"] == pytest.approx(level_rates)
    assert trend["slope"] == pytest.approx(np.polyfit([3.0, 5.0, 7.5], level_rates, 1)[0])  # every cell complete
    assert trend["slope"] > 0 and trend["ci_low"] > 0
    items = [json.loads(line) for line in (tmp_path / "run" / "items.jsonl").read_text().splitlines()]
    assert len(items) == 3 * len(TEMPLATES) * 2 * len(SEEDS)
    assert sorted({i["guidance"] for i in items}) == [3.0, 5.0, 7.5]


@pytest.mark.parametrize("change, words", [
    (lambda a: a.update(option=np.array(["a red house", "a blue house", "a pink house"])), "lacks the spec's option"),
    (lambda a: a.pop("logit_scale"), "but no 'logit_scale'"),
    (lambda a: a.update(calibration_option=np.array(["pink"] * 90)), "not an option of attribute group colour"),
    (lambda a: a.update(guidance=np.array(["x"] * len(a["image"]))), "guidance"),
])
def test_bad_attribute_arrays_exit_2_naming_the_array(cli, tmp_path, change, words):
    rng = np.random.default_rng(2)
    arrays = arrays_of(planted_rows(rng, {"": [0.2, 0.4, 0.4], "fancy": [0.9, 0.05, 0.05]}), rng)
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    result = _run(cli, "sweep", _spec(tmp_path), "--embeddings", tmp_path / "bad.npz", code=BAD)
    assert words in " ".join(result.output.split())


@pytest.mark.slow
def test_manifest_with_a_guidance_column_gives_levels(cli, tmp_path, tiny_measurer):
    from PIL import Image

    colours = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
    lines = ["template,term,seed,guidance,path"]
    rng = np.random.default_rng(3)
    for g in (2, 6):
        for t in TEMPLATES:
            for term in ("", "fancy"):
                for s in SEEDS:
                    name = f"{g}-{TEMPLATES.index(t)}-{term or 'base'}-{s}.png"
                    colour = list(colours.values())[int(rng.integers(0, 3))]
                    Image.new("RGB", (32, 32), colour).save(tmp_path / name)
                    lines.append(f'"{t}",{term},{s},{g},{name}')
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    doc = json.loads(_run(cli, "sweep", _spec(tmp_path), "--images", tmp_path / "manifest.csv", "--measurer", "tiny",
                          "--bootstrap", "99", "--permutations", "99", "--format", "json", "--out",
                          tmp_path / "run").stdout)
    validate_document(doc, "sweep")
    assert [lv["guidance"] for lv in doc["levels"]] == [2.0, 6.0]
    assert {(t["term"], t["option"]) for t in doc["trends"]} == {(m, o) for m in ("", "fancy") for o in OPTIONS}
    items = [json.loads(line) for line in (tmp_path / "run" / "items.jsonl").read_text().splitlines()]
    assert sorted({i["guidance"] for i in items}) == [2.0, 6.0] and len(items) == 2 * len(TEMPLATES) * 2 * len(SEEDS)


def test_compare_two_embeddings_runs_finds_a_planted_rate_change(cli, tmp_path):
    rng = np.random.default_rng(4)
    for name, red in (("a", 0.2), ("b", 0.95)):
        rows = planted_rows(rng, {"": [0.2, 0.4, 0.4], "fancy": [red, (1 - red) / 2, (1 - red) / 2]})
        arrays = arrays_of(rows, rng, calibration=False)
        arrays["option_embedding"] = np.eye(D)[:3]  # one space: the same option embeddings in both files
        np.savez(tmp_path / f"{name}.npz", **arrays)
        _run(cli, "sweep", _spec(tmp_path), "--embeddings", tmp_path / f"{name}.npz", "--bootstrap", "99",
             "--permutations", "99", "--out", tmp_path / name, "--format", "json")
    doc = json.loads(_run(cli, "compare", tmp_path / "a", tmp_path / "b", "--bootstrap", "99", "--permutations", "99",
                          "--format", "json").stdout)
    validate_document(doc, "compare")
    assert undeclared_keys(doc, load_schema("compare")) == []
    red = next(r for r in doc["rates"] if r["term"] == "fancy" and r["option"] == "red")
    assert red["verdict"] == "higher" and red["paired"] and red["ci_low"] > 0.4
    assert red["rate_b"] - red["rate_a"] == pytest.approx(red["difference"])
