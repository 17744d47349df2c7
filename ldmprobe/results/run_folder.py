"""The run folder: results.json, items.jsonl, images/ and a contact sheet per template."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from ldmprobe.store.files import atomic_write_text, clone_file
from ldmprobe.store.images import ImageStore
from ldmprobe.store.png_check import check_png
from ldmprobe.engine.sweep_images import ItemRecord, ItemRecords
from ldmprobe.engine.workitems import PlanItems
from ldmprobe.engine.sweep_setup import SweepSetup
from ldmprobe.errors import BadInputError, LdmprobeError
from ldmprobe.records import jsonable, to_json
from ldmprobe.results import run_folder_place as place
from ldmprobe.results.contact_sheet import CELL, contact_sheet
from ldmprobe.results.sweep import ContactSheet, SweepResult
from ldmprobe.results.sweep_folder import shown_in_report

#: Under each contact sheet's title when tiny models made it.
TINY_SHEET_NOTE = "tiny models: random weights, numbers mean nothing"


#: Run folders this process reserved: the reservation file of a default folder (created when
#: published), or None for an ``--out`` it created empty (removed again if the sweep fails).
_RESERVED: dict[Path, Path | None] = {}
_MARKERS = ("results.json", "items.jsonl")
#: Seeds whose images a run folder holds and shows (contact sheets, report): the spec's first
#: ones. Every other image is referenced by its cache key (``ldmprobe export RUN_DIR`` copies them).
SAMPLE_SEEDS = 8


def safe_name(name: str) -> str:
    """A spec's name as one harmless path component (``../../x`` becomes ``x``): letters, digits
    and ``._+=-`` kept, anything else a dash; never empty, hidden, or longer than 80 characters."""
    cleaned = re.sub(r"[^\w.+=-]+", "-", name or "").strip(".-")[:80].strip(".-")
    return cleaned or "sweep"


def _cannot_write(what: str, path: Path, exc: OSError) -> BadInputError:
    return BadInputError(
        f"{what} {path} cannot be written: {exc.strerror or exc}. Nothing was generated. Choose a folder "
        "you can write to (--out PATH, e.g. under your home folder), or run from a writable folder.")


def _probe_writable(folder: Path, what: str, shown: Path) -> None:
    """Create and remove a file in ``folder`` (os.access does not see read-only mounts for root)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".ldmprobe-probe.{os.getpid()}-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise _cannot_write(what, shown, exc) from None


def prepare_out(out: Path | None, *, spec_name: str, runs_dir: Path, replace: bool = False,
                markers: tuple[str, ...] = _MARKERS, kind: str | None = None) -> Path:
    """Check and reserve a sweep's run folder before any work (bad ``--out``: exit 2, naming it).

    Without ``out`` a new ``runs/NAME-STAMP[-N]`` is reserved (a hidden reservation file, so
    two sweeps started in the same second get different names, and a killed sweep leaves no
    empty folder); it is created when the run is published. An ``--out`` that holds files is
    refused unless ``replace``, and then only a folder ldmprobe made (its marker file lists
    what it wrote) that holds nothing else is replaced, whole, at the end. What dead ldmprobe
    processes left beside it (staging copies, reservations) is removed first, and an old
    folder a killed two-step ``--replace`` had moved aside is put back.
    """
    if out is None:
        place.tidy_leftovers(Path(runs_dir))
        return _reserve_new(Path(runs_dir), safe_name(spec_name))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file, not a folder. Choose another path for the run folder.")
    place.tidy_leftovers(out.parent)
    if not out.exists():
        try:
            out.mkdir(parents=True)
            _RESERVED[out] = None
            return out
        except FileExistsError:
            pass  # made meanwhile: checked as an existing folder
        except OSError as exc:
            raise _cannot_write("--out", out, exc) from None
    if not any(out.iterdir()):
        _probe_writable(out, "--out", out)
        return out
    if not replace:
        raise BadInputError(
            f"--out {out} already holds files. A run folder is never reused silently: choose a new folder, "
            "leave out --out for a new one under runs/, or pass --replace to replace this one whole.")
    check_replaceable(out, markers, kind)
    _probe_writable(out.parent, "--out", out)  # the new folder is written beside it, then swapped in
    return out


def check_replaceable(out: Path, markers: tuple[str, ...] = _MARKERS, kind: str | None = None) -> None:
    """``--replace`` replaces only a folder ldmprobe made that holds nothing else, and (``kind``)
    only one this command made: a trace does not replace a sweep's folder (exit 2 otherwise)."""
    foreign = place.foreign_files(out)
    if foreign is None:
        raise BadInputError(
            f"--out {out} holds files but not the {place.MARKER} file ldmprobe writes beside its "
            f"{' and '.join(markers) or 'outputs'}, so it is not a folder ldmprobe wrote for this command; --replace "
            f"only replaces those. Choose another folder (nothing in {out} was touched).")
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise BadInputError(
            f"--out {out} is a run folder ldmprobe wrote, but it also holds files ldmprobe did not write there "
            f"({shown}); --replace would delete them, so it refuses. Move them out, or choose another --out "
            "(nothing was touched).")
    if markers and not any((out / name).is_file() for name in markers):
        raise BadInputError(
            f"--out {out} holds no {' or '.join(markers)}, so it is not a folder ldmprobe wrote for this command; "
            "--replace only replaces those. Choose another folder.")
    found = _results_kind(out) if kind else None
    if found is not None and found != kind:
        raise BadInputError(
            f"--out {out} holds a {found} run folder; --replace replaces only a {kind}'s, so it refuses "
            "(nothing was touched). Choose another --out.")


def _results_kind(out: Path) -> str | None:
    """The ``kind`` its results.json states (None: no readable results.json, or no kind)."""
    try:
        kind = json.loads((out / "results.json").read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def _reserve_new(runs_dir: Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_write("the runs folder", runs_dir, exc) from None
    _probe_writable(runs_dir, "the runs folder", runs_dir)
    for n in range(1, 10_000):
        candidate = runs_dir / (f"{name}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            mark = place.reserve(candidate)
        except OSError as exc:
            raise _cannot_write("the runs folder", runs_dir, exc) from None
        if mark is not None:
            _RESERVED[candidate] = mark
            return candidate
    raise BadInputError(f"{runs_dir} has no free run folder name for {name}-{stamp}; pass --out.")


def release_out(out: Path) -> None:
    """Give up a run folder this process reserved and never wrote: its reservation, or the
    still-empty ``--out`` it created."""
    if out in _RESERVED:
        mark = _RESERVED.pop(out)
        with contextlib.suppress(OSError):
            if mark is not None:
                os.unlink(mark)
            else:
                out.rmdir()


def write_run_folder(out: Path, result: SweepResult, records: dict[str, ItemRecord], setup: SweepSetup,
                     store: ImageStore, finish: Callable[[Path, dict, list], None] | None = None) -> SweepResult:
    """results.json, items.jsonl, the sampled images and one contact sheet per template.
    ``setup``: the whole sweep's (every guidance / steps level: items.jsonl lists them all; the
    contact sheets and copied images are the top level's, the first listed).

    Written into a new folder beside ``out`` and published at the end, complete, ``finish``
    (``finish(folder, document, shown_items)``, e.g. writing report.html from the document in
    memory and the items.jsonl lines it shows) included, so a stop or failure leaves neither a half-written run
    folder nor a damaged old one (``--replace``: the old folder is exchanged whole). The folder
    holds copies of the images it shows (the first :data:`SAMPLE_SEEDS` seeds of every template
    and term: contact sheets and report), checked byte for byte against their digests; every
    other image is referenced by its cache key in items.jsonl and ``ldmprobe export RUN_DIR``
    copies them in. Nothing in the folder links to the cache, so an edit there cannot reach
    it and a cache prune cannot break results.json or report.html. Returns the result with its
    contact sheets listed; ``result`` itself is left as it was.
    """
    first = setup.level_setup(0) if setup.several_levels else setup  # sheets and copies: the top level's
    try:
        with staged_folder(out, replace=setup.options.replace) as staging:
            copied: dict[str, str] = {}
            sheets = [_write_contact_sheet(staging, t, records, first, store, copied)
                      for t in range(len(setup.spec.templates))]
            shown = _write_items(staging, records, setup, copied)
            written = result.with_contact_sheets(sheets)
            document = jsonable(written)
            atomic_write_text(staging / "results.json", to_json(document) + "\n")
            if finish is not None:
                finish(staging, document, shown)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        from ldmprobe.store.diskspace import disk_full_message

        raise LdmprobeError(
            f"the run folder {out} could not be written: {disk_full_message(None, out=out.parent)}. Nothing was "
            f"written to {out} (the partial copy was removed) and every image and embedding is cached: free "
            "space there, or choose another --out, and rerun the same command (nothing is made again)."
        ) from exc
    return written


def sample_seeds(seeds) -> list:
    """The seeds whose images a run folder holds and shows: the spec's first :data:`SAMPLE_SEEDS`."""
    return list(seeds)[:SAMPLE_SEEDS]


@contextlib.contextmanager
def staged_folder(out: Path, *, replace: bool):
    """A new hidden folder beside ``out`` to write a run folder in: published at ``out`` when the
    block ends (:func:`_publish`: only then, so a stop at any moment before leaves no published
    folder), removed if the block fails. A stop that kills the process outright leaves it to
    :func:`~ldmprobe.results.run_folder_place.tidy_leftovers` at the next start."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = place.new_staging(out)
    mask = os.umask(0)
    os.umask(mask)
    try:
        os.chmod(staging, 0o777 & ~mask)  # a plain mkdir's permissions, not mkdtemp's 0700
        yield staging
        place.write_marker(staging)
        _publish(staging, out, replace=replace)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise  # the caller's release_out gives up the reservation
    mark = _RESERVED.pop(out, None)
    if mark is not None:
        with contextlib.suppress(OSError):
            os.unlink(mark)


def _publish(staging: Path, out: Path, *, replace: bool) -> None:
    """Move the written folder to ``out``: one rename onto a missing or empty folder, else
    (``replace``, a folder ldmprobe made that holds nothing else) one atomic exchange of the
    two, and the old folder removed after."""
    try:
        if out.exists():
            os.replace(staging, out)  # onto the empty folder reserved at the start
        else:
            place.publish_new(staging, out)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if not replace:
        raise BadInputError(f"--out {out} filled with files while this sweep ran (another run?). "
                            "Nothing was overwritten; rerun with another --out, or with --replace.")
    check_replaceable(out, ())
    place.exchange(staging, out)
    shutil.rmtree(staging, ignore_errors=True)  # now the old folder


def _write_items(out: Path, records: dict[str, ItemRecord], setup: SweepSetup, copied: dict[str, str]) -> list[dict]:
    """items.jsonl: one line per planned image of every guidance / steps level, its level (the
    ``guidance`` and ``steps`` it was made with), its cache key, and its copy in the folder if any
    (images of the top level's first seeds; ``ldmprobe export`` copies the rest). Returns the lines
    a report shows (an image in the folder, or a failed image), as read back they would be."""
    drop = setup.options.nsfw == "drop"
    shown = []
    with open(out / "items.jsonl", "w", encoding="utf-8") as fh:
        for item, record in _flag_records(records, setup.items):
            line = {
                "template": item.template, "template_index": item.template_index, "term": item.term,
                "is_baseline": item.is_baseline, "seed": item.seed, "prompt": item.prompt, "key": item.key,
                "guidance": item.recipe.guidance, "steps": item.recipe.steps,
                "image": copied.get(item.key), "cached": record.cached,
                "flags": {"failed": record.failed, "nsfw": record.nsfw, "dropped": drop and bool(record.nsfw)},
            }
            # plain values; anything else goes through the one JSON converter
            text = json.dumps(line, ensure_ascii=False, allow_nan=False, default=jsonable)
            fh.write(text + "\n")
            if shown_in_report(line):
                shown.append(json.loads(text))
    return shown


def _flag_records(records, items):
    """(item, record) per item; a record's embedding is not needed here (none is read where the
    records can leave it out)."""
    if isinstance(records, ItemRecords):
        return records.flag_records(items)
    return ((item, records[item.key]) for item in items)


def _sheet_items(setup: SweepSetup, t: int, seeds: list) -> dict:
    """(term, seed) -> the work item of template ``t``, for the sampled ``seeds``."""
    spec, items = setup.spec, setup.items
    if isinstance(items, PlanItems) and items.rows is None and items.terms == tuple(spec.all_terms) \
            and items.seeds == tuple(spec.seeds) and len(set(items.seeds)) == len(items.seeds):
        n_terms, n_seeds = len(items.terms), len(items.seeds)  # a compact plan's cells are grid cells
        return {(term, seed): items[(t * n_terms + k) * n_seeds + items.seeds.index(seed)]
                for k, term in enumerate(items.terms) for seed in seeds}
    return {(i.term, i.seed): i for i in items if i.template_index == t and i.seed in set(seeds)}


def _sample_image(out: Path, key: str, store: ImageStore, copied: dict[str, str], copy: bool):
    """A cached image of the sample: copied into the folder (with ``copy``; a reflink where the
    filesystem has them), every byte of the copy checked against its digest, and decoded to a
    contact-sheet tile."""
    from PIL import Image

    if copy and key not in copied:
        rel = f"images/{key}.png"
        try:
            clone_file(store.path(key), out / rel)
        except FileNotFoundError:
            data = None
        else:
            data = (out / rel).read_bytes()
            if check_png(data, key) is not None:
                (out / rel).unlink(missing_ok=True)
                data = None
        copied[key] = rel
    else:
        data = store.checked_bytes(key)
    if data is None:
        store.checked_bytes(key)  # removes the damaged cached file and reports it
        raise LdmprobeError(f"the cached image {store.path(key)} was missing or damaged during this run, so it was "
                            "removed; rerun the same command to remake it (everything else is cached).")
    with Image.open(io.BytesIO(data)) as image:
        tile = image.convert("RGB")
    # the contact sheet's own downscale, done now so a sheet holds only small tiles in memory
    return tile.resize((CELL, CELL), Image.BICUBIC) if tile.width > CELL else tile


def _write_contact_sheet(out: Path, t: int, records: dict[str, ItemRecord], setup: SweepSetup,
                         store: ImageStore, copied: dict[str, str]) -> ContactSheet:
    """The template's sheet of the sampled seeds; each sampled image is copied on the way."""
    spec = setup.spec
    seeds = sample_seeds(spec.seeds)
    by_cell = _sheet_items(setup, t, seeds)
    copy = setup.options.write_images
    rows = []
    for term in spec.all_terms:
        row = []
        for seed in seeds:
            item = by_cell[(term, seed)]
            usable = records[item.key].failed is None
            row.append(_sample_image(out, item.key, store, copied, copy) if usable else None)
        rows.append((term or "(baseline)", row))
    name = f"contact-{t:02d}.png"
    notes = [TINY_SHEET_NOTE] if setup.tiny else []
    if len(spec.seeds) > len(seeds):
        notes.append(f"the first {len(seeds)} of {len(spec.seeds)} seeds; every image: ldmprobe export RUN_DIR")
    contact_sheet(spec.templates[t], rows, [str(s) for s in seeds], note="; ".join(notes) or None).save(
        out / name, format="PNG")
    return ContactSheet(template=spec.templates[t], path=name)
