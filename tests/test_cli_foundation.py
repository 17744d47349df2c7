"""Foundation CLI: fast --help without torch, offline failures, models listing, check."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def run_cli(*args, env_extra=None, timeout=600):  # a hang guard, generous for a loaded machine
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "ldmprobe", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _modules_after(argv):
    code = (
        "import sys\nfrom ldmprobe.cli.main import run\n"
        f"rc = run({argv!r})\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'open_clip', 'transformers') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY=")][-1]
    return proc, line[len("HEAVY="):]


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["models", "--format", "json"], ["check", "--help"]])
def test_light_commands_do_not_import_torch(argv):
    proc, heavy = _modules_after(argv)
    assert heavy == "", f"{argv} imported {heavy}"


@pytest.mark.slow
def test_version_and_help():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("ldmprobe, version ")
    proc = run_cli("--help")
    assert proc.returncode == 0 and "models" in proc.stdout and "check" in proc.stdout


@pytest.mark.slow
def test_models_lists_presets_json():
    proc = run_cli("models", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "models" and doc["schema_version"]
    names = {(r["role"], r["name"]) for r in doc["generators"] + doc["measurers"]}
    assert {("generator", "sd15"), ("generator", "tiny"), ("measurer", "tiny"),
            ("measurer", "ViT-L-14-quickgelu:openai")} <= names
    sd15 = next(r for r in doc["generators"] if r["name"] == "sd15")
    assert sd15["resolves_to"] == "hf-hub:stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert sd15["local"] is False


@pytest.mark.slow
@pytest.mark.parametrize("how", [["--offline"], []])
def test_uncached_hub_pipeline_fails_fast_with_advice(how):
    proc = run_cli(*how, "check", "--pipeline", "nobody-here/not-a-model", "--measurer", "tiny",
                   env_extra={"HF_HUB_OFFLINE": "0"} if not how else None)
    assert proc.returncode == 1, proc.stderr
    err = " ".join(proc.stderr.split())
    assert "nobody-here/not-a-model" in err and "not in the local Hugging Face cache" in err
    assert "local folder" in err and "tiny" in err and "network" in err
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    # no wall-clock bound: on a loaded machine start-up alone can take long; the subprocess timeout
    # above is the hang guard, and the message checks show it failed before any download attempt


@pytest.mark.slow
def test_uncached_measurer_offline_fails_with_advice():
    proc = run_cli("--offline", "check", "--pipeline", "tiny", "--measurer", "ViT-B-32:openai")
    assert proc.returncode == 1
    err = " ".join(proc.stderr.split())
    assert "ViT-B-32:openai" in err and "offline mode" in err and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_verbose_shows_traceback():
    proc = run_cli("-v", "--offline", "check", "--pipeline", "nobody-here/not-a-model", "--measurer", "tiny")
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_moved_hub_id_hint_and_exit_2():
    proc = run_cli("--offline", "check", "--pipeline", "runwayml/stable-diffusion-v1-5", "--measurer", "tiny")
    assert proc.returncode == 2
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in proc.stderr


@pytest.mark.slow
def test_check_with_tiny_models_json(cache_root):
    proc = run_cli("check", "--pipeline", "tiny", "--measurer", "tiny", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["provenance"]["tiny"] is True
    assert doc["image_size"] == [64, 64] and doc["embed_dim"] == 64
    assert "tiny models have random weights" in proc.stderr
    assert "\x1b[" not in proc.stdout


def test_unexpected_errors_are_one_line_without_traceback_unless_verbose(monkeypatch):
    from click.testing import CliRunner

    from ldmprobe.models import inventory
    from ldmprobe.cli.main import main

    def broken():
        raise RuntimeError("the inventory broke")

    monkeypatch.setattr(inventory, "model_inventory", broken)
    result = CliRunner().invoke(main, ["models", "--format", "json"])
    assert result.exit_code == 1
    assert "unexpected RuntimeError: the inventory broke" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    result = CliRunner().invoke(main, ["-v", "models", "--format", "json"])
    assert result.exit_code == 1 and "Traceback" in result.stderr


def test_disk_errors_exit_1_with_the_file(monkeypatch):
    from click.testing import CliRunner

    from ldmprobe.models import inventory
    from ldmprobe.cli.main import main

    def full_disk():
        raise OSError(28, "No space left on device", "/cache/images/ab/x.png")

    monkeypatch.setattr(inventory, "model_inventory", full_disk)
    result = CliRunner().invoke(main, ["models", "--format", "json"])
    assert result.exit_code == 1
    assert "No space left on device" in result.stderr and "/cache/images/ab/x.png" in result.stderr
