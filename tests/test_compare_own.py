"""`ldmprobe compare` on two runs computed from embeddings files (``sweep --embeddings``).

No model is involved: the vectors are read back from each run's file (checked by its sha256),
the two files must be in one space (same dimension, same probe embeddings), and a run from a
file is never compared with a generated one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ldmprobe.results.provenance import validate_document

TEMPLATES = ["a {} house", "the {} house", "a photo of a {} house", "a {} house in a street"]
SEEDS = [0, 1, 2, 3, 4]
D = 12


def invoke(cli, *args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def write_spec(folder: Path) -> Path:
    path = folder / "own.toml"
    path.write_text(f"name = \"own\"\ntemplates = {json.dumps(TEMPLATES)}\nbaseline = \"\"\n"
                    "terms = [\"big\", \"old\"]\nprobes = [\"p\", \"q\"]\nseeds = 5\n")
    return path


def arrays(big_shift: float, *, seed: int, noise_seed: int | None = None, probe_twist: float = 0.0) -> dict:
    """Cells of the spec above: 'big' images moved by ``big_shift`` along dimension 0 (probe p);
    'old' moved by 0.6 along dimension 3 in every file. The same template and seed effects in
    each file (``seed``), fresh image noise per file (``noise_seed``)."""
    base = np.random.default_rng(seed)
    template_effect = base.normal(size=(len(TEMPLATES), D)) * 0.3
    seed_effect = base.normal(size=(len(SEEDS), D)) * 0.3
    noise = np.random.default_rng(seed if noise_seed is None else noise_seed)
    rows, labels = [], []
    for t, template in enumerate(TEMPLATES):
        for term in ("", "big", "old"):
            for s in SEEDS:
                v = np.eye(D)[1] + template_effect[t] + seed_effect[s] + noise.normal(size=D) * 0.1
                if term == "big":
                    v = v + big_shift * np.eye(D)[0]
                if term == "old":
                    v = v + 0.6 * np.eye(D)[3]
                rows.append(v)
                labels.append((template, term, s))
    probes = np.eye(D)[:2].copy()
    probes[1] = np.cos(probe_twist) * np.eye(D)[1] + np.sin(probe_twist) * np.eye(D)[2]
    return {"image": np.array(rows), "template": np.array([c[0] for c in labels]),
            "term": np.array([c[1] for c in labels]), "seed": np.array([c[2] for c in labels]),
            "probe": np.array(["p", "q"]), "probe_embedding": probes}


def sweep(cli, spec: Path, npz: Path, out: Path) -> None:
    result = invoke(cli, "sweep", spec, "--embeddings", npz, "--permutations", "199", "--bootstrap", "199",
                    "--no-report", "--out", out, "--format", "json")
    assert result.exit_code == 0, result.output


def compare(cli, a: Path, b: Path, *extra):
    return invoke(cli, "compare", a, b, "--permutations", "999", "--bootstrap", "499", *extra)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cli):
    """A: 'big' moves the images by 1.0; B (its 'fine-tune'): by 0.2; 'old' the same in both."""
    folder = tmp_path_factory.mktemp("compare-own")
    spec = write_spec(folder)
    for name, shift, noise in (("a", 1.0, 1), ("b", 0.2, 2)):
        np.savez(folder / f"{name}.npz", **arrays(shift, seed=0, noise_seed=noise))
        sweep(cli, spec, folder / f"{name}.npz", folder / name)
    return folder


def test_a_reduced_bias_in_run_b_is_found(cli, runs):
    result = compare(cli, runs / "a", runs / "b", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    validate_document(doc, "compare")
    terms = {t["term"]: t for t in doc["terms"]}
    assert terms["big"]["drift"]["verdict"] == "better" and terms["big"]["drift"]["difference"] < 0
    assert terms["old"]["drift"]["verdict"] not in ("better", "worse")
    p_shift = next(row for row in terms["big"]["probes"] if row["probe"] == "p")
    assert p_shift["verdict"] == "better" and p_shift["shift_a"] > 0.5 > p_shift["shift_b"]
    # each run's own numbers are its sweep's
    swept = json.loads((runs / "a" / "results.json").read_text())
    big = next(t for t in swept["terms"] if t["term"] == "big")
    assert terms["big"]["drift"]["drift_a"] == pytest.approx(big["image_drift"]["estimate"], rel=1e-6)


def test_a_file_changed_after_its_sweep_is_refused(cli, runs, tmp_path):
    spec = write_spec(tmp_path)
    np.savez(tmp_path / "c.npz", **arrays(0.2, seed=0, noise_seed=3))
    sweep(cli, spec, tmp_path / "c.npz", tmp_path / "c")
    np.savez(tmp_path / "c.npz", **arrays(0.5, seed=0, noise_seed=3))
    result = compare(cli, runs / "a", tmp_path / "c")
    assert result.exit_code == 2 and "changed since" in result.stderr and str(tmp_path / "c.npz") in result.stderr


def test_files_from_two_measurers_are_refused(cli, runs, tmp_path):
    spec = write_spec(tmp_path)
    np.savez(tmp_path / "d.npz", **arrays(0.2, seed=0, noise_seed=4, probe_twist=0.5))
    sweep(cli, spec, tmp_path / "d.npz", tmp_path / "d")
    result = compare(cli, runs / "a", tmp_path / "d")
    assert result.exit_code == 2 and "embed the probe words differently" in " ".join(result.stderr.split())


def test_a_file_run_and_a_generated_run_are_refused(cli, runs, tmp_path):
    from ldmprobe.results.compare import RunData, check_comparable, read_run
    from ldmprobe.errors import BadInputError

    a = read_run(runs / "a", "RUN_A")
    generated = RunData(tmp_path, {**a.document, "source": None,
                                   "config": {**a.document["config"],
                                              "measurer": {"spec": "tiny", "identity": {"source": "tiny"}}}},
                        a.items)
    with pytest.raises(BadInputError, match="embeddings file"):
        check_comparable(a, generated)
