"""Association tests on the user's own embeddings (iEAT CSV layout, .npy) and image folders."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from ldmprobe.errors import ExitCode
from ldmprobe.results.assoc import schema_path
from ldmprobe.usecases.assoc import AssocOptions, assoc_from_names


def write_csv(path: Path, rows, labels=None, prompts=None) -> Path:
    """A CSV in the iEAT layout: unnamed index column, one column per dimension, then img (and prompt)."""
    rows = np.asarray(rows, dtype=float)
    labels = labels or [f"{path.stem}{i}.jpg" for i in range(len(rows))]
    header = [""] + [str(j) for j in range(rows.shape[1])] + ["img"] + (["prompt"] if prompts else [])
    lines = [",".join(header)]
    for i, row in enumerate(rows):
        cells = [str(i)] + [repr(float(v)) for v in row] + [labels[i]] + ([prompts[i]] if prompts else [])
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def planted(rng, n, d=6, strength=1.0):
    """Four sets: X near A's direction, Y near B's (strength 0: all noise)."""
    u, v = np.eye(d)[0], np.eye(d)[1]
    noise = lambda k: rng.normal(size=(k, d))  # noqa: E731
    return {"X": noise(n) + 3 * strength * u, "Y": noise(n) + 3 * strength * v,
            "A": noise(n) + 3 * u, "B": noise(n) + 3 * v}


def write_sets(tmp_path: Path, sets: dict, prompts: dict | None = None) -> dict[str, str]:
    prompts = prompts or {}
    return {k: str(write_csv(tmp_path / f"{k.lower()}.csv", v, prompts=prompts.get(k))) for k, v in sets.items()}


def brute_force(sets, ddof=1, blocks=None):
    """Independent WEAT: d, S and the exact one-sided p over all re-partitions (of blocks if given)."""
    unit = {k: np.asarray(v, float) / np.linalg.norm(v, axis=1, keepdims=True) for k, v in sets.items()}
    s_of = lambda w: float(np.mean([w @ a for a in unit["A"]]) - np.mean([w @ b for b in unit["B"]]))  # noqa: E731
    s = [s_of(w) for w in unit["X"]] + [s_of(w) for w in unit["Y"]]
    n_x = len(unit["X"])
    d = (np.mean(s[:n_x]) - np.mean(s[n_x:])) / np.std(s, ddof=ddof)
    S = sum(s[:n_x]) - sum(s[n_x:])
    if blocks is None:
        blocks = list(range(len(s)))
    names = list(dict.fromkeys(blocks))
    n_bx = len(dict.fromkeys(blocks[:n_x]))
    stat = lambda chosen: (np.mean([v for v, b in zip(s, blocks) if b in chosen])  # noqa: E731
                           - np.mean([v for v, b in zip(s, blocks) if b not in chosen]))
    observed = stat(set(names[:n_bx]))
    combos = list(itertools.combinations(names, n_bx))
    k = sum(stat(set(c)) >= observed - 1e-12 for c in combos)
    return d, S, k / len(combos), len(combos)


def run_cli(cli, paths: dict, *extra):
    args = ["assoc", *[a for k, p in paths.items() for a in ("--set", f"{k}={p}")], *extra]
    return CliRunner().invoke(cli, args)


def validator():
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_effect_and_p_equal_a_brute_force_computation(tmp_path):
    rng = np.random.default_rng(3)
    sets = planted(rng, 5, strength=0.3)
    sets["Y"] = sets["Y"][:4]  # unequal target sizes: comb(9, 5) = 126 re-partitions
    result = assoc_from_names(None, AssocOptions(measurer="unused", sets=write_sets(tmp_path, sets)))
    d, S, p, n = brute_force(sets)
    assert result.exact and result.n_partitions == n == 126 and result.unit == "item"
    assert result.effect_size == pytest.approx(d, abs=1e-9)
    assert result.statistic == pytest.approx(S, abs=1e-9)
    assert result.p_value == pytest.approx(p, abs=1e-12)
    assert any("X has 5 items and Y 4" in note for note in result.notes)


@pytest.mark.slow
def test_planted_association_is_found_and_a_null_one_is_not(tmp_path):
    found = assoc_from_names(None, AssocOptions(measurer="unused",
                                                sets=write_sets(tmp_path, planted(np.random.default_rng(0), 8))))
    assert found.effect_size > 1.5 and found.p_value == pytest.approx(1 / math.comb(16, 8))
    rejections = 0
    for seed in range(30):
        folder = tmp_path / f"null{seed}"
        folder.mkdir()
        sets = write_sets(folder, planted(np.random.default_rng(100 + seed), 6, strength=0))
        null = assoc_from_names(None, AssocOptions(measurer="unused", sets=sets))
        rejections += null.p_value <= 0.05
    assert rejections <= 5  # about 1.5 expected of 30 at the 5 % level


def test_a_prompt_column_makes_prompts_the_permutation_unit(tmp_path):
    rng = np.random.default_rng(7)
    sets = planted(rng, 9, strength=0.4)
    prompts = {"X": [f"x prompt {i // 3}" for i in range(9)], "Y": [f"y prompt {i // 3}" for i in range(9)]}
    grouped = assoc_from_names(None, AssocOptions(measurer="unused", sets=write_sets(tmp_path, sets, prompts)))
    blocks = [("x", p) for p in prompts["X"]] + [("y", p) for p in prompts["Y"]]
    d, _, p, n = brute_force(sets, blocks=blocks)
    assert grouped.unit == "prompt" and grouped.n_blocks_x == 3 and grouped.n_partitions == n == 20
    assert grouped.p_value == pytest.approx(p, abs=1e-12) and grouped.effect_size == pytest.approx(d)
    plain = assoc_from_names(None, AssocOptions(measurer="unused",
                                                sets=write_sets(tmp_path / ".." / tmp_path.name, sets)))
    assert plain.unit == "item" and plain.n_partitions == math.comb(18, 9)
    assert plain.p_value != grouped.p_value and plain.effect_size == pytest.approx(grouped.effect_size)


def test_csv_npy_and_spec_agree_and_the_json_records_the_sources(tmp_path, cli):
    sets = planted(np.random.default_rng(1), 6)
    paths = write_sets(tmp_path, sets)
    npys = {}
    for k, v in sets.items():
        np.save(tmp_path / f"{k}.npy", v)
        npys[k] = str(tmp_path / f"{k}.npy")
    spec = tmp_path / "mine.toml"
    spec.write_text("\n".join(f'[{k}]\nlabel = "{k.lower()} set"\nembeddings = "{k.lower()}.csv"' for k in "XYAB"))
    from_csv = run_cli(cli, paths, "--format", "json", "--permutations", "999")
    from_npy = run_cli(cli, npys, "--format", "json", "--permutations", "999")
    from_spec = CliRunner().invoke(cli, ["assoc", str(spec), "--format", "json", "--permutations", "999"])
    docs = [json.loads(r.stdout) for r in (from_csv, from_npy, from_spec)]
    for doc in docs:
        validator().validate(doc)
        assert doc["config"]["measurer"] is None
    assert docs[0]["result"]["effect_size"] == pytest.approx(docs[1]["result"]["effect_size"])
    assert docs[0]["result"]["p_value"] == docs[1]["result"]["p_value"] == docs[2]["result"]["p_value"]
    source = docs[0]["sources"]["X"]
    assert source["sha256"] == hashlib.sha256(Path(paths["X"]).read_bytes()).hexdigest()
    assert source["path"] == paths["X"] and source["items"][0] == "x0.jpg" and source["dim"] == 6
    assert docs[0]["result"]["labels"]["X"] == "x" and docs[2]["result"]["labels"]["X"] == "x set"


def _bad_input(cli, paths, *extra) -> str:
    result = run_cli(cli, paths, *extra)
    assert result.exit_code == int(ExitCode.BAD_INPUT), result.output
    assert result.stdout == ""
    return result.stderr


def test_errors_name_the_file(tmp_path, cli):
    sets = planted(np.random.default_rng(2), 4)
    paths = write_sets(tmp_path, sets)
    assert "nope.csv not found" in _bad_input(cli, {**paths, "B": str(tmp_path / "nope.csv")})
    wide = write_csv(tmp_path / "wide.csv", np.ones((4, 7)))
    message = _bad_input(cli, {**paths, "A": str(wide)})
    assert "wide.csv has 7" in message and "b.csv has 6" in message
    bad = sets["Y"].copy()
    bad[2, 1] = np.nan
    message = _bad_input(cli, {**paths, "Y": str(write_csv(tmp_path / "nan.csv", bad))})
    assert "nan.csv" in message and "1 of 4 rows" in message and "3 (nan2.jpg)" in message
    empty = tmp_path / "empty.csv"
    empty.write_text(",0,1,img\n")
    assert "empty.csv: has a header but no rows" in _bad_input(cli, {**paths, "X": str(empty)})
    np.save(tmp_path / "none.npy", np.zeros((0, 6)))
    assert "none.npy: is empty" in _bad_input(cli, {**paths, "X": str(tmp_path / "none.npy")})
    words = tmp_path / "words.csv"
    words.write_text(",img,caption\n0,a.jpg,a cat\n")
    assert "words.csv: has no numeric columns" in _bad_input(cli, {**paths, "X": str(words)})
    assert "--unit prompt needs a 'prompt' column" in _bad_input(cli, paths, "--unit", "prompt")
    assert "missing" in _bad_input(cli, {"X": paths["X"]})


def test_a_sweep_spec_given_to_assoc_says_so(tmp_path, cli):
    spec = tmp_path / "sweep.toml"
    spec.write_text('templates = ["a photo of {}"]\nbaseline = "a house"\nterms = ["a fancy house"]\n')
    result = CliRunner().invoke(cli, ["assoc", str(spec)])
    assert result.exit_code == int(ExitCode.BAD_INPUT)
    assert "looks like a sweep spec" in result.stderr and "did you mean 'test'" not in result.stderr


@pytest.mark.slow
def test_embeddings_only_never_imports_torch(tmp_path):
    paths = write_sets(tmp_path, planted(np.random.default_rng(4), 4))
    args = [a for k, p in paths.items() for a in ("--set", f"{k}={p}")]
    code = (
        "import sys\nfrom ldmprobe.cli.main import main\n"
        f"try:\n    main.main(['assoc', *{args!r}, '--format', 'json'], standalone_mode=False)\n"
        "finally:\n    print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    assert "NO-TORCH" in out.stderr
    assert json.loads(out.stdout)["result"]["n_x"] == 4


def test_image_folders_are_embedded_by_the_measurer_and_cached(tmp_path, tiny_measurer, monkeypatch):
    from PIL import Image

    from ldmprobe.engine import encode
    from ldmprobe.models import load as model_load

    monkeypatch.setattr(model_load, "load_measurer", lambda ref, **kw: tiny_measurer)
    paths = {}
    for k, colour in zip("XYAB", [(250, 10, 10), (10, 10, 250), (240, 30, 30), (30, 30, 240)]):
        folder = tmp_path / k
        folder.mkdir()
        for i in range(3):
            Image.new("RGB", (32, 32), tuple(min(255, c + 5 * i) for c in colour)).save(folder / f"{i}.png")
        paths[k] = str(folder)
    first = assoc_from_names(None, AssocOptions(measurer="tiny", device="cpu", sets=paths))
    assert first.n_x == 3 and first.sources["X"].files[0][0] == "0.png" and math.isfinite(first.effect_size)
    monkeypatch.setattr(encode, "encode_images", lambda *a, **k: pytest.fail("cached: nothing to embed"))
    again = assoc_from_names(None, AssocOptions(measurer="tiny", device="cpu", sets=paths))
    assert again.result_dict() == first.result_dict()
    (tmp_path / "X" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(Exception) as info:
        assoc_from_names(None, AssocOptions(measurer="tiny", device="cpu", sets=paths))
    assert "broken.png" in str(info.value) and getattr(info.value, "exit_code", None) == ExitCode.BAD_INPUT
