"""`ldmprobe compare RUN_A RUN_B`: the paired B − A statistics on planted arrays, and end to end
on two tiny-model runs of one spec (bad input included)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sps

from ldmprobe.analysis.compare import (
    CompareEmbeddings, CompareSettings, compare_embeddings, drift_cell_table, drift_change, probe_change,
    unbiased_by_template,
)
from ldmprobe.analysis.inference import unbiased_drift
from ldmprobe.cli.main import main
from ldmprobe.results.provenance import validate_document

FAST = CompareSettings(permutations=199, bootstrap=199)


# ----------------------------------------------------------------------------- planted arrays


def planted_world(rng, *, T=8, S=4, d=48, shift_a=0.3, shift_b=0.3, sd_template=0.05, sd_seed=0.0, noise=0.3):
    """Unit-ish image embeddings of two runs: template and seed effects shared by the runs (same
    prompts, same starting noise), a term effect along axis 0 of size shift_a / shift_b with a
    zero-mean template-specific part (and seed-specific part, sd_seed), and independent noise per image."""
    template = rng.normal(size=(T, 1, d)) * 0.5
    seed = rng.normal(size=(1, S, d)) * 0.5
    runs = {}
    for name, shift in (("a", shift_a), ("b", shift_b)):
        base = template + seed + rng.normal(size=(T, S, d)) * noise
        term = base + rng.normal(size=(T, 1, d)) * sd_template + rng.normal(size=(T, S, d)) * noise * 0.3
        term = term + rng.normal(size=(1, S, d)) * sd_seed
        term[..., 0] += shift
        runs[name] = (term, base)
    return runs


def as_embeddings(runs) -> CompareEmbeddings:
    term_a, _ = runs["a"]
    T, S, d = term_a.shape
    images = {}
    for name, (term, base) in runs.items():
        images[name] = {**{(t, "m", s): term[t, s] for t in range(T) for s in range(S)},
                        **{(t, "", s): base[t, s] for t in range(T) for s in range(S)}}
    probe = np.zeros((1, d))
    probe[0, 0] = 1.0
    return CompareEmbeddings(templates=tuple(f"t{t} {{}}" for t in range(T)), baseline="", terms=("m",),
                             seeds=tuple(range(S)), images_a=images["a"], images_b=images["b"], probes=("axis",),
                             probe_embeddings=probe)


def unit_differences(runs):
    """(D^A, D^B): term minus baseline of unit rows, as (T, S, d)."""
    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)
    return tuple(unit(term) - unit(base) for term, base in (runs["a"], runs["b"]))


def test_planted_reduction_is_found_with_the_right_sign():
    rng = np.random.default_rng(3)
    result = compare_embeddings(as_embeddings(planted_world(rng, shift_a=0.45, shift_b=0.1)), FAST)
    term = result.terms[0]
    probe = term.probes[0]
    assert probe.shift_a > probe.shift_b > 0 and probe.difference < 0 and probe.ci_high < 0
    assert probe.p_adjusted < 0.01 and probe.verdict == "better" and term.n_better == 1
    assert term.drift.difference < 0 and term.drift.ci_high < 0 and term.drift.boot_ci_high < 0
    assert term.drift.p_adjusted < 0.05 and term.verdict == "better"
    assert probe.generalises_to == "templates and seeds" and "these templates and seeds" in probe.fixed_generalises_to
    worse = compare_embeddings(as_embeddings(planted_world(rng, shift_a=0.1, shift_b=0.45)), FAST).terms[0]
    assert worse.verdict == "worse" and worse.probes[0].verdict == "worse" and worse.probes[0].difference > 0


def test_drift_cells_average_to_the_difference_of_unbiased_drifts():
    """The per-cell split of U^B − U^A is exact, checked against the sweep's unbiased_drift."""
    runs = planted_world(np.random.default_rng(5), T=4, S=5, shift_a=0.2, shift_b=0.35)
    da, db = unit_differences(runs)
    c = drift_cell_table(da, db)
    groups = np.repeat(np.arange(4), 5)
    independent = [unbiased_drift(*(x.reshape(20, -1) for x in run), groups, n_boot=10, n_resamples=10).estimate
                   for run in (runs["a"], runs["b"])]
    assert c.mean() == pytest.approx(independent[1] - independent[0], rel=1e-9, abs=1e-12)
    change = drift_change(da, db, FAST)
    assert change.drift_a == pytest.approx(independent[0], rel=1e-9)
    assert change.drift_b == pytest.approx(independent[1], rel=1e-9)
    assert change.difference == pytest.approx(independent[1] - independent[0], rel=1e-9)


def test_p_fixed_is_the_exact_swap_of_runs_within_cells():
    """Brute force: swap run A's and B's images in every subset of the 3 × 3 cells and recompute
    U^B − U^A from scratch; the share at least as far from 0 is the drift's p_fixed."""
    runs = planted_world(np.random.default_rng(11), T=3, S=3, shift_a=0.2, shift_b=0.3)
    da, db = unit_differences(runs)
    observed = np.nanmean(unbiased_by_template(db) - unbiased_by_template(da))
    count = 0
    for swap in itertools.product([False, True], repeat=9):
        mask = np.array(swap).reshape(3, 3)[..., None]
        sa, sb = np.where(mask, db, da), np.where(mask, da, db)
        stat = np.mean(unbiased_by_template(sb) - unbiased_by_template(sa))
        count += abs(stat) >= abs(observed) * (1 - 1e-12)
    change = drift_change(da, db, FAST)
    assert change.exact and change.n_resamples == 2**8
    assert change.p_fixed == pytest.approx(count / 2**9)


def _crossed_ci_by_least_squares(y, level=0.95):
    """Two-way ANOVA by dummy-coded least squares (nested models), Var(ȳ) = (MS_T + MS_S − MS_E)/(T·S),
    Satterthwaite df, scipy's t: the headline interval computed without the package's code."""
    T, S = y.shape
    rows, cols = np.meshgrid(np.arange(T), np.arange(S), indexing="ij")
    v = y.ravel()

    def rss(*factors):
        X = np.column_stack([np.ones(v.size)] + [(f.ravel()[:, None] == np.arange(1, n)).astype(float)
                                                  for f, n in factors])
        resid = v - X @ np.linalg.lstsq(X, v, rcond=None)[0]
        return float(resid @ resid)

    full = rss((rows, T), (cols, S))
    ms_e = full / ((T - 1) * (S - 1))
    ms_t = (rss((cols, S)) - full) / (T - 1)
    ms_s = (rss((rows, T)) - full) / (S - 1)
    var = (ms_t + ms_s - ms_e) / (T * S)
    df = (ms_t + ms_s - ms_e) ** 2 / (ms_t**2 / (T - 1) + ms_s**2 / (S - 1) + ms_e**2 / ((T - 1) * (S - 1)))
    # generalised (fiducial) p and CI by plain Monte Carlo: MS ν/χ²_ν for each mean square
    draw = np.random.default_rng(0)
    w = sum(sign * ms * d / draw.chisquare(d, 400_000)
            for sign, ms, d in ((1, ms_t, T - 1), (1, ms_s, S - 1), (-1, ms_e, (T - 1) * (S - 1))))
    r = v.mean() - draw.normal(size=w.size) * np.sqrt(np.maximum(w, 0) / (T * S))
    below = np.mean(r <= 0)
    low, high = np.quantile(r, [0.5 - level / 2, 0.5 + level / 2])
    return low, high, 2 * min(below, 1 - below), df


def test_probe_interval_matches_an_independent_two_way_anova():
    rng = np.random.default_rng(2)
    for _ in range(5):
        runs = planted_world(rng, T=6, S=5, shift_a=0.2, shift_b=0.25, sd_template=0.15, sd_seed=0.15)
        da, db = unit_differences(runs)
        probe = np.zeros(da.shape[-1])
        probe[0] = 1
        row = probe_change(da, db, probe, "axis", FAST)
        if row.method != "crossed":
            continue
        low, high, p, df = _crossed_ci_by_least_squares((db - da) @ probe)
        assert row.df == pytest.approx(df, rel=1e-8)
        assert (row.ci_low, row.ci_high) == pytest.approx((low, high), rel=0.02, abs=1e-3 * (high - low))
        assert row.p_value == pytest.approx(p, rel=0.1, abs=2e-4)
        break
    else:
        pytest.fail("no draw used the unfloored crossed test")


@pytest.mark.slow
def test_false_positive_rate_under_no_difference_is_near_alpha():
    """200 pairs of runs from one generator (template-specific term effects included): the
    headline drift and probe tests each reject about 5 %."""
    rng = np.random.default_rng(2024)
    settings = CompareSettings(permutations=99, bootstrap=50)
    rejections = np.zeros(2)
    for _ in range(200):
        term = compare_embeddings(as_embeddings(planted_world(rng, T=8, S=4, sd_template=0.15)), settings).terms[0]
        rejections += [term.drift.p_value < 0.05, term.probes[0].p_value < 0.05]
    rates = rejections / 200
    assert np.all(rates >= 0.01) and np.all(rates <= 0.09), rates


def test_unusable_cells_are_excluded_and_counted():
    runs = planted_world(np.random.default_rng(8), T=4, S=4)
    data = as_embeddings(runs)
    images_b = dict(data.images_b)
    images_b[(0, "m", 1)] = None  # failed in run B
    images_b[(2, "", 3)] = np.full(48, np.nan)  # non-finite
    data = CompareEmbeddings(**{**data.__dict__, "images_b": images_b})
    term = compare_embeddings(data, FAST).terms[0]
    assert term.n_excluded == 2 and term.n_pairs == 14
    assert term.drift.p_value is not None and np.isfinite(term.drift.difference)


# ----------------------------------------------------------------------------- two tiny runs

SPEC = """\
name = "pair"
templates = ["a photo of a {} car", "a {} house at night", "a drawing of a {} tree"]
baseline = ""
terms = ["red", "blue"]
probes = ["fire", "ocean", "tree"]
seeds = 4
"""


def _sweep(spec, out, *extra):
    result = CliRunner().invoke(main, ["sweep", str(spec), "--pipeline", "tiny", "--measurer", "tiny", "--out",
                                       str(out), "--format", "json", "--permutations", "99", "--bootstrap", "99",
                                       "--no-report", *map(str, extra)])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


@contextlib.contextmanager
def private_cache(root: Path, cache_root: Path):
    """LDMPROBE_CACHE set to a new cache in ``root`` (sharing the models folder) for the block."""
    cache = root / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(cache_root / "models", target_is_directory=True)
    old = os.environ["LDMPROBE_CACHE"]
    os.environ["LDMPROBE_CACHE"] = str(cache)
    try:
        yield cache
    finally:
        os.environ["LDMPROBE_CACHE"] = old


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_root, tiny_generator, tiny_measurer):
    """Two runs of one spec by two 'generators' (2 and 3 denoising steps) in a private cache."""
    root = tmp_path_factory.mktemp("compare")
    with private_cache(root, cache_root) as cache:
        spec = root / "pair.toml"
        spec.write_text(SPEC)
        docs = {"a": _sweep(spec, root / "a", "--steps", "2"), "b": _sweep(spec, root / "b", "--steps", "3")}
        yield {"root": root, "cache": cache, "spec": spec, "docs": docs, "a": root / "a", "b": root / "b"}


def compare(*args, expect=0, env=None):
    result = CliRunner().invoke(main, ["compare", *map(str, args), "--permutations", "199", "--bootstrap", "199"],
                                env=env)
    assert result.exit_code == expect, (result.output, result.exception)
    return result


@pytest.mark.slow
def test_two_tiny_runs_end_to_end(runs, tmp_path):
    out = tmp_path / "report"
    doc = json.loads(compare(runs["a"], runs["b"], "--out", out, "--format", "json").stdout)
    validate_document(doc, "compare")
    assert doc["runs"]["a"]["steps"] == 2 and doc["runs"]["b"]["steps"] == 3 and doc["provenance"]["tiny"]
    assert [t["term"] for t in doc["terms"]] == ["red", "blue"]
    for term in doc["terms"]:
        assert term["n_pairs"] == 12 and len(term["probes"]) == 3
        for row in [term["drift"], *term["probes"]]:
            assert row["generalises_to"] and row["fixed_generalises_to"] and row["verdict"]
            assert row["ci_low"] <= row["difference"] <= row["ci_high"]
        # each run's own numbers are its sweep's: the same images, pairs and unbiased estimator
        for name in ("a", "b"):
            swept = next(t for t in runs["docs"][name]["terms"] if t["term"] == term["term"])
            assert term["drift"][f"drift_{name}"] == pytest.approx(swept["image_drift"]["estimate"], rel=1e-6)
            shifts = {p["probe"]: p["shift"] for p in swept["probes"]}
            for row in term["probes"]:
                assert row[f"shift_{name}"] == pytest.approx(shifts[row["probe"]], rel=1e-6, abs=1e-9)
    page = (out / "compare.html").read_text()
    assert doc["report"] == str((out / "compare.html").resolve()) and "run B compared with run A" in page
    assert json.loads((out / "compare.json").read_text())["terms"] == doc["terms"]
    table = compare(runs["a"], runs["b"], "--format", "table").stdout
    assert "image drift" in table and max(len(line) for line in table.splitlines()) <= 80
    lines = compare(runs["a"], runs["b"], "--format", "jsonl").stdout.splitlines()
    assert len(lines) == 2 * (1 + 3) and {json.loads(x)["measure"] for x in lines} == {"image_drift", "probe_shift"}


@pytest.mark.slow
def test_compare_out_is_never_overwritten_silently(runs, tmp_path):
    """--out follows the run-folder rules: a folder with files is refused before any work unless
    it is an earlier compare's and --replace is given; a run folder is never written into."""
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused = compare(runs["a"], runs["b"], "--out", out, expect=2)
    assert "--replace" in refused.stderr and refused.stdout == "" and sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    not_ours = compare(runs["a"], runs["b"], "--out", out, "--replace", expect=2)
    assert "compare.json" in not_ours.stderr and (out / "notes.txt").read_text() == "mine"
    into_run = compare(runs["a"], runs["b"], "--out", runs["b"], expect=2)
    assert "RUN_B" in into_run.stderr and not (runs["b"] / "compare.json").exists()
    fresh = tmp_path / "fresh"
    compare(runs["a"], runs["b"], "--out", fresh, "--format", "json")
    first = (fresh / "compare.json").read_text()
    again = compare(runs["a"], runs["b"], "--out", fresh, expect=2)
    assert "--replace" in again.stderr and (fresh / "compare.json").read_text() == first
    compare(runs["a"], runs["b"], "--out", fresh, "--replace", "--format", "json")
    assert sorted(p.name for p in fresh.iterdir() if p.name != ".ldmprobe-run") == ["compare.html", "compare.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.mark.slow
def test_a_planted_change_in_run_b_is_found(runs, tmp_path, tiny_measurer):
    """Run B's cached embeddings replaced by run A's plus noise, and 'red' images pushed toward
    'fire': compare finds red/fire worse and leaves blue alone."""
    from ldmprobe.store.packed_cache import embedding_store
    from ldmprobe.engine.encode import DEFAULT_PROBE_TEMPLATES, encode_in_templates

    planted = tmp_path / "planted"
    shutil.copytree(runs["b"], planted)
    doc_a = runs["docs"]["a"]
    store = embedding_store(doc_a["config"]["measurer"]["identity"])
    fire = encode_in_templates(tiny_measurer, ["fire"], DEFAULT_PROBE_TEMPLATES)[0]
    rng = np.random.default_rng(4)
    items = lambda folder: [json.loads(x) for x in (folder / "items.jsonl").read_text().splitlines()]  # noqa: E731
    key_a = {(i["template_index"], i["term"], i["seed"]): i["key"] for i in items(runs["a"])}
    lines = []
    for item in items(planted):
        item["key"] = hashlib.sha256(f"planted {item['key']}".encode()).hexdigest()
        vector = store.load(key_a[(item["template_index"], item["term"], item["seed"])]).astype(np.float64)
        vector = vector + rng.normal(size=vector.shape) * 0.02 + (0.5 * fire if item["term"] == "red" else 0)
        store.save(item["key"], (vector / np.linalg.norm(vector)).astype(np.float32))
        lines.append(json.dumps(item))
    store.close()
    (planted / "items.jsonl").write_text("\n".join(lines) + "\n")
    doc = json.loads(compare(runs["a"], planted, "--format", "json").stdout)
    red, blue = doc["terms"]
    fire_row = next(r for r in red["probes"] if r["probe"] == "fire")
    assert fire_row["difference"] > 0 and fire_row["p_adjusted"] < 0.05 and fire_row["verdict"] == "worse"
    assert red["drift"]["difference"] > 0 and red["verdict"] == "worse"
    assert blue["verdict"] == "no clear change"


@pytest.mark.slow
def test_compare_loads_no_model_when_everything_is_cached(runs):
    code = ("import sys; from ldmprobe.cli.main import run; "
            f"rc = run(['compare', {str(runs['a'])!r}, {str(runs['b'])!r}, '--format', 'json', "
            "'--permutations', '99', '--bootstrap', '99']); "
            "assert rc == 0, rc; assert 'torch' not in sys.modules, 'torch imported'")
    env = {**os.environ, "LDMPROBE_CACHE": str(runs["cache"])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _edited_copy(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    doc = json.loads((dst / "results.json").read_text())
    edit(doc)
    (dst / "results.json").write_text(json.dumps(doc))
    return dst


@pytest.mark.slow
def test_spec_mismatch_is_an_error_naming_the_difference(runs, tmp_path):
    other = _sweep(runs["spec"], tmp_path / "c", "--seeds", "3", "--steps", "2")
    assert other["spec"]["seeds"] == [0, 1, 2]
    result = compare(runs["a"], tmp_path / "c", expect=2)
    assert "seeds" in result.stderr and "not runs of the same spec" in result.stderr
    terms = _edited_copy(runs["b"], tmp_path / "terms", lambda d: d["spec"].update(terms=["red", "green"]))
    result = compare(runs["a"], terms, expect=2)
    assert "terms" in result.stderr and "green" in result.stderr


@pytest.mark.slow
def test_measurer_mismatch_and_missing_embeddings_are_errors(runs, tmp_path):
    def other_measurer(doc):
        doc["config"]["measurer"] = {"spec": "ViT-B-32:openai", "source": "pretrained",
                                     "identity": {"source": "open_clip", "model": "ViT-B-32", "pretrained": "openai"}}

    moved = _edited_copy(runs["b"], tmp_path / "measurer", other_measurer)
    result = compare(runs["a"], moved, expect=2)
    assert "different measurers" in result.stderr and "ViT-B-32" in result.stderr
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    result = compare(runs["a"], runs["b"], expect=2, env={"LDMPROBE_CACHE": str(empty)})
    assert "not in the cache" in result.stderr and "LDMPROBE_CACHE" in result.stderr
    result = compare(runs["a"], tmp_path / "nowhere", expect=2)
    assert "nowhere" in result.stderr and "not a folder" in result.stderr


@pytest.mark.slow
def test_probe_texts_not_cached_are_embedded_with_the_recorded_measurer(runs, tmp_path):
    """Without the text cache the measurer is loaded for the probe words alone; the numbers are
    those of the fully cached comparison."""
    cached = json.loads(compare(runs["a"], runs["b"], "--format", "json").stdout)
    copy = tmp_path / "cache"
    shutil.copytree(runs["cache"], copy, symlinks=True)
    shutil.rmtree(copy / "text")
    result = compare(runs["a"], runs["b"], "--format", "json", env={"LDMPROBE_CACHE": str(copy)})
    assert "embedding 3 probe word(s)" in result.stderr
    fresh = json.loads(result.stdout)
    def numbers(doc):
        return [r[k] for t in doc["terms"] for r in t["probes"] for k in ("shift_a", "shift_b", "difference")]

    assert numbers(fresh) == pytest.approx(numbers(cached), rel=1e-5, abs=1e-8)
    assert (copy / "text").is_dir()  # stored for the next comparison


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs headless chromium")
def test_compare_html_renders_in_headless_chromium(runs, tmp_path):
    out = tmp_path / "page"
    compare(runs["a"], runs["b"], "--out", out, "--format", "json")
    done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                           (out / "compare.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert "run B compared with run A" in dom and dom.count("<table>") == 3
    assert all(f"<td class=\"l\">{term}</td>" in dom for term in ("red", "blue"))
