"""Attribute option texts the measurer would cut off are refused, not measured as the same text."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

LONG = " ".join(["big"] * 80)
SPEC = f"""\
name = "long-options"
templates = ["a photo of a {{}} house"]
baseline = ""
terms = ["red"]
probes = ["mansion", "hut"]
seeds = 1
[attributes.colour]
red = "{LONG} red"
blue = "{LONG} blue"
"""


def test_option_texts_over_the_measurers_limit_exit_2(cli, fresh_cache, tmp_path):
    """Two option texts that differ only after token 77 would both read 'big big ...': every image
    would get one option (red 1.00, blue 0.00) with exit 0. They are refused, naming the group."""
    spec = tmp_path / "long.toml"
    spec.write_text(SPEC)
    out = CliRunner().invoke(cli, ["sweep", str(spec), "--pipeline", "tiny", "--measurer", "tiny",
                                   "--out", str(tmp_path / "run"), "--format", "json"])
    assert out.exit_code == 2, out.output
    assert "[attributes.colour]" in out.output and "over the measurer's limit of 77" in out.output
    assert not (tmp_path / "run" / "results.json").exists()
