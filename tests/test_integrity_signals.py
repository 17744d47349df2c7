"""Issue 17: SIGTERM (schedulers, docker stop) ends a sweep like Ctrl-C: a message, nothing
half-written, exit 143, and the rerun makes only what is missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from ldmprobe.cli.main import main

SPEC = """\
name = "mini"
templates = ["a photo of a {} car", "a {} house at night"]
baseline = ""
terms = ["red", "blue"]
probes = ["fire", "ocean", "tree"]
seeds = 8
"""


def pngs(root):
    return list((root / "images").rglob("*.png"))


def test_sigterm_exits_143_cleanly_and_resume_makes_only_the_rest(fresh_cache, tmp_path):
    spec = tmp_path / "mini.toml"
    spec.write_text(SPEC)
    cmd = [sys.executable, "-m", "ldmprobe", "sweep", str(spec), "--pipeline", "tiny", "--measurer", "tiny",
           "--batch-size", "1", "--out", str(tmp_path / "a"), "--format", "json", "--no-report"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "LDMPROBE_CACHE": str(fresh_cache)})
    deadline = time.monotonic() + 120
    while len(pngs(fresh_cache)) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "SIGTERM" in err and "Traceback" not in err and out == ""
    leftovers = [p for p in fresh_cache.rglob(".*") if p.name.endswith(".tmp") or p.is_dir()]
    assert leftovers == []
    done = len(pngs(fresh_cache))
    assert 3 <= done < 48  # 2 templates x (baseline + 2 terms) x 8 seeds
    result = CliRunner().invoke(main, ["sweep", str(spec), "--pipeline", "tiny", "--measurer", "tiny",
                                       "--out", str(tmp_path / "b"), "--format", "json", "--no-report",
                                       "--permutations", "99", "--bootstrap", "99"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["generated"] == 48 - done
