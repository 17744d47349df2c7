"""A packed, append-only store of float arrays (embeddings) by key, for one namespace.

Many small values (image / text embeddings, conditionings) live in a few shard files with
merged per-writer index files instead of one ``.npy`` file each: reading N values is a
handful of opens and memory maps, every value is checked against its crc32 before use (a
failed check is a miss, reported through ``on_repair``), several processes and nodes may
write at once, and a killed writer leaves nothing that is ever read as valid. The format and
its reasons are in docs/STORE.md; compaction and migration are in ``packed_maint``, the
read-through to the per-file cache in ``packed_legacy``.

    store = PackedStore.for_namespace("embeddings/<measurer identity>")
    store.put_many(keys, vectors)          # (N, D) array or a list of arrays
    values, found = store.get_many(keys)   # (N, D) array and a bool mask; misses are zeros
"""

from __future__ import annotations

import mmap
import os
import weakref
import zlib
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ldmprobe.store import packed_format as fmt
from ldmprobe.store.packed_legacy import read_legacy

RepairCallback = Callable[[str, str], None]
LEGACY_MARKER = "legacy-imported"


class ShardGone(Exception):
    """A shard named by the index was removed (by a compaction) since the index was read."""


class _IndexFile:
    """The parsed valid records of one ``.idx`` file and how far it has been read."""

    __slots__ = ("records", "consumed", "sealed", "size", "mtime")

    def __init__(self):
        self.records = np.zeros(0, fmt.RECORD)
        self.consumed = 0
        self.sealed = False
        self.size = self.mtime = -1


class PackedStore:
    """Arrays by key in append-only shards under ``directory`` (one namespace).

    ``legacy_dir``: a per-file ``ArrayStore`` folder (``ab/<key>.npy``) read through for keys
    the packed store lacks; with ``import_legacy`` what is read there is appended here, so the
    next read is packed. ``on_repair(key, reason)`` hears of every value that failed its check
    (treated as missing, for the caller to remake); ``repairs`` counts them by reason.
    ``durable``: fsync values and records before an append returns (off only for scratch data).
    """

    def __init__(self, directory: Path, *, legacy_dir: Path | None = None, import_legacy: bool = True,
                 on_repair: RepairCallback | None = None, durable: bool = True,
                 max_shard_bytes: int = 1 << 30):
        self.directory = Path(directory)
        self.legacy_dir = Path(legacy_dir) if legacy_dir is not None else None
        self.import_legacy = import_legacy
        self.on_repair = on_repair
        self.repairs: Counter = Counter()
        self._writer = fmt.ShardWriter(self.directory, durable, max_shard_bytes)
        self._finalizer = weakref.finalize(self, self._writer.close)
        self._files: dict[str, _IndexFile] = {}
        self._maps: dict[str, tuple[mmap.mmap, memoryview]] = {}
        self._bad: set[tuple[str, int]] = set()
        self._dirty = True
        self._gone_is_bad = False
        self._build([])

    @classmethod
    def for_namespace(cls, namespace: str, root: Path | None = None, **kwargs) -> "PackedStore":
        """The packed store of an ``ArrayStore`` namespace, reading its per-file cache through."""
        if root is None:
            from ldmprobe.store.files import cache_root

            root = cache_root()
        base = Path(root) / namespace
        packed = base / "packed"
        legacy = None if (packed / LEGACY_MARKER).is_file() else base
        return cls(packed, legacy_dir=kwargs.pop("legacy_dir", legacy), **kwargs)

    # ------------------------------------------------------------------ index

    def refresh(self, force: bool = False) -> bool:
        """Read index files that appeared or grew since the last look; True when anything changed."""
        try:
            entries = [e for e in os.scandir(self.directory)
                       if e.name.endswith(fmt.INDEX_SUFFIX) and not e.name.startswith(".")]
        except FileNotFoundError:
            entries = []
        changed = force or len(entries) != len(self._files)
        seen = {}
        for entry in entries:
            stem = entry.name[: -len(fmt.INDEX_SUFFIX)]
            info = self._files.get(stem) or _IndexFile()
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            if force or st.st_size != info.size or st.st_mtime_ns != info.mtime:
                changed |= self._read_index(entry.path, info, st)
            seen[stem] = info
        if changed or set(seen) != set(self._files):
            self._files = seen
            self._build(sorted(seen))
            for stem in [s for s in self._maps if s not in seen]:
                self._unmap(stem)
        self._dirty = False
        return changed

    def _read_index(self, path: str, info: _IndexFile, st) -> bool:
        try:
            with open(path, "rb") as fh:
                fh.seek(info.consumed)
                data = fh.read()
        except FileNotFoundError:
            return False
        values, consumed, sealed = fmt.parse_index(data)
        info.size, info.mtime = st.st_size, st.st_mtime_ns
        if not consumed:
            return False
        info.records = np.concatenate([info.records, values]) if len(info.records) else values.copy()
        info.consumed += consumed
        info.sealed = sealed
        return len(values) > 0 or sealed

    def _build(self, stems: list[str]) -> None:
        """Merge the files' records: one array, a key → record dict, candidates for duplicates."""
        parts = [self._files[s].records for s in stems]
        self._stems = stems
        self._recs = np.concatenate(parts) if parts else np.zeros(0, fmt.RECORD)
        self._src = np.concatenate([np.full(len(p), i, np.int32) for i, p in enumerate(parts)]) \
            if parts else np.zeros(0, np.int32)
        keys = self._recs["key"].tolist()
        self._pos = dict(zip(keys, range(len(keys))))  # the newest file's record wins
        self._alts: dict[bytes, list[int]] = {}
        if len(self._pos) < len(keys):
            uniq, counts = np.unique(self._recs["key"], return_counts=True)
            dups = set(uniq[counts > 1].tolist())
            for i, key in enumerate(keys):
                if key in dups:
                    self._alts.setdefault(key, []).insert(0, i)
        self._badmask = np.zeros(len(keys), bool)
        if self._bad:
            offsets = self._recs["offset"].tolist()
            for i in range(len(keys)):
                if (stems[self._src[i]], offsets[i]) in self._bad:
                    self._badmask[i] = True

    def _lookup(self, keys: list[bytes]) -> np.ndarray:
        pos, alts, bad = self._pos, self._alts, self._badmask
        idx = np.fromiter((pos.get(k, -1) for k in keys), np.int64, len(keys))
        for j in np.flatnonzero(idx >= 0)[bad[idx[idx >= 0]]] if len(bad) else ():
            idx[j] = next((i for i in alts.get(keys[j], ()) if not bad[i]), -1)
        return idx

    def __len__(self) -> int:
        if self._dirty:
            self.refresh()
        return len(self._pos)

    def keys(self) -> list[str]:
        if self._dirty:
            self.refresh()
        return [k.decode("ascii") for k in self._pos]

    def has_many(self, keys: Sequence[str]) -> np.ndarray:
        """Which keys have a record (values are checked on ``get``, not here: no shard is read)."""
        kb = [fmt.check_key(k) for k in keys]
        if self._dirty:
            self.refresh()
        idx = self._lookup(kb)
        if (idx < 0).any() and self.refresh():
            idx = self._lookup(kb)
        return idx >= 0

    # ------------------------------------------------------------------ write

    def put(self, key: str, value) -> None:
        self.put_many([key], [value])

    def put_many(self, keys: Sequence[str], values: Iterable) -> None:
        """Append values (a stacked array's rows or a list of arrays), durably, in one write each."""
        kb = [fmt.check_key(k) for k in keys]
        arrays = [np.ascontiguousarray(v) for v in values]
        if len(arrays) != len(kb):
            raise ValueError(f"{len(kb)} keys but {len(arrays)} values")
        if kb:
            self._writer.append(kb, arrays)
            self._dirty = True

    def close(self) -> None:
        """Seal and close this process's files and drop the memory maps."""
        self._writer.close()
        self.unmap()

    def unmap(self) -> None:
        """Drop the shards' memory maps (mapped again when next read), so that the pages read
        leave this process's resident memory."""
        for stem in list(self._maps):
            self._unmap(stem)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ read

    def get(self, key: str):
        values, found = self.get_many([key])
        return values[0] if found[0] else None

    def get_many(self, keys: Sequence[str], dtype=None) -> tuple[np.ndarray, np.ndarray]:
        """``(values, found)``: values stacked as ``(len(keys), *shape)``, misses zero-filled.

        Every value is checked against its crc32 before it is copied out; a failed check is
        a miss (reported through ``on_repair``, counted in ``repairs``). All found values must
        share one shape; with several stored dtypes, pass ``dtype``. Nothing found: shape
        ``(len(keys), 0)``.
        """
        kb = [fmt.check_key(k) for k in keys]
        if self._dirty:
            self.refresh()
        for attempt in range(3):  # a compaction may remove shards under us: re-read the index
            idx = self._lookup(kb)
            if (idx < 0).any() and self.refresh(force=attempt > 0):
                idx = self._lookup(kb)
            self._gone_is_bad = attempt == 2
            try:
                out, found = self._gather(kb, idx, np.flatnonzero(idx >= 0), dtype)
                break
            except ShardGone:
                self.refresh(force=True)
            finally:
                self._gone_is_bad = False
        if self.legacy_dir is not None and not found.all():
            out, found = read_legacy(self, keys, out, found)
        return out, found

    def _gather(self, kb, idx, rows, dtype):
        n = len(kb)
        recs = self._recs[idx[rows]]
        if not len(rows):
            return np.zeros((n, 0), dtype or np.float32), np.zeros(n, bool)
        shape = _shape_of(recs[0])
        if not (recs["shape"] == recs["shape"][0]).all() or not (recs["ndim"] == recs["ndim"][0]).all():
            raise ValueError(f"values of different shapes in one get_many under {self.directory}")
        codes = np.unique(recs["dtype"])
        if dtype is None and len(codes) > 1:
            raise ValueError(f"values stored as {sorted(c.decode() for c in codes)}: pass dtype=")
        out = np.zeros((n,) + shape, dtype or np.dtype(codes[0].decode()))
        found = np.zeros(n, bool)
        for code in codes:
            sel = rows[recs["dtype"] == code]
            direct = out.dtype.str.encode() == code
            target = out if direct else np.empty((len(sel),) + shape, code.decode())
            positions = sel if direct else np.arange(len(sel))
            ok = self._copy_checked(kb, idx, sel, target, positions)
            found[sel[ok]] = True
            if not direct:
                out[sel[ok]] = target[ok]
        while True:  # values that failed their check: another candidate, if one is good
            retry = [j for j in rows[~found[rows]] if self._lookup([kb[j]])[0] >= 0]
            if not retry:
                return out, found
            sub, sub_found = self._gather([kb[j] for j in retry], self._lookup([kb[j] for j in retry]),
                                          np.arange(len(retry)), out.dtype)
            out[np.array(retry)[sub_found]] = sub[sub_found]
            found[np.array(retry)[sub_found]] = True

    def _copy_checked(self, kb, idx, sel, target, positions) -> np.ndarray:
        """Copy the selected records' bytes into target rows, checking each crc32; the ok mask."""
        ridx = idx[sel]
        offsets = self._recs["offset"][ridx].tolist()
        lengths = self._recs["nbytes"][ridx].tolist()
        crcs = self._recs["crc"][ridx].tolist()
        srcs = self._src[ridx].tolist()
        flat = memoryview(target.reshape(len(target), -1).view(np.uint8)).cast("B")
        ok = np.ones(len(sel), bool)
        views: dict[int, memoryview | None] = {}
        for k, (src, off, n, crc, pos) in enumerate(zip(srcs, offsets, lengths, crcs, positions.tolist())):
            view = views.get(src, False)
            if view is False or (view is not None and off + n > len(view)):
                view = views[src] = self._view(self._stems[src], off + n)
            if view is None or off + n > len(view):
                segment = None
            else:
                segment = view[off: off + n]
            if segment is None or zlib.crc32(segment) != crc:
                ok[k] = False
                self._mark_bad(kb[sel[k]], int(ridx[k]), "missing shard bytes" if segment is None
                               else "checksum mismatch")
                continue
            flat[pos * n: pos * n + n] = segment
        return ok

    def _view(self, stem: str, need: int) -> memoryview | None:
        """A read-only map of a shard, remapped when it has grown past what was mapped."""
        current = self._maps.get(stem)
        if current is not None and len(current[1]) >= need:
            return current[1]
        self._unmap(stem)
        try:
            with open(self.directory / (stem + fmt.SHARD_SUFFIX), "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size == 0:
                    return None
                mapped = mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            if self._gone_is_bad:
                return None
            raise ShardGone(stem) from None
        except ValueError:
            return None
        self._maps[stem] = (mapped, memoryview(mapped))
        return self._maps[stem][1]

    def _unmap(self, stem: str) -> None:
        entry = self._maps.pop(stem, None)
        if entry is not None:
            entry[1].release()
            try:
                entry[0].close()
            except BufferError:  # a caller still holds a view of it: the GC closes it later
                pass

    def _mark_bad(self, key: bytes, record: int, reason: str) -> None:
        self._bad.add((self._stems[self._src[record]], int(self._recs["offset"][record])))
        self._badmask[record] = True
        self.report(key.decode("ascii"), reason)

    def report(self, key: str, reason: str) -> None:
        self.repairs[reason] += 1
        if self.on_repair is not None:
            self.on_repair(key, reason)


def _shape_of(rec) -> tuple[int, ...]:
    return tuple(int(d) for d in rec["shape"][: int(rec["ndim"])])
