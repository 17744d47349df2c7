"""The torch thread count: --threads, LDMPROBE_THREADS, OMP_NUM_THREADS, else the free cores (issue 33)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ldmprobe.threads import MAX_DEFAULT, choose_threads, default_threads, parse_threads


@pytest.mark.parametrize("cores,load,expected", [
    (2, 0.0, 2), (2, 1.0, 1), (2, 5.3, 1), (2, 0.6, 1), (2, 0.4, 2), (16, 3.0, MAX_DEFAULT), (8, 3.0, 5), (64, 0.0, MAX_DEFAULT),
    (1, 0.0, 1), (4, 2.5, 2)])
def test_default_is_the_cores_not_kept_busy(cores, load, expected):
    assert default_threads(cores=cores, load=load) == expected


def test_precedence_option_then_env_then_omp_then_free_cores():
    assert choose_threads(3, {"LDMPROBE_THREADS": "5", "OMP_NUM_THREADS": "7"}) == (3, "--threads")
    assert choose_threads(None, {"LDMPROBE_THREADS": "5", "OMP_NUM_THREADS": "7"}) == (5, "LDMPROBE_THREADS")
    assert choose_threads(None, {"OMP_NUM_THREADS": "7"}) == (7, "OMP_NUM_THREADS")
    assert choose_threads(None, {"OMP_NUM_THREADS": "4,2"})[1].startswith("free cores")  # OpenMP's list syntax
    count, source = choose_threads(None, {})
    assert 1 <= count <= MAX_DEFAULT and source.startswith("free cores")


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5"])
def test_bad_counts_are_refused_by_name(value):
    with pytest.raises(ValueError, match="LDMPROBE_THREADS"):
        parse_threads(value, "LDMPROBE_THREADS")


def _run(args, env):
    code = ("import sys\nfrom ldmprobe.cli.main import run\nrc = run(sys.argv[1:])\n"
            "import torch\nprint('THREADS', torch.get_num_threads(), file=sys.stderr)\nsys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_cli_applies_the_count_before_torch_loads(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "LDMPROBE_THREADS")}
    env["LDMPROBE_CACHE"] = str(tmp_path)
    proc = _run(["-v", "models", "--format", "json", "--threads", "1"], env)
    assert proc.returncode == 0, proc.stderr
    assert "torch threads: 1 (--threads)" in proc.stderr and "THREADS 1" in proc.stderr
    proc = _run(["models", "--format", "json"], {**env, "LDMPROBE_THREADS": "0"})
    assert proc.returncode == 2 and "LDMPROBE_THREADS must be at least 1" in proc.stderr
