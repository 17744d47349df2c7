"""The image cache's save-time manifest: a warm rerun checks an image with one ``stat``.

When an image is saved (or first passes the full header check), one line goes into an
append-only JSON-lines file of this process under ``images/index/``:
``{"k": key, "s": size, "m": mtime_ns, "i": inode, "r": recipe}``. A cached image whose
``stat`` still shows the recorded size, modification time and inode is the file that was
checked then (an atomic replace makes a new inode; an edit in place a new mtime), so the warm
path opens no PNG and reads its recipe from here. Reading the manifest parses no recipe: a
line as written here is split by a pattern and only its signature, the recipe's safety flag
and where the line lies are kept (a few integers per image); the recipe is read back from its
line when asked for, and a line of another layout is parsed in full. Anything else falls back to the header check
(``cache.light_check``), and the digest of every byte is still checked wherever pixels are
decoded.

The manifest is advisory: a lost or torn line only costs that fallback, never a wrong answer,
so files are flushed but not fsynced. Each process appends to its own file (no two writers
share one, which is what NFS needs); :meth:`ImageIndex.compact` folds old files into one.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from array import array
from pathlib import Path

import numpy as np

#: Index files untouched this long belong to finished processes and may be folded together.
COMPACT_AFTER_S = 3600
#: Fold files together once a folder holds more than this many.
COMPACT_AT_FILES = 64

#: A line as :meth:`ImageIndex.record` writes it (keys sorted): read without parsing its recipe.
_LINE = re.compile(rb'^\{"i": (\d+), "k": "([^"\\\n]*)", "m": (-?\d+), "r": \{[^\n]*\}, "s": (\d+)\}\r?$', re.M)
#: The manifest is read in blocks of this many bytes.
_BLOCK = 1 << 22
_NSFW = b'"nsfw": '
#: The safety flag of a recipe, as held in memory: unknown (read the recipe when asked), None, False, True.
_UNKNOWN = 3
_FLAG_VALUES = (None, False, True)


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino


def _flag_of_line(line: bytes, start: int, end: int) -> int:
    """The recipe's top-level ``nsfw`` flag from its JSON text ``line[start:end]`` without parsing
    it: None when the word is absent, the literal when it occurs once at the recipe's top level,
    else unknown (the recipe is parsed if the flag is ever asked for)."""
    at = line.find(_NSFW, start, end)
    if at < 0:
        return 0 if line.find(b"nsfw", start, end) < 0 else _UNKNOWN
    value = at + len(_NSFW)
    if line.startswith(b"false", value) and line[value + 5: value + 6] in (b",", b"}"):
        code = 1
    elif line.startswith(b"true", value) and line[value + 4: value + 5] in (b",", b"}"):
        code = 2
    elif line.startswith(b"null", value) and line[value + 4: value + 5] in (b",", b"}"):
        code = 0
    else:
        return _UNKNOWN
    if line.find(b"nsfw", value, end) >= 0 or line.count(b"{", start, at) - line.count(b"}", start, at) != 1:
        return _UNKNOWN  # a second mention, or not at the recipe's top level
    return code


def _flag_code(recipe: dict) -> int:
    value = recipe.get("nsfw")
    for code, known in enumerate(_FLAG_VALUES):
        if value is known:
            return code
    return _UNKNOWN


class _Keys:
    """Each recorded key's first entry. What the manifest held when it was read is one sorted
    array of the keys' text (64 bytes a key for the sha256 hex keys the cache writes, no object
    per key) beside their entries; keys of another form, and keys recorded after the read, are
    in a dict. While the manifest is read, keys are only gathered; :meth:`freeze` orders them,
    keeps each key's first entry and hands its later ones to ``more`` (in the order written)."""

    def __init__(self):
        self._sorted, self._at = np.zeros(0, "S64"), np.zeros(0, np.int64)
        self._dict: dict[str, int] = {}
        self._pending: list[tuple[list[str], int]] | None = []  # (keys, entry of the first) while reading

    @staticmethod
    def _packed(key: str) -> bool:
        return len(key) == 64 and key.isascii() and key.isalnum()

    def extend(self, keys: list[str], first: int) -> None:
        """While reading: entries ``first``, ``first`` + 1, ... are of ``keys``."""
        self._pending.append((keys, first))

    def add(self, key: str, index: int) -> bool:
        """Entry ``index`` is of ``key``; False when ``key`` already has a first entry (after the
        read; while reading, :meth:`freeze` sorts that out and this answers True)."""
        if self._pending is not None:
            self._pending.append(([key], index))
            return True
        if self.get(key) is not None:
            return False
        self._dict[key] = index
        return True

    def freeze(self, more: dict[str, list[int]]) -> None:
        pending, self._pending = self._pending, None
        keys = [key for block, _ in pending for key in block]
        at = np.concatenate([np.arange(first, first + len(block)) for block, first in pending]) \
            if pending else np.zeros(0, np.int64)
        packed = np.fromiter(map(self._packed, keys), bool, len(keys))
        for i in np.flatnonzero(~packed)[np.argsort(at[~packed], kind="stable")].tolist():
            if keys[i] in self._dict:
                more.setdefault(keys[i], []).append(int(at[i]))
            else:
                self._dict[keys[i]] = int(at[i])
        text = np.array([k for k, p in zip(keys, packed.tolist()) if p], "S64")
        del keys
        at = at[packed]
        order = np.argsort(at, kind="stable")
        text, at = text[order], at[order]
        order = np.argsort(text, kind="stable")  # by key, each key's entries in the order written
        text, at = text[order], at[order]
        later = np.zeros(len(text), bool)
        later[1:] = text[1:] == text[:-1]
        for j in np.flatnonzero(later).tolist():
            more.setdefault(text[j].decode("ascii"), []).append(int(at[j]))
        self._sorted, self._at = text[~later], at[~later]

    def get(self, key: str, default=None):
        if len(self._sorted) and self._packed(key):
            text = key.encode("ascii")
            pos = int(self._sorted.searchsorted(text))
            if pos < len(self._sorted) and self._sorted[pos] == text:
                return int(self._at[pos])
        return self._dict.get(key, default)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None


class ImageIndex:
    """Recorded (size, mtime, inode) of cached images by key, with where each recipe lies.

    In memory each recorded line is a few machine integers (its signature, the recipe's
    safety flag, and the file and offset of the line): the recipe itself is read from the file
    only when asked for (:meth:`lookup`), so a warm rerun holds and parses little per image.
    """

    def __init__(self, images_dir: Path):
        self.dir = images_dir / "index"
        self._first: _Keys | None = None  # key -> its first entry
        self._more: dict[str, list[int]] = {}  # key -> its later entries (rare: re-recorded images)
        self._size, self._mtime, self._ino = array("Q"), array("q"), array("Q")
        self._flag, self._file, self._offset = array("b"), array("I"), array("Q")
        self._files: list[Path] = []
        self._file_ids: dict[Path, int] = {}
        self._own: Path | None = None
        self._own_pid: int | None = None

    # ---------------------------------------------------------------- reading
    def _load(self) -> _Keys:
        if self._first is None:
            self._first = _Keys()
            for path in sorted(self.dir.glob("*.jsonl")) if self.dir.is_dir() else ():
                self._read_file(path)
            self._first.freeze(self._more)
        return self._first

    def release(self) -> None:
        """Let go of what was read from the manifest (a later question reads it again): a run
        that has checked its images holds no table of the whole cache while it analyses."""
        own, pid = self._own, self._own_pid
        self.__init__(self.dir.parent)
        self._own, self._own_pid = own, pid  # this process's file stays its own

    def _file_id(self, path: Path) -> int:
        if path not in self._file_ids:
            self._file_ids[path] = len(self._files)
            self._files.append(path)
        return self._file_ids[path]

    def _add(self, key: str, signature: tuple[int, int, int], flag: int, file_id: int, offset: int) -> None:
        try:
            self._size.append(signature[0])
            self._mtime.append(signature[1])
            self._ino.append(signature[2])
        except OverflowError:  # a damaged number: the line is not trusted
            del self._size[len(self._flag):], self._mtime[len(self._flag):], self._ino[len(self._flag):]
            return
        index = len(self._flag)
        self._flag.append(flag)
        self._file.append(file_id)
        self._offset.append(offset)
        if not self._first.add(key, index):
            self._more.setdefault(key, []).append(index)

    def _read_file(self, path: Path) -> None:
        """Every line of ``path``, read in blocks (memory does not grow with the file): lines as
        :meth:`record` writes them by one pattern over the block, any other line parsed in full."""
        try:
            fh = open(path, "rb")
        except OSError:  # folded away by another process meanwhile: its lines live on elsewhere
            return
        file_id, base, rest = self._file_id(path), 0, b""
        with fh:
            while True:
                try:
                    block = fh.read(_BLOCK)
                except OSError:
                    return
                data = rest + block
                end = data.rfind(b"\n") + 1 if block else len(data)  # whole lines only, until the end
                self._read_lines(data, end, file_id, base)
                base, rest = base + end, data[end:]
                if not block:
                    return

    def _read_lines(self, data: bytes, end: int, file_id: int, base: int) -> None:
        sizes, mtimes, inodes, flags, offsets, keys = [], [], [], [], [], []
        pos = 0
        for match in _LINE.finditer(data, 0, end):
            at = match.start()
            if at > pos + 1:  # lines of another layout (or torn) in between
                self._read_other(data[pos:at], file_id, base + pos)
            pos = match.end()
            try:
                key = match[2].decode("utf-8")
            except UnicodeDecodeError:
                continue
            start, stop = match.end(3), match.start(4)
            keys.append(key)
            sizes.append(int(match[4]))
            mtimes.append(int(match[3]))
            inodes.append(int(match[1]))
            flags.append(0 if data.find(b"nsfw", start, stop) < 0 else _flag_of_line(data, start, stop))
            offsets.append(base + at)
        if pos < end:
            self._read_other(data[pos:end], file_id, base + pos)
        try:
            sizes, mtimes, inodes = array("Q", sizes), array("q", mtimes), array("Q", inodes)
        except OverflowError:  # a damaged number somewhere: this block's lines one by one
            for i, key in enumerate(keys):
                self._add(key, (sizes[i], mtimes[i], inodes[i]), flags[i], file_id, offsets[i])
            return
        n = len(self._flag)
        self._size.extend(sizes)
        self._mtime.extend(mtimes)
        self._ino.extend(inodes)
        self._flag.extend(array("b", flags))
        self._file.extend(array("I", [file_id]) * len(keys))
        self._offset.extend(array("Q", offsets))
        self._first.extend(keys, n)

    def _read_other(self, text: bytes, file_id: int, base: int) -> None:
        offset = base
        for line in text.split(b"\n"):
            at, offset = offset, offset + len(line) + 1
            row = self._parse(line) if line.strip() else None
            if row is not None:
                self._add(row[0], row[1], _flag_code(row[2]), file_id, at)

    @staticmethod
    def _parse(line: bytes) -> tuple[str, tuple[int, int, int], dict] | None:
        try:
            row = json.loads(line.decode("utf-8", errors="replace"))
            entry = (str(row["k"]), (int(row["s"]), int(row["m"]), int(row["i"])), row["r"])
        except (ValueError, KeyError, TypeError):
            return None
        return entry if isinstance(entry[2], dict) else None

    def _entries(self, key: str) -> list[int]:
        first = self._load().get(key)
        if first is None:
            return []
        return [first, *self._more.get(key, ())]

    def _matching(self, key: str, st: os.stat_result) -> list[int]:
        size, mtime, ino = _signature(st)
        return [i for i in self._entries(key)
                if self._size[i] == size and self._mtime[i] == mtime and self._ino[i] == ino]

    def _recipe(self, index: int, key: str) -> dict | None:
        """The recipe of entry ``index``, read from its line (None: the line is gone or unreadable)."""
        try:
            with open(self._files[self._file[index]], "rb") as fh:
                fh.seek(self._offset[index])
                line = fh.readline().rstrip(b"\n")
        except OSError:  # folded away by another process since: the caller falls back
            return None
        row = self._parse(line)
        if row is None or row[0] != key:
            return None
        return row[2]

    def matches(self, key: str, st: os.stat_result) -> bool:
        """Whether the file ``st`` describes is the one recorded for ``key`` (reads no recipe)."""
        first = self._load().get(key)
        if first is None:
            return False
        if (self._size[first], self._mtime[first], self._ino[first]) == _signature(st):
            return True
        return key in self._more and bool(self._matching(key, st))

    def lookup(self, key: str, st: os.stat_result) -> dict | None:
        """The recipe recorded for ``key`` if the file ``st`` describes is the one recorded."""
        for index in self._matching(key, st):
            recipe = self._recipe(index, key)
            if recipe is not None:
                return recipe
        return None

    _NO_FLAG = object()

    def flag(self, key: str, st: os.stat_result):
        """The recorded recipe's ``nsfw`` value if the file ``st`` describes is the one recorded
        for ``key`` (the recipe is read only when its flag could not be told from its line);
        :attr:`ImageIndex._NO_FLAG` when it is not."""
        for index in self._matching(key, st):
            code = self._flag[index]
            if code != _UNKNOWN:
                return _FLAG_VALUES[code]
            recipe = self._recipe(index, key)
            if recipe is not None:
                return recipe.get("nsfw")
        return self._NO_FLAG

    def known(self, key: str) -> bool:
        """Whether ``key`` was ever recorded (its file may have changed since)."""
        return key in self._load()

    # ---------------------------------------------------------------- writing
    def record(self, key: str, path: Path, recipe: dict, st: os.stat_result | None = None) -> None:
        """Remember that ``path`` (the image of ``key``) passed its check, with its recipe."""
        try:
            st = st or os.stat(path)
            line = json.dumps({"k": key, "s": st.st_size, "m": st.st_mtime_ns, "i": st.st_ino,
                               "r": recipe}, sort_keys=True, ensure_ascii=False) + "\n"
            own = self._own_file()
            with open(own, "ab") as fh:
                offset = fh.seek(0, os.SEEK_END)
                fh.write(line.encode("utf-8"))
        except OSError:
            return  # advisory: the next run falls back to the header check for this image
        if self._first is not None:
            self._add(key, _signature(st), _flag_code(recipe), self._file_id(own), offset)

    def _own_file(self) -> Path:
        if self._own is None or self._own_pid != os.getpid():  # a forked child writes its own file
            self.dir.mkdir(parents=True, exist_ok=True)
            name = f"{time.time_ns():x}-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
            self._own, self._own_pid = self.dir / name, os.getpid()
            self._own.touch(exist_ok=False)
        return self._own

    def compact(self, *, older_than: float = COMPACT_AFTER_S, at_files: int = COMPACT_AT_FILES) -> int:
        """Fold index files untouched for ``older_than`` seconds into one; returns files folded.

        Only idle files are folded (their writers have finished), and the folded file is written
        before they are removed, so a reader sees every line at least once throughout.
        """
        if not self.dir.is_dir():
            return 0
        now = time.time()
        idle = []
        for path in self.dir.glob("*.jsonl"):
            try:
                if now - path.stat().st_mtime > older_than and path != self._own:
                    idle.append(path)
            except OSError:
                continue
        if len(idle) <= at_files:
            return 0
        lines = {}
        for path in idle:
            try:
                for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                    lines[line] = None
            except OSError:
                continue
        from ldmprobe.store.files import atomic_write_text

        target = self.dir / f"{time.time_ns():x}-{os.getpid()}-c{secrets.token_hex(4)}.jsonl"
        atomic_write_text(target, "".join(f"{line}\n" for line in lines))
        old = time.time() - 2 * older_than  # the folded file is idle too, so it can be folded again
        os.utime(target, (old, old))
        for path in idle:
            path.unlink(missing_ok=True)
        return len(idle)
