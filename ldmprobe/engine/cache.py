"""The cache folder: where built tiny models, images and embeddings live, written atomically."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path


from ldmprobe.digest import digest
from ldmprobe.storage import (  # noqa: F401  (the stores' foundation, importable from here)
    atomic_write_bytes, atomic_write_text, cache_root, models_dir, publish_dir, staging_dir,
)


# --------------------------------------------------------------------------- stores

PNG_RECIPE_KEY = "ldmprobe"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: length 0, type, crc32


def _sharded(base: Path, key: str, suffix: str) -> Path:
    return base / key[:2] / f"{key}{suffix}"


class ImageStore:
    """Generated images by work-item key: ``images/ab/abcd....png`` (recipe in the PNG text chunk).

    Items that could not be made (NaN or black images) get a ``.failed.json`` record instead,
    so a rerun does not regenerate what is known to fail; flags such as the safety checker's
    travel in the PNG's metadata.
    """

    def __init__(self, root: Path | None = None):
        self.base = (root or cache_root()) / "images"

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
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def save_failure(self, key: str, metadata: dict) -> None:
        atomic_write_text(self.failure_path(key), json.dumps(metadata, sort_keys=True, indent=1))

    def failure(self, key: str) -> dict | None:
        path = self.failure_path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            return None

    def load(self, key: str):
        """The image and its metadata, or None when missing or unreadable (the file is removed)."""
        from PIL import Image

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with Image.open(path) as im:
                im.load()  # decodes every byte: a truncated file raises here
                metadata = json.loads(im.text.get(PNG_RECIPE_KEY, "{}"))
                return im.convert("RGB"), metadata
        except (OSError, ValueError, SyntaxError):
            path.unlink(missing_ok=True)
            return None

    def metadata(self, key: str) -> dict | None:
        """The PNG text-chunk metadata without decoding pixels (None when missing or unreadable).

        For images already checked by :meth:`valid` this run: it reads only the header chunks.
        """
        from PIL import Image

        path = self.path(key)
        try:
            with Image.open(path) as im:
                return json.loads(im.info.get(PNG_RECIPE_KEY, "{}"))
        except (OSError, ValueError, SyntaxError):
            return None

    def valid(self, key: str) -> bool:
        """Whether a usable result (image or failure record) is cached; removes corrupt files.

        Reads no pixels (issue 16): the PNG signature, the IEND chunk at the very end (a
        truncated or partly written file fails) and the recipe text chunk before the pixel
        data. Damage inside the pixel data is caught where pixels are decoded (:meth:`load`
        decodes every byte and removes a file that fails).
        """
        if self.failure(key) is not None:
            return True
        path = self.path(key)
        try:
            with open(path, "rb") as fh:
                head = fh.read(len(_PNG_SIGNATURE))
                fh.seek(-len(_PNG_END), os.SEEK_END)
                tail = fh.read()
        except FileNotFoundError:
            return False
        except OSError:  # shorter than the end chunk
            head = tail = b""
        if head != _PNG_SIGNATURE or tail != _PNG_END or not self.metadata(key):
            path.unlink(missing_ok=True)
            return False
        return True


class ArrayStore:
    """Float arrays by key under a namespace (e.g. one measurer), one ``.npy`` file each."""

    def __init__(self, namespace: str, root: Path | None = None):
        self.base = (root or cache_root()) / namespace

    def path(self, key: str) -> Path:
        return _sharded(self.base, key, ".npy")

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def save(self, key: str, array) -> None:
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array), allow_pickle=False)
        atomic_write_bytes(self.path(key), buffer.getvalue())

    def load(self, key: str):
        """The array, or None when missing or corrupt (a corrupt file is removed)."""
        import numpy as np

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            path.unlink(missing_ok=True)
            return None


def identity_namespace(identity: dict) -> str:
    """A short stable folder name for a model identity (sha256 of its canonical JSON)."""
    return digest(identity)[:20]


def embedding_store(measurer_identity: dict, root: Path | None = None):
    """Image embeddings by one measurer, keyed by image key: a packed store whose values are
    checked before use (the old per-file ``ab/<key>.npy`` cache is read through and imported)."""
    from ldmprobe.engine.packed_cache import VerifiedStore

    return VerifiedStore(f"embeddings/{identity_namespace(measurer_identity)}", "image embeddings", root)
