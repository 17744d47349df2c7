"""Shared test set-up: offline hub, a private cache folder, and session-wide tiny models."""

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
