"""The image cache's save-time manifest: a warm rerun checks an image with one ``stat``.

When an image is saved (or first passes the full header check), one line goes into an
append-only JSON-lines file of this process under ``images/index/``:
``{"k": key, "s": size, "m": mtime_ns, "i": inode, "r": recipe}``. A cached image whose
``stat`` still shows the recorded size, modification time and inode is the file that was
checked then (an atomic replace makes a new inode; an edit in place a new mtime), so the warm
path opens no PNG and reads its recipe from here. Anything else falls back to the header check
(``cache.light_check``), and the digest of every byte is still checked wherever pixels are
decoded.

The manifest is advisory: a lost or torn line only costs that fallback, never a wrong answer,
so files are flushed but not fsynced. Each process appends to its own file (no two writers
share one, which is what NFS needs); :meth:`ImageIndex.compact` folds old files into one.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

#: Index files untouched this long belong to finished processes and may be folded together.
COMPACT_AFTER_S = 3600
#: Fold files together once a folder holds more than this many.
COMPACT_AT_FILES = 64


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino


class ImageIndex:
    """Recorded (size, mtime, inode, recipe) of cached images, by key."""

    def __init__(self, images_dir: Path):
        self.dir = images_dir / "index"
        self._entries: dict[str, list[tuple[tuple[int, int, int], dict]]] | None = None
        self._own: Path | None = None
        self._own_pid: int | None = None

    # ---------------------------------------------------------------- reading
    def _load(self) -> dict:
        if self._entries is None:
            self._entries = {}
            for path in sorted(self.dir.glob("*.jsonl")) if self.dir.is_dir() else ():
                self._read_file(path)
        return self._entries

    def _read_file(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:  # folded away by another process meanwhile: its lines live on elsewhere
            return
        for line in text.splitlines():
            try:
                row = json.loads(line)
                entry = ((int(row["s"]), int(row["m"]), int(row["i"])), row["r"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line of a killed writer
            if isinstance(entry[1], dict):
                self._entries.setdefault(str(row["k"]), []).append(entry)

    def lookup(self, key: str, st: os.stat_result) -> dict | None:
        """The recipe recorded for ``key`` if the file ``st`` describes is the one recorded."""
        signature = _signature(st)
        for recorded, recipe in self._load().get(key, ()):
            if recorded == signature:
                return recipe
        return None

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
            with open(self._own_file(), "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError:
            return  # advisory: the next run falls back to the header check for this image
        if self._entries is not None:
            self._entries.setdefault(key, []).append((_signature(st), recipe))

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
        from ldmprobe.storage import atomic_write_text

        target = self.dir / f"{time.time_ns():x}-{os.getpid()}-c{secrets.token_hex(4)}.jsonl"
        atomic_write_text(target, "".join(f"{line}\n" for line in lines))
        old = time.time() - 2 * older_than  # the folded file is idle too, so it can be folded again
        os.utime(target, (old, old))
        for path in idle:
            path.unlink(missing_ok=True)
        return len(idle)
