"""Generated images in the cache (``images/``), each checked before it is trusted."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from ldmprobe.store.files import atomic_write_bytes, atomic_write_text, cache_root, read_for_check
from ldmprobe.store.png_check import PNG_RECIPE_KEY, _light_check, check_png, png_with_digest
from ldmprobe.store import run_state

# --------------------------------------------------------------------------- stores

#: From this many keys on, :meth:`ImageStore.failures` lists the cache's folders once instead of
#: one ``stat`` of a (mostly missing) failure record per key.
LIST_FAILURES_FROM = 2048


def _sharded(base: Path, key: str, suffix: str) -> Path:
    return base / key[:2] / f"{key}{suffix}"


class ImageStore:
    """Generated images by work-item key: ``images/ab/abcd....png`` (recipe in the PNG text chunk).

    Items that could not be made (NaN or black images) get a ``.failed.json`` record instead,
    so a rerun does not regenerate what is known to fail; flags such as the safety checker's
    travel in the PNG's metadata. Every image carries a digest of its bytes (:func:`check_png`):
    a damaged or edited file is removed, reported (``RunState.record_repair``) and remade.
    """

    def __init__(self, root: Path | None = None):
        from ldmprobe.store.image_index import ImageIndex

        self.base = (root or cache_root()) / "images"
        self.index = ImageIndex(self.base)
        self._prefix = os.fspath(self.base) + os.sep  # paths as strings: a Path costs ~8 us per key

    def _png(self, key: str) -> str:
        """:meth:`path` as a string (what the per-key loops of a warm rerun stat)."""
        return f"{self._prefix}{key[:2]}{os.sep}{key}.png"

    def path(self, key: str) -> Path:
        return _sharded(self.base, key, ".png")

    def failure_path(self, key: str) -> Path:
        return _sharded(self.base, key, ".failed.json")

    def has(self, key: str) -> bool:
        return self.path(key).is_file() or self.failure_path(key).is_file()

    def save(self, key: str, image, metadata: dict) -> Path:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text(PNG_RECIPE_KEY, json.dumps(metadata, sort_keys=True, ensure_ascii=False))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info)
        path = self.path(key)
        atomic_write_bytes(path, png_with_digest(buffer.getvalue()))
        self.index.record(key, path, json.loads(json.dumps(metadata, ensure_ascii=False)))
        return path

    def save_failure(self, key: str, metadata: dict) -> None:
        atomic_write_text(self.failure_path(key), json.dumps(metadata, sort_keys=True, indent=1))

    def failures(self, keys, *, list_from: int = LIST_FAILURES_FROM) -> set[str]:
        """The keys among ``keys`` that have a failure record file: from one listing of each
        folder they live in when there are ``list_from`` keys or more (a few entries per key,
        not one ``stat`` of a missing file per key), else one ``stat`` per key. The records are
        not read: :meth:`failure` reads (and checks) one."""
        keys = list(keys)
        if len(keys) < list_from:
            return {key for key in keys if os.path.isfile(f"{self._prefix}{key[:2]}{os.sep}{key}.failed.json")}
        wanted, found, suffix = set(keys), set(), ".failed.json"
        for shard in {key[:2] for key in keys}:
            try:
                with os.scandir(self._prefix + shard) as entries:
                    found.update(e.name[: -len(suffix)] for e in entries if e.name.endswith(suffix))
            except (FileNotFoundError, NotADirectoryError):
                continue
        return found & wanted

    def failure(self, key: str) -> dict | None:
        path = self.failure_path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            self._remove(path, "image failure records", "unreadable")
            return None

    @staticmethod
    def _remove(path: Path, kind: str, reason: str) -> None:
        path.unlink(missing_ok=True)
        run_state.current.record_repair(kind, reason)

    def checked_bytes(self, key: str) -> bytes | None:
        """The file's bytes when they pass :func:`check_png`; a failing file is removed and reported."""
        path = self.path(key)
        data = read_for_check(path)
        if data is None:
            return None
        reason = check_png(data, key)
        if reason is not None:
            self._remove(path, "images", reason)
            return None
        return data

    def load(self, key: str):
        """The image and its metadata, or None when missing or damaged (the file is removed)."""
        from PIL import Image

        data = self.checked_bytes(key)
        if data is None:
            return None
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()  # decodes every byte: damaged pixel data raises here
                metadata = json.loads(im.text.get(PNG_RECIPE_KEY, "{}"))
                return im.convert("RGB"), metadata
        except (OSError, ValueError, SyntaxError):
            self._remove(self.path(key), "images", "undecodable")
            return None

    def _indexed(self, key: str) -> dict | None:
        """The recipe from the save-time manifest when the file is the one recorded (one stat)."""
        try:
            st = os.stat(self.path(key))
        except OSError:
            return None
        return self.index.lookup(key, st)

    def metadata(self, key: str) -> dict | None:
        """The PNG text-chunk metadata without decoding pixels (None when missing or unreadable).

        For images already checked by :meth:`valid` this run: from the save-time manifest, else
        the header chunks.
        """
        from PIL import Image

        recipe = self._indexed(key)
        if recipe is not None:
            return recipe
        path = self.path(key)
        try:
            with Image.open(path) as im:
                return json.loads(im.info.get(PNG_RECIPE_KEY, "{}"))
        except (OSError, ValueError, SyntaxError):
            return None

    def nsfw(self, key: str, missing=None):
        """``metadata(key)["nsfw"]`` (None when absent), or ``missing`` when :meth:`metadata` is
        None. An image recorded in the manifest with an unchanged ``stat`` costs that ``stat``
        and no read (the flag was taken from its manifest line when the manifest was loaded)."""
        try:
            st = os.stat(self._png(key))
        except OSError:
            st = None
        if st is not None:
            flag = self.index.flag(key, st)
            if flag is not self.index._NO_FLAG:
                return flag
        metadata = self.metadata(key)
        return missing if metadata is None else metadata.get("nsfw")

    def valid(self, key: str) -> bool:
        """Whether a usable result (image or failure record) is cached; removes damaged files.

        Reads no pixels (issue 16): the chunks before the pixel data (recipe, its key, the
        recorded file size), the end chunk, and the file's size, so a truncated, re-saved or
        edited-and-resized image is remade (issue 15). Where the bytes are read anyway
        (:meth:`load`, the run folder's copy) the digest of every byte is checked too.

        An image recorded in the save-time manifest (:mod:`ldmprobe.store.image_index`) whose
        size, mtime and inode are unchanged costs one ``stat`` and opens nothing (issue 16); one
        recorded whose stat changed (edited in place, or the cache was copied) has every byte
        checked against its digest once; one never recorded that passes the header check is
        recorded, so an older cache joins the manifest once.
        """
        path = self.path(key)
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is not None and self.index.matches(key, st):
            return True
        if self.failure(key) is not None:
            return True
        if st is None:
            return False
        reason, recipe = _light_check(path, key)
        if reason is None and self.index.known(key):
            # saved by ldmprobe, but its size, mtime or inode changed since (an edit in place, or a
            # copied cache): every byte is checked against its digest, once, before it is trusted
            reason = check_png(path.read_bytes(), key)
        if reason is None:
            self.index.record(key, path, recipe, st)
            return True
        if reason != "missing":
            self._remove(path, "images", reason)
        return False

    def valid_many(self, keys) -> set[str]:
        """The keys among ``keys`` with a usable cached result (:meth:`valid` for each): an
        image whose ``stat`` matches the manifest is answered in the loop, the rest by :meth:`valid`."""
        found, matches, png = set(), self.index.matches, self._png
        for key in keys:
            try:
                st = os.stat(png(key))
            except OSError:
                st = None
            if (st is not None and matches(key, st)) or self.valid(key):
                found.add(key)
        return found
