"""Report pages come from autoescaped Jinja2 templates: a hostile spec name, term, template, probe
or image group shows as text on every page ldmprobe writes (a sweep's report.html with
its rates, a trace's report.html, compare.html), never as markup; the command line starts
without importing jinja2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest

SCRIPT = "<script>alert(1)</script>"
QUOTES = "\"q\" 'a' {{ 7*7 }} {% if 1 %}"
PROBE = "<img src=x onerror=alert(1)>"
NAME = f"{SCRIPT} {QUOTES}"
HOSTILE_SPEC = f"""\
name = {json.dumps(NAME)}
templates = [{json.dumps('a photo of {} houses <marquee>m</marquee> & "q"')}]
baseline = ""
terms = [{json.dumps(SCRIPT)}, {json.dumps(QUOTES)}]
probes = [{json.dumps(PROBE)}, "hut"]
seeds = 2

[attributes.dwelling]  # group and option names are plain words (the spec refuses others): terms label the rows
mansion = "a photo of a mansion"
hut = "a photo of a hut"
"""
TINY = ["--pipeline", "tiny", "--measurer", "tiny", "--device", "cpu"]


class _Page(HTMLParser):
    """The tags a browser would build from a page, and the text and attribute values it would show."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.attributes, self.shown = set(), set(), []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)
        self.shown += [value for _, value in attrs if value]

    def handle_data(self, data):
        self.shown.append(data)


def assert_shown_as_text(page: str, *texts: str) -> None:
    parsed = _Page(page)
    assert not parsed.tags & {"script", "marquee"} and "onerror" not in parsed.attributes, sorted(parsed.tags)
    shown = "\n".join(parsed.shown)
    for text in texts:
        assert text in shown, text  # shown verbatim: escaped, neither dropped nor evaluated ({{ 7*7 }} is not 49)


def _invoke(*args):
    from click.testing import CliRunner

    from ldmprobe.cli.main import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.mark.slow
def test_hostile_strings_are_text_on_every_page(tmp_path, tiny_generator, tiny_measurer):
    spec = tmp_path / "hostile.toml"
    spec.write_text(HOSTILE_SPEC)
    for run, steps in (("a", 2), ("b", 3)):
        _invoke("sweep", spec, *TINY, "--steps", steps, "--permutations", 99, "--bootstrap", 99,
                "--out", tmp_path / run, "--format", "json")
    report = (tmp_path / "a" / "report.html").read_text()
    assert 'id="rates"' in report
    assert_shown_as_text(report, NAME, SCRIPT, QUOTES, PROBE, 'a photo of {} houses <marquee>m</marquee> & "q"')

    _invoke("compare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "a-vs-b", "--permutations", 99,
            "--bootstrap", 99, "--format", "json")
    assert_shown_as_text((tmp_path / "a-vs-b" / "compare.html").read_text(), NAME, SCRIPT, QUOTES, PROBE)

    group = tmp_path / "vae" / "<marquee>grp"
    group.mkdir(parents=True)
    for image in sorted((tmp_path / "a" / "images").iterdir())[:2]:
        shutil.copy(image, group / image.name)
    _invoke("trace", spec, *TINY, "--steps", 3, "--bootstrap", 50, "--vae-images", tmp_path / "vae",
            "--out", tmp_path / "trace", "--format", "json")
    trace = (tmp_path / "trace" / "report.html").read_text()
    for section in ("conditioning", "attention", "steps", "vae"):
        assert f"id='{section}'" in trace
    assert_shown_as_text(trace, NAME, SCRIPT, QUOTES, PROBE, "<marquee>grp")


def test_a_term_sentence_and_the_rates_section_escape_what_they_show():
    from ldmprobe.render.rates_html import rates_html
    from ldmprobe.render.report_parts import term_sentence

    drift = {"estimate": 0.2, "ci_low": 0.1, "ci_high": 0.3, "p_value": 0.01, "p_adjusted": 0.02, "versus": None}
    probe = {"probe": PROBE, "shift": 0.1, "p_adjusted": 0.01, "image_z": 2.0, "text_z": 1.0}
    sentence = term_sentence({}, {"term": SCRIPT, "image_drift": drift, "probes": [probe]})
    assert_shown_as_text(sentence, SCRIPT, PROBE)
    assert "moved the images by drift <span class=nowrap>0.2</span>" in sentence and "toward <b>" in sentence

    row = {"group": "<marquee>g</marquee>", "option": SCRIPT, "rate": 0.5, "ci_low": 0.2, "ci_high": 0.8}
    diversity = {"vendi": 3.0, "verdict": QUOTES, "groups": [{"group": PROBE, "versus_baseline": SCRIPT}]}
    page = "\n".join(rates_html({"terms": [{"term": QUOTES, "rates": [row], "diversity": diversity}]}))
    assert_shown_as_text(page, "<marquee>g</marquee>", SCRIPT, QUOTES, PROBE)


def test_a_value_a_page_names_but_is_not_given_is_an_error_not_a_blank():
    from jinja2 import UndefinedError

    from ldmprobe.render.html import render

    with pytest.raises(UndefinedError, match="corrected"):  # not silently "raw zero-shot labels"
        render("rates.html.j2", entries=[], groups=[], f=str, star=str)


def test_help_does_not_import_jinja2():
    code = ("import sys\nfrom ldmprobe.cli.main import run\nfor args in (['--help'], ['sweep', '--help'], "
            "['trace', '--help']):\n    try:\n        run(args)\n    except SystemExit:\n        pass\n"
            "assert 'jinja2' not in sys.modules, 'jinja2 imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
