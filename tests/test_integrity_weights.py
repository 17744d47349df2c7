"""Issue 17: a model's identity covers every byte of its weight files, hashed once per file state."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture
def model_copy(tmp_path, cache_root, tiny_generator, monkeypatch):
    """A private copy of the tiny generator folder and an empty cache for the hash memory."""
    monkeypatch.setenv("LDMPROBE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    shutil.copytree(cache_root / "models" / "tiny-generator-v1", folder)
    return folder


def fingerprint(folder):
    from ldmprobe.models import sources, weights_hash

    sources._FINGERPRINTS.clear()  # as a new process would start
    weights_hash.forget_memory()
    return sources.folder_fingerprint(folder)


def test_flipping_4_kib_in_the_middle_of_the_weights_changes_the_identity(model_copy):
    weights = model_copy / "unet" / "diffusion_pytorch_model.safetensors"
    size = weights.stat().st_size
    assert size > 3 << 20  # the old head/tail MiB hash missed the middle of such a file
    before = fingerprint(model_copy)
    with open(weights, "r+b") as fh:
        fh.seek(size // 2)
        block = fh.read(4096)
        fh.seek(size // 2)
        fh.write(bytes(b ^ 0x5A for b in block))
    after = fingerprint(model_copy)
    assert after != before


def test_an_unchanged_file_is_not_hashed_again(model_copy):
    from ldmprobe.models import weights_hash

    first = fingerprint(model_copy)
    calls = weights_hash.HASH_CALLS
    assert weights_hash.cached_entries() >= 3  # unet, vae, text encoder
    assert fingerprint(model_copy) == first  # a fresh process: answered from weight-hashes.json
    assert weights_hash.HASH_CALLS == calls
    weights = model_copy / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes())  # same bytes, new mtime: hashed again, same identity
    assert fingerprint(model_copy) == first
    assert weights_hash.HASH_CALLS == calls + 1
