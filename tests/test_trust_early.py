"""Issue 15, checks before work and the terminal: bad options exit 2 naming the option before any
model loads (in --dry-run too); --dry-run of the default sd15 works offline; report refuses a
wrong-shaped or image-less run folder; a closed pipe ends quietly; the hub message says what
happened; check's timings add up; -v / -q / --offline after the command; --help examples;
progress lines are throttled; no doubled punctuation after "did you mean"."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ldmprobe.cli.main import main
from tests.support import MINI_SPEC as SPEC  # one template, one term, two seeds

TINY = ["--pipeline", "tiny", "--measurer", "tiny"]
HEAVY = ("torch", "diffusers", "open_clip", "transformers")


@pytest.fixture
def spec_file(tmp_path) -> Path:
    path = tmp_path / "mini.toml"
    path.write_text(SPEC)
    return path


def _env(**extra) -> dict:
    env = dict(os.environ)
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_fresh(argv: list[str], env: dict | None = None, timeout: float = 120):
    """Run the CLI in a fresh interpreter; return (proc, heavy modules imported by then).

    Which modules were imported is the measure of "before any model loads", not seconds: a
    wall-clock bound would fail on a busy machine."""
    code = ("import sys\nfrom ldmprobe.cli.main import run\n"
            f"rc = run({argv!r})\n"
            f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
            "print(f'HEAVY={\",\".join(heavy)}', file=sys.stderr)\nsys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)
    line = [x for x in proc.stderr.splitlines() if x.startswith("HEAVY=")][-1]
    return proc, line[len("HEAVY="):]


# --------------------------------------------------------------------------------------------
# Bad options: exit 2, the option named, before any model loads (not even torch)


@pytest.mark.slow
@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("args, named", [
    (["--vocab", "adjectivs"], "--vocab adjectivs"),
    (["--guidance", "nan"], "'--guidance': 'nan' is not a finite number"),  # refused at parse time
    (["--guidance", "inf"], "'--guidance': 'inf' is not a finite number"),
    (["--width", "100"], "--width 100"),
    (["--height", "36"], "--height 36"),
    (["--device", "foo"], "--device"),
])
def test_bad_sweep_options_exit_2_before_any_model_loads(fresh_cache, spec_file, tmp_path, args, named, dry_run):
    out = tmp_path / "run"
    argv = ["sweep", str(spec_file), *TINY, *args, "--out", str(out), "--format", "json"]
    proc, heavy = run_fresh(argv + (["--dry-run"] if dry_run else []))
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr and "unexpected" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert heavy == "", f"{args} imported {heavy} before failing"  # no model, not even torch: no clock needed
    assert not list((fresh_cache / "images").rglob("*.png")) if (fresh_cache / "images").exists() else True
    assert not out.exists()


def test_vocab_suggestion_and_width_fix_are_in_the_message(fresh_cache, spec_file):
    result = CliRunner().invoke(main, ["sweep", str(spec_file), *TINY, "--vocab", "adjectivs", "--dry-run"])
    assert result.exit_code == 2 and "did you mean 'adjectives'?" in result.stderr.lower()
    result = CliRunner().invoke(main, ["sweep", str(spec_file), *TINY, "--width", "100", "--dry-run"])
    assert result.exit_code == 2 and "--width 96 or 104" in result.stderr


@pytest.mark.slow
def test_a_good_vocabulary_file_passes_and_a_missing_one_is_named(fresh_cache, spec_file, tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("red\nblue\n")
    ok = CliRunner().invoke(main, ["sweep", str(spec_file), *TINY, "--vocab", str(words), "--vocab", "objects",
                                   "--dry-run", "--format", "json"])
    assert ok.exit_code == 0, ok.output
    gone = CliRunner().invoke(main, ["sweep", str(spec_file), *TINY, "--vocab", str(tmp_path / "gone.txt"),
                                     "--dry-run", "--format", "json"])
    assert gone.exit_code == 2 and f"--vocab {tmp_path / 'gone.txt'}" in gone.stderr


@pytest.mark.slow
@pytest.mark.parametrize("argv, named", [
    (["check", *TINY, "--device", "foo"], "--device"),
    (["neighbours", "fancy", "--measurer", "tiny", "--images", "1", "--guidance", "nan"], "--guidance"),
])
def test_other_commands_refuse_the_same_options_at_parse_time(fresh_cache, argv, named):
    proc, heavy = run_fresh(argv)
    assert proc.returncode == 2 and named in proc.stderr, proc.stderr
    assert heavy == ""  # refused before torch loads (a wall-clock bound would fail on a busy machine)


def test_make_plan_checks_options_for_the_python_api_too(fresh_cache):
    from ldmprobe.engine.sweep_setup import SweepOptions, make_plan
    from ldmprobe.errors import BadInputError
    from ldmprobe.specs.sweep import spec_from_dict

    spec = spec_from_dict({"name": "x", "templates": ["a {} car"], "baseline": "", "terms": ["red"], "seeds": 1})
    for bad, named in ((dict(guidance=float("nan")), "--guidance"), (dict(width=100), "--width"),
                       (dict(device="gpu"), "--device"), (dict(vocab=("nope-list",)), "--vocab"),
                       (dict(batch_size=0), "--batch-size"), (dict(dtype="float8"), "--dtype")):
        with pytest.raises(BadInputError, match=named):
            make_plan(spec, SweepOptions(pipeline="tiny", measurer="tiny", **bad))


# --------------------------------------------------------------------------------------------
# --dry-run of the default sd15 offline: the plan it can make, with what it could not know


def _sd15_plan(tmp_path):
    from ldmprobe.engine.sweep_setup import SweepOptions, dry_run_document, make_plan
    from ldmprobe.specs.sweep import load_spec

    notes = Lines()
    spec = load_spec("fancy-house")
    setup = make_plan(spec, SweepOptions(offline=True), dry_run=True, reporter=notes)
    return spec, dry_run_document(setup), notes.lines


def test_dry_run_of_sd15_offline_plans_prompts_and_seeds_and_says_what_it_cannot_know(fresh_cache, tmp_path):
    from ldmprobe.specs.sweep import expand

    spec, plan, said = _sd15_plan(tmp_path)
    expected = [(t, m, s, expand(t, m)) for t in spec.templates for m in spec.all_terms for s in spec.seeds]
    assert [(i["template"], i["term"], i["seed"], i["prompt"]) for i in plan["items"]] == expected
    assert plan["counts"] == {"planned": len(expected), "unique": len({(p, s) for _, _, s, p in expected}),
                              "cached": 0}
    assert all(i["key"] is None and i["cached"] is False for i in plan["items"])
    assert plan["config"]["pipeline"] == {"spec": "sd15", "source": "hub", "identity": None}
    assert plan["config"]["steps"] == 50 and plan["config"]["guidance"] == 7.5
    joined = " ".join(plan["notes"])
    assert "sd15" in joined and "image keys" in joined and "prompt lengths" in joined
    assert said == plan["notes"]


@pytest.mark.slow
def test_a_real_sd15_sweep_offline_still_fails_fast_with_the_ways_forward(fresh_cache, spec_file, tmp_path):
    proc, heavy = run_fresh(["sweep", str(spec_file), "--offline", "--out", str(tmp_path / "r")])
    assert proc.returncode == 1 and "Ways forward" in proc.stderr and heavy == ""
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_dry_run_cli_of_sd15_offline_exits_0(fresh_cache):
    proc, heavy = run_fresh(["sweep", "fancy-house", "--dry-run", "--offline", "--format", "json"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["counts"]["cached"] == 0 and "sd15" in proc.stderr and heavy == ""


# --------------------------------------------------------------------------------------------
# report: a wrong-shaped results.json or a run whose images were deleted is refused (exit 2)


@pytest.mark.slow
def test_report_refuses_wrong_shapes_and_missing_images(fresh_cache, spec_file, tmp_path):
    run = tmp_path / "run"
    made = CliRunner().invoke(main, ["sweep", str(spec_file), *TINY, "--out", str(run), "--format", "json",
                                     "--permutations", "99", "--bootstrap", "99", "--no-report"])
    assert made.exit_code == 0, made.output
    ok = CliRunner().invoke(main, ["report", str(run)])
    assert ok.exit_code == 0 and (run / "report.html").is_file(), ok.output
    document = json.loads((run / "results.json").read_text())

    def report_of(doc, name):
        folder = tmp_path / name
        shutil.copytree(run, folder)
        (folder / "report.html").unlink()
        (folder / "results.json").write_text(json.dumps(doc))
        result = CliRunner().invoke(main, ["report", str(folder)])
        assert result.exit_code == 2, (name, result.output)
        assert "unexpected" not in result.stderr and not (folder / "report.html").exists()
        return " ".join(result.stderr.split())

    assert "'schema_version' is a required property" in report_of({}, "empty")
    no_spec = {k: v for k, v in document.items() if k != "spec"}
    assert "top level: 'spec' is a required property" in report_of(no_spec, "no-spec")
    broken_term = json.loads(json.dumps(document))
    del broken_term["terms"][0]["image_drift"]
    assert "terms/0: 'image_drift' is a required property" in report_of(broken_term, "no-drift")
    assert "not a sweep result" in report_of([1, 2], "a-list")

    gone = tmp_path / "gone"
    shutil.copytree(run, gone)
    (gone / "report.html").unlink()
    images = sorted((gone / "images").glob("*.png"))
    for image in images:
        image.unlink()
    result = CliRunner().invoke(main, ["report", str(gone)])
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2 and not (gone / "report.html").exists()
    assert f"{len(images)} of the {len(images) + 1} images and contact sheets" in message
    assert all(f"images/{image.name}" in message for image in images[:5]) and "--replace" in message


# --------------------------------------------------------------------------------------------
# a closed pipe ends quietly


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly(fresh_cache, tmp_path):
    vocab = tmp_path / "words.txt"
    vocab.write_text("".join(f"word{i:04d}\n" for i in range(1500)))  # ~150 kB of jsonl: more than a pipe holds
    cmd = (f"{sys.executable} -m ldmprobe neighbours fancy --measurer tiny --vocab {vocab} --format jsonl -k 1500"
           " | head -1; echo \"status=${PIPESTATUS[0]}\" >&2")
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=_env(), timeout=300)
    assert json.loads(proc.stdout.splitlines()[0])["rank"] == 1
    status = int(proc.stderr.strip().splitlines()[-1].split("=")[1])
    assert status in (0, 141), proc.stderr
    assert "Broken pipe" not in proc.stderr and "error" not in proc.stderr.lower(), proc.stderr
    assert "Exception ignored" not in proc.stderr


@pytest.mark.slow
def test_a_reader_that_is_gone_before_the_first_write(fresh_cache):
    proc = subprocess.Popen([sys.executable, "-m", "ldmprobe", "models", "--format", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader leaves before anything is written
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 141) and err == "", err


# --------------------------------------------------------------------------------------------
# check: what the hub message says, and timings that add up


@pytest.mark.slow
def test_unreachable_hub_is_not_called_offline_mode(fresh_cache):
    env = _env(HF_HUB_OFFLINE=None, LDMPROBE_OFFLINE=None, HF_ENDPOINT="http://127.0.0.1:9")
    for argv in (["check", "--pipeline", "nobody-here/not-a-model", "--measurer", "tiny"],
                 ["check", "--pipeline", "tiny", "--measurer", "ViT-B-32:openai"]):
        proc = subprocess.run([sys.executable, "-m", "ldmprobe", *argv], capture_output=True, text=True, env=env,
                              timeout=120)
        err = " ".join(proc.stderr.split())
        assert proc.returncode == 1 and "the hub could not be reached" in err and "offline mode" not in err, err
        asked = subprocess.run([sys.executable, "-m", "ldmprobe", *argv, "--offline"], capture_output=True,
                               text=True, env=env, timeout=120)
        assert "the hub was not contacted (offline mode)" in " ".join(asked.stderr.split()), asked.stderr


def test_set_hub_offline_is_not_the_user_asking(monkeypatch):
    from ldmprobe.models import hub

    monkeypatch.setattr(hub, "_SWITCHED_OFF_HERE", False)
    monkeypatch.delenv("LDMPROBE_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert not hub.offline_requested()
    hub.set_hub_offline()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and not hub.offline_requested()
    assert hub.offline_requested(True)
    monkeypatch.setattr(hub, "_SWITCHED_OFF_HERE", False)  # the user's own HF_HUB_OFFLINE=1 counts
    assert hub.offline_requested()


@pytest.mark.slow
def test_check_timings_add_up_to_the_commands_time(fresh_cache):
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ldmprobe", "check", *TINY, "--format", "json"],
                          capture_output=True, text=True, timeout=300)
    wall = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    timings = json.loads(proc.stdout)["timings"]
    phases = {k: v for k, v in timings.items() if k != "total_s"}
    assert abs(sum(phases.values()) - timings["total_s"]) < 0.001 * len(phases)
    assert timings["import_s"] > 0.05, timings  # torch, diffusers, open_clip: never 0
    assert {"startup_s", "resolve_s", "load_generator_s", "load_measurer_s", "generate_one_s", "embed_s"} <= set(phases)
    assert timings["total_s"] <= wall, (timings, wall)  # (what is left, printing and exit, has no bound: load)


# --------------------------------------------------------------------------------------------
# global flags before or after the command; examples and environment in --help


@pytest.mark.slow
def test_global_flags_work_after_the_command(fresh_cache, spec_file, tmp_path):
    env = _env(HF_HUB_OFFLINE=None, LDMPROBE_OFFLINE=None, HF_ENDPOINT="http://127.0.0.1:9")
    argv = ["check", "--pipeline", "nobody-here/not-a-model", "--measurer", "tiny"]
    for flags in (["--offline", *argv], [*argv, "--offline"]):
        proc = subprocess.run([sys.executable, "-m", "ldmprobe", *flags], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode == 1 and "offline mode" in " ".join(proc.stderr.split()), (flags, proc.stderr)
    for flags in (["-v", *argv], [*argv, "-v"], [*argv, "--verbose"]):
        proc = subprocess.run([sys.executable, "-m", "ldmprobe", *flags], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode == 1 and "Traceback" in proc.stderr, flags

    vocab = tmp_path / "words.txt"
    vocab.write_text("red\nblue\ngreen\n")
    base = ["neighbours", "fancy", "--measurer", "tiny", "--vocab", str(vocab), "-k", "50", "--format", "json"]
    loud = CliRunner().invoke(main, base)
    assert loud.exit_code == 0 and "tiny models" in loud.stderr and "fewer than -k" in loud.stderr
    for flags in (["-q", *base], [*base, "-q"], [*base, "--quiet"]):
        quiet = CliRunner().invoke(main, flags)
        assert quiet.exit_code == 0 and quiet.stderr == "", (flags, quiet.stderr)
        assert json.loads(quiet.stdout)["neighbours"] == json.loads(loud.stdout)["neighbours"]
    failing = CliRunner().invoke(main, ["sweep", str(spec_file), *TINY, "--vocab", "adjectivs", "-q"])
    assert failing.exit_code == 2 and "error: --vocab adjectivs" in failing.stderr


@pytest.mark.slow
def test_offline_after_the_sweep_command_is_not_a_spec_option(fresh_cache, spec_file, monkeypatch):
    monkeypatch.delenv("LDMPROBE_OFFLINE", raising=False)
    result = CliRunner().invoke(main, ["sweep", str(spec_file), "--offline", *TINY, "--dry-run", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["planned"] == 4
    assert os.environ.get("LDMPROBE_OFFLINE") == "1"


def test_help_shows_an_example_per_command_and_the_environment():
    from ldmprobe.cli.main import main as group

    top = CliRunner().invoke(group, ["--help"])
    assert top.exit_code == 0
    for name in ("LDMPROBE_CACHE", "LDMPROBE_OFFLINE", "NO_COLOR", "-q, --quiet"):
        assert name in top.stdout
    commands = [[name] for name in group.commands]
    commands += [["cache", sub] for sub in group.commands["cache"].commands]
    assert len(commands) >= 11
    for path in commands:
        page = CliRunner().invoke(group, [*path, "--help"], terminal_width=80)
        assert page.exit_code == 0, path
        wide = [line for line in page.stdout.splitlines() if len(line) > 80]
        assert not wide, (path, wide)
        examples = page.stdout.split("Examples:")[1]
        assert f"ldmprobe {' '.join(path)}" in examples, path
        assert "--offline" in page.stdout and "--quiet" in page.stdout, path


# --------------------------------------------------------------------------------------------
# progress when stderr is not a terminal: at most a line every few seconds, plus the final one


class Lines:
    def __init__(self):
        self.lines = []

    def info(self, message):
        self.lines.append(message)

    def warn(self, message):
        self.lines.append(message)


def test_generation_progress_lines_are_throttled_with_the_final_line():
    from ldmprobe.engine.progress import LINE_INTERVAL_S, GenerationProgress

    now = [0.0]
    reporter = Lines()
    progress = GenerationProgress(reporter, total=210, cached=10, label="generating", clock=lambda: now[0])
    step = 0.1
    for _ in range(200):  # one image per batch, 0.1 s apart: 20 s in all
        now[0] += step
        progress.advance(1)
    progress.close()
    # independent count: the first batch prints, then one batch per interval, then the final one
    expected_times = [step]
    while expected_times[-1] + LINE_INTERVAL_S <= 200 * step - 1e-9:
        expected_times.append(expected_times[-1] + LINE_INTERVAL_S)
    assert len(reporter.lines) == len(expected_times) + 1 <= 200 * step / LINE_INTERVAL_S + 2
    assert reporter.lines[0].startswith("generating: 11/210")
    assert reporter.lines[-1].startswith("generating: 210/210")


def test_an_interrupted_generation_says_where_it_got_to():
    from ldmprobe.engine.progress import GenerationProgress

    now = [0.0]
    reporter = Lines()
    progress = GenerationProgress(reporter, total=100, cached=0, label="generating", clock=lambda: now[0])
    for _ in range(7):
        now[0] += 0.1
        progress.advance(1)
    progress.close()
    assert [line.split(" (")[0] for line in reporter.lines] == ["generating: 1/100", "generating: 7/100"]


def test_terminal_progress_is_throttled_and_quiet_is_silent(monkeypatch):
    import io

    from ldmprobe.engine import progress as engine_progress
    from ldmprobe.render.terminal import Terminal

    now = [0.0]
    monkeypatch.setattr(engine_progress, "_now", lambda: now[0])
    err = io.StringIO()
    terminal = Terminal(stdout=io.StringIO(), stderr=err)
    for done in range(0, 1001, 10):  # 101 calls over 10 s
        terminal.progress("encoding", done, 1000)
        now[0] += 0.1
    lines = err.getvalue().splitlines()
    assert lines[0] == "encoding: 1000 to do" and lines[-1] == "encoding: 1000/1000"
    assert len(lines) <= 10 / engine_progress.LINE_INTERVAL_S + 2
    first = Terminal(stdout=io.StringIO(), stderr=io.StringIO())
    first.progress("trace: plain", 6, 18)  # a label's first call: what the cache already held
    first.progress("trace: vae", 8, 8)
    first.progress("images", 0, 4)
    assert first.stderr.getvalue().splitlines()[:3] == [
        "trace: plain: 12 to do (6 of 18 cached)", "trace: vae: all 8 cached", "images: 4 to do"]
    quiet = Terminal(stdout=io.StringIO(), stderr=io.StringIO(), quiet=True)
    quiet.progress("encoding", 0, 10)
    quiet.info("status")
    quiet.warn("careful")
    quiet.progress("encoding", 10, 10)
    quiet.error("bad")
    assert quiet.stderr.getvalue() == "error: bad\n"


# --------------------------------------------------------------------------------------------
# "did you mean 'terms'?" ends its sentence once


def test_did_you_mean_does_not_double_punctuation(tmp_path):
    from ldmprobe.errors import SpecError
    from ldmprobe.specs.assoc import load_assoc_spec
    from ldmprobe.specs.sweep import load_spec

    sweep_spec = tmp_path / "typo.toml"
    sweep_spec.write_text(SPEC.replace("terms =", "tems ="))
    with pytest.raises(SpecError) as caught:
        load_spec(sweep_spec)
    message = str(caught.value)
    assert "did you mean 'terms'? A spec may contain only" in message and "?." not in message
    shipped = Path(__file__).resolve().parents[1] / "prompts" / "assoc" / "weat1-flowers-insects.toml"
    assoc_spec = tmp_path / "assoc.toml"
    assoc_spec.write_text(shipped.read_text().replace("\nsource =", "\ncitation =", 1))
    with pytest.raises(SpecError) as caught:
        load_assoc_spec(assoc_spec)
    message = str(caught.value)
    assert "did you mean 'source'? Allowed" in message and "?." not in message
    plain = tmp_path / "plain.toml"
    plain.write_text(SPEC + "colour = 1\n")
    with pytest.raises(SpecError) as caught:
        load_spec(plain)
    assert "'colour' (line 7). A spec may contain only" in str(caught.value)
