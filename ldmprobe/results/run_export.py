"""``ldmprobe export RUN_DIR``: copy every image of a sweep's run folder in from the cache.

A run folder holds copies of the images it shows (the first seeds of every template and term)
and references the others by cache key in items.jsonl, so a warm rerun of a large sweep costs
no copy per image (issue 32). Export makes the folder whole: each image is read from the
cache, checked byte for byte against its digest and its recipe's key, written into
``images/`` and recorded in items.jsonl; the folder's marker lists the new files, so a later
``--replace`` still knows them for ldmprobe's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ldmprobe.store.files import atomic_write_bytes, atomic_write_text
from ldmprobe.store.images import ImageStore
from ldmprobe.store.png_check import check_png
from ldmprobe.errors import BadInputError, LdmprobeError
from ldmprobe.records import Record, to_json
from ldmprobe.results import run_folder_place as place
from ldmprobe.results.sweep_folder import item_lines, read_document

_KEY = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ExportResult(Record):
    """What ``export`` did: images copied now, already in the folder, and not in the cache."""

    run: str
    copied: int
    present: int
    missing: int
    kind: str = "export"


def _read_items(run_dir: Path) -> list[dict]:
    read_document(run_dir)
    items = []
    for n, item in item_lines(run_dir):
        if not isinstance(item, dict) or not _KEY.match(str(item.get("key", ""))):
            raise BadInputError(f"{run_dir / 'items.jsonl'} line {n}: not an image record with a 64-hex-digit key; "
                                "restore the file the sweep wrote.")
        items.append(item)
    return items


def _wants_image(item: dict) -> bool:
    flags = item.get("flags") or {}
    return not (isinstance(flags, dict) and flags.get("failed"))


def export_images(run_dir: Path, store: ImageStore | None = None) -> ExportResult:
    """Copy every image items.jsonl references into ``run_dir/images`` (see the module doc).

    Images the cache no longer holds (pruned, or damaged and removed) are counted and named in
    the error raised after every other image is copied: rerunning the sweep remakes them."""
    run_dir = Path(run_dir)
    items = _read_items(run_dir)
    store = store or ImageStore()
    copied = present = 0
    missing: list[str] = []
    written: list[str] = []
    for item in items:
        if not _wants_image(item):
            continue
        rel = f"images/{item['key']}.png"
        if (run_dir / rel).is_file() and check_png((run_dir / rel).read_bytes(), item["key"]) is None:
            item["image"] = rel  # already in the folder (the sample, or an earlier export)
            present += 1
            continue
        data = store.checked_bytes(item["key"])
        if data is None:
            missing.append(item["key"])
            continue
        atomic_write_bytes(run_dir / rel, data)
        item["image"] = rel
        written.append(rel)
        copied += 1
    if written or present:
        atomic_write_text(run_dir / "items.jsonl", "".join(to_json(i, indent=None) + "\n" for i in items))
        place.add_to_marker(run_dir, written)
    if missing:
        raise LdmprobeError(
            f"{len(missing)} image(s) of {run_dir} are no longer in the cache (e.g. {missing[0][:16]}…; pruned or "
            f"damaged); the other {copied + present} are in {run_dir / 'images'}. Rerun the sweep that made this "
            "folder (same spec and options) to remake them, then export again.")
    return ExportResult(run=str(run_dir), copied=copied, present=present, missing=0)
