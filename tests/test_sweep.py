"""Sweep end to end with tiny models: caching, resume, keys, output contract, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ldmprobe.cli.main import main
from ldmprobe.results.provenance import validate_document

SPEC = """\
name = "mini"
templates = ["a photo of a {} car", "a {} house at night"]
baseline = ""
terms = ["red", "blue"]
probes = ["fire", "ocean", "tree"]
seeds = 2
"""


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "mini.toml"
    path.write_text(SPEC)
    return path


def sweep(*args, expect=0):
    result = CliRunner().invoke(
        main, ["sweep", *map(str, args), "--pipeline", "tiny", "--measurer", "tiny", "--format", "json",
               "--permutations", "199", "--bootstrap", "199"],
    )
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def sweep_json(*args):
    result = sweep(*args)
    return json.loads(result.stdout)


def n_pngs(root: Path) -> int:
    return len(list((root / "images").rglob("*.png")))


def test_end_to_end_json_contract_and_run_folder(fresh_cache, spec_file, tmp_path):
    out = tmp_path / "run"
    doc = sweep_json(spec_file, "--out", out)
    validate_document(doc, "sweep")
    assert doc["kind"] == "sweep" and doc["provenance"]["tiny"] is True
    assert doc["counts"] == {"planned": 12, "unique": 12, "generated": 12, "cached": 0, "failed": 0, "flagged": 0}
    assert {t["term"] for t in doc["terms"]} == {"red", "blue"}
    for term in doc["terms"]:
        assert term["n_pairs"] == 4 and len(term["templates"]) == 2
        drift = term["image_drift"]
        assert drift["centroid"] >= 0 and drift["paired"] >= 0 and 0 < drift["p_value"] <= 1
        assert [p["probe"] for p in term["probes"]] and len(term["probes"]) == 3
        shifts = [p["shift"] for p in term["probes"]]
        assert shifts == sorted(shifts, reverse=True)
    assert json.loads((out / "results.json").read_text())["counts"] == doc["counts"]
    lines = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert len(lines) == 12
    for line in lines:
        assert (out / line["image"]).is_file()
        assert set(line) >= {"template", "term", "seed", "prompt", "key", "image", "flags", "cached"}
    assert sorted(p.name for p in out.glob("contact-*.png")) == ["contact-00.png", "contact-01.png"]
    assert n_pngs(fresh_cache) == 12


def test_png_carries_recipe(fresh_cache, spec_file, tmp_path):
    from PIL import Image

    sweep(spec_file, "--out", tmp_path / "run")
    line = json.loads((tmp_path / "run" / "items.jsonl").read_text().splitlines()[0])
    with Image.open(tmp_path / "run" / line["image"]) as im:
        meta = json.loads(im.text["ldmprobe"])
    assert meta["key"] == line["key"] and meta["prompt"] == line["prompt"] and meta["seed"] == line["seed"]
    assert meta["steps"] == 4 and meta["pipeline"]["source"] == "tiny"
    from ldmprobe.engine.workitems import canonical_json, sha256_hex
    recipe = {k: v for k, v in meta.items() if k not in ("key", "template", "term", "nsfw", "dtype_used", "batch_size")}
    assert sha256_hex(canonical_json(recipe)) == line["key"]


def test_rerun_generates_nothing_and_gives_same_numbers(fresh_cache, spec_file, tmp_path):
    first = sweep_json(spec_file, "--out", tmp_path / "a")
    second = sweep_json(spec_file, "--out", tmp_path / "b")
    assert second["counts"]["generated"] == 0 and second["counts"]["cached"] == 12
    assert [t["image_drift"] for t in first["terms"]] == [t["image_drift"] for t in second["terms"]]


def test_changing_steps_or_guidance_makes_new_keys(fresh_cache, spec_file, tmp_path):
    sweep(spec_file, "--out", tmp_path / "a")
    assert sweep_json(spec_file, "--out", tmp_path / "b", "--steps", "3")["counts"]["generated"] == 12
    assert sweep_json(spec_file, "--out", tmp_path / "c", "--guidance", "5")["counts"]["generated"] == 12
    assert n_pngs(fresh_cache) == 36


def test_batched_and_one_at_a_time_images_agree(fresh_cache, spec_file, tmp_path, monkeypatch):
    from PIL import Image

    sweep(spec_file, "--out", tmp_path / "batched", "--batch-size", "6")
    other = tmp_path / "cache2"
    other.mkdir()
    (other / "models").symlink_to(fresh_cache / "models", target_is_directory=True)
    monkeypatch.setenv("LDMPROBE_CACHE", str(other))
    sweep(spec_file, "--out", tmp_path / "single", "--batch-size", "1")
    for line in (tmp_path / "batched" / "items.jsonl").read_text().splitlines():
        item = json.loads(line)
        a = np.asarray(Image.open(tmp_path / "batched" / item["image"]), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "single" / item["image"]), dtype=np.int16)
        assert np.abs(a - b).max() <= 1  # uint8 rounding of ~1e-6 float differences


def test_truncated_png_is_detected_and_regenerated(fresh_cache, spec_file, tmp_path):
    sweep(spec_file, "--out", tmp_path / "a")
    victim = sorted((fresh_cache / "images").rglob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    doc = sweep_json(spec_file, "--out", tmp_path / "b")
    assert doc["counts"]["generated"] == 1
    from PIL import Image

    Image.open(victim).load()



def test_bytes_flipped_inside_a_cached_pngs_pixels_are_remade_in_the_same_run(fresh_cache, spec_file, tmp_path):
    """Same size, intact chunks, only the pixel data changed: the changed stat sends it to the
    digest check, so the rerun remakes it (and its embedding) instead of stopping."""
    sweep(spec_file, "--out", tmp_path / "a")
    victims = sorted((fresh_cache / "images").rglob("*.png"))[:2]
    for victim in victims:
        data = bytearray(victim.read_bytes())
        middle = len(data) // 2
        data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
        with open(victim, "r+b") as fh:  # in place: same inode, same size
            fh.write(bytes(data))
    doc = sweep_json(spec_file, "--out", tmp_path / "b")
    assert doc["counts"]["generated"] == 2
    from ldmprobe.store.png_check import check_png

    for victim in victims:
        assert check_png(victim.read_bytes(), victim.stem) is None

def test_failed_images_are_excluded_and_counted(fresh_cache, spec_file, tmp_path, monkeypatch):
    from ldmprobe.engine import generate

    real_problem = generate.image_problem
    calls = {"n": 0}

    def black_for_first(pixels):  # the first image in key order, whichever term it has
        calls["n"] += 1
        return "black" if calls["n"] == 1 else real_problem(pixels)

    monkeypatch.setattr(generate, "image_problem", black_for_first)
    doc = sweep_json(spec_file, "--out", tmp_path / "a", "--batch-size", "12")
    assert doc["counts"]["failed"] == 1
    lines = [json.loads(x) for x in (tmp_path / "a" / "items.jsonl").read_text().splitlines()]
    assert [x["flags"]["failed"] for x in lines].count("black") == 1
    victim = next(x for x in lines if x["flags"]["failed"] == "black")
    failed_terms = {t["term"]: t["failed"] for t in doc["terms"]}
    if victim["term"] in failed_terms:  # a term image: that term loses one of its 4 pairs
        assert sum(failed_terms.values()) == 1 and failed_terms[victim["term"]] == 1
        assert next(t for t in doc["terms"] if t["term"] == victim["term"])["n_pairs"] == 3
    else:  # a baseline image: every term loses the pair it anchored
        assert sum(failed_terms.values()) == 0
        assert all(t["n_pairs"] == 3 for t in doc["terms"])
    monkeypatch.setattr(generate, "image_problem", real_problem)
    again = sweep_json(spec_file, "--out", tmp_path / "b")
    assert again["counts"]["generated"] == 0 and again["counts"]["failed"] == 1


def test_dry_run_loads_no_model_and_counts_cached(fresh_cache, spec_file, tmp_path):
    result = CliRunner().invoke(main, ["sweep", str(spec_file), "--pipeline", "tiny", "--measurer", "tiny",
                                       "--dry-run", "--format", "json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["counts"] == {"planned": 12, "unique": 12, "cached": 0}
    assert n_pngs(fresh_cache) == 0
    sweep(spec_file, "--out", tmp_path / "a")
    result = CliRunner().invoke(main, ["sweep", str(spec_file), "--pipeline", "tiny", "--measurer", "tiny",
                                       "--dry-run", "--format", "json"])
    assert json.loads(result.stdout)["counts"]["cached"] == 12


def test_dry_run_does_not_import_torch(fresh_cache, spec_file):
    code = ("import sys\nfrom ldmprobe.cli.main import run\n"
            f"rc = run(['sweep', {str(spec_file)!r}, '--pipeline', 'tiny', '--measurer', 'tiny', '--dry-run',"
            " '--device', 'cpu', '--format', 'json'])\n"
            "assert rc == 0, rc\nassert 'torch' not in sys.modules and 'diffusers' not in sys.modules\n")
    # token counts are cached by the first call; the second must not load a tokenizer or torch
    subprocess.run([sys.executable, "-c", code.replace("assert 'torch'", "pass  # ")], check=True,
                   capture_output=True, timeout=120)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_jsonl_and_piped_stdout_is_clean(fresh_cache, spec_file, tmp_path):
    env = dict(os.environ, FORCE_COLOR="1")
    proc = subprocess.run(
        [sys.executable, "-m", "ldmprobe", "sweep", str(spec_file), "--pipeline", "tiny", "--measurer", "tiny",
         "--out", str(tmp_path / "a"), "--format", "jsonl", "--permutations", "99", "--bootstrap", "99"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["term"] for r in records] and {r["term"] for r in records} == {"red", "blue"}
    assert "tiny models have random weights" in proc.stderr
    table = subprocess.run(
        [sys.executable, "-m", "ldmprobe", "sweep", str(spec_file), "--pipeline", "tiny", "--measurer", "tiny",
         "--out", str(tmp_path / "b"), "--format", "table"], capture_output=True, text=True, timeout=300)
    assert table.returncode == 0 and "\x1b[" not in table.stdout and "red" in table.stdout
    assert "run folder" not in table.stdout and "run folder" in table.stderr


def test_ctrl_c_exits_130_and_resume_makes_only_missing(fresh_cache, tmp_path):
    spec = tmp_path / "big.toml"
    spec.write_text(SPEC.replace("seeds = 2", "seeds = 12"))
    cmd = [sys.executable, "-m", "ldmprobe", "sweep", str(spec), "--pipeline", "tiny", "--measurer", "tiny",
           "--batch-size", "1", "--out", str(tmp_path / "a"), "--format", "json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while n_pngs(fresh_cache) < 5 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Run the same command again to resume" in " ".join(err.split())
    assert out == ""
    done = n_pngs(fresh_cache)
    assert 5 <= done < 72
    assert not list((fresh_cache / "images").rglob("*.tmp"))
    doc = sweep_json(spec, "--out", tmp_path / "b")
    assert doc["counts"]["generated"] == 72 - done and doc["counts"]["cached"] == done


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("text, needle", [
    ("name = 'x'\ntemplates = ['a {} car'\nbaseline = ''", "line"),
    ("name = 'x'\ntemplates = ['a car']\nbaseline = ''\nterms = ['red']", "{}"),
    ("name = 'x'\ntemplates = ['a {} car']\nterms = ['red']", "baseline"),
    ("name = 'x'\ntemplates = ['a {} car']\nbaseline = ''\nterms = ['red', 'red']", "duplicate"),
    ("name = 'x'\ntemplates = ['a {} car']\nbaseline = ''\nterms = ['red']\nseeds = 0", "seeds"),
    ("name = 'x'\ntemplates = ['a {} car']\nbaseline = ''\nterms = ['red']\nsteeps = 3", "steeps"),
])
def test_bad_specs_exit_2_with_message(tmp_path, fresh_cache, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = sweep(path, expect=2)
    assert needle.lower() in result.stderr.lower() and str(path) in " ".join(result.stderr.split()).replace("\n", "")
    assert result.stdout == ""


def test_missing_spec_unknown_pipeline_out_is_file(tmp_path, fresh_cache, spec_file):
    result = sweep(tmp_path / "nope.toml", expect=2)
    assert "nope.toml" in result.stderr
    result = CliRunner().invoke(main, ["sweep", str(spec_file), "--pipeline", "no-such-model", "--measurer", "tiny"])
    assert result.exit_code == 2 and "Unknown pipeline" in result.stderr
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    result = sweep(spec_file, "--out", a_file, expect=2)
    assert "is a file" in result.stderr
    assert a_file.read_text() == "x"


def test_prompt_too_long_is_an_error_unless_allowed(tmp_path, fresh_cache):
    long_template = "a photo of a {} " + " ".join(["very"] * 90) + " big car"
    path = tmp_path / "long.toml"
    path.write_text(f"name = 'long'\ntemplates = ['{long_template}']\nbaseline = ''\nterms = ['red']\nseeds = 1\n")
    result = sweep(path, "--out", tmp_path / "a", expect=2)
    assert "--allow-truncation" in result.stderr and "77" in result.stderr
    result = sweep(path, "--out", tmp_path / "b", "--allow-truncation")
    assert "truncated" in result.stderr


@pytest.fixture
def flagging_checker(monkeypatch):
    """A real (tiny, random) StableDiffusionSafetyChecker made to flag every image (and black out its copy)."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    from ldmprobe.models import load as model_load

    small = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2)
    config = CLIPConfig(text_config=dict(small, vocab_size=49408),
                        vision_config=dict(small, image_size=32, patch_size=4), projection_dim=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        checker = StableDiffusionSafetyChecker(config).eval()
    extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    real_forward = checker.forward
    calls = []

    def forward(clip_input, images):
        images_out, flags = real_forward(clip_input=clip_input, images=images)
        calls.append(len(flags))
        # the real checker blacks flagged images out; ldmprobe must keep the pixels it was given
        return np.zeros_like(images_out), [True] * len(flags)

    checker.forward = forward
    real_load = model_load.load_generator

    def load_with_checker(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        loaded.safety_checker = checker
        loaded.pipe.feature_extractor = extractor
        return loaded

    monkeypatch.setattr(model_load, "load_generator", load_with_checker)
    return calls


def test_safety_checker_flags_are_recorded_not_blacked_out(fresh_cache, spec_file, tmp_path, flagging_checker):
    from PIL import Image

    doc = sweep_json(spec_file, "--out", tmp_path / "keep")
    validate_document(doc, "sweep")
    assert sum(flagging_checker) == 12, "the checker saw every image"
    assert doc["counts"]["flagged"] == 12 and doc["counts"]["failed"] == 0
    assert all(t["flagged"] == 4 and t["n_pairs"] == 4 for t in doc["terms"])
    lines = [json.loads(x) for x in (tmp_path / "keep" / "items.jsonl").read_text().splitlines()]
    assert all(x["flags"]["nsfw"] is True and x["flags"]["dropped"] is False for x in lines)
    pixels = np.asarray(Image.open(tmp_path / "keep" / lines[0]["image"]))
    assert pixels.max() > 0, "a flagged image was blacked out"
    dropped = sweep_json(spec_file, "--out", tmp_path / "drop", "--nsfw", "drop")
    validate_document(dropped, "sweep")
    assert dropped["counts"]["generated"] == 0
    assert all(t["n_pairs"] == 0 and t["dropped"] == 4 and t["image_drift"]["p_value"] is None
               for t in dropped["terms"])


def test_two_processes_share_one_cache(fresh_cache, spec_file, tmp_path):
    """Two sweeps of the same spec at once: both finish, every image exists once, same numbers."""
    cmd = [sys.executable, "-m", "ldmprobe", "sweep", str(spec_file), "--pipeline", "tiny", "--measurer", "tiny",
           "--batch-size", "2", "--format", "json", "--no-report", "--permutations", "99", "--bootstrap", "99"]
    procs = [subprocess.Popen(cmd + ["--out", str(tmp_path / f"run{i}")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    docs = [json.loads(out) for out, _ in outputs]
    assert n_pngs(fresh_cache) == 12
    assert not list(fresh_cache.rglob("*.tmp"))
    assert all(d["counts"]["generated"] + d["counts"]["cached"] == 12 for d in docs)
    first, second = ({t["term"]: t["image_drift"]["centroid"] for t in d["terms"]} for d in docs)
    assert first == pytest.approx(second, rel=1e-5, abs=1e-9)


def test_uncached_measurer_fails_before_any_generation(fresh_cache, spec_file, tmp_path):
    result = CliRunner().invoke(main, ["--offline", "sweep", str(spec_file), "--pipeline", "tiny", "--measurer",
                                       "ViT-L-14-quickgelu:openai", "--out", str(tmp_path / "a"), "--format", "json"])
    assert result.exit_code == 1, result.output
    assert "ViT-L-14-quickgelu:openai" in result.stderr and "not in the local cache" in result.stderr
    assert n_pngs(fresh_cache) == 0 and result.stdout == ""


def test_term_statistics_do_not_depend_on_other_terms(fresh_cache, tmp_path):
    """A term's seeded p-values and intervals are the same whether or not other terms are in the run."""
    both = tmp_path / "both.toml"
    both.write_text(SPEC)
    alone = tmp_path / "alone.toml"
    alone.write_text(SPEC.replace('terms = ["red", "blue"]', 'terms = ["blue"]'))
    first = next(t for t in sweep_json(both, "--out", tmp_path / "a", "--vocab", "objects")["terms"]
                 if t["term"] == "blue")
    second = sweep_json(alone, "--out", tmp_path / "b", "--vocab", "objects")["terms"][0]
    assert first["image_drift"]["seed"] == second["image_drift"]["seed"]
    assert first["image_drift"]["p_value"] == second["image_drift"]["p_value"]
    assert [(p["probe"], p["ci_low"], p["ci_high"], p["p_value"]) for p in first["probes"]] == \
           [(p["probe"], p["ci_low"], p["ci_high"], p["p_value"]) for p in second["probes"]]


def test_planted_effect_is_found_through_the_whole_sweep(fresh_cache, tmp_path, tiny_measurer):
    """Plant image embeddings in the cache: 'red' moves every image toward the probe 'fire',
    'blue' changes nothing. The sweep must pair, test and label them correctly."""
    from ldmprobe.models import sources as models
    from ldmprobe.engine.encode import DEFAULT_PROBE_TEMPLATES, encode_in_templates
    from ldmprobe.store.packed_cache import embedding_store

    spec = tmp_path / "planted.toml"
    spec.write_text(SPEC.replace("seeds = 2", "seeds = 8"))
    first = sweep_json(spec, "--out", tmp_path / "a", "--no-report")
    items = [json.loads(x) for x in (tmp_path / "a" / "items.jsonl").read_text().splitlines()]
    store = embedding_store(models.measurer_identity(models.resolve_measurer("tiny")))
    fire = encode_in_templates(tiny_measurer, ["fire"], DEFAULT_PROBE_TEMPLATES)[0]
    rng = np.random.default_rng(7)
    dim = fire.shape[0]
    centres = {t: rng.normal(size=dim) for t in range(2)}
    noise = {(t, s): rng.normal(size=dim) * 0.3 for t in range(2) for s in range(8)}
    for item in items:
        vector = centres[item["template_index"]] + noise[(item["template_index"], item["seed"])]
        vector /= np.linalg.norm(vector)
        if item["term"] == "red":
            vector = vector + 0.5 * fire
        elif item["term"] == "blue":
            vector = vector + rng.normal(size=dim) * 1e-4  # no effect beyond float noise
        store.save(item["key"], (vector / np.linalg.norm(vector)).astype(np.float32))
    doc = sweep_json(spec, "--out", tmp_path / "b", "--no-report")
    assert doc["counts"]["generated"] == 0 and first["counts"]["generated"] == 48
    red, blue = (next(t for t in doc["terms"] if t["term"] == name) for name in ("red", "blue"))
    # no controls: the verdict is against the pairs; every one of the 2**14 distinct within-pair
    # swaps (2 templates x 8 seeds) drifts less, so p is the exact floor
    drift = red["image_drift"]
    assert drift["versus"] == "pairs" and drift["p_controls"] is None and drift["exact"] is True
    assert drift["p_value"] == drift["min_p"] == 2.0 ** -14
    assert drift["p_adjusted"] <= 0.01 and drift["estimate"] > 10 * abs(blue["image_drift"]["estimate"])
    assert drift["centroid"] > 10 * blue["image_drift"]["centroid"] and drift["ci_low"] > 0
    assert blue["image_drift"]["p_value"] > 0.05
    top = red["probes"][0]
    # two templates: p_fixed (these templates and seeds) finds it; the headline CI is honest
    assert top["probe"] == "fire" and top["p_fixed"] == top["min_p"] and top["ci_low"] <= top["shift"] <= top["ci_high"]
    assert all(p["p_fixed"] > 0.05 or p["p_adjusted"] > 0.05 for p in blue["probes"])
    assert any("wording changed the images" in n for n in doc["summary"]["notes"])
    assert doc["terms"][0]["term"] == "red"  # ranked by drift


def test_spec_with_controls_runs_end_to_end(fresh_cache, tmp_path):
    """Controls are generated like terms, each term's drift is judged against them, and the
    spec's pipeline / measurer are used when no flag is given."""
    spec = tmp_path / "controls.toml"
    spec.write_text(SPEC + 'controls = ["green", "small", "old"]\npipeline = "tiny"\nmeasurer = "tiny"\n')
    result = CliRunner().invoke(main, ["sweep", str(spec), "--format", "json", "--permutations", "99",
                                       "--bootstrap", "99", "--out", str(tmp_path / "run"), "--no-report"])
    assert result.exit_code == 0, (result.output, result.exception)
    doc = json.loads(result.stdout)
    validate_document(doc, "sweep")
    assert doc["config"]["pipeline"]["spec"] == "tiny" and doc["config"]["measurer"]["spec"] == "tiny"
    assert doc["counts"]["planned"] == 2 * (1 + 2 + 3) * 2
    assert doc["spec"]["controls"] == ["green", "small", "old"]
    assert [c["term"] for c in doc["controls"]] == ["green", "small", "old"]
    assert doc["summary"]["controls"] == ["green", "small", "old"] and doc["summary"]["notes"] == []
    for term in doc["terms"]:
        drift = term["image_drift"]
        assert drift["versus"] == "controls" and drift["p_value"] == drift["p_controls"]
        assert drift["min_p"] == 1 / 4 and drift["p_value"] in (0.25, 0.5, 0.75, 1.0)
        assert drift["ci_low"] <= drift["estimate"] <= drift["ci_high"] and 0 < drift["p_pairs"] <= 1
        for row in term["probes"]:
            assert row["p_controls"] is not None and 0 < row["p_fixed"] <= 1
            assert row["generalises_to"] and "only" in row["fixed_generalises_to"]
    assert all(c["image_drift"]["versus"] == "pairs" for c in doc["controls"])
    assert any("controls" in m for m in doc["summary"]["design"]["messages"])  # 3 controls cannot reach 0.05
    table = CliRunner().invoke(main, ["sweep", str(spec), "--format", "table", "--permutations", "99",
                                      "--bootstrap", "99", "--out", str(tmp_path / "run2"), "--no-report"])
    assert table.exit_code == 0 and "vs 3 controls" in table.output and "p fixed" in table.output

