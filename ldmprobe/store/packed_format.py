"""The packed embedding store's on-disk format: shard and index files, records, the writer.

One writer (a process) owns one pair of files, ``<stem>.bin`` (the values, raw bytes,
appended) and ``<stem>.idx`` (one fixed-size record per value, appended after the value's
bytes are on disk). No file is ever written by two processes, so nothing relies on
``O_APPEND`` or locks being atomic across nodes (they are not on NFS). Readers merge every
``.idx`` file; see docs/STORE.md.

Record (140 bytes, little-endian, numpy structured dtype :data:`RECORD`): magic ``LPK1``,
kind (0 value, 1 seal), key (ASCII, up to 64 bytes), offset and length of the value in the
paired shard, numpy dtype string, ndim and shape (unused dimensions are 1), the crc32 of the
value bytes (checked on every read), their blake2b-128 digest (checked by ``verify`` and
compaction) and the crc32 of the record itself (a torn or garbage record is ignored).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import threading
import time
import zlib
from pathlib import Path

import numpy as np

MAGIC = b"LPK1"
KIND_VALUE = 0
KIND_SEAL = 1
MAX_KEY = 64
MAX_NDIM = 4
ALIGN = 8

RECORD = np.dtype([
    ("magic", "S4"), ("kind", "<u4"), ("key", f"S{MAX_KEY}"),
    ("offset", "<u8"), ("nbytes", "<u8"), ("dtype", "S8"),
    ("ndim", "<u4"), ("shape", "<u4", (MAX_NDIM,)),
    ("crc", "<u4"), ("digest", "S16"), ("rcrc", "<u4"),
])
RECORD_SIZE = RECORD.itemsize  # 140
_BODY = RECORD_SIZE - 4  # the bytes covered by ``rcrc``

SHARD_SUFFIX = ".bin"
INDEX_SUFFIX = ".idx"

_KEY_RE = re.compile(r"[0-9A-Za-z_.:+=-]{1,64}")

# Stems of writers open in this process (compaction never retires them).
OPEN_STEMS: set[str] = set()
_OPEN_LOCK = threading.Lock()


def check_key(key: str) -> bytes:
    """The key as the bytes stored in a record (ValueError for a key the format cannot hold)."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(f"packed store keys are 1-64 characters of [0-9A-Za-z_.:+=-], got {key!r}")
    return key.encode("ascii")


def value_digest(data) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def digest_matches(data, stored) -> bool:
    """Whether ``data`` has the stored digest (numpy drops an ``S16`` field's trailing NULs)."""
    return value_digest(data).rstrip(b"\0") == bytes(stored).rstrip(b"\0")


def host_name() -> str:
    return re.sub(r"[^0-9A-Za-z.]", "_", socket.gethostname())[:40] or "host"


def new_stem(tag: str = "") -> str:
    """``<time ns, hex>-<pid>-<random>-<host>``: unique across processes and nodes, sorts by age."""
    return f"{time.time_ns():016x}-{os.getpid()}-{tag}{secrets.token_hex(4)}-{host_name()}"


def parse_stem(stem: str) -> tuple[int, str] | None:
    """(pid, host) of a stem, or None when the name is not one of ours."""
    parts = stem.split("-", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[3]


def make_records(keys: list[bytes], arrays: list[np.ndarray], start: int) -> tuple[np.ndarray, list]:
    """Records for values laid out from shard offset ``start``, and the byte chunks to write."""
    recs = np.zeros(len(keys), RECORD)
    chunks: list = []
    offsets, lengths, crcs, digests = [], [], [], []
    offset = start
    for i, array in enumerate(arrays):
        if array.ndim > MAX_NDIM:
            raise ValueError(f"packed store values have at most {MAX_NDIM} dimensions, got {array.shape}")
        data = array.tobytes()
        offsets.append(offset)
        lengths.append(len(data))
        crcs.append(zlib.crc32(data))
        digests.append(value_digest(data))
        recs["dtype"][i] = array.dtype.str.encode()
        recs["ndim"][i] = array.ndim
        recs["shape"][i] = tuple(array.shape) + (1,) * (MAX_NDIM - array.ndim)
        pad = (-len(data)) % ALIGN
        chunks.append(data + b"\0" * pad if pad else data)
        offset += len(data) + pad
    recs["magic"], recs["kind"], recs["key"] = MAGIC, KIND_VALUE, keys
    recs["offset"], recs["nbytes"], recs["crc"], recs["digest"] = offsets, lengths, crcs, digests
    seal_records(recs)
    return recs, chunks


def seal_records(recs: np.ndarray) -> np.ndarray:
    """Fill each record's own crc32 (``rcrc``) in place."""
    raw = memoryview(recs.view(np.uint8)).cast("B")
    for i in range(len(recs)):
        recs[i]["rcrc"] = zlib.crc32(raw[i * RECORD_SIZE: i * RECORD_SIZE + _BODY])
    return recs


def seal_record() -> np.ndarray:
    rec = np.zeros(1, RECORD)
    rec["magic"], rec["kind"] = MAGIC, KIND_SEAL
    return seal_records(rec)


def parse_index(data: bytes) -> tuple[np.ndarray, int, bool]:
    """(valid value records, bytes safely consumed, sealed) for the bytes of one index file.

    Only whole records count; a record is valid when its magic, own crc32 and fields are sane.
    ``consumed`` stops before any invalid records at the tail, so a record still being written
    by a live writer is read again on the next refresh; invalid records followed by valid ones
    (never made by our writer, but possible after a crash of the filesystem) are skipped.
    """
    recs, ok = _records(data)
    good = np.flatnonzero(ok)
    consumed = int(good[-1] + 1) * RECORD_SIZE if len(good) else 0
    sealed = bool(len(good)) and int(recs["kind"][good[-1]]) == KIND_SEAL
    values = recs[ok & (recs["kind"] == KIND_VALUE)]
    return values, consumed, sealed


def damaged_records(data: bytes) -> np.ndarray:
    """The records of one index file that fail their checks although a valid record follows them:
    damage (a flipped byte), never a record still being written, since a writer only appends.
    Their values are lost to readers (remade when needed); ``cache verify`` reports them."""
    recs, ok = _records(data)
    good = np.flatnonzero(ok)
    if not len(good):
        return recs[:0]
    return recs[: int(good[-1])][~ok[: int(good[-1])]]


def _records(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The whole records in ``data`` and which are valid (magic, own crc32, sane fields)."""
    n = len(data) // RECORD_SIZE
    recs = np.frombuffer(data, RECORD, count=n)
    raw = memoryview(data)
    crcs = np.fromiter((zlib.crc32(raw[i * RECORD_SIZE: i * RECORD_SIZE + _BODY]) for i in range(n)),
                       np.uint32, n)
    ok = (recs["magic"] == MAGIC) & (crcs == recs["rcrc"])
    return recs, ok & _sane(recs)


def readable_key(rec) -> bytes | None:
    """A damaged record's key when its bytes still form a valid key (else None: unknowable)."""
    key = bytes(rec["key"])
    try:
        return key if _KEY_RE.fullmatch(key.decode("ascii")) else None
    except UnicodeDecodeError:
        return None


def _sane(recs: np.ndarray) -> np.ndarray:
    """Fields a reader relies on: ndim in range, length = product(shape) × itemsize."""
    ok = recs["ndim"] <= MAX_NDIM
    items = np.prod(recs["shape"].astype(np.uint64), axis=1)
    itemsize = np.zeros(len(recs), np.uint64)
    for code in np.unique(recs["dtype"]):
        try:
            dt = np.dtype(code.decode("ascii"))
            size = dt.itemsize if dt.kind in "biufc" else 0
        except (TypeError, ValueError, UnicodeDecodeError):
            size = 0
        itemsize[recs["dtype"] == code] = size
    values = recs["kind"] == KIND_VALUE
    return ok & (~values | ((itemsize > 0) & (items * itemsize == recs["nbytes"])))


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view)
        view = view[written:]


class ShardWriter:
    """One process's pair of append-only files; opened on the first append."""

    def __init__(self, directory: Path, durable: bool = True, max_bytes: int = 1 << 30):
        self.directory, self.durable, self.max_bytes = Path(directory), durable, max_bytes
        self.pid = os.getpid()
        self.stem: str | None = None
        self._shard = self._index = -1
        self.size = 0

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.stem = new_stem()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._shard = os.open(self.directory / (self.stem + SHARD_SUFFIX), flags, 0o666)
        self._index = os.open(self.directory / (self.stem + INDEX_SUFFIX), flags, 0o666)
        self.size = 0
        with _OPEN_LOCK:
            OPEN_STEMS.add(self.stem)

    def _usable(self) -> bool:
        """Open, in this process, under the size limit and not removed by a compaction."""
        if self.stem is None or self.pid != os.getpid() or self.size >= self.max_bytes:
            return False
        try:
            return os.fstat(self._index).st_nlink > 0
        except OSError:
            return False

    def append(self, keys: list[bytes], arrays: list[np.ndarray]) -> None:
        """Values first (and fsynced), then their records: a record never precedes its bytes."""
        if not self._usable():
            self.close(seal=self.pid == os.getpid())
            self.pid = os.getpid()
            self._open()
        recs, chunks = make_records(keys, arrays, self.size)
        try:
            data = b"".join(chunks)
            _write_all(self._shard, data)
            self.size += len(data)
            if self.durable:
                os.fsync(self._shard)
            _write_all(self._index, recs)
            if self.durable:
                os.fsync(self._index)
        except BaseException as exc:
            from ldmprobe.store.files import named

            named(exc, self.directory / (self.stem + SHARD_SUFFIX))  # a full disk is named where it is
            self.close(seal=False)  # a torn write: the next append starts a fresh pair
            raise

    def close(self, seal: bool = True) -> None:
        """Close the pair; ``seal`` appends a seal record (the file is then safe to compact)."""
        if self.stem is None:
            return
        mine = self.pid == os.getpid()  # a forked child only drops its copies of the descriptors
        try:
            if seal and mine and self._index >= 0:
                _write_all(self._index, seal_record())
        except OSError:
            pass
        for fd in (self._shard, self._index):
            try:
                os.close(fd)
            except OSError:
                pass
        if mine:
            with _OPEN_LOCK:
                OPEN_STEMS.discard(self.stem)
        self.stem, self._shard, self._index = None, -1, -1
