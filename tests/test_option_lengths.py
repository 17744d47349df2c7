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
    assert "[attributes.colour] option 'red'" in out.output and "over the measurer's limit of 77" in out.output
    assert not (tmp_path / "run" / "results.json").exists()
    assert _made_images(fresh_cache) == [], "refused only after generating"


def _made_images(root):
    """Image files in the cache (PNGs or packed shards), not its bookkeeping files."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and (p.suffix in {".png", ".pack"} or "images" in p.relative_to(root).parts)
                  and not str(p.relative_to(root)).startswith("models"))


def test_a_probe_over_the_limit_is_refused_before_generating(cli, fresh_cache, tmp_path):
    """A probe that its probe templates push over 77 tokens would be measured on its first 77
    tokens only; it is refused (exit 2) before any image is made."""
    spec = tmp_path / "long-probe.toml"
    spec.write_text(SPEC.split("[attributes")[0].replace('probes = ["mansion", "hut"]',
                                                         f'probes = ["{LONG} mansion", "hut"]'))
    out = CliRunner().invoke(cli, ["sweep", str(spec), "--pipeline", "tiny", "--measurer", "tiny",
                                   "--out", str(tmp_path / "run"), "--format", "json"])
    assert out.exit_code == 2, out.output
    assert "The probe" in out.output and "over the measurer's limit of 77" in out.output and "Shorten it" in out.output
    assert _made_images(fresh_cache) == []


def test_short_texts_do_not_load_the_tokenizer(monkeypatch):
    """The early check costs nothing on ordinary specs: no tokenizer load when every text is short."""
    from ldmprobe.engine import text_limits
    from ldmprobe.models import load as model_load
    import tomllib

    from ldmprobe.specs.sweep import spec_from_dict

    def boom(*args, **kwargs):
        raise AssertionError("tokenizer loaded for short texts")

    monkeypatch.setattr(model_load, "load_measurer_tokenizer", boom)
    spec = spec_from_dict(tomllib.loads(SPEC.replace(LONG + " ", "")))
    options = type("Options", (), {"probe_templates": None, "offline": True})()
    text_limits.check_measurer_texts(spec, options, measurer_ref=None, context_length=77)
    long_spec = spec_from_dict(tomllib.loads(SPEC))
    with pytest.raises(AssertionError, match="tokenizer loaded"):
        text_limits.check_measurer_texts(long_spec, options, measurer_ref=None, context_length=77)
