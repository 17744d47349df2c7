"""Numbers at the edges through the CLI with your own embeddings (issue 29): extreme but finite
scales give the unit-row result, rows that cannot be normalised are excluded and counted, an
all-zero probe embedding is refused with exit 2 before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ldmprobe.errors import ExitCode

FAST = ("--permutations", "199", "--bootstrap", "199", "--no-report", "--format", "json")


def _spec(tmp_path: Path) -> Path:
    path = tmp_path / "own.toml"
    path.write_text('templates = ["a {} house", "the {} house"]\nbaseline = ""\nterms = ["big"]\n'
                    'probes = ["p", "q"]\nseeds = 3\n')
    return path


def _arrays(seed: int = 0, d: int = 8) -> dict:
    rng = np.random.default_rng(seed)
    cells = [(t, m, s) for t in ("a {} house", "the {} house") for m in ("", "big") for s in (0, 1, 2)]
    image = rng.normal(size=(len(cells), d)) * 0.3 + np.eye(d)[1]
    image[[i for i, c in enumerate(cells) if c[1] == "big"], 0] += 1.0
    return {"image": image, "template": np.array([c[0] for c in cells]), "term": np.array([c[1] for c in cells]),
            "seed": np.array([c[2] for c in cells]), "probe": np.array(["p", "q"]), "probe_embedding": np.eye(d)[:2]}


def _run(tmp_path: Path, arrays: dict, name: str):
    from ldmprobe.cli.main import main

    np.savez(tmp_path / f"{name}.npz", **arrays)
    return CliRunner().invoke(main, ["sweep", str(_spec(tmp_path)), "--embeddings", str(tmp_path / f"{name}.npz"),
                                     *FAST, "--out", str(tmp_path / name)])


def _numbers(document: dict) -> list:
    term = document["terms"][0]
    return [term["image_drift"]["estimate"]] + [(r["probe"], r["shift"], r["p_value"], r["n_cells"])
                                                for r in term["probes"]]


@pytest.mark.parametrize("scale", [1e155, 1e-170])
def test_scaled_rows_give_the_unit_row_result(tmp_path, scale):
    arrays = _arrays()
    plain = _run(tmp_path, arrays, "plain")
    scaled = _run(tmp_path, {**arrays, "image": arrays["image"] * scale}, "scaled")
    assert plain.exit_code == 0 and scaled.exit_code == 0, scaled.output
    a, b = json.loads(plain.stdout), json.loads(scaled.stdout)
    assert b["terms"][0]["excluded"] == 0
    assert _numbers(b)[0] == pytest.approx(_numbers(a)[0], rel=1e-9)
    for x, y in zip(_numbers(a)[1:], _numbers(b)[1:]):
        assert (x[0], x[3]) == (y[0], y[3]) and (x[1], x[2]) == pytest.approx((y[1], y[2]), rel=1e-6)


def test_zero_rows_are_excluded_and_counted(tmp_path):
    arrays = _arrays()
    image = arrays["image"].copy()
    image[list(arrays["term"]).index("big")] = 0.0  # one 'big' image: all zeros
    result = _run(tmp_path, {**arrays, "image": image}, "zero")
    assert result.exit_code == 0, result.output
    term = json.loads(result.stdout)["terms"][0]
    assert term["excluded"] == 1 and term["n_pairs"] == 5 and all(r["n_cells"] == 5 for r in term["probes"])


def test_all_zero_probe_embedding_is_refused_with_exit_2(tmp_path):
    arrays = _arrays()
    probes = arrays["probe_embedding"].copy()
    probes[1] = 0.0
    result = _run(tmp_path, {**arrays, "probe_embedding": probes}, "zeroprobe")
    assert result.exit_code == int(ExitCode.BAD_INPUT), result.output
    assert "'q'" in result.stderr and "all zeros" in result.stderr
    assert not (tmp_path / "zeroprobe" / "results.json").exists()
