"""HTML report, Python API and the examples, all with tiny models offline."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPEC = """\
name = "mini-report"
templates = ["a photo of a {} car", "a {} house at night"]
baseline = ""
terms = ["red", "blue", "old"]
probes = ["fire", "ocean", "tree"]
seeds = 2
"""


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.sources, self.links, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag not in {"meta", "img", "br", "link", "path", "use", "rect", "line", "circle"}:
            self.stack.append(tag)
        if "src" in attrs:
            self.sources.append(attrs["src"])
        if tag == "link" and "href" in attrs:
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag:
                pass

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_generator, tiny_measurer):
    import ldmprobe

    folder = tmp_path_factory.mktemp("report")
    spec_path = folder / "mini.toml"
    spec_path.write_text(SPEC)
    options = ldmprobe.SweepOptions(pipeline="tiny", measurer="tiny", out=folder / "run",
                                    permutations=199, bootstrap=199)
    return ldmprobe.run_sweep(str(spec_path), options)


def test_api_returns_typed_result(tiny_run):
    import ldmprobe

    assert isinstance(tiny_run, ldmprobe.SweepResult)
    assert tiny_run.tiny and tiny_run.counts["planned"] == 16
    assert {t["term"] for t in tiny_run.terms} == {"red", "blue", "old"}
    assert tiny_run.term("red")["n_pairs"] == 4
    assert json.loads((tiny_run.run_dir / "results.json").read_text())["counts"] == tiny_run.counts


def test_import_ldmprobe_does_not_import_torch():
    code = ("import sys, ldmprobe\nldmprobe.load_spec; ldmprobe.SweepOptions; ldmprobe.weat\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_report_is_html_with_every_term_template_and_tiny_banner(tiny_run):
    html = (tiny_run.run_dir / "report.html").read_text()
    parser = _Collector()
    parser.feed(html)
    parser.close()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert parser.stack == [], f"unclosed tags: {parser.stack}"
    text = " ".join(parser.text)
    assert 'id="tiny-banner"' in html and "TINY models" in text
    for term in ("red", "blue", "old"):
        assert f'id="term-{term}"' in html
    for template in ("a photo of a {} car", "a {} house at night"):
        assert template in text
    for probe in ("fire", "ocean", "tree"):
        assert probe in text
    assert html.count("<svg") >= 1 + 3  # drift plot + a probe plot per term
    assert parser.sources, "no contact sheets referenced"
    for src in parser.sources + parser.links:
        assert not re.match(r"^[a-z]+://", src), f"network reference {src}"
        assert (tiny_run.run_dir / src).is_file(), f"missing file {src}"


def test_report_command_and_bad_folder(tiny_run, tmp_path):
    from click.testing import CliRunner

    from ldmprobe.cli.main import main

    (tiny_run.run_dir / "report.html").unlink()
    result = CliRunner().invoke(main, ["report", str(tiny_run.run_dir)])
    assert result.exit_code == 0 and (tiny_run.run_dir / "report.html").is_file()
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "results.json" in result.stderr


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="no chromium")
def test_report_screenshot_in_headless_chromium(tiny_run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    shot = tmp_path / "report.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
         (tiny_run.run_dir / "report.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1200, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 50  # a rendered page, not a blank one


def _example_env(cache_root):
    return dict(os.environ, HF_HUB_OFFLINE="1", LDMPROBE_CACHE=str(cache_root),
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def test_example_tiny_sweep(tmp_path, cache_root, tiny_generator, tiny_measurer):
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "tiny_sweep.py"), "--out", str(tmp_path / "run"),
                           "--seeds", "1"], capture_output=True, text=True, env=_example_env(cache_root), timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["term", "pairs", "centroid"]
    assert len(lines) == 1 + 9 + 1 and "fancy" in proc.stdout and "wealthy" in proc.stdout
    assert (tmp_path / "run" / "report.html").is_file()


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq not installed")
def test_example_top_probe_with_jq(cache_root, tiny_generator, tiny_measurer, tmp_path):
    proc = subprocess.run(["bash", str(REPO / "examples" / "top_probe.sh"), "fancy-house", "--seeds", "1",
                           "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=_example_env(cache_root), timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.strip().splitlines()]
    assert len(rows) == 9 and all(len(r) == 4 for r in rows)
    probes = {"mansion", "hut", "slum", "luxury", "poverty", "modern", "rural", "suburban", "tropical", "apartment"}
    assert all(r[1] in probes for r in rows)
    document = json.loads((tmp_path / "run" / "results.json").read_text())
    expected = {t["term"]: t["probes"][0]["probe"] for t in document["terms"]}
    assert {r[0]: r[1] for r in rows} == expected


def test_example_compare_measurers(tiny_run, cache_root, tmp_path):
    from ldmprobe.models.tiny import build_tiny_measurer

    second = tmp_path / "tiny-b"
    build_tiny_measurer(second, seed=1)
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "compare_measurers.py"), str(tiny_run.run_dir),
                           "tiny", f"local-dir:{second}"], capture_output=True, text=True,
                          env=_example_env(cache_root), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Spearman rank correlation" in proc.stdout
    assert {line.split()[0] for line in proc.stdout.splitlines()[1:4]} == {"red", "blue", "old"}
