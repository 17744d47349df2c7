"""``ldmprobe trace``: the command end to end on the tiny models, its checks before any model
loads, its help without torch, and its run folder (results.json, report.html, figures)."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import pytest

SPEC = """name = "tiny-trace"
templates = ["a photo of the {} house", "a {} house in a street"]
baseline = ""
terms = ["fancy"]
probes = ["a yellow background"]
seeds = 2
"""
TINY = ["--pipeline", "tiny", "--measurer", "tiny", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    return path


def _invoke(args):
    from click.testing import CliRunner

    from ldmprobe.cli.main import main

    return CliRunner().invoke(main, args)


@pytest.mark.slow
def test_trace_runs_on_tiny_and_writes_run_folder(spec_file, tmp_path, tiny_generator, tiny_measurer, fresh_cache):
    from ldmprobe.render.trace import render_trace, trace_records
    from ldmprobe.results.provenance import load_schema, validate_document
    from ldmprobe.results.trace import read_results
    from tests.support import undeclared_keys

    out = tmp_path / "run"
    result = _invoke(["trace", str(spec_file), *TINY, "--steps", "3", "--bootstrap", "100", "--format", "json",
                      "--out", str(out), "--variants", "none,modifier,eot_pad"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    validate_document(document, "trace")
    assert undeclared_keys(document, load_schema("trace")) == []  # the published schema names every key
    assert document["provenance"]["tiny"] and "mean nothing" in document["provenance"]["tiny_note"]
    assert [len(document[s]) for s in ("conditioning", "attention", "steps", "vae")] == [1, 1, 1, 1]
    assert document["conditioning"][0]["variants"][0]["drift_share"] == pytest.approx(0.0, abs=0.05)
    assert document["config"]["settings"]["steps"] == 3 and document["spec"]["name"] == "tiny-trace"
    # the plain images are the sweep's own: the same spec's sweep plan finds all of them cached
    plan = _invoke(["sweep", str(spec_file), *TINY, "--steps", "3", "--dry-run", "--format", "json"])
    counts = json.loads(plan.stdout)["counts"]
    assert counts["unique"] == 8 and counts["cached"] == 8
    # the run folder: results.json (same document), report with a section per part, figures
    saved = read_results(out)
    assert saved.to_dict() == document and saved.tiny and saved.run.report == "report.html"
    html = (out / "report.html").read_text()
    for section in ("conditioning", "attention", "steps", "vae", "costs"):
        assert f"id='{section}'" in html
    assert "these numbers and pictures mean nothing" in html
    assert saved.run.figures and all((out / f).is_file() for f in saved.run.figures)
    assert any(f.startswith("figures/attention-") for f in saved.run.figures)
    # the table and JSON Lines views of the same document
    records = trace_records(document)
    assert {r["section"] for r in records} == {"conditioning", "attention", "steps", "vae"}
    assert all(r["tiny"] and r["kind"] == "trace" for r in records)
    render_trace(document)


@pytest.mark.slow
def test_trace_parts_subset_and_cached_rerun(spec_file, tmp_path, tiny_generator, tiny_measurer):
    out = tmp_path / "run"
    args = ["trace", str(spec_file), *TINY, "--steps", "3", "--bootstrap", "50", "--parts", "vae,conditioning",
            "--format", "json", "--out", str(out), "--no-report"]
    first = _invoke(args)
    assert first.exit_code == 0, first.stderr
    document = json.loads(first.stdout)
    assert document["attention"] == [] and document["steps"] == [] and document["conditioning"]
    assert not (out / "report.html").exists() and (out / "results.json").is_file()
    before = (out / "results.json").read_bytes()
    refused = _invoke(args)  # a run folder is never reused silently
    assert refused.exit_code == 2 and "--replace" in refused.stderr and refused.stdout == ""
    assert (out / "results.json").read_bytes() == before
    again = _invoke([*args, "--replace"])
    assert again.exit_code == 0, again.stderr
    again = json.loads(again.stdout)
    assert [c["generated"] for c in again["costs"]] == [0] * len(again["costs"])  # a warm rerun makes nothing
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging folder left beside it


@pytest.mark.slow
def test_trace_call_shape_is_the_sweeps(spec_file, tmp_path, tiny_generator, tiny_measurer, fresh_cache):
    """--call-shape means what it means for sweep: the plain images are the sweep's at that shape."""
    result = _invoke(["trace", str(spec_file), *TINY, "--steps", "3", "--bootstrap", "20", "--parts", "conditioning",
                      "--call-shape", "2", "--format", "json", "--out", str(tmp_path / "run"), "--no-report"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["config"]["settings"]["call_shape"] == 2

    def cached(*extra):
        plan = _invoke(["sweep", str(spec_file), *TINY, "--steps", "3", "--dry-run", "--format", "json", *extra])
        return json.loads(plan.stdout)["counts"]["cached"]

    assert cached("--call-shape", "2") == 8 and cached() == 0


@pytest.mark.slow
def test_trace_default_run_folders_never_collide(spec_file, tmp_path, monkeypatch, fresh_cache):
    monkeypatch.chdir(tmp_path)
    args = ["trace", str(spec_file), *TINY, "--steps", "3", "--bootstrap", "20", "--parts", "conditioning",
            "--variants", "none", "--format", "json", "--no-report"]
    outs = [json.loads(_invoke(args).stdout)["run"]["out"] for _ in range(2)]
    assert outs[0] != outs[1] and all(Path(o).name.startswith("tiny-trace-trace-") for o in outs)
    assert all((tmp_path / o / "results.json").is_file() for o in outs)


def test_trace_failing_after_reserving_leaves_no_folder(spec_file, tmp_path, monkeypatch):
    from ldmprobe.models import load as model_load

    def broken(*args, **kwargs):
        raise RuntimeError("model store unavailable")

    monkeypatch.setattr(model_load, "load_generator", broken)
    out = tmp_path / "run"
    result = _invoke(["trace", str(spec_file), *TINY, "--steps", "3", "--out", str(out)])
    assert result.exit_code != 0 and not out.exists()


@pytest.mark.parametrize("extra,spec_text,message", [
    ([], SPEC.replace("a {} house in a street", "a house in a street"), "placeholder"),
    (["--parts", "conditioning,colour"], SPEC, "colour"),
    (["--switch-steps", "0,2"], SPEC, "strictly between"),
    (["--switch-steps", "5"], SPEC, "strictly between"),
    (["--variants", "modifier+verb"], SPEC, "not a hybrid"),
    (["--noun", "car"], SPEC, "noun"),
    ([], SPEC.replace('probes = ["a yellow background"]\n', ""), "probe"),
    (["--vae-images", "/nonexistent/folder"], SPEC, "does not exist"),
])
def test_bad_input_exits_2_before_loading_models(monkeypatch, tmp_path, extra, spec_text, message):
    from ldmprobe.models import load as model_load

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    for name in ("load_generator", "load_measurer"):
        monkeypatch.setattr(model_load, name, no_loading)
    path = tmp_path / "spec.toml"
    path.write_text(spec_text)
    result = _invoke(["trace", str(path), *TINY, "--steps", "3", "--out", str(tmp_path / "run"), *extra])
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_help_imports_no_torch():
    code = ("import sys\nfrom ldmprobe.cli.main import run\ntry:\n    run(['trace', '--help'])\nfinally:\n"
            "    print('HEAVY', sorted(m for m in ('torch', 'diffusers', 'open_clip', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--switch-steps" in out.stdout and "--vae-images" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_a_failure_to_draw_the_figures_keeps_the_results(spec_file, tmp_path, tiny_generator, tiny_measurer,
                                                          monkeypatch):
    """Plotting can fail (a broken backend, fonts): results.json is still written, with a note
    saying why report.html is missing, and the command exits 0."""
    from ldmprobe.render import trace_report

    def broken(*args, **kwargs):
        raise RuntimeError("no backend")

    monkeypatch.setattr(trace_report, "draw_figures", broken)
    out = tmp_path / "run"
    result = _invoke(["trace", str(spec_file), *TINY, "--steps", "3", "--bootstrap", "50", "--parts", "vae",
                      "--format", "json", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    document = json.loads((out / "results.json").read_text())
    assert any("drawing failed (RuntimeError: no backend)" in n for n in document["notes"])
    assert not (out / "report.html").exists() and not (out / "figures").exists()
    assert document["run"]["report"] is None
