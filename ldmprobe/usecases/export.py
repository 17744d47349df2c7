"""Export a sweep's run folder: copy every image it references by cache key into it."""

from __future__ import annotations

from pathlib import Path

from ldmprobe.results.run_export import ExportResult, export_images


def export_run(run_dir: Path | str) -> ExportResult:
    """Make ``run_dir`` whole (see :mod:`ldmprobe.results.run_export`); the cache is only read."""
    from ldmprobe.store.files import check_cache_root

    check_cache_root()
    return export_images(Path(run_dir))
