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

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


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


def test_report_command_and_bad_folder(tiny_run, cli, tmp_path):
    from click.testing import CliRunner

    run_dir = tmp_path / "run"  # a copy: the session's run folder stays as made
    shutil.copytree(tiny_run.run_dir, run_dir, symlinks=True)
    made = (run_dir / "report.html").read_text()
    (run_dir / "report.html").unlink()
    result = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert result.exit_code == 0 and (run_dir / "report.html").is_file()
    assert 'id="tiny-banner"' in (run_dir / "report.html").read_text() and 'id="tiny-banner"' in made
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["report", str(empty)])
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
        pixels = np.asarray(image.convert("RGB"), dtype=int)
    # The size is what --window-size asked for, drawn or not; what proves the report was drawn with its
    # styles is the TINY banner: a wide band of its red (#b00020) near the top. A blank page, an error
    # page or the HTML without its CSS has none.
    banner = (np.abs(pixels - [0xB0, 0x00, 0x20]).max(axis=2) <= 24)
    rows = np.flatnonzero(banner.sum(axis=1) >= 600)  # banner rows span most of the 1200-pixel width
    assert pixels.shape == (2000, 1200, 3)
    assert len(rows) >= 20 and rows[0] < 600, f"no TINY banner drawn (red rows: {len(rows)})"
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert colours > 1000, colours  # text, plots and contact sheets (~13,000); chromium's error page draws ~500


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
