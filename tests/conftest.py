"""Shared test set-up: offline hub, a private cache folder, session-wide tiny models and runs, and
the test tiers (``slow`` marks; see README "Tests").

Fixtures used by more than one test module live here; helpers that are plain functions or
constants live in ``tests/support.py``. No test module imports another.
"""

from __future__ import annotations

import os
import tempfile

# Must happen before anything imports huggingface_hub (it reads the variable at import).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.pop("LDMPROBE_OFFLINE", None)
_SESSION_CACHE = tempfile.mkdtemp(prefix="ldmprobe-test-cache-")
os.environ["LDMPROBE_CACHE"] = _SESSION_CACHE

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def cache_root():
    """The session's private cache folder (tiny models are built here once)."""
    from pathlib import Path

    return Path(_SESSION_CACHE)


@pytest.fixture(scope="session")
def tiny_generator(cache_root):
    from ldmprobe.models import load as model_load
    from ldmprobe.models import sources as models

    return model_load.load_generator(models.resolve_generator("tiny"), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_measurer(cache_root):
    from ldmprobe.models import load as model_load
    from ldmprobe.models import sources as models

    return model_load.load_measurer(models.resolve_measurer("tiny"), device="cpu")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_generator, tiny_measurer):
    """One tiny sweep (3 terms, 2 templates, 2 seeds) through the Python API, made once per session.

    Read-only: a test that changes a run folder works on its own copy (``copy_run``)."""
    import ldmprobe

    from tests.support import MINI_REPORT_SPEC

    folder = tmp_path_factory.mktemp("report")
    spec_path = folder / "mini.toml"
    spec_path.write_text(MINI_REPORT_SPEC)
    options = ldmprobe.SweepOptions(pipeline="tiny", measurer="tiny", out=folder / "run",
                                    permutations=199, bootstrap=199)
    return ldmprobe.run_sweep(str(spec_path), options)


@pytest.fixture(scope="session")
def cli():
    """The ``ldmprobe`` click group (every command registered), for ``CliRunner().invoke``."""
    from ldmprobe.cli.main import main

    return main


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread while a module's tests run, restored afterwards (``pytestmark`` usefixtures)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fresh_cache(tmp_path, cache_root, tiny_generator, tiny_measurer, monkeypatch):
    """An empty image/embedding cache that reuses the session's built tiny models."""
    root = tmp_path / "cache"
    root.mkdir()
    (root / "models").symlink_to(cache_root / "models", target_is_directory=True)
    monkeypatch.setenv("LDMPROBE_CACHE", str(root))
    return root


@pytest.fixture(autouse=True)
def _fresh_signal_handling():
    """Every test starts and ends with a fresh process's SIGINT / SIGTERM handling.

    An in-process CLI run or a library may change it, and a child process inherits an ignored or
    blocked signal: a sweep started by a later test would then not stop on Ctrl-C or SIGTERM.
    """
    import signal

    from ldmprobe.engine.distributed import clear_stop

    def reset():
        clear_stop()  # a stop signal an in-process run remembered
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})

    reset()
    yield
    reset()
