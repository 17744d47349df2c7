"""Issue 28: a user's image is embedded from the very bytes whose digest keys its embedding, so a
file changed between listing the folder and embedding it cannot store the new content's
embedding under the old content's key."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ldmprobe.engine.assoc_images import embed_image_folder, user_image_key
from ldmprobe.store.packed_cache import embedding_store
from ldmprobe.errors import BadInputError
from ldmprobe.specs.embedding_files import read_image_folder


def _folder(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        Image.new("RGB", (32, 32), colour).save(folder / f"{i}.png")
    return folder


def test_a_file_changed_after_listing_is_refused_and_nothing_is_stored(fresh_cache, tmp_path, tiny_measurer):
    folder = _folder(tmp_path)
    source = read_image_folder("A", folder)
    Image.new("RGB", (32, 32), (255, 255, 255)).save(folder / "1.png")  # replaced after the listing
    with pytest.raises(BadInputError, match="changed while this run was reading"):
        embed_image_folder(tiny_measurer, source)
    store = embedding_store(tiny_measurer.identity)
    assert all(v is None for v in store.get_many([user_image_key(d) for _, d in source.files]))


def test_unchanged_files_are_embedded_from_the_bytes_listed(fresh_cache, tmp_path, tiny_measurer):
    folder = _folder(tmp_path)
    source = read_image_folder("A", folder)
    rows = embed_image_folder(tiny_measurer, source)
    assert rows.shape[0] == 3 and np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
    again = embed_image_folder(tiny_measurer, read_image_folder("A", folder))  # from the cache
    assert np.array_equal(rows, again)
