"""report.html shows the text drift in every encoder output the generator reads (SD 3: CLIP-L,
CLIP-G tokens and pooled, T5 tokens), terms and controls, as results.json has them."""

from __future__ import annotations

import html
import json
import re

import pytest

pytestmark = pytest.mark.slow


def test_report_has_a_row_per_term_and_a_column_per_encoder_output(fresh_cache, tmp_path):
    from click.testing import CliRunner

    from ldmprobe.cli.main import main

    spec = tmp_path / "enc.toml"
    spec.write_text('name = "enc"\ntemplates = ["a photo of a {} house"]\nbaseline = ""\nterms = ["fancy"]\n'
                    'controls = ["nice"]\nprobes = ["a yellow background"]\nseeds = 1\n')
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["sweep", str(spec), "--pipeline", "tiny-sd3", "--measurer", "tiny",
                                       "--out", str(out), "--steps", "2"])
    assert result.exit_code == 0, (result.output, result.exception)
    doc = json.loads((out / "results.json").read_text())
    page = (out / "report.html").read_text()
    section = page[page.index('id="encoders"'):]
    section = section[: section.index("</table>")]
    heads = [html.unescape(h) for h in re.findall(r"<th>([^<]*)</th>", section)]
    rows = doc["terms"][0]["text_drift"]["conditioning_by_encoder"]
    assert heads == ["term"] + [f"{r['model']} {r['part']}" for r in rows]
    assert [r["model"] for r in rows] == ["CLIP-L", "CLIP-L", "CLIP-G", "CLIP-G", "T5"]
    assert "nice (control)" in section and section.count("<tr>") == 3
