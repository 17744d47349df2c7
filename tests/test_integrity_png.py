"""Issue 28 on cached PNGs: an image re-saved without its digest chunk is remade, and a flipped
bit in the digest chunk (its keyword included) is caught by the chunk's CRC."""

from __future__ import annotations

import io
import json

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ldmprobe.store import run_state
from ldmprobe.store.images import ImageStore
from ldmprobe.store.png_check import NO_DIGEST, PNG_DIGEST_KEY, PNG_RECIPE_KEY, check_png, light_check

KEY = "ab" + "0" * 62


def _saved(tmp_path):
    store = ImageStore(tmp_path)
    store.save(KEY, Image.new("RGB", (32, 32), (200, 30, 30)), {"key": KEY, "prompt": "a red car", "seed": 1})
    return store, store.path(KEY)


def _resaved_keeping_the_recipe(path) -> bytes:
    """What an editor does: the pixels changed, the recipe text chunk kept, the digest dropped."""
    with Image.open(path) as im:
        recipe = im.info[PNG_RECIPE_KEY]
        pixels = im.convert("RGB")
    pixels.putpixel((0, 0), (0, 0, 0))
    info = PngInfo()
    info.add_text(PNG_RECIPE_KEY, recipe)
    buffer = io.BytesIO()
    pixels.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_an_image_resaved_without_its_digest_is_remade(tmp_path):
    store, path = _saved(tmp_path)
    data = _resaved_keeping_the_recipe(path)
    path.write_bytes(data)
    assert check_png(data, KEY) == NO_DIGEST
    assert light_check(path, KEY) == NO_DIGEST
    run_state.current.repairs.clear()
    fresh = ImageStore(tmp_path)  # another process, the manifest on disk
    assert not fresh.valid(KEY) and not path.exists()
    assert ("images", NO_DIGEST) in run_state.current.repairs
    run_state.current.repairs.clear()


def _flip_bit_in_digest_keyword(data: bytes) -> bytes:
    at = data.index(PNG_DIGEST_KEY.encode()) + len(PNG_DIGEST_KEY) - 1
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def test_a_flipped_bit_in_the_digest_keyword_does_not_skip_the_check(tmp_path):
    store, path = _saved(tmp_path)
    data = _flip_bit_in_digest_keyword(path.read_bytes())
    assert check_png(data, KEY) == "damaged chunk (CRC mismatch)"
    path.write_bytes(data)
    assert light_check(path, KEY) == "damaged chunk (CRC mismatch)"
    assert not ImageStore(tmp_path).valid(KEY) and not path.exists()
    run_state.current.repairs.clear()


def test_a_flipped_bit_in_any_chunk_fails_its_crc(tmp_path):
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    assert check_png(data, KEY) is None
    for at in range(8, len(data) - 12, 7):
        damaged = data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:]
        assert check_png(damaged, KEY) is not None, at


def test_a_valid_image_still_loads(tmp_path):
    store, _ = _saved(tmp_path)
    image, metadata = ImageStore(tmp_path).load(KEY)
    assert image.size == (32, 32) and json.loads(json.dumps(metadata))["seed"] == 1
