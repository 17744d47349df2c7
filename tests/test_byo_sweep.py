"""Sweeps on the user's own embeddings (--embeddings FILE.npz) and images (--images MANIFEST),
and the replay test: a tiny sweep's statistics equal those of its exported embeddings."""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ldmprobe.errors import ExitCode
from ldmprobe.results.provenance import validate_document

SPEC = """name = "own"
templates = ["a photo of a {} house", "a {} house"]
baseline = ""
terms = ["red"]
controls = ["nice"]
probes = ["brick", "tree"]
seeds = 2
"""
VOCAB = "brick\ntree\nhouse\ncar\nsky\nred\n"
FAST = ("--permutations", "199", "--bootstrap", "199")
BAD = int(ExitCode.BAD_INPUT)


def invoke(cli, *args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def null_conditioning(document: dict) -> dict:
    """The document as a run with no generator reports it: conditioning drift null (no per-encoder rows)."""
    document = copy.deepcopy(document)
    for term in document["terms"] + document["controls"]:
        for drift in [term["text_drift"]] + [template["text_drift"] for template in term["templates"]]:
            drift["conditioning"] = None
            drift["conditioning_by_encoder"] = []  # no generator, no encoder rows
    return document


def statistics(document: dict) -> dict:
    """Every statistic of a sweep document (terms, controls, summary without its notes)."""
    summary = {k: v for k, v in document["summary"].items() if k != "notes"}
    return {"terms": document["terms"], "controls": document["controls"], "summary": summary}


@pytest.fixture(scope="module")
def generated(tmp_path_factory, cli, tiny_generator, tiny_measurer):
    """One tiny sweep (12 images) with its embeddings exported."""
    folder = tmp_path_factory.mktemp("byo-sweep")
    (folder / "own.toml").write_text(SPEC)
    (folder / "vocab.txt").write_text(VOCAB)
    result = invoke(cli, "sweep", folder / "own.toml", "--pipeline", "tiny", "--measurer", "tiny", "--steps", "2",
                    "--vocab", folder / "vocab.txt", *FAST, "--out", folder / "run", "--no-report",
                    "--export-embeddings", folder / "own.npz", "--format", "json")
    assert result.exit_code == 0, result.output
    return folder, json.loads(result.stdout)


# -- the replay test


def test_replay_through_embeddings_gives_every_statistic(generated, cli):
    folder, document = generated
    assert any(t["text_drift"]["conditioning"] is not None for t in document["terms"])  # the generator had some
    replay = invoke(cli, "sweep", folder / "own.toml", "--embeddings", folder / "own.npz", *FAST,
                    "--out", folder / "replay", "--format", "json")
    assert replay.exit_code == 0, replay.output
    again = json.loads(replay.stdout)
    assert statistics(again) == statistics(null_conditioning(document))
    assert again["terms"][0]["probes"] and again["terms"][0]["direction_neighbours"]["threshold"] is not None
    for doc in (document, again):
        validate_document(doc, "sweep")
    assert "source" not in document
    source = again["source"]
    assert source["kind"] == "embeddings" and source["rows"] == 12 and source["extra_rows"] == 0
    assert source["sha256"] == hashlib.sha256((folder / "own.npz").read_bytes()).hexdigest()
    assert any("no model was run" in n for n in again["summary"]["notes"])
    assert (folder / "replay" / "report.html").is_file()
    assert json.loads((folder / "replay" / "results.json").read_text())["source"] == source
    other_seed = invoke(cli, "sweep", folder / "own.toml", "--embeddings", folder / "own.npz",
                        "--permutations", "199", "--bootstrap", "199", "--stats-seed", "5", "--no-report",
                        "--out", folder / "replay-seed5", "--format", "json")
    assert statistics(json.loads(other_seed.stdout)) != statistics(again)  # the comparison can fail


def test_export_holds_the_cached_embeddings(generated):
    from ldmprobe.store.packed_cache import embedding_store
    from ldmprobe.models import sources as models

    folder, _ = generated
    arrays = np.load(folder / "own.npz")
    items = [json.loads(line) for line in (folder / "run" / "items.jsonl").read_text().splitlines()]
    store = embedding_store(models.measurer_identity(models.resolve_measurer("tiny")))
    by_cell = {(i["template"], i["term"], i["seed"]): store.load(i["key"]) for i in items}
    assert len(arrays["image"]) == len(by_cell) == 12
    for row, template, term, seed in zip(arrays["image"], arrays["template"], arrays["term"], arrays["seed"]):
        np.testing.assert_array_equal(row, by_cell[(str(template), str(term), int(seed))])
    assert list(arrays["probe"]) == ["brick", "tree"] and set(arrays["vocab"]) >= {"brick", "house"}


# -- your own images


def write_manifest(folder: Path, run: Path, kind: str, extra: bool = False) -> Path:
    items = [json.loads(line) for line in (run / "items.jsonl").read_text().splitlines()]
    rel = os.path.relpath(run, folder)
    rows = [{"template": i["template"], "term": i["term"], "seed": i["seed"], "path": f"{rel}/{i['image']}"}
            for i in items]
    if extra:
        rows.append({**rows[0], "term": "blue"})
    path = folder / f"manifest.{kind}"
    if kind == "csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["template", "term", "seed", "path"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_images_manifest_is_embedded_and_analysed_like_generated(generated, cli, tmp_path, kind, tiny_measurer):
    from PIL import Image

    from ldmprobe.digest import CACHE_KINDS, cache_key
    from ldmprobe.engine.assoc_images import user_image_key
    from ldmprobe.engine.encode import encode_images
    from ldmprobe.store.packed_cache import embedding_store

    folder, document = generated
    manifest = write_manifest(tmp_path, folder / "run", kind, extra=True)
    result = invoke(cli, "sweep", folder / "own.toml", "--images", manifest, "--measurer", "tiny",
                    "--vocab", folder / "vocab.txt", *FAST, "--out", tmp_path / "run", "--format", "json")
    assert result.exit_code == 0, result.output
    assert "1 of 13 rows" in result.stderr and "ignored" in result.stderr
    mine = json.loads(result.stdout)
    validate_document(mine, "sweep")
    assert mine["source"]["kind"] == "images" and mine["source"]["format"] == kind and mine["source"]["extra_rows"] == 1
    assert mine["config"]["measurer"]["spec"] == "tiny" and mine["config"]["steps"] is None
    # every image's embedding is the measurer's, stored under its content key
    items = [json.loads(line) for line in (tmp_path / "run" / "items.jsonl").read_text().splitlines()]
    store = embedding_store(tiny_measurer.identity)
    for item in items[:3]:
        sha = hashlib.sha256((tmp_path / item["source_path"]).read_bytes()).hexdigest()
        assert item["key"] == user_image_key(sha) == cache_key("user-image", CACHE_KINDS["user-image"], {"sha256": sha})
        with Image.open(tmp_path / "run" / item["image"]) as image:
            direct = encode_images(tiny_measurer, [image.convert("RGB")])[0]
        np.testing.assert_allclose(store.load(item["key"]), direct, atol=1e-5)
    # the same images as the generated sweep: the same statistics
    ours, theirs = statistics(mine), statistics(null_conditioning(document))
    for a, b in zip(ours["terms"] + ours["controls"], theirs["terms"] + theirs["controls"]):
        assert a["image_drift"]["estimate"] == pytest.approx(b["image_drift"]["estimate"], rel=1e-4, abs=1e-9)
        assert [p["shift"] for p in a["probes"]] == pytest.approx([p["shift"] for p in b["probes"]], abs=1e-7)
        assert a["text_drift"] == b["text_drift"]
    assert (tmp_path / "run" / "contact-00.png").is_file() and (tmp_path / "run" / "report.html").is_file()


def test_images_are_cached_by_content(generated, cli, tmp_path, monkeypatch):
    from ldmprobe.engine import encode
    from ldmprobe.models import load as model_load

    folder, _ = generated
    manifest = write_manifest(tmp_path, folder / "run", "csv")
    first = invoke(cli, "sweep", folder / "own.toml", "--images", manifest, "--measurer", "tiny", "--vocab",
                   folder / "vocab.txt", *FAST, "--out", tmp_path / "a", "--no-report", "--format", "json")
    assert first.exit_code == 0, first.output
    monkeypatch.setattr(encode, "encode_images", lambda *a, **k: pytest.fail("cached: nothing to embed"))
    monkeypatch.setattr(model_load, "load_measurer", lambda *a, **k: pytest.fail("cached: no measurer needed"))
    again = invoke(cli, "sweep", folder / "own.toml", "--images", manifest, "--measurer", "tiny", "--vocab",
                   folder / "vocab.txt", *FAST, "--out", tmp_path / "b", "--no-report", "--format", "json")
    assert again.exit_code == 0, again.output
    assert statistics(json.loads(again.stdout)) == statistics(json.loads(first.stdout))


def test_compare_works_on_image_manifest_runs(generated, cli, tmp_path):
    """A manifest run (someone's own images) against the generated run of the same spec: the
    images are paired by (template, term, seed); in B the term's images are replaced by the
    baseline's, so its drift must fall to zero and the change equal minus A's drift."""
    folder, document = generated
    manifest = write_manifest(tmp_path, folder / "run", "csv")
    rows = list(csv.DictReader(manifest.open()))
    baseline = {(r["template"], r["seed"]): r["path"] for r in rows if r["term"] == ""}
    for row in rows:
        if row["term"] == "red":
            row["path"] = baseline[(row["template"], row["seed"])]
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["template", "term", "seed", "path"])
        writer.writeheader()
        writer.writerows(rows)
    result = invoke(cli, "sweep", folder / "own.toml", "--images", manifest, "--measurer", "tiny", *FAST,
                    "--out", tmp_path / "b", "--no-report", "--format", "json")
    assert result.exit_code == 0, result.output
    mine = json.loads(result.stdout)
    red_b = next(t for t in mine["terms"] if t["term"] == "red")
    assert red_b["image_drift"]["estimate"] == pytest.approx(0.0, abs=1e-12)
    compared = invoke(cli, "compare", folder / "run", tmp_path / "b", *FAST, "--format", "json")
    assert compared.exit_code == 0, compared.output
    doc = json.loads(compared.stdout)
    validate_document(doc, "compare")
    assert doc["runs"]["a"]["source"] is None and doc["runs"]["b"]["source"]["kind"] == "images"
    red = next(t for t in doc["terms"] if t["term"] == "red")["drift"]
    red_a = next(t for t in document["terms"] if t["term"] == "red")["image_drift"]["estimate"]
    assert red["drift_a"] == pytest.approx(red_a, rel=1e-6)
    assert red["drift_b"] == pytest.approx(0.0, abs=1e-9)
    assert red["difference"] == pytest.approx(-red_a, rel=1e-6)


def test_unreadable_or_missing_image_is_named(generated, cli, tmp_path):
    folder, _ = generated
    manifest = write_manifest(tmp_path, folder / "run", "csv")
    lines = manifest.read_text().splitlines()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    lines[1] = ",".join(lines[1].split(",")[:-1] + ["broken.png"])
    manifest.write_text("\n".join(lines) + "\n")
    result = invoke(cli, "sweep", folder / "own.toml", "--images", manifest, "--measurer", "tiny")
    assert result.exit_code == BAD and "broken.png" in result.stderr and "not a readable image" in result.stderr
    lines[1] = ",".join(lines[1].split(",")[:-1] + ["gone.png"])
    manifest.write_text("\n".join(lines) + "\n")
    result = invoke(cli, "sweep", folder / "own.toml", "--images", manifest, "--measurer", "tiny")
    assert result.exit_code == BAD and "gone.png" in result.stderr and "not found" in result.stderr


def test_manifest_missing_cells_and_columns(generated, cli, tmp_path):
    folder, _ = generated
    manifest = write_manifest(tmp_path, folder / "run", "jsonl")
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:-2]) + "\n")
    result = invoke(cli, "sweep", folder / "own.toml", "--images", manifest, "--measurer", "tiny")
    assert result.exit_code == BAD and "2 of 12" in result.stderr and "'nice', seed 1" in result.stderr
    manifest.write_text(json.dumps({"template": "a {} house", "term": "", "seed": 0}) + "\n")
    result = invoke(cli, "sweep", folder / "own.toml", "--images", manifest, "--measurer", "tiny")
    assert result.exit_code == BAD and "no path" in result.stderr


# -- your own embeddings (planted, no model)


def own_spec(tmp_path: Path, probes=("p", "q")) -> Path:
    path = tmp_path / "own.toml"
    path.write_text(f'templates = ["a {{}} house", "the {{}} house"]\nbaseline = ""\nterms = ["big"]\n'
                    f"probes = {json.dumps(list(probes))}\nseeds = 3\n")
    return path


def planted(seed: int = 0, d: int = 8) -> dict:
    """Embeddings for own_spec: 'big' images move toward dimension 0 (= probe p)."""
    rng = np.random.default_rng(seed)
    templates, terms, seeds = ["a {} house", "the {} house"], ["", "big"], [0, 1, 2]
    cells = [(t, m, s) for t in templates for m in terms for s in seeds]
    image = rng.normal(size=(len(cells), d)) * 0.3 + np.eye(d)[1]
    image[[i for i, c in enumerate(cells) if c[1] == "big"], 0] += 1.0
    prompts = ["a house", "a big house", "the house", "the big house"]
    return {
        "image": image, "template": np.array([c[0] for c in cells]), "term": np.array([c[1] for c in cells]),
        "seed": np.array([c[2] for c in cells]), "probe": np.array(["p", "q"]), "probe_embedding": np.eye(d)[:2],
        "prompt": np.array(prompts), "prompt_embedding": rng.normal(size=(4, d)),
    }


def write_npz(path: Path, arrays: dict) -> Path:
    np.savez(path, **arrays)
    return path


def unit(x):
    x = np.asarray(x, dtype=float)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.slow
def test_embeddings_numbers_match_an_independent_computation(cli, tmp_path):
    arrays = planted()
    spec = own_spec(tmp_path)
    result = invoke(cli, "sweep", spec, "--embeddings", write_npz(tmp_path / "e.npz", arrays), *FAST,
                    "--out", tmp_path / "run", "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    validate_document(document, "sweep")
    term = document["terms"][0]
    cells = list(zip(arrays["template"], arrays["term"], arrays["seed"]))
    img = {c: unit(v) for c, v in zip(cells, arrays["image"])}
    diffs = np.array([img[(t, "big", s)] - img[(t, "", s)] for t in ("a {} house", "the {} house") for s in (0, 1, 2)])
    shifts = {row["probe"]: row["shift"] for row in term["probes"]}
    assert shifts["p"] == pytest.approx(float(diffs.mean(0) @ unit(arrays["probe_embedding"][0])), abs=1e-9)
    assert shifts["q"] == pytest.approx(float(diffs.mean(0) @ unit(arrays["probe_embedding"][1])), abs=1e-9)
    assert term["probes"][0]["probe"] == "p" and shifts["p"] > 0.1
    text = {p: unit(v) for p, v in zip(arrays["prompt"], arrays["prompt_embedding"])}
    expected_text = np.mean([1 - text["a big house"] @ text["a house"], 1 - text["the big house"] @ text["the house"]])
    assert term["text_drift"]["measurer"] == pytest.approx(expected_text, abs=1e-9)
    assert term["text_drift"]["conditioning"] is None
    assert document["config"]["measurer"]["identity"] is None and document["source"]["dim"] == 8


def test_extra_rows_are_ignored_with_a_count(cli, tmp_path):
    arrays = planted()
    base = invoke(cli, "sweep", own_spec(tmp_path), "--embeddings", write_npz(tmp_path / "a.npz", arrays), *FAST,
                  "--no-report", "--out", tmp_path / "a", "--format", "json")
    more = dict(arrays)
    for name, value in (("image", np.ones((2, 8))), ("template", ["a {} house", "elsewhere {}"]),
                        ("term", ["small", ""]), ("seed", [0, 0])):
        more[name] = np.concatenate([np.asarray(arrays[name]), np.asarray(value)])
    result = invoke(cli, "sweep", own_spec(tmp_path), "--embeddings", write_npz(tmp_path / "b.npz", more), *FAST,
                    "--no-report", "--out", tmp_path / "b", "--format", "json")
    assert result.exit_code == 0, result.output
    assert "2 of 14 rows" in result.stderr and "ignored" in result.stderr
    assert statistics(json.loads(result.stdout)) == statistics(json.loads(base.stdout))
    assert json.loads(result.stdout)["source"]["extra_rows"] == 2


@pytest.mark.parametrize("change, words", [
    (lambda a: {k: v[1:] if k in ("image", "template", "term", "seed") else v for k, v in a.items()},
     ["1 of 12", "('a {} house', '', seed 0)"]),
    (lambda a: {**a, "probe_embedding": np.eye(9)[:2]}, ["'probe_embedding'", "9 dimensions", "'image' has 8"]),
    (lambda a: {**a, "prompt_embedding": np.ones((4, 5))}, ["'prompt_embedding'", "5 dimensions"]),
    (lambda a: {**a, "image": np.where(np.arange(12)[:, None] == 3, np.nan, a["image"])},
     ["'image'", "1 row(s) with NaN", "row 3, counting from 0"]),
    (lambda a: {**a, "probe_embedding": np.array([[np.inf] * 8, [0.0] * 8])}, ["'probe_embedding'", "NaN or infinite"]),
    (lambda a: {k: v for k, v in a.items() if k != "seed"}, ["lacks the array(s) 'seed'"]),
    (lambda a: {k: v for k, v in a.items() if k != "prompt_embedding"}, ["has 'prompt' but no 'prompt_embedding'"]),
    (lambda a: {**a, "probe": np.array(["p", "r"])}, ["lacks the spec's probe(s) 'q'"]),
    (lambda a: {**a, "term": a["term"].astype(object)}, ["object array", "dtype=str"]),
    (lambda a: {**a, "seed": a["seed"].astype(float)}, ["'seed'", "integers"]),
])
def test_bad_embeddings_files_are_named(cli, tmp_path, change, words):
    path = write_npz(tmp_path / "bad.npz", change(planted()))
    result = invoke(cli, "sweep", own_spec(tmp_path), "--embeddings", path, "--out", tmp_path / "run")
    assert result.exit_code == BAD, result.output
    assert str(path) in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()  # nothing written: refused before any work


@pytest.mark.slow
def test_without_prompts_text_is_null_not_made_up(cli, tmp_path):
    arrays = {k: v for k, v in planted().items() if not k.startswith("prompt")}
    result = invoke(cli, "sweep", own_spec(tmp_path), "--embeddings", write_npz(tmp_path / "e.npz", arrays), *FAST,
                    "--out", tmp_path / "run", "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    validate_document(document, "sweep")
    term = document["terms"][0]
    assert term["text_drift"]["measurer"] is None and all(p["text_shift"] is None for p in term["probes"])
    assert term["probes"][0]["shift"] > 0.1 and "text drift and text shift are null" in " ".join(
        document["summary"]["notes"])
    page = (tmp_path / "run" / "report.html").read_text()  # the report shows the nulls as dashes
    assert "text shift" in page and not re.search(r"\bnan\b", page, re.I)


def test_generation_flags_are_refused_with_your_own_data(cli, tmp_path):
    path = write_npz(tmp_path / "e.npz", planted())
    for flags in (["--steps", "3"], ["--measurer", "tiny"], ["--dry-run"], ["--images", path],
                  ["--export-embeddings", tmp_path / "x.npz"]):
        result = invoke(cli, "sweep", own_spec(tmp_path), "--embeddings", path, *flags)
        assert result.exit_code == BAD and flags[0] in result.stderr, (flags, result.output)
    result = invoke(cli, "sweep", own_spec(tmp_path), "--export-embeddings", tmp_path / "x.txt", "--pipeline", "tiny",
                    "--measurer", "tiny")
    assert result.exit_code == BAD and ".npz" in result.stderr


@pytest.mark.slow
def test_embeddings_sweep_never_imports_torch(tmp_path):
    path = write_npz(tmp_path / "e.npz", planted())
    args = ["sweep", str(own_spec(tmp_path)), "--embeddings", str(path), *FAST, "--out", str(tmp_path / "run"),
            "--format", "json"]
    code = ("import sys\nfrom ldmprobe.cli.main import main\n"
            f"try:\n    main.main({args!r}, standalone_mode=False)\n"
            "finally:\n    print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "NO-TORCH" in out.stderr
    assert json.loads(out.stdout)["source"]["kind"] == "embeddings"


# -- the shipped example files (README "Your own images and embeddings")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_shipped_examples_come_from_their_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_byo_examples", EXAMPLES / "make_byo_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    byo = EXAMPLES / "byo"
    assert (byo / "spec.toml").read_text() == module.SPEC
    assert (byo / "vocab.txt").read_text().split("\n")[:-1] == module.VOCAB
    rows = list(csv.DictReader((byo / "manifest.csv").open()))
    assert len(rows) == 96 and all((byo / r["path"]).is_file() for r in rows)
    assert len(np.load(byo / "embeddings.npz")["image"]) == 96


@pytest.mark.slow
def test_shipped_examples_find_the_planted_association(cli, tmp_path):
    byo = EXAMPLES / "byo"
    from_embeddings = invoke(cli, "sweep", byo / "spec.toml", "--embeddings", byo / "embeddings.npz", "--no-report",
                             "--out", tmp_path / "e", "--format", "json")
    assert from_embeddings.exit_code == 0, from_embeddings.output
    fancy = json.loads(from_embeddings.stdout)["terms"][0]
    assert fancy["term"] == "fancy" and fancy["probes"][0]["probe"] == "a yellow background"
    assert fancy["probes"][0]["shift"] > 0.2 and fancy["probes"][0]["ci_low"] > 0
    from_images = invoke(cli, "sweep", byo / "spec.toml", "--images", byo / "manifest.csv", "--measurer", "reference",
                         "--vocab", byo / "vocab.txt", "--no-report", "--out", tmp_path / "i", "--format", "json")
    assert from_images.exit_code == 0, from_images.output
    again = json.loads(from_images.stdout)["terms"][0]
    assert again["image_drift"]["estimate"] == pytest.approx(fancy["image_drift"]["estimate"], rel=1e-3)
    assert [p["shift"] for p in again["probes"]] == pytest.approx([p["shift"] for p in fancy["probes"]], abs=1e-4)
    assoc = invoke(cli, "assoc", *[a for k, name in zip("XYAB", ("fancy", "plain", "yellow", "other-backgrounds"))
                                   for a in ("--set", f"{k}={byo / 'assoc' / name}.csv")], "--format", "json")
    assert assoc.exit_code == 0, assoc.output
    # the effect size against its definition computed here from the CSVs (WEAT d, ddof 1), and planted
    sets = {name: _csv_rows(byo / "assoc" / f"{name}.csv") for name in ("fancy", "plain", "yellow", "other-backgrounds")}
    a, b = (unit(sets[n]) for n in ("yellow", "other-backgrounds"))
    s = {n: unit(sets[n]) @ a.mean(0) - unit(sets[n]) @ b.mean(0) for n in ("fancy", "plain")}
    expected = (s["fancy"].mean() - s["plain"].mean()) / np.concatenate([s["fancy"], s["plain"]]).std(ddof=1)
    effect = json.loads(assoc.stdout)["result"]["effect_size"]
    assert effect == pytest.approx(expected, abs=1e-4) and effect > 0.8


def _csv_rows(path: Path) -> np.ndarray:
    """The numeric columns of an iEAT-layout CSV (after the unnamed index, before the labels)."""
    rows = list(csv.reader(path.open()))
    numeric = [i for i, name in enumerate(rows[0]) if name.isdigit()]
    return np.array([[float(r[i]) for i in numeric] for r in rows[1:]])


def test_export_and_read_back_keep_failed_flagged_and_excluded_images():
    """Pure round trip: SweepEmbeddings -> .npz -> read against the spec -> the same analysis."""
    from ldmprobe.analysis.sweep import ImageCell, StatisticsSettings, SweepEmbeddings, analyse_sweep
    from ldmprobe.results.sweep_embeddings import write_embeddings_npz
    from ldmprobe.specs.sweep import Spec, expand
    from ldmprobe.specs.sweep_sources import read_embeddings_file

    spec = Spec(name="x", templates=("a {} house", "the {} house"), baseline="", terms=("big",), controls=("odd",),
                probes=("p", "q"), seeds=(0, 1, 2))
    rng = np.random.default_rng(3)
    cells = [(t, m, s) for t in range(2) for m in spec.all_terms for s in spec.seeds]
    images = {c: ImageCell(embedding=unit(rng.normal(size=8)).astype(np.float32)) for c in cells}
    images[(0, "big", 1)] = ImageCell(embedding=None, failed=True)
    images[(1, "odd", 2)] = ImageCell(embedding=images[(1, "odd", 2)].embedding, nsfw=True)
    images[(1, "big", 0)] = ImageCell(embedding=np.full(8, np.nan, dtype=np.float32))
    prompts = {(t, m): expand(spec.templates[t], m) for t in range(2) for m in spec.all_terms}
    data = SweepEmbeddings(
        templates=spec.templates, baseline="", terms=spec.terms, seeds=spec.seeds, images=images, prompts=prompts,
        prompt_embeddings={p: rng.normal(size=8).astype(np.float32) for p in prompts.values()}, probes=spec.probes,
        probe_embeddings=np.eye(8, dtype=np.float32)[:2], vocabulary=tuple("abcdef"),
        vocabulary_embeddings=rng.normal(size=(6, 8)).astype(np.float32), controls=spec.controls, drop_nsfw=True)
    settings = StatisticsSettings(permutations=99, bootstrap=99)
    with tempfile.TemporaryDirectory() as folder:
        path = write_embeddings_npz(data, Path(folder) / "x.npz")
        back, extra = read_embeddings_file(path, spec)
    assert extra == 0 and back.images[(0, "big", 1)] is None and back.nsfw[(1, "odd", 2)]
    replay = SweepEmbeddings(
        templates=spec.templates, baseline="", terms=spec.terms, seeds=spec.seeds, prompts=prompts,
        images={c: ImageCell(embedding=back.images[c], failed=back.images[c] is None, nsfw=back.nsfw[c]) for c in cells},
        prompt_embeddings=back.prompt_embeddings, probes=spec.probes, probe_embeddings=back.probe_embeddings,
        vocabulary=back.vocabulary, vocabulary_embeddings=back.vocabulary_embeddings, controls=spec.controls,
        drop_nsfw=True)
    first, again = analyse_sweep(data, settings).to_dict(), analyse_sweep(replay, settings).to_dict()
    assert first == again
    big = next(t for t in first["terms"] if t["term"] == "big")
    assert big["failed"] == 1 and big["excluded"] == 1 and big["n_pairs"] == 4
    assert first["controls"][0]["dropped"] == 1


@pytest.mark.slow
def test_python_api_runs_own_embeddings_and_compare_without_torch(tmp_path):
    """ldmprobe.api: run_sweep(embeddings=...) twice and compare_runs on the two runs, no torch."""
    a, b = planted(seed=0), planted(seed=0)
    b["image"] = b["image"].copy()
    path_a, path_b = write_npz(tmp_path / "a.npz", a), write_npz(tmp_path / "b.npz", b)
    spec = own_spec(tmp_path)
    code = ("import sys\nfrom ldmprobe import api\nfrom ldmprobe.engine.sweep_setup import SweepOptions\n"
            "from ldmprobe.analysis.compare import CompareSettings\n"
            "for name, path in (('a', sys.argv[1]), ('b', sys.argv[2])):\n"
            "    api.run_sweep(sys.argv[3], SweepOptions(out=name, permutations=199, bootstrap=199),"
            " embeddings=path, report=False)\n"
            "result = api.compare_runs('a', 'b', settings=CompareSettings(permutations=199, bootstrap=199))\n"
            "from ldmprobe import CompareOptions\n"
            "same = api.compare_runs('a', 'b', CompareOptions(CompareSettings(permutations=199, bootstrap=199)))\n"
            "assert same.analysis == result.analysis  # the options and the keywords are one call\n"
            "try:\n"
            "    api.compare_runs('a', 'b', CompareOptions(), out='c')\n"
            "except TypeError as exc:\n"
            "    assert 'not both' in str(exc)\n"
            "else:\n"
            "    raise AssertionError('options and keywords together were taken')\n"
            "print(len(result.terms), 'TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n")
    out = subprocess.run([sys.executable, "-c", code, str(path_a), str(path_b), str(spec)], capture_output=True,
                         text=True, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "NO-TORCH" and int(out.stdout.split()[0]) > 0
    assert "same images" in out.stderr  # the same file twice: the compare says nothing can differ


def test_export_carries_what_the_attribute_rates_need():
    """A spec with [attributes] and a calibration set: the export holds the option texts'
    embeddings, the logit scale and the calibration images' embeddings with their labels, and the
    own-data reader gives back exactly what the sweep measured with (so a replay has its rates)."""
    from ldmprobe.analysis.rates import AttributeInput
    from ldmprobe.analysis.sweep import ImageCell, SweepEmbeddings
    from ldmprobe.results.sweep_embeddings import embedding_arrays, write_embeddings_npz
    from ldmprobe.specs.attributes import AttributeGroup
    from ldmprobe.specs.own_attributes import file_attributes
    from ldmprobe.specs.sweep import Spec, expand

    groups = (AttributeGroup("bg", ("yellow", "grey"), ("a yellow background", "a grey background")),
              AttributeGroup("size", ("big", "small"), ("a big object", "a small object")))
    spec = Spec(name="x", templates=("a {} house",), baseline="", terms=("big",), probes=("p",), seeds=(0, 1),
                attributes=groups)  # the calibration arrays are read whenever the file has them
    rng = np.random.default_rng(4)
    options = tuple(np.stack([unit(rng.normal(size=8)) for _ in g.options]).astype(np.float32) for g in groups)
    cal = np.stack([unit(rng.normal(size=8)) for _ in range(6)]).astype(np.float32)
    labels = (("bg", "yellow"), ("bg", "grey"), ("bg", "grey"), ("size", "big"), ("size", "small"), ("size", "big"))
    attrs = AttributeInput(tuple((g.name, g.options) for g in groups), options, 57.5,
                           option_texts=tuple(g.texts for g in groups), calibration=(cal, labels))
    cells = [(0, m, s) for m in spec.all_terms for s in spec.seeds]
    prompts = {(0, m): expand(spec.templates[0], m) for m in spec.all_terms}
    data = SweepEmbeddings(
        templates=spec.templates, baseline="", terms=spec.terms, seeds=spec.seeds,
        images={c: ImageCell(embedding=unit(rng.normal(size=8)).astype(np.float32)) for c in cells}, prompts=prompts,
        prompt_embeddings={p: rng.normal(size=8).astype(np.float32) for p in prompts.values()}, probes=spec.probes,
        probe_embeddings=np.eye(8, dtype=np.float32)[:1], attributes=attrs)
    arrays = embedding_arrays(data)
    assert list(arrays["option"]) == [t for g in groups for t in g.texts] and arrays["logit_scale"][0] == 57.5
    assert list(arrays["calibration_group"]) == [g for g, _ in labels]
    with tempfile.TemporaryDirectory() as folder:
        back = file_attributes(write_embeddings_npz(data, Path(folder) / "x.npz"), spec, 8)
    assert back.logit_scale == 57.5 and back.calibration_labels == labels
    np.testing.assert_allclose(back.calibration, cal)
    for got, sent in zip(back.option_embeddings, options):
        np.testing.assert_allclose(got, sent, rtol=1e-6)  # unit rows, in the spec's option order


@pytest.mark.slow
def test_replay_of_an_export_gives_the_same_rates(cli, tmp_path, tiny_generator, tiny_measurer):
    """End to end with the tiny models: a sweep with [attributes], its export replayed through
    --embeddings, gives the same rates and diversity (an export without the option arrays gave none)."""
    spec = tmp_path / "rates.toml"
    spec.write_text(SPEC + '\n[attributes.colour]\nred = "a red thing"\nblue = "a blue thing"\n')
    made = invoke(cli, "sweep", spec, "--pipeline", "tiny", "--measurer", "tiny", "--steps", "2", *FAST,
                  "--out", tmp_path / "run", "--no-report", "--export-embeddings", tmp_path / "x.npz",
                  "--format", "json")
    assert made.exit_code == 0, made.output
    replay = invoke(cli, "sweep", spec, "--embeddings", tmp_path / "x.npz", *FAST, "--no-report",
                    "--out", tmp_path / "replay", "--format", "json")
    assert replay.exit_code == 0, replay.output
    first, again = json.loads(made.stdout), json.loads(replay.stdout)
    rates = [(t["term"], t["rates"], t["diversity"]) for t in first["terms"]]
    assert rates and all(r for _, r, _ in rates)
    assert [(t["term"], t["rates"], t["diversity"]) for t in again["terms"]] == rates
