"""Checks that need a CUDA GPU or real weights from the hub. Skipped by default.

    python -m pytest -m gpu        # the CUDA path with tiny models (benchmarks/gpu_check.py)
    python -m pytest -m weights    # SD 1.5 + CLIP ViT-L/14 (needs the weights cached or network)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="no CUDA device")
def test_gpu_check_passes():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--json"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "FAIL" not in proc.stdout


@pytest.mark.weights
def test_sd15_with_clip_l14_small_sweep(tmp_path):
    """One template, two terms, two seeds through the real models; drift is finite and keys pin a commit."""
    spec = tmp_path / "real.toml"
    spec.write_text('name = "real"\ntemplates = ["a photo of a {} house"]\nbaseline = ""\n'
                    'terms = ["fancy", "poor"]\nprobes = ["mansion", "hut"]\nseeds = 2\nsteps = 20\n')
    env = dict(os.environ)
    env.pop("HF_HUB_OFFLINE", None)  # allowed to fetch when the machine has network
    env["LDMPROBE_CACHE"] = os.environ.get("LDMPROBE_REAL_CACHE", str(tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "ldmprobe", "sweep", str(spec), "--pipeline", "sd15", "--measurer",
         "ViT-L-14-quickgelu:openai", "--out", str(tmp_path / "run"), "--format", "json", "--no-report"],
        capture_output=True, text=True, env=env, timeout=3600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    document = json.loads(proc.stdout)
    assert document["provenance"]["tiny"] is False
    assert len(document["config"]["pipeline"]["identity"]["revision"]) == 40
    for term in document["terms"]:
        assert term["n_pairs"] == 2 and term["image_drift"]["centroid"] > 0
