"""Shared test set-up: offline hub, a private cache folder, session-wide tiny models and runs, and
the test tiers (``slow`` marks; see README "Tests").

Fixtures used by more than one test module live here; helpers that are plain functions or
constants live in ``tests/support.py``. No test module imports another.
"""

from __future__ import annotations

import os
import re
import tempfile

# Must happen before anything imports huggingface_hub (it reads the variable at import).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.pop("LDMPROBE_OFFLINE", None)
_SESSION_CACHE = tempfile.mkdtemp(prefix="ldmprobe-test-cache-")
os.environ["LDMPROBE_CACHE"] = _SESSION_CACHE

import pytest  # noqa: E402

# ---------------------------------------------------------------------------------------------- tiers
# Fast tier: ``python -m pytest -m "not slow"`` (under a minute on a 2-core machine); full suite
# (CI): ``python -m pytest``. A test is ``slow`` when it takes more than about half a second: it
# runs a model, a sweep, a subprocess CLI or a statistical calibration loop. Besides explicit
# ``@pytest.mark.slow`` marks, whole modules and every test that uses a fixture below are slow,
# so a new test there lands in the right tier without a mark.

#: Modules whose tests run sweeps, signals or subprocess CLIs on the tiny models.
SLOW_MODULES = {
    "test_cache_command.py", "test_compaction.py", "test_distributed.py", "test_integrity_disk.py",
    "test_integrity_exact.py", "test_integrity_signals.py", "test_integrity_store.py", "test_real_models.py",
    "test_reference_models.py", "test_report_examples.py", "test_sweep.py",
}
#: Fixtures that run a sweep, build models or draw large samples: "name" anywhere, or "module::name".
SLOW_FIXTURES = {
    "tiny_run", "arch_generators", "siglip", "swept", "reference_sweep", "image_result", "gen_scenes", "mes_scenes",
    "test_byo_sweep.py::generated", "test_compare.py::runs", "test_compare_own.py::runs",
    "test_reference_world.py::scenes",
}
#: Single slow tests named here rather than marked in their module.
SLOW_TESTS = {
    "test_reference_world2.py::test_evaluation_of_a_perfect_generator_meets_the_targets_and_of_a_collapsed_one_does_not",
    "test_trace_region.py::test_spatial_signal_false_positive_rate_near_alpha",
    "test_trace_region.py::test_noun_region_is_still_the_default",
    # each over a second in the fast tier (durations of `-m "not slow" --durations=40`, 2-core machine)
    "test_speed_memory.py::test_what_the_analysis_holds_stays_flat_in_the_number_of_images",
    "test_speed_memory.py::test_the_analysis_of_an_image_grid_is_the_analysis_of_the_same_cells_as_a_dict",
    "test_runfolder_publish.py::test_images_past_the_first_seeds_are_referenced_and_export_copies_them_in",
    "test_reference_world2.py::test_the_generators_fancy_pictures_lean_to_cars_and_no_other_words_do",
    "test_sweep_analysis.py::test_nonfinite_and_zero_embeddings_are_excluded_and_counted",
    "test_sweep_analysis.py::test_every_usable_cell_is_used_and_counted",
    "test_sweep_analysis.py::test_rank_correlation_is_exact_for_few_terms",
    "test_sweep_analysis.py::test_probe_rows_carry_min_p_exact_and_resamples",
    "test_sweep_analysis.py::test_failed_and_dropped_images_are_excluded_and_counted",
    "test_trace_cli.py::test_a_failure_to_draw_the_figures_keeps_the_results",
    "test_byo_edges.py::test_compare_refuses_runs_whose_calibration_arrays_differ",
    "test_byo_edges.py::test_file_levels_against_the_spec_give_notes_config_and_a_compare_note",
    "test_byo_sweep.py::test_extra_rows_are_ignored_with_a_count",
    "test_byo_sweep.py::test_export_and_read_back_keep_failed_flagged_and_excluded_images",
    "test_inference_level.py::test_the_flag_on_planted_truths",
    "test_inference_level.py::test_critical_value_is_where_the_shipped_p_equals_alpha",
}
#: Markers a run selects only by naming them in -m (they need a GPU or downloaded weights).
OPT_IN_MARKERS = ("gpu", "weights")


def _is_slow(item) -> bool:
    module = item.path.name
    if module in SLOW_MODULES or f"{module}::{getattr(item, 'originalname', item.name)}" in SLOW_TESTS:
        return True
    return any(
        name in SLOW_FIXTURES or f"{module}::{name}" in SLOW_FIXTURES for name in item.fixturenames)


@pytest.hookimpl(tryfirst=True)  # before -m selects on the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        if _is_slow(item):
            item.add_marker(pytest.mark.slow)
    # `-m "not slow"` replaces the default `-m 'not gpu and not weights'` (the last -m wins): keep GPU and
    # weights tests out unless the expression names one of them (`-m gpu` runs the GPU tests, as before).
    expression = config.getoption("markexpr") or ""
    if not any(re.search(rf"\b{marker}\b", expression) for marker in OPT_IN_MARKERS):
        kept, dropped = [], []
        for item in items:
            (dropped if any(item.get_closest_marker(m) for m in OPT_IN_MARKERS) else kept).append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept


@pytest.fixture(scope="session")
def tier_tables():
    """The names the tier hook marks slow, so a test can check that each still names something."""
    return {"modules": SLOW_MODULES, "fixtures": SLOW_FIXTURES, "tests": SLOW_TESTS}


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
