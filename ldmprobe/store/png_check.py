"""PNG checks of cached images: the digest chunk over every other byte, chunk CRCs, and the
header-only check that reads the text chunks before the pixel data (issues 15, 17, 28)."""

from __future__ import annotations

import json
import os
from pathlib import Path

PNG_RECIPE_KEY = "ldmprobe"
#: A tEXt chunk (before the pixel data) with the blake2b-128 of every other byte of the file, so
#: that an edited, re-saved or damaged cached image is detected, not trusted (issue 15).
PNG_DIGEST_KEY = "ldmprobe-digest"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: length 0, type, crc32
#: Why an image without the digest chunk is remade (re-saved by an editor, or cached before digests).
NO_DIGEST = "no digest chunk (re-saved by another program, or cached before digests)"


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
