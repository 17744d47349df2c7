"""Own data at the edges (a QA audit's findings): zero embeddings, compare across calibration
sets and guidance levels, missing or unreadable calibration images, and messages that name the
array, row, file and level they are about."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ldmprobe.results.provenance import validate_document
from tests.test_byo_rates import BAD, OPTIONS, SPEC, _run, _spec, arrays_of, planted_rows

SHARES = {"": [0.2, 0.4, 0.4], "fancy": [0.5, 0.25, 0.25]}


def _arrays(seed: int, *, calibration=True, guidance=None) -> dict:
    rng = np.random.default_rng(seed)
    return arrays_of(planted_rows(rng, SHARES, guidance=guidance), rng, calibration=calibration)


def _sweep(cli, spec: Path, arrays: dict, tmp_path: Path, name: str, code: int = 0):
    np.savez(tmp_path / f"{name}.npz", **arrays)
    result = _run(cli, "sweep", spec, "--embeddings", tmp_path / f"{name}.npz", "--bootstrap", "99",
                  "--permutations", "99", "--format", "json", "--out", tmp_path / name, code=code)
    return json.loads(result.stdout) if code == 0 else " ".join(result.output.split())


@pytest.mark.parametrize("array, row", [("option_embedding", 1), ("calibration_embedding", 4),
                                        ("probe_embedding", 0)])
def test_an_all_zero_text_or_calibration_embedding_is_refused_naming_array_and_row(cli, tmp_path, array, row):
    arrays = _arrays(0)
    arrays["probe"], arrays["probe_embedding"] = np.array(["mansion", "hut"]), np.eye(12)[5:7]
    spec = tmp_path / "own.toml"
    spec.write_text(SPEC.replace('terms = ["fancy"]', 'terms = ["fancy"]\nprobes = ["mansion", "hut"]'))
    arrays[array] = arrays[array].copy()
    arrays[array][row] = 0.0
    said = _sweep(cli, spec, arrays, tmp_path, "zero", code=BAD)
    assert f"array '{array}' has 1 row(s) of all zeros (row {row}" in said and "counting from 0)" in said


def test_an_all_zero_image_row_is_excluded_counted_and_noted(cli, tmp_path):
    arrays = _arrays(1, calibration=False)
    arrays["image"] = arrays["image"].copy()
    baseline_rows = np.flatnonzero(arrays["term"] == "")
    arrays["image"][baseline_rows[3]] = 0.0
    doc = _sweep(cli, _spec(tmp_path), arrays, tmp_path, "zero")
    validate_document(doc, "sweep")
    assert doc["summary"]["excluded"] == {"": 1, "fancy": 0}
    assert doc["baseline_result"]["rates"][0]["n_images"] == len(baseline_rows) - 1
    note = next(n for n in doc["summary"]["notes"] if "all zeros" in n)
    assert f"row {baseline_rows[3]}, counting from 0" in note and "summary.excluded" in note


def test_compare_refuses_runs_whose_calibration_arrays_differ(cli, tmp_path):
    spec = _spec(tmp_path)
    with_cal = _arrays(2)
    without = {k: v for k, v in with_cal.items() if not k.startswith("calibration")}
    other_cal = dict(with_cal, calibration_embedding=with_cal["calibration_embedding"][::-1].copy())
    for name, arrays in (("cal", with_cal), ("raw", without), ("other", other_cal), ("cal2", with_cal)):
        _sweep(cli, spec, arrays, tmp_path, name)
    said = " ".join(_run(cli, "compare", tmp_path / "raw", tmp_path / "cal", code=BAD).output.split())
    assert "one run's rates are corrected" in said and "raw.npz has no calibration arrays" in said
    assert "cal.npz has calibration arrays of 90 labelled images" in said
    said = " ".join(_run(cli, "compare", tmp_path / "cal", tmp_path / "other", code=BAD).output.split())
    assert "their calibration arrays differ" in said
    # the same calibration arrays: each run's rates are what its own sweep reported (corrected)
    doc = json.loads(_run(cli, "compare", tmp_path / "cal", tmp_path / "cal2", "--bootstrap", "99",
                          "--permutations", "99", "--format", "json").stdout)
    own = json.loads((tmp_path / "cal2" / "results.json").read_text())
    for row in doc["rates"]:
        entry = own["baseline_result"] if row["term"] == "" else own["terms"][0]
        reported = next(r for r in entry["rates"] if r["option"] == row["option"])
        assert row["corrected"] and row["rate_b"] == pytest.approx(reported["rate"])


def test_compare_of_own_runs_names_the_files_not_none(cli, tmp_path):
    spec = _spec(tmp_path)
    _sweep(cli, spec, _arrays(3, calibration=False), tmp_path, "a")
    _sweep(cli, spec, _arrays(4, calibration=False), tmp_path, "b")
    table = _run(cli, "compare", tmp_path / "a", tmp_path / "b", "--bootstrap", "99", "--permutations", "99",
                 "--format", "table", "--out", tmp_path / "cmp").stdout
    page = (tmp_path / "cmp" / "compare.html").read_text()
    for text in (" ".join(table.split()), page):
        assert "None" not in text
    flat = " ".join(table.split())
    assert "from the embeddings file" in flat and "a.npz" in flat and "measured by the model that made" in flat
    assert "measured by the model that made the embeddings files" in " ".join(page.split())


def test_file_levels_against_the_spec_give_notes_config_and_a_compare_note(cli, tmp_path):
    spec = tmp_path / "g5.toml"
    spec.write_text("guidance = 5\n" + SPEC)
    single = _arrays(5, calibration=False, guidance=4.0)
    doc = _sweep(cli, spec, single, tmp_path, "g4")
    validate_document(doc, "sweep")
    assert doc["config"]["guidance"] == 4.0 and doc["config"]["steps"] is None
    assert any("rows are at guidance 4 but the spec says guidance 5" in n for n in doc["summary"]["notes"])
    rng = np.random.default_rng(6)
    rows = [r for g in (3.0, 7.5) for r in planted_rows(rng, SHARES, guidance=g)]
    doc = _sweep(cli, spec, arrays_of(rows, rng, calibration=False), tmp_path, "levels")
    assert doc["config"]["guidance"] is None
    assert any("rows are at guidance 3, 7.5 but the spec says guidance 5" in n for n in doc["summary"]["notes"])
    cmp = json.loads(_run(cli, "compare", tmp_path / "levels", tmp_path / "g4", "--bootstrap", "99",
                          "--permutations", "99", "--format", "json").stdout)
    note = next(n for n in cmp["summary"]["notes"] if "levels" in n)
    assert "run A" in note and "holds 2 guidance / steps levels" in note and "top level (guidance 3.0)" in note
    assert "guidance 4.0" in note


def test_messages_name_the_level_the_array_and_whole_numbers(cli, tmp_path):
    rng = np.random.default_rng(7)
    rows = [r for g in (3.0, 7.5) for r in planted_rows(rng, SHARES, guidance=g)]
    arrays = arrays_of(rows, rng)
    keep = np.ones(len(rows), bool)
    keep[-1] = False  # the last cell at guidance 7.5 is missing
    partial = {k: (v[keep] if getattr(v, "shape", ()) and v.shape[0] == len(rows) else v) for k, v in arrays.items()}
    said = _sweep(cli, _spec(tmp_path), partial, tmp_path, "partial", code=BAD)
    assert "1 of 40 (template, term, seed) cells the spec plans are not in the file at guidance 7.5" in said
    shape = dict(arrays, calibration_group=arrays["calibration_group"][:80])
    said = _sweep(cli, _spec(tmp_path), shape, tmp_path, "shape", code=BAD)
    assert "'calibration_option' has 90 entries but 'calibration_group' has 80" in said and "'image'" not in said
    manifest = tmp_path / "m.csv"
    manifest.write_text("template,term,seed,steps,path\na {} house,,0,15.5,x.png\n")
    said = " ".join(_run(cli, "sweep", _spec(tmp_path), "--images", manifest, "--measurer", "tiny",
                         code=BAD).output.split())
    assert "steps '15.5' is not a whole number" in said


def _calibration_spec(tmp_path: Path, csv_text: str) -> Path:
    (tmp_path / "cal.csv").write_text(csv_text)
    spec = tmp_path / "cal.toml"
    text = SPEC.replace("[attributes.colour]", f'calibration = "{tmp_path / "cal.csv"}"\n[attributes.colour]')
    spec.write_text(text)
    return spec


def test_a_missing_or_unreadable_calibration_image_exits_2_naming_the_csv_line(cli, tmp_path):
    from PIL import Image

    for i, option in enumerate(OPTIONS):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / f"{option}.png")
    lines = ["path,group,option"] + [f"{o}.png,colour,{o}" for o in OPTIONS]
    spec = _calibration_spec(tmp_path, "\n".join(lines + ["gone.png,colour,red"]) + "\n")
    said = " ".join(_run(cli, "sweep", spec, "--pipeline", "tiny", "--measurer", "tiny", "--out", tmp_path / "r",
                         code=BAD).output.split())
    assert f"{tmp_path / 'cal.csv'} line 5" in said and "gone.png does not exist" in said
    assert not (tmp_path / "r").exists()
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    spec = _calibration_spec(tmp_path, "\n".join(lines + ["broken.png,colour,blue"]) + "\n")
    said = " ".join(_run(cli, "sweep", spec, "--pipeline", "tiny", "--measurer", "tiny", code=BAD).output.split())
    assert "line 5" in said and "broken.png is not a readable image" in said and "BytesIO" not in said
