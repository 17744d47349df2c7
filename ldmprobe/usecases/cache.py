"""``ldmprobe cache``: what the cache holds (by kind and model), a full check, and pruning.

Reads the layout the stores write (docs/STORE.md): ``images/ab/<key>.png`` (+ ``.failed.json``),
packed namespaces ``embeddings|text|conditioning/<ns>/packed`` (with ``identity.json`` naming the
model), per-file ``.npy`` namespaces, ``token_counts/``, ``models/``. Imports no torch.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ldmprobe import SCHEMA_VERSION
from ldmprobe.errors import BadInputError
from ldmprobe.store import token_counts
from ldmprobe.store.array_store import NPY_NO_DIGEST, check_npy
from ldmprobe.store.cleanup import CLEANUP_MARKER
from ldmprobe.store.files import cache_hint, cache_root
from ldmprobe.store.packed_cache import IDENTITY_FILE, identity_namespace
from ldmprobe.store.png_check import check_png, png_recipe

#: Namespace folders (one per model identity) and the kind of value they hold.
_NAMESPACED = {"embeddings": "image embeddings", "text": "text embeddings", "conditioning": "conditionings",
               "trace_attention": "trace attention maps"}
_TINY_PROBES = {"tiny-generator": "model_index.json", "tiny-measurer": "open_clip_config.json"}


@dataclass
class Entry:
    """One removable thing in the cache: a file, or a folder counted as one."""

    kind: str
    model: str
    path: Path
    size: int
    mtime: float


def model_label(identity: dict | None) -> str:
    """A short name for a model identity: hub id, open_clip name, or source + fingerprint."""
    if not identity:
        return "unknown"
    if identity.get("id"):
        return str(identity["id"]) + (f"@{str(identity['revision'])[:8]}" if identity.get("revision") else "")
    if identity.get("model"):
        return f"{identity['model']}:{identity.get('pretrained')}"
    fingerprint = str(identity.get("fingerprint", ""))[:8]
    return f"{identity.get('source', '?')}" + (f" {fingerprint}" if fingerprint else "")


def _tree(path: Path) -> tuple[int, float]:
    """Total bytes and newest modification time of a file or a folder's files."""
    if path.is_file():
        st = path.stat()
        return st.st_size, st.st_mtime
    size, newest = 0, path.stat().st_mtime
    for sub in path.rglob("*"):
        try:
            st = sub.lstat()
        except OSError:
            continue
        if sub.is_file():
            size += st.st_size
        newest = max(newest, st.st_mtime)
    return size, newest


def _entry(kind: str, model: str, path: Path) -> Entry:
    size, mtime = _tree(path)
    return Entry(kind, model, path, size, mtime)


def _namespace_model(folder: Path, pipelines: dict[str, str]) -> str:
    try:
        return model_label(json.loads((folder / IDENTITY_FILE).read_text()).get("identity"))
    except (OSError, ValueError, AttributeError):
        return pipelines.get(folder.name, f"unknown ({folder.name})")


def entries(root: Path | None = None) -> Iterator[Entry]:
    """Everything in the cache, one entry per image, namespace folder, model or other file."""
    root = Path(root or cache_root())
    if root.exists() and not root.is_dir():
        raise BadInputError(f"The cache {root} is a file, not a folder." + cache_hint())
    pipelines: dict[str, str] = {}  # conditioning namespace -> the pipeline named in image recipes
    image_models: dict[str, str] = {}  # image key -> its pipeline (trace maps share their image's key)
    for path in sorted((root / "images").glob("??/*")):
        if path.name.startswith("."):
            continue
        recipe = png_recipe(path) if path.suffix == ".png" else _json_or_none(path)
        identity = (recipe or {}).get("pipeline") if isinstance(recipe, dict) else None
        label = model_label(identity)
        if identity:
            pipelines.setdefault(identity_namespace(identity), label)
        image_models[path.stem] = label
        yield _entry("images" if path.suffix == ".png" else "image failure records", label, path)
    for path in sorted((root / "images" / "index").glob("*.jsonl")):
        yield _entry("image manifest", "save-time checks (advisory)", path)
    for folder_name, kind in _NAMESPACED.items():
        if folder_name == "trace_attention":  # one flat store sharded by image key: named by the image's model
            for path in sorted((root / folder_name).glob("??/*.npy")):
                yield _entry(kind, image_models.get(path.stem, "(its trace image is no longer cached)"), path)
            continue
        for folder in sorted(p for p in (root / folder_name).glob("*") if p.is_dir()):
            if folder_name == "text" and folder.name == "vocab":
                yield _entry("vocabulary embeddings", "by measurer (not recorded)", folder)
            else:
                yield _entry(kind, _namespace_model(folder, pipelines), folder)
    for folder in sorted(p for p in (root / "models").glob("*") if not p.name.startswith(".")):
        yield _entry("models", folder.name, folder)
    for path in sorted((root / token_counts.FOLDER).glob("*.json")):
        yield _entry("token counts", "generator tokenizer", path)
    known = {"images", "models", token_counts.FOLDER, CLEANUP_MARKER, *_NAMESPACED}
    for path in sorted(p for p in root.glob("*") if p.name not in known) if root.is_dir() else ():
        yield _entry("other", path.name, path)


def _json_or_none(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- info


def cache_info(root: Path | None = None) -> dict:
    """Sizes by kind and by (kind, model): the ``cache-info`` document."""
    root = Path(root or cache_root())
    rows: dict[tuple[str, str], dict] = {}
    for e in entries(root):
        row = rows.setdefault((e.kind, e.model), {"kind": e.kind, "model": e.model, "entries": 0, "bytes": 0,
                                                  "newest": 0.0})
        row["entries"] += 1
        row["bytes"] += e.size
        row["newest"] = max(row["newest"], e.mtime)
    by_kind: dict[str, dict] = {}
    for row in rows.values():
        total = by_kind.setdefault(row["kind"], {"kind": row["kind"], "entries": 0, "bytes": 0})
        total["entries"] += row["entries"]
        total["bytes"] += row["bytes"]
    for row in rows.values():
        row["newest"] = _iso(row["newest"])
    return {"schema_version": SCHEMA_VERSION, "kind": "cache-info", "cache": str(root),
            "total_bytes": sum(r["bytes"] for r in by_kind.values()),
            "by_kind": sorted(by_kind.values(), key=lambda r: -r["bytes"]),
            "by_model": sorted(rows.values(), key=lambda r: (r["kind"], -r["bytes"]))}


def _iso(timestamp: float) -> str | None:
    import datetime as dt

    if not timestamp:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- prune


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``2w`` (or plain days) as seconds; bad text is a BadInputError."""
    units = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    value, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "d")
    try:
        number = float(value)
    except ValueError:
        number = -1
    if not number >= 0:
        raise BadInputError(f"--older-than {text!r} is not an age: write e.g. 30d, 12h, 90m or 2w.")
    return number * units[unit]


def _matches(entry: Entry, model: str) -> bool:
    wanted = model.casefold()
    label = entry.model.casefold()
    if label == wanted or label.split()[0] == wanted or any(label.startswith(wanted + c) for c in "-:@"):
        return True
    return entry.kind != "images" and (entry.path.name == model or len(model) >= 6 and entry.path.name.startswith(model))


def prune(*, model: str | None = None, older_than: str | None = None, dry_run: bool = False,
          root: Path | None = None) -> dict:
    """Remove cached entries of a model, or last written before an age (models are kept by age)."""
    if (model is None) == (older_than is None):
        raise BadInputError("ldmprobe cache prune needs exactly one of --model NAME or --older-than AGE (e.g. 30d).")
    root = Path(root or cache_root())
    cutoff = time.time() - parse_age(older_than) if older_than is not None else None
    found = list(entries(root))
    chosen = [e for e in found if e.kind not in ("other", "image manifest") and (
        _matches(e, model) if model is not None else e.kind != "models" and e.mtime < cutoff)]
    if model is not None and not chosen and not any(_matches(e, model) for e in found):
        known = sorted({e.model for e in found if e.kind not in ("other", "image manifest")})
        raise BadInputError(f"--model {model!r}: no cached entry was made with or by such a model; the cache holds "
                            + (", ".join(repr(k) for k in known[:20]) + (" ..." if len(known) > 20 else "")
                               if known else "nothing yet") + ". See `ldmprobe cache info`.")
    if not dry_run:
        for e in chosen:
            _remove(e.path)
    return {"schema_version": SCHEMA_VERSION, "kind": "cache-prune", "cache": str(root), "dry_run": dry_run,
            "criterion": {"model": model, "older_than": older_than},
            "removed": [{"kind": e.kind, "model": e.model, "path": str(e.path), "bytes": e.size} for e in chosen],
            "removed_bytes": sum(e.size for e in chosen)}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- verify


def _check_entry(e: Entry) -> list[tuple[Path, str]]:
    """(path, reason) for each bad value in an entry; packed values are audited whole."""
    if e.kind == "images":
        reason = check_png(e.path.read_bytes(), e.path.name[: -len(".png")])
        return [(e.path, reason)] if reason else []
    if e.kind == "token counts":
        reason = token_counts.check_file(e.path)
        return [(e.path, reason)] if reason else []
    if e.kind == "image failure records" or e.path.suffix == ".json":
        return [] if isinstance(_json_or_none(e.path), (dict, list)) else [(e.path, "unreadable JSON")]
    if e.kind == "models":
        from ldmprobe.models import tiny, weights_hash

        probe = next((f for prefix, f in _TINY_PROBES.items() if e.path.name.startswith(prefix)), None)
        with weights_hash.fresh_hashes():  # every byte hashed again, whatever is remembered (issue 28)
            reason = tiny.damage(e.path, probe) if probe and (e.path / tiny.MARKER).is_file() else None
        return [(e.path, reason)] if reason else []
    if e.path.is_dir():
        return _check_arrays(e.path)
    if e.path.parent.parent.name == "trace_attention":
        return _check_digested_arrays([e.path])
    return []


def _check_digested_arrays(paths) -> list[tuple[Path, str]]:
    """ArrayStore files (vocabulary embeddings, trace maps): each one's digest (issue 28); a file
    written before digests is not damage (it is made again when next used)."""
    bad = []
    for path in paths:
        try:
            reason = check_npy(path.read_bytes())[1]
        except OSError:
            reason = "unreadable"
        if reason is not None and reason != NPY_NO_DIGEST:
            bad.append((path, reason))
    return bad


def _check_arrays(folder: Path) -> list[tuple[Path, str]]:
    """A namespace: every packed value's crc32 and blake2b, every per-file ``.npy`` readable (and
    its digest checked where the store writes one)."""
    import numpy as np

    if folder.parent.name == "trace_attention":  # the store's own shard folders (ab/<key>.npy)
        return _check_digested_arrays(sorted(folder.glob("*.npy")))
    if folder.name == "vocab" and folder.parent.name == "text":
        return _check_digested_arrays(sorted(folder.glob("??/*.npy")))
    bad = []
    if (folder / "packed").is_dir():
        from ldmprobe.store import packed_maint
        from ldmprobe.store.packed_store import PackedStore

        with PackedStore(folder / "packed", import_legacy=False) as store:
            _good, n_bad, n_lost = packed_maint.verify_keys(store)
        if n_lost:  # values already replaced by a good copy (a sweep's repair) wait for compaction: harmless
            more = f" (and {n_bad - n_lost} already replaced by a good copy)" if n_bad > n_lost else ""
            bad.append((folder / "packed", f"{n_lost} packed value(s) fail their checksum or their index "
                                           f"record is damaged{more}"))
    for path in sorted(folder.glob("??/*.npy")):
        try:
            np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            bad.append((path, "unreadable .npy"))
    return bad


def _repair(path: Path) -> None:
    """Remove a bad file or model folder; a packed namespace is compacted (bad values dropped)."""
    if path.name == "packed" and path.is_dir():
        from ldmprobe.store import packed_maint
        from ldmprobe.store.packed_store import PackedStore

        with PackedStore(path, import_legacy=False) as store:
            packed_maint.verify(store)  # marks the bad values, which compaction then leaves out
            packed_maint.compact(store)  # files a live writer (or another host, within 24 h) holds are left
    else:
        _remove(path)


def verify(*, repair: bool = False, root: Path | None = None) -> dict:
    """Check every entry as its store would before use; with ``repair`` remove what fails."""
    root = Path(root or cache_root())
    checked, problems = 0, []
    for e in entries(root):
        checked += 1
        for path, reason in _check_entry(e):
            if repair:
                _repair(path)
            problems.append({"kind": e.kind, "model": e.model, "path": str(path), "reason": reason,
                             "repaired": repair})
    from ldmprobe.models.reference import REFERENCE_WEIGHTS, damaged_files

    for role in ("generator", "measurer"):  # the shipped reference world, which loading checks too
        folder = REFERENCE_WEIGHTS / role
        if folder.is_dir():
            checked += 1
            bad = damaged_files(folder)
            if bad:  # never removed: it is part of the install (reinstall to repair)
                problems.append({"kind": "shipped reference world", "model": "reference", "path": str(folder),
                                 "reason": "; ".join(bad) + " (reinstall ldmprobe)", "repaired": False})
    return {"schema_version": SCHEMA_VERSION, "kind": "cache-verify", "cache": str(root), "checked": checked,
            "bad": problems, "ok": all(p["repaired"] for p in problems)}
