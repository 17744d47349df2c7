"""A scheduler config with non-finite numbers (diffusers writes ``lambda_min_clipped = -inf`` into
every DPM-Solver config, as the shipped reference world's) still gives a strict-JSON identity
that a recipe accepts; finite configs keep their identity (and so their cache keys) unchanged."""

from __future__ import annotations

import json

from ldmprobe.digest import canonical_json
from ldmprobe.models.configs import scheduler_identity

INDEX = {"scheduler": ["diffusers", "DPMSolverMultistepScheduler"]}


def folder_with(tmp_path, config_text: str):
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "model_index.json").write_text(json.dumps(INDEX))
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(config_text)
    return tmp_path


def test_non_finite_numbers_become_strings_and_the_identity_is_strict_json(tmp_path):
    text = ('{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity, '
            '"beta_end": 0.012, "x": [1, Infinity, NaN], "nested": {"y": NaN}, "steps_offset": 1}')
    identity = scheduler_identity(folder_with(tmp_path, text))
    config = identity["config"]
    assert config["lambda_min_clipped"] == "-Infinity" and config["x"] == [1, "Infinity", "NaN"]
    assert config["nested"] == {"y": "NaN"} and config["beta_end"] == 0.012 and config["steps_offset"] == 1
    assert identity["class"] == "DPMSolverMultistepScheduler" and "_class_name" not in config
    json.dumps(identity, allow_nan=False)  # raises on any float left non-finite
    canonical_json(identity)


def test_a_finite_config_is_read_exactly_as_written(tmp_path):
    config = {"beta_end": 0.012, "beta_schedule": "scaled_linear", "trained_betas": None, "x": [0.5, 2]}
    identity = scheduler_identity(folder_with(tmp_path, json.dumps({"_class_name": "DDIMScheduler", **config})))
    assert identity["config"] == dict(sorted(config.items()))
