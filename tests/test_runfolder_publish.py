"""Issue 28 ("rerun the same command" and --replace) and issue 32 (run folders at scale): a run
folder is published only when complete, report.html included; leftovers of killed processes are
tidied at the next start; --replace is one exchange and replaces only ldmprobe's own folder;
images past the first seeds are referenced by cache key and `ldmprobe export` copies them in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from ldmprobe.cli.main import main
from ldmprobe.results import run_folder_place as place
from ldmprobe.results.contact_sheet import CELL, GAP, LABEL_WIDTH

SPEC = """\
name = "pub"
templates = ["a photo of a {{}} car"]
baseline = ""
terms = ["red"]
probes = ["fire", "ocean"]
seeds = {seeds}
"""


def spec(tmp_path: Path, seeds: int = 2) -> Path:
    path = tmp_path / f"pub-{seeds}.toml"
    path.write_text(SPEC.format(seeds=seeds))
    return path


def run(*args, expect=0):
    result = CliRunner().invoke(main, [*map(str, args)])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def sweep(*args, expect=0, report=True):
    extra = [] if report else ["--no-report"]
    return run("sweep", *args, "--pipeline", "tiny", "--measurer", "tiny", "--format", "json",
               "--permutations", "99", "--bootstrap", "99", *extra, expect=expect)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.slow
def test_a_stop_while_report_html_is_written_publishes_nothing_and_the_same_command_works(
        fresh_cache, tmp_path, monkeypatch):
    from ldmprobe.render import report

    out, path = tmp_path / "run", spec(tmp_path)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    original = report.render_report
    monkeypatch.setattr(report, "render_report", stopped)
    result = sweep(path, "--out", out, expect=130)
    assert not out.exists() and hidden(tmp_path) == [], result.output
    monkeypatch.setattr(report, "render_report", original)
    doc = json.loads(sweep(path, "--out", out).stdout)
    assert doc["counts"]["generated"] == 0 and (out / "report.html").is_file()
    assert "report.html" in place.marker_files(out) and place.foreign_files(out) == []

    (out / "notes.txt").write_text("mine")  # the user's file inside the run folder
    result = sweep(path, "--out", out, "--replace", expect=2)
    assert "notes.txt" in result.stderr and "did not write" in " ".join(result.stderr.split())
    assert (out / "notes.txt").read_text() == "mine" and (out / "report.html").is_file()


@pytest.mark.slow
def test_a_plot_that_cannot_be_drawn_leaves_a_note_not_a_lost_run(fresh_cache, tmp_path, monkeypatch):
    """A plotting failure (backend, fonts) costs the plots, not the run folder: report.html is
    written with a note where each plot would be, and the command exits 0."""
    from ldmprobe.render import report

    def broken(fig):
        raise RuntimeError("no backend")

    monkeypatch.setattr(report, "_svg", broken)
    out, path = tmp_path / "run", spec(tmp_path)
    sweep(path, "--out", out)
    page = (out / "report.html").read_text()
    assert "This plot could not be drawn (RuntimeError: no backend)" in page and "<svg" not in page
    assert (out / "results.json").is_file()


def test_images_past_the_first_seeds_are_referenced_and_export_copies_them_in(fresh_cache, tmp_path):
    out = tmp_path / "run"
    doc = json.loads(sweep(spec(tmp_path, seeds=10), "--out", out).stdout)
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert len(items) == 20 and all(len(i["key"]) == 64 for i in items)
    in_folder = {i["key"] for i in items if i["image"]}
    assert in_folder == {i["key"] for i in items if i["seed"] in range(8)}  # the first 8 seeds of each row
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(f"{k}.png" for k in in_folder)
    from PIL import Image

    with Image.open(out / "contact-00.png") as sheet:
        assert sheet.width == LABEL_WIDTH + 8 * (CELL + GAP) + GAP
    assert "the first 8 of 10 seeds" in (out / "report.html").read_text()

    whole = tmp_path / "whole"
    shutil.copytree(out, whole)
    exported = json.loads(run("export", whole).stdout)
    assert (exported["copied"], exported["present"]) == (4, 16)
    items = [json.loads(line) for line in (whole / "items.jsonl").read_text().splitlines()]
    assert all((whole / i["image"]).read_bytes() == (fresh_cache / "images" / i["key"][:2] / f"{i['key']}.png")
               .read_bytes() for i in items)
    assert place.foreign_files(whole) == []  # exported images are ldmprobe's: --replace may replace them

    results = (out / "results.json").read_text()
    shutil.rmtree(fresh_cache / "images")  # a cache prune: the run folder still stands
    run("report", out)
    assert (out / "results.json").read_text() == results and doc["counts"]["unique"] == 20
    result = run("export", out, expect=1)
    assert "no longer in the cache" in result.stderr and "Rerun the sweep" in " ".join(result.stderr.split())
    assert json.loads(run("export", whole).stdout)["present"] == 20  # a whole folder needs no cache
    run("export", tmp_path, expect=2)


def test_export_refuses_keys_that_are_not_cache_keys(tmp_path, fresh_cache):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text('{"kind": "sweep"}')
    (folder / "items.jsonl").write_text(json.dumps({"key": "../../etc/passwd", "image": None}) + "\n")
    assert "64-hex-digit key" in run("export", folder, expect=2).stderr


def _killed(code: str, cwd: Path) -> None:
    """Run ``code`` in a process that kills itself with SIGKILL at its end (as kill -9 would)."""
    script = textwrap.dedent(code) + "\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
    child = subprocess.run([sys.executable, "-c", script], cwd=cwd, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert child.returncode == -9


def test_a_killed_run_without_out_leaves_no_folder_and_its_reservation_is_reused(tmp_path):
    from ldmprobe.results.run_folder import prepare_out

    _killed("""
        import time
        from pathlib import Path
        time.strftime = lambda fmt, *a: "STAMP"
        from ldmprobe.results.run_folder import prepare_out
        prepare_out(None, spec_name="x", runs_dir=Path("runs"))
        """, tmp_path)
    runs = tmp_path / "runs"
    assert [p.name for p in runs.iterdir() if not p.name.startswith(".")] == []
    assert hidden(runs) == [".x-STAMP.ldmprobe-reserved"]
    import time

    stamp = time.strftime
    try:
        time.strftime = lambda fmt, *a: "STAMP"
        assert prepare_out(None, spec_name="x", runs_dir=runs).name == "x-STAMP"  # the dead one's name, free
    finally:
        time.strftime = stamp


@pytest.mark.slow
def test_a_staging_copy_of_a_killed_process_is_removed_at_the_next_start(tmp_path):
    from ldmprobe.results.run_folder import prepare_out

    _killed("""
        from pathlib import Path
        from ldmprobe.results.run_folder import staged_folder
        with staged_folder(Path("out"), replace=False) as staging:
            (staging / "results.json").write_text("{}")
            import os, signal
            os.kill(os.getpid(), signal.SIGKILL)
        """, tmp_path)
    assert len(hidden(tmp_path)) == 1 and not (tmp_path / "out").exists()
    live = tmp_path / f".out.ldmprobe-{place._HOST}-1-stage-abc"  # pid 1 lives: not ours to remove
    live.mkdir()
    other_host = tmp_path / f".out.ldmprobe-00000000-{dead_pid()}-stage-abc"
    other_host.mkdir()
    prepare_out(tmp_path / "out", spec_name="x", runs_dir=tmp_path)
    assert hidden(tmp_path) == sorted([live.name, other_host.name])


@pytest.mark.parametrize("atomic", [True, False])
def test_replace_exchanges_whole_folders(tmp_path, monkeypatch, atomic):
    if not atomic:
        monkeypatch.setattr(place, "_renameat2", lambda *a: False)
    out, staging = tmp_path / "run", tmp_path / ".run.staging"
    out.mkdir()
    staging.mkdir()
    (out / "old.txt").write_text("old")
    (staging / "new.txt").write_text("new")
    place.exchange(staging, out)
    assert [p.name for p in out.iterdir()] == ["new.txt"] and [p.name for p in staging.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.staging", "run"]
    with pytest.raises(FileExistsError):
        place.publish_new(staging, out)


def test_a_two_step_replace_killed_in_its_middle_is_recovered_at_the_next_start(tmp_path):
    old = tmp_path / f".run.ldmprobe-{place._HOST}-{dead_pid()}-old"
    old.mkdir()
    (old / "results.json").write_text("{}")
    assert place.tidy_leftovers(tmp_path) == ["put back run"]
    assert (tmp_path / "run" / "results.json").is_file() and hidden(tmp_path) == []
    old.mkdir()  # the new folder did arrive: the old one is only removed
    place.tidy_leftovers(tmp_path)
    assert hidden(tmp_path) == [] and (tmp_path / "run" / "results.json").is_file()


def test_replace_refuses_a_folder_without_the_marker_or_with_other_files(tmp_path):
    from ldmprobe.errors import BadInputError
    from ldmprobe.results.run_folder import check_replaceable

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text("{}")
    with pytest.raises(BadInputError, match="not a folder ldmprobe wrote"):
        check_replaceable(folder)
    place.write_marker(folder)
    check_replaceable(folder)
    (folder / "sub").mkdir()
    (folder / "sub" / "mine.txt").write_text("x")
    with pytest.raises(BadInputError, match="sub/mine.txt"):
        check_replaceable(folder)


def test_replace_refuses_another_commands_run_folder(tmp_path):
    """A trace's --replace does not delete a sweep's run folder (both have results.json and the
    marker); the same command's folder is replaced as before."""
    from ldmprobe.errors import BadInputError
    from ldmprobe.results.run_folder import prepare_out

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({"kind": "sweep"}))
    place.write_marker(folder)
    with pytest.raises(BadInputError, match="holds a sweep run folder; --replace replaces only a trace's"):
        prepare_out(folder, spec_name="x", runs_dir=tmp_path, replace=True, kind="trace")
    assert (folder / "results.json").is_file()
    assert prepare_out(folder, spec_name="x", runs_dir=tmp_path, replace=True, kind="sweep") == folder


def test_files_ldmprobe_adds_later_join_the_marker(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text("{}")
    place.write_marker(folder)
    (folder / "report.html").write_text("<html></html>")  # as `ldmprobe report` writes it later
    assert place.foreign_files(folder) == ["report.html"]
    place.add_to_marker(folder, ["report.html"])
    assert place.foreign_files(folder) == [] and place.marker_files(folder) == ["report.html", "results.json"]
    mine = tmp_path / "mine"
    mine.mkdir()
    place.add_to_marker(mine, ["x"])  # a folder ldmprobe did not make gets no marker
    assert not (mine / place.MARKER).exists()
