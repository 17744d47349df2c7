"""80 columns, any script, and a report that leads with the finding (issue: trust)."""

from __future__ import annotations

import re
import warnings

import pytest

from tests.support import assert_whole
from tests.support import render_text as _render


def _widest_cells(document: dict) -> dict:
    """The tiny run's document with the widest cells a real sweep prints (measured on the reference
    world: three-word probes, negative CIs of three significant digits, z pairs like -4.97/-5.14)."""
    import copy

    document = copy.deepcopy(document)
    for term in document["terms"]:
        for i, probe in enumerate(term["probes"]):
            probe.update(probe=["a yellow background", "a small object", "a blue background"][i % 3],
                         shift=-9.76e-05 if i % 2 else 0.0863, ci_low=-0.0775, ci_high=-0.00641,
                         image_z=-4.97, text_z=-5.14, p_value=3.8e-04, p_adjusted=0.0038)
    return document


@pytest.mark.parametrize("cells", ["as run", "widest"])
def test_sweep_tables_cut_no_number_and_no_term_at_80_columns(tiny_run, cells):
    from ldmprobe.render.sweep import render_sweep

    document = tiny_run.to_dict()
    if cells == "widest":
        document = _widest_cells(document)
    text = _render(render_sweep(document))
    words = [t["term"] for t in document["terms"]] + [p["probe"] for t in document["terms"] for p in t["probes"]]
    words += [c["term"] for c in document.get("controls") or []]
    assert_whole(text, words)
    lines = [line.rstrip() for line in text.splitlines()]
    for term in document["terms"]:
        assert any(line.split()[:1] == [term["term"]] and len(line.split()) >= 5 for line in lines), term["term"]
        for probe in term["probes"]:  # each probe's row holds its words and its numbers on one line
            assert any(line.startswith(probe["probe"] + " ") and len(line[len(probe["probe"]):].split()) >= 4
                       for line in lines), probe["probe"]


def test_models_table_keeps_names_whole_at_80_columns():
    from ldmprobe.render.models import render_inventory

    rows = [{"role": "measurer", "name": "ViT-L-14-quickgelu:openai", "resolves_to": "hf-hub:timm/vit_large_patch14",
             "status": "not cached (needs network once)", "about": "OpenAI CLIP ViT-L/14"},
            {"role": "generator", "name": "sd15", "resolves_to": "hf-hub:x/y", "status": "shipped", "about": "SD"}]
    text = _render(render_inventory({"cache": "/c", "generators": rows[1:], "measurers": rows[:1]}))
    assert "…" not in text and "ViT-L-14-quickgelu:openai" in text and "sd15" in text


def test_piped_tables_honour_columns(monkeypatch):
    import io

    from ldmprobe.render.terminal import Terminal

    monkeypatch.setenv("COLUMNS", "100")
    assert Terminal(stdout=io.StringIO()).out_console().width == 100
    monkeypatch.delenv("COLUMNS")
    assert Terminal(stdout=io.StringIO()).out_console().width == 80  # as --help and the README say


TERMS = ["café", "日本の", "fancy 🏰"]


def test_contact_sheet_and_plots_emit_no_glyph_warnings(capfd):
    from PIL import Image

    from ldmprobe.render.report import drift_plot, probe_plot
    from ldmprobe.results.contact_sheet import contact_sheet
    from ldmprobe.results.fonts import MISSING, fonts, plot_label

    image = Image.new("RGB", (32, 32), "orange")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "Glyph missing" warning fails the test
        sheet = contact_sheet("a photo of a {} house", [(t, [image, None]) for t in TERMS], ["0", "1"])
        terms = [{"term": t, "image_drift": {"centroid": 0.1, "paired": 0.2}} for t in TERMS]
        svg = drift_plot(terms, 0.05)
        probe = {"probe": "日本の", "shift": 0.1, "ci_low": 0.0, "ci_high": 0.2, "text_shift": 0.05}
        probe_plot({"probes": [probe, {**probe, "probe": "fancy 🏰"}]})
    assert "Glyph" not in capfd.readouterr().err
    assert sheet.width > 0 and "<svg" in svg
    has_cjk = any(ord("日") in f.chars for f in fonts())
    assert (plot_label("日本の") == "日本の") == has_cjk  # drawn where a font has it, else visibly □
    assert plot_label("café") == "café" and MISSING not in plot_label("café")


def test_report_leads_with_summary_pairs_and_readable_config(tiny_run):
    html = (tiny_run.run_dir / "report.html").read_text()
    body = html[html.index("<body>"):]
    assert body.index('id="summary"') < body.index('id="how"') < body.index('id="drift"') < body.index('id="config"')
    summary = body[body.index('id="summary"'):body.index('id="how"')]
    for term in ("red", "blue", "old"):
        assert f"<b>{term}</b> moved the images" in summary and f'href="#term-{term}"' in summary
    assert 'class="pairs"' in html and "baseline above, term below" in html
    start = body.index('id="term-red"')
    section = body[start:body.index("</section>", start)]
    images = re.findall(r'<img src="(images/[^"]+)"', section)
    assert images and all((tiny_run.run_dir / src).is_file() for src in images)
    config = body[body.index('id="config"'):]
    assert "None" not in config and "{'" not in config and "<th>steps</th>" in config


def test_a_topic_is_noted_once_with_its_fuller_sentence():
    from ldmprobe.analysis.sweep import NO_CONTROLS_NOTE
    from ldmprobe.render.notes import summary_notes

    summary = {"notes": [NO_CONTROLS_NOTE],
               "design": {"messages": ["no controls: drift significance only means the wording changed the images",
                                       "only 2 seeds: their variance cannot be estimated", NO_CONTROLS_NOTE]}}
    assert summary_notes(summary) == [NO_CONTROLS_NOTE, "only 2 seeds: their variance cannot be estimated"]
    assert summary_notes({"notes": [], "design": None}) == []


def test_every_key_of_a_generated_sweeps_document_is_in_the_published_schema(tiny_run):
    import json

    from ldmprobe.results.provenance import load_schema
    from tests.support import undeclared_keys

    document = json.loads(json.dumps(tiny_run.to_dict()))
    assert undeclared_keys(document, load_schema("sweep")) == []


def test_the_schema_check_finds_a_key_the_schema_does_not_name():
    from tests.support import undeclared_keys

    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/row"}, "b": {"type": "array", "items": {
        "anyOf": [{"type": "null"}, {"$ref": "#/$defs/row"}]}}, "free": {"type": "object"},
        "closed": {"type": "object", "additionalProperties": False, "properties": {}}},
        "$defs": {"row": {"type": "object", "properties": {"x": {"type": "number"}}}}}
    document = {"a": {"x": 1, "y": 2}, "b": [None, {"x": 1, "z": 3}], "free": {"anything": 1}, "closed": {"q": 1},
                "new": 0}
    assert undeclared_keys(document, schema) == ["/a/y", "/b/[]/z", "/new"]  # "closed" is the validator's to refuse
