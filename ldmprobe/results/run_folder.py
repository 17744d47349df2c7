"""The run folder: results.json, items.jsonl, images/ and a contact sheet per template."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from ldmprobe.engine import cache
from ldmprobe.engine.sweep_images import ItemRecord
from ldmprobe.engine.sweep_setup import SweepSetup
from ldmprobe.errors import BadInputError, LdmprobeError
from ldmprobe.records import to_json
from ldmprobe.results.contact_sheet import contact_sheet
from ldmprobe.results.sweep import ContactSheet, SweepResult
from ldmprobe.specs.sweep import Spec
from ldmprobe.storage import clone_file

#: Under each contact sheet's title when tiny models made it.
TINY_SHEET_NOTE = "tiny models: random weights, numbers mean nothing"


#: Run folders this process created (and may remove again when its sweep fails before writing).
_RESERVED: set[Path] = set()
_MARKERS = ("results.json", "items.jsonl")


def safe_name(name: str) -> str:
    """A spec's name as one harmless path component (``../../x`` becomes ``x``): letters, digits
    and ``._+=-`` kept, anything else a dash; never empty, hidden, or longer than 80 characters."""
    cleaned = re.sub(r"[^\w.+=-]+", "-", name or "").strip(".-")[:80].strip(".-")
    return cleaned or "sweep"


def default_out(spec: Spec, runs_dir: Path) -> Path:
    """``runs/NAME-YYYYmmdd-HHMMSS`` (not created; :func:`prepare_out` reserves a unique one)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(runs_dir) / f"{safe_name(spec.name)}-{stamp}"


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
                markers: tuple[str, ...] = _MARKERS) -> Path:
    """Check and reserve a sweep's run folder before any work (bad ``--out``: exit 2, naming it).

    Without ``out`` a new ``runs/NAME-STAMP[-N]`` is created with an exclusive mkdir, so two
    sweeps started in the same second get different folders. An ``--out`` that holds files is
    refused unless ``replace`` (and then only a folder holding one of ``markers``, i.e. one
    ldmprobe wrote, is replaced, whole, at the end).
    """
    if out is None:
        return _reserve_new(Path(runs_dir), safe_name(spec_name))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file, not a folder. Choose another path for the run folder.")
    if not out.exists():
        try:
            out.mkdir(parents=True)
            _RESERVED.add(out)
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
    if not any((out / name).is_file() for name in markers):
        raise BadInputError(
            f"--out {out} holds files but no {' or '.join(markers)}, so it is not a folder ldmprobe wrote "
            "for this command; --replace only replaces those. Choose another folder.")
    _probe_writable(out.parent, "--out", out)  # the new folder is written beside it, then swapped in
    return out


def _reserve_new(runs_dir: Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_write("the runs folder", runs_dir, exc) from None
    for n in range(1, 10_000):
        candidate = runs_dir / (f"{name}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise _cannot_write("the runs folder", runs_dir, exc) from None
        _RESERVED.add(candidate)
        return candidate
    raise BadInputError(f"{runs_dir} has no free run folder name for {name}-{stamp}; pass --out.")


def release_out(out: Path) -> None:
    """Remove a run folder this process reserved if it is still empty (the sweep failed early)."""
    if out in _RESERVED:
        _RESERVED.discard(out)
        with contextlib.suppress(OSError):
            out.rmdir()


def check_out_dir(out: Path) -> None:
    """A run folder path that is not a file and can be written (for commands that write in place)."""
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file, not a folder. Choose another path for the run folder.")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        raise BadInputError(f"--out {out} is not writable.")


def write_run_folder(out: Path, result: SweepResult, records: dict[str, ItemRecord], setup: SweepSetup,
                     store: cache.ImageStore) -> SweepResult:
    """results.json, items.jsonl, images/ and one contact sheet per template.

    Written into a new folder beside ``out`` and moved into place at the end, so a failure
    leaves neither a half-written run folder nor a damaged old one (``--replace``: the old
    folder is swapped out whole). Images are copies (reflinks where the filesystem has them),
    never links: an edit in the run folder cannot reach the cache. Returns the result with
    its contact sheets listed; ``result`` itself is left as it was.
    """
    try:
        with staged_folder(out, replace=setup.options.replace) as staging:
            _write_items(staging, records, setup, store)
            sheets = [_write_contact_sheet(staging, t, records, setup, store)
                      for t in range(len(setup.spec.templates))]
            written = result.with_contact_sheets(sheets)
            cache.atomic_write_text(staging / "results.json", to_json(written) + "\n")
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        from ldmprobe.engine.diskspace import disk_full_message

        raise LdmprobeError(
            f"the run folder {out} could not be written: {disk_full_message(None, out=out.parent)}. Nothing was "
            f"written to {out} (the partial copy was removed) and every image and embedding is cached: free "
            "space there, or choose another --out, and rerun the same command (nothing is made again)."
        ) from exc
    return written


@contextlib.contextmanager
def staged_folder(out: Path, *, replace: bool):
    """A new folder beside ``out`` to write a run folder in: moved to ``out`` when the block
    ends (:func:`_publish`), removed if the block fails."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.{os.getpid()}-"))
    mask = os.umask(0)
    os.umask(mask)
    try:
        os.chmod(staging, 0o777 & ~mask)  # a plain mkdir's permissions, not mkdtemp's 0700
        yield staging
        _publish(staging, out, replace=replace)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _RESERVED.discard(out)


def _publish(staging: Path, out: Path, *, replace: bool) -> None:
    """Move the written folder to ``out``: in one rename onto a missing or empty folder, else
    (``replace``) old out, new in, old removed; the old folder is put back if the swap fails."""
    try:
        os.replace(staging, out)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if not replace:
        raise BadInputError(f"--out {out} filled with files while this sweep ran (another run?). "
                            "Nothing was overwritten; rerun with another --out, or with --replace.")
    old = out.parent / f".{out.name}.{os.getpid()}-{time.time_ns()}.old"
    os.replace(out, old)
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_items(out: Path, records: dict[str, ItemRecord], setup: SweepSetup, store: cache.ImageStore) -> None:
    """items.jsonl (one line per planned image) and the images beside it."""
    lines = []
    for item in setup.items:
        record = records[item.key]
        image_rel = None
        if record.failed is None and setup.options.write_images:
            image_rel = f"images/{item.key}.png"
            _copy_checked(store, item.key, out / image_rel)
        lines.append(to_json({
            "template": item.template, "template_index": item.template_index, "term": item.term,
            "is_baseline": item.is_baseline, "seed": item.seed, "prompt": item.prompt, "key": item.key,
            "image": image_rel, "cached": record.cached,
            "flags": {"failed": record.failed, "nsfw": record.nsfw,
                      "dropped": setup.options.nsfw == "drop" and bool(record.nsfw)},
        }, indent=None))
    cache.atomic_write_text(out / "items.jsonl", "\n".join(lines) + "\n")


def _copy_checked(store: cache.ImageStore, key: str, target: Path) -> None:
    """Copy (or reflink) a cached image and check every byte of the copy against its digest."""
    clone_file(store.path(key), target)
    reason = cache.check_png(target.read_bytes(), key)
    if reason is not None:
        target.unlink(missing_ok=True)
        store.checked_bytes(key)  # removes the damaged cached file and reports it
        raise LdmprobeError(f"the cached image {store.path(key)} {reason} during this run, so it was removed; "
                            "rerun the same command to remake it (everything else is cached).")


def _write_contact_sheet(out: Path, t: int, records: dict[str, ItemRecord], setup: SweepSetup,
                         store: cache.ImageStore) -> ContactSheet:
    spec = setup.spec
    by_cell = {(i.template_index, i.term, i.seed): i for i in setup.items}
    rows = []
    for term in spec.all_terms:
        row = []
        for seed in spec.seeds:
            item = by_cell[(t, term, seed)]
            loaded = store.load(item.key) if records[item.key].failed is None else None
            row.append(loaded[0] if loaded else None)
        rows.append((term or "(baseline)", row))
    name = f"contact-{t:02d}.png"
    note = TINY_SHEET_NOTE if setup.tiny else None
    contact_sheet(spec.templates[t], rows, [str(s) for s in spec.seeds], note=note).save(out / f".{name}.tmp",
                                                                                         format="PNG")
    os.replace(out / f".{name}.tmp", out / name)
    return ContactSheet(template=spec.templates[t], path=name)
