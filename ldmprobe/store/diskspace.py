"""Disk space: what a sweep will write, checked against what is free before any work.

The sizes are estimates (a PNG's size depends on the picture): from the sizes of up to 64
images of this sweep already in the cache when there are any, else from the raw pixel size,
which a PNG of a generated image is rarely above and seldom below a quarter of. A sweep that
certainly cannot fit (less free than the low estimate) is refused before a model loads; one
that may not fit gets a warning with the figures.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ldmprobe.errors import BadInputError

MB = 1024 * 1024
#: Bytes per stored embedding, index line and failure record beside each new image (generous).
PER_ITEM_EXTRA = 8 * 1024
SAMPLE = 64


@dataclass(frozen=True)
class SpaceNeed:
    """Bytes one filesystem must take, as (low, high) estimates, and what they are for."""

    folder: Path
    low: int
    high: int
    what: tuple[str, ...]


def image_size_range(width: int, height: int, cached_paths: list[Path]) -> tuple[int, int]:
    """(low, high) bytes of one image of this sweep: measured on cached ones, else from the pixels."""
    sizes = []
    for path in cached_paths[:SAMPLE]:
        try:
            sizes.append(path.stat().st_size)
        except OSError:
            continue
    if sizes:
        mean = sum(sizes) / len(sizes)
        return int(mean * 0.5), int(mean * 1.5)
    raw = width * height * 3
    return raw // 4, raw + 4096


def human(n: float) -> str:
    """Bytes as a person reads them: 512 KB, 3.4 MB, 12.0 GB."""
    for unit, size in (("GB", 1024 ** 3), ("MB", MB)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{max(n, 0) / 1024:,.0f} KB"


def _device(path: Path) -> int | None:
    for folder in (path, *path.parents):
        try:
            return os.stat(folder).st_dev
        except OSError:
            continue
    return None


def _existing(path: Path) -> Path:
    return next((p for p in (path, *path.parents) if p.exists()), Path("/"))


def needs(*, n_new: int, n_run_images: int, image: tuple[int, int], cache_root: Path, out: Path | None,
          sheet_cell: int = 128) -> list[SpaceNeed]:
    """What the cache (``n_new`` images to make) and the run folder (``n_run_images`` copies,
    contact sheets of ``sheet_cell``-pixel thumbnails, the report) must take, merged per
    filesystem."""
    low, high = image
    parts = [(Path(cache_root), n_new * (low + PER_ITEM_EXTRA), n_new * (high + PER_ITEM_EXTRA),
              f"{n_new} new image(s) in the cache {cache_root}")]
    if out is not None and n_run_images:
        thumb = sheet_cell * sheet_cell * 3  # a raw thumbnail in a contact sheet
        parts.append((Path(out), n_run_images * (low + thumb // 8),
                      n_run_images * (high + thumb + PER_ITEM_EXTRA) + MB,
                      f"a run folder {out} of {n_run_images} image(s), contact sheets and report"))
    merged: dict[int | None, SpaceNeed] = {}
    for folder, lo, hi, what in parts:
        key = _device(folder)
        if key in merged and key is not None:
            old = merged[key]
            merged[key] = SpaceNeed(old.folder, old.low + lo, old.high + hi, old.what + (what,))
        else:
            merged[key if key is not None else id(folder)] = SpaceNeed(folder, lo, hi, (what,))
    return [need for need in merged.values() if need.high > 0]


def check_space(wanted: list[SpaceNeed], reporter=None, *, free=None) -> None:
    """Refuse (exit 2) when a filesystem has less free than the low estimate; warn below the high one."""
    free = free or (lambda folder: shutil.disk_usage(_existing(folder)).free)
    for need in wanted:
        have = free(need.folder)
        figures = (f"the disk holding {_existing(need.folder)} has {human(have)} free; this sweep needs "
                   f"about {human(need.low)} to {human(need.high)} there ({'; '.join(need.what)})")
        if have < need.low:
            raise BadInputError(f"not enough disk space: {figures}. Nothing was started. Free space, choose another "
                                "--out, or set LDMPROBE_CACHE to a cache on a larger disk.")
        if have < need.high and reporter is not None:
            reporter.warn(f"disk space may run out: {figures}. Everything made before it does stays cached.")


def disk_full_message(path, *, out: Path | None = None) -> str:
    """For an ENOSPC error: which folder's disk is full and how much is free there."""
    folder = Path(out) if out is not None else Path(path or ".").parent
    try:
        have = shutil.disk_usage(_existing(folder)).free
        return f"the disk holding {_existing(folder)} is full ({human(have)} free)"
    except OSError:
        return f"the disk holding {folder} is full"


#: Bytes a built tiny model takes (generator 16.7 MB, measurer 13.6 MB measured), with a margin.
TINY_MODEL_BYTES = {"tiny-generator": 20 * MB, "tiny-measurer": 16 * MB}


def check_model_build(models_dir: Path, name: str, *, free=None) -> None:
    """Refuse (exit 2, figures named) to build a tiny model on a disk that cannot hold it (issue
    28: a fresh cache on a small disk died half-way with 'unexpected SafetensorError')."""
    need = TINY_MODEL_BYTES.get(name, 20 * MB)
    free = free or (lambda folder: shutil.disk_usage(_existing(folder)).free)
    try:
        have = free(models_dir)
    except OSError:
        return
    if have < need:
        raise BadInputError(
            f"not enough disk space: the disk holding {_existing(Path(models_dir))} has {human(have)} free; building "
            f"the {name} model needs about {human(need)} there. Nothing was started. Free space, or set "
            "LDMPROBE_CACHE to a cache on a larger disk.")


def build_failure_message(models_dir: Path, name: str) -> str | None:
    """After a failed build: a disk-full explanation when the models' disk is (nearly) full, else None."""
    try:
        have = shutil.disk_usage(_existing(Path(models_dir))).free
    except OSError:
        return None
    if have >= TINY_MODEL_BYTES.get(name, 20 * MB):
        return None
    return (f"building the {name} model failed: the disk holding {_existing(Path(models_dir))} is full ({human(have)} "
            "free). Nothing half-built was kept: free space, or set LDMPROBE_CACHE to a cache on a larger disk, and "
            "rerun.")
