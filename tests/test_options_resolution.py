"""Models and generation settings resolve in one place: the options', else the spec's, else the default."""

from __future__ import annotations

import dataclasses

import pytest

from ldmprobe.engine.sweep_setup import GenerationOptions, SweepOptions, make_plan, models_for
from ldmprobe.models import sources as models
from ldmprobe.specs.sweep import load_spec


def test_models_for_prefers_options_then_spec_then_defaults():
    spec = load_spec("reference-world")
    assert (spec.pipeline, spec.measurer) == ("reference", "reference")
    assert models_for(spec, SweepOptions()) == ("reference", "reference")
    assert models_for(spec, SweepOptions(pipeline="tiny")) == ("tiny", "reference")
    assert models_for(spec, SweepOptions(measurer="tiny")) == ("reference", "tiny")
    plain = load_spec("fancy-house")
    assert plain.pipeline is None
    assert models_for(plain, SweepOptions()) == (models.DEFAULT_GENERATOR, models.DEFAULT_MEASURER)
    # neighbours and assoc have no sweep spec: the options', else the defaults
    assert models_for(None, SweepOptions()) == (models.DEFAULT_GENERATOR, models.DEFAULT_MEASURER)
    assert models_for(None, SweepOptions(measurer="tiny")) == (models.DEFAULT_GENERATOR, "tiny")


def test_the_library_plan_follows_the_specs_models_as_the_command_line_does():
    """ldmprobe.api.run_sweep(spec) with default options used to plan sd15 for the reference world."""
    setup = make_plan(load_spec("reference-world"), SweepOptions(offline=True))
    assert setup.generator_ref.spec == "reference" and setup.measurer_ref.spec == "reference"
    override = make_plan(load_spec("reference-world"), SweepOptions(offline=True, pipeline="tiny", measurer="tiny"))
    assert override.generator_ref.spec == "tiny" and override.measurer_ref.spec == "tiny"


def test_trace_options_carry_every_generation_setting_into_the_sweeps_plan():
    from ldmprobe.usecases.trace import TraceOptions, sweep_options

    shared = {f.name for f in dataclasses.fields(GenerationOptions)}
    assert shared <= {f.name for f in dataclasses.fields(TraceOptions)}
    assert shared <= {f.name for f in dataclasses.fields(SweepOptions)}
    values = {"pipeline": "tiny", "revision": "r", "measurer": "tiny", "device": "cpu", "dtype": "float32",
              "steps": 7, "guidance": 2.5, "width": 64, "height": 32, "negative_prompt": "n", "batch_size": 3,
              "call_shape": 2, "allow_truncation": True, "offline": True, "out": None, "replace": True}
    missing = shared - set(values) - {"runs_dir"}
    assert not missing, f"give the new generation field(s) {missing} a value here"
    got = sweep_options(TraceOptions(**values))
    assert {k: getattr(got, k) for k in values} == values
    assert got.vocab == ()


def test_options_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SweepOptions().vocab = ()


@pytest.mark.parametrize("command", ["sweep", "trace"])
def test_help_says_the_specs_models_come_before_the_defaults(command):
    """A spec naming its models is run with them, so the help may not promise sd15 as the default."""
    from click.testing import CliRunner

    from ldmprobe.cli.main import main

    said = " ".join(CliRunner().invoke(main, [command, "--help"], terminal_width=200).output.split())
    assert f"the spec's pipeline, else {models.DEFAULT_GENERATOR}" in said
    assert f"the spec's measurer, else {models.DEFAULT_MEASURER}" in said
    assert "[default: sd15]" not in said


def test_commands_without_a_spec_show_the_defaults_the_models_module_uses():
    from click.testing import CliRunner

    from ldmprobe.cli.main import main

    said = " ".join(CliRunner().invoke(main, ["check", "--help"], terminal_width=200).output.split())
    assert f"[default: {models.DEFAULT_GENERATOR}]" in said and f"[default: {models.DEFAULT_MEASURER}]" in said
