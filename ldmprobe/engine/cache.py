"""The cache folder: where built tiny models, images and embeddings live, written atomically."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path


from ldmprobe.digest import digest
from ldmprobe.storage import (  # noqa: F401  (the stores' foundation, importable from here)
    IDENTITY_FILE, atomic_write_bytes, atomic_write_text, cache_root, check_cache_root, models_dir,
    namespace_identity, publish_dir,
    record_repair, remember_namespace, staging_dir,
)


# --------------------------------------------------------------------------- stores

PNG_RECIPE_KEY = "ldmprobe"
#: A tEXt chunk (before the pixel data) with the blake2b-128 of every other byte of the file, so
#: that an edited, re-saved or damaged cached image is detected, not trusted (issue 15).
PNG_DIGEST_KEY = "ldmprobe-digest"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: length 0, type, crc32
#: Why an image without the digest chunk is remade (re-saved by an editor, or cached before digests).
NO_DIGEST = "no digest chunk (re-saved by another program, or cached before digests)"


#: From this many keys on, :meth:`ImageStore.failures` lists the cache's folders once instead of
#: one ``stat`` of a (mostly missing) failure record per key.
LIST_FAILURES_FROM = 2048


def _sharded(base: Path, key: str, suffix: str) -> Path:
    return base / key[:2] / f"{key}{suffix}"


def _png_digest(data: bytes) -> str:
    import hashlib

    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    import zlib

    return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")


def png_with_digest(png: bytes) -> bytes:
    """``png`` with a chunk before the first IDAT holding the digest of all its other bytes and
    the whole file's size (so that :meth:`ImageStore.valid` sees a re-save without reading pixels)."""
    at = 8
    while png[at + 4: at + 8] != b"IDAT":
        at += 12 + int.from_bytes(png[at: at + 4], "big")
    head = PNG_DIGEST_KEY.encode() + b"\0" + _png_digest(png).encode() + b" "
    size = len(png) + 12 + len(head)
    while len(png) + 12 + len(head) + len(str(size)) != size:
        size = len(png) + 12 + len(head) + len(str(size))
    chunk = _chunk(b"tEXt", head + str(size).encode())
    return png[:at] + chunk + png[at:]


def _digest_parts(text: str | None) -> tuple[str, int | None]:
    digest_hex, _, size = (text or "").partition(" ")
    return digest_hex, int(size) if size.isdigit() else None


def _text_chunk(kind: bytes, payload: bytes) -> tuple[str, str | None]:
    """(keyword, text) of a tEXt / uncompressed iTXt chunk (text None when compressed)."""
    keyword, _, rest = payload.partition(b"\0")
    if kind == b"tEXt":
        return keyword.decode("latin-1"), rest.decode("latin-1")
    if rest[:1] != b"\0":  # compressed iTXt
        return keyword.decode("latin-1"), None
    text = rest[2:].split(b"\0", 2)[-1]  # after the language tag and translated keyword
    return keyword.decode("latin-1"), text.decode("utf-8", "replace")


def check_png(data: bytes, key: str | None = None) -> str | None:
    """Why ``data`` is not a cached image as ldmprobe wrote it (None: it is), reading no pixels.

    Whole chunk structure up to IEND at the very end (truncation), every chunk's CRC (a flipped
    bit in a chunk's name or keyword), the recipe chunk, the digest chunk over every other byte
    (an edit or re-save), the recipe's key (a file copied over another). An image without its
    digest chunk is not trusted (issue 28: an editor that keeps the recipe but drops the digest,
    or an image cached before digests existed): it is remade.
    """
    import zlib

    if data[:8] != _PNG_SIGNATURE:
        return "not a PNG file"
    pos, texts, digest_span = 8, {}, None
    while True:
        if pos + 12 > len(data):
            return "truncated"
        length, kind = int.from_bytes(data[pos: pos + 4], "big"), data[pos + 4: pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return "truncated"
        if zlib.crc32(data[pos + 4: end - 4]) != int.from_bytes(data[end - 4: end], "big"):
            return "damaged chunk (CRC mismatch)"
        if kind in (b"tEXt", b"iTXt"):
            name, text = _text_chunk(kind, data[pos + 8: end - 4])
            texts[name] = text
            if name == PNG_DIGEST_KEY:
                digest_span = (pos, end)
        if kind == b"IEND":
            break
        pos = end
    if end != len(data) or data[pos:end] != _PNG_END:
        return "bytes after the end chunk"
    if PNG_RECIPE_KEY not in texts:
        return "no recipe chunk (saved by another program)"
    if digest_span is None:
        return NO_DIGEST
    digest_hex, size = _digest_parts(texts[PNG_DIGEST_KEY])
    if size not in (None, len(data)) or _png_digest(data[: digest_span[0]] + data[digest_span[1]:]) != digest_hex:
        return "changed since it was cached"
    if key is not None and texts[PNG_RECIPE_KEY] is not None:
        try:
            recipe = json.loads(texts[PNG_RECIPE_KEY])
        except ValueError:
            return "unreadable recipe chunk"
        if isinstance(recipe, dict) and recipe.get("key", key) != key:
            return "holds another item's image"
    return None


class ImageStore:
    """Generated images by work-item key: ``images/ab/abcd....png`` (recipe in the PNG text chunk).

    Items that could not be made (NaN or black images) get a ``.failed.json`` record instead,
    so a rerun does not regenerate what is known to fail; flags such as the safety checker's
    travel in the PNG's metadata. Every image carries a digest of its bytes (:func:`check_png`):
    a damaged or edited file is removed, reported (``storage.record_repair``) and remade.
    """

    def __init__(self, root: Path | None = None):
        from ldmprobe.engine.image_index import ImageIndex

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
        record_repair(kind, reason)

    def checked_bytes(self, key: str) -> bytes | None:
        """The file's bytes when they pass :func:`check_png`; a failing file is removed and reported."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            data = b""
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

        An image recorded in the save-time manifest (:mod:`ldmprobe.engine.image_index`) whose
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


from ldmprobe.engine.array_store import (  # noqa: E402,F401  (importable from here, as before)
    NPY_DIGEST_TAG, NPY_NO_DIGEST, ArrayStore, check_npy, npy_with_digest,
)


def identity_namespace(identity: dict) -> str:
    """A short stable folder name for a model identity (sha256 of its canonical JSON); the
    identity is remembered (``storage.namespace_identity``) for the namespace's ``identity.json``."""
    namespace = digest(identity)[:20]
    remember_namespace(namespace, identity)
    return namespace


class _DamagedChunk(ValueError):
    """A text chunk whose CRC does not match (a flipped bit in its keyword or text)."""


def _head_texts(fh) -> dict[str, str | None] | None:
    """The text chunks before the pixel data of an open PNG (None: not a PNG or cut short;
    :class:`_DamagedChunk` when a text chunk's CRC does not match)."""
    import zlib

    if fh.read(8) != _PNG_SIGNATURE:
        return None
    texts: dict[str, str | None] = {}
    while True:
        head = fh.read(8)
        if len(head) < 8 or head[4:] == b"IEND":
            return None
        if head[4:] == b"IDAT":
            return texts
        payload = fh.read(int.from_bytes(head[:4], "big"))
        crc = fh.read(4)
        if head[4:] in (b"tEXt", b"iTXt"):
            if len(crc) < 4 or zlib.crc32(head[4:] + payload) != int.from_bytes(crc, "big"):
                raise _DamagedChunk
            name, text = _text_chunk(head[4:], payload)
            texts[name] = text


def light_check(path: Path, key: str | None = None) -> str | None:
    """:func:`check_png` without reading the pixel data: header texts, recorded size, end chunk."""
    return _light_check(path, key)[0]


def _light_check(path: Path, key: str | None = None) -> tuple[str | None, dict | None]:
    """:func:`light_check`'s reason, and the recipe when the file passes."""
    try:
        with open(path, "rb") as fh:
            texts = _head_texts(fh)
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - len(_PNG_END)))
            tail = fh.read()
    except FileNotFoundError:
        return "missing", None
    except _DamagedChunk:
        return "damaged chunk (CRC mismatch)", None
    except (OSError, ValueError):
        return "unreadable", None
    if texts is None or tail != _PNG_END:
        return "truncated", None
    if texts.get(PNG_RECIPE_KEY) is None:
        return "no recipe chunk (saved by another program)", None
    if PNG_DIGEST_KEY not in texts:
        return NO_DIGEST, None
    recorded = _digest_parts(texts.get(PNG_DIGEST_KEY))[1]
    if recorded is not None and recorded != size:
        return "changed since it was cached", None
    try:
        recipe = json.loads(texts[PNG_RECIPE_KEY])
    except ValueError:
        return "unreadable recipe chunk", None
    if not isinstance(recipe, dict):
        return "unreadable recipe chunk", None
    if key is not None and recipe.get("key", key) != key:
        return "holds another item's image", None
    return None, recipe


def png_recipe(path: Path) -> dict | None:
    """The recipe chunk of a cached PNG, reading only the chunks before the pixel data."""
    try:
        with open(path, "rb") as fh:
            texts = _head_texts(fh)
        return json.loads(texts[PNG_RECIPE_KEY]) if texts and texts.get(PNG_RECIPE_KEY) else None
    except (OSError, ValueError):
        return None


def embedding_store(measurer_identity: dict, root: Path | None = None):
    """Image embeddings by one measurer, keyed by image key: a packed store whose values are
    checked before use (the old per-file ``ab/<key>.npy`` cache is read through and imported)."""
    from ldmprobe.engine.packed_cache import VerifiedStore

    return VerifiedStore(f"embeddings/{identity_namespace(measurer_identity)}", "image embeddings", root)
