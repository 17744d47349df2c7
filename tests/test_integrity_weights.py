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


def test_an_unchanged_file_is_not_hashed_again(model_copy, monkeypatch):
    from ldmprobe.models import weights_hash

    monkeypatch.setattr(weights_hash, "CHEAP_BYTES", 0)  # as for a multi-GB checkpoint
    first = fingerprint(model_copy)
    calls = weights_hash.HASH_CALLS
    assert weights_hash.cached_entries() >= 3  # unet, vae, text encoder
    assert fingerprint(model_copy) == first  # a fresh process: answered from weight-hashes.json
    assert weights_hash.HASH_CALLS == calls
    weights = model_copy / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes())  # same bytes, new mtime: hashed again, same identity
    assert fingerprint(model_copy) == first
    assert weights_hash.HASH_CALLS == calls + 1


def _damage_in_place(path, offset=None):
    """Flip bytes inside a file keeping its size, mtime and inode (a disk error, or a tool that
    restores the mtime)."""
    import os

    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.seek(st.st_size // 2 if offset is None else offset)
        block = fh.read(64)
        fh.seek(st.st_size // 2 if offset is None else offset)
        fh.write(bytes(b ^ 0x5A for b in block))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)


def test_weights_damaged_with_stat_unchanged_are_found(model_copy, monkeypatch):
    """Issue 28: a small (tiny) weight file is hashed again at every check; a large one is trusted
    through its remembered hash except in ``cache verify`` (``fresh_hashes``)."""
    from ldmprobe.models import tiny, weights_hash

    weights = model_copy / "unet" / "diffusion_pytorch_model.safetensors"
    vae = model_copy / "vae" / "diffusion_pytorch_model.safetensors"
    assert tiny.damage(model_copy, "model_index.json") is None
    _damage_in_place(weights)
    assert "unet/" in tiny.damage(model_copy, "model_index.json")  # small: hashed again, found
    monkeypatch.setattr(weights_hash, "CHEAP_BYTES", 0)  # as if they were 4 GB checkpoints
    _damage_in_place(weights)  # undone
    weights_hash.forget_memory()  # a new process
    assert tiny.damage(model_copy, "model_index.json") is None  # remembers every file's hash
    _damage_in_place(vae)
    assert tiny.damage(model_copy, "model_index.json") is None  # trusted through the remembered hash
    with weights_hash.fresh_hashes():  # what `cache verify` does
        assert "vae/" in tiny.damage(model_copy, "model_index.json")


@pytest.mark.parametrize("where", ["unet/config.json", "scheduler/scheduler_config.json", "tokenizer/tokenizer.json"])
def test_a_config_scheduler_or_tokenizer_edit_is_found(model_copy, where):
    """Issue 28: a one-digit config edit or a renamed tokenizer entry is damage (the model is
    rebuilt), not a new model identity silently used or an exit 1 at every run."""
    import json

    from ldmprobe.models import tiny

    assert tiny.damage(model_copy, "model_index.json") is None  # lists files an older build did not
    assert where in json.loads((model_copy / tiny.DIGESTS).read_text())
    path = model_copy / where
    text = path.read_text()
    if where.endswith("tokenizer.json"):
        edited = text.replace('"car</w>"', '"cas</w>"', 1)
    else:
        doc = json.loads(text)
        name = next(k for k, v in doc.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1)
        edited = text.replace(json.dumps(doc[name]), json.dumps(doc[name] + 1), 1)
    assert edited != text and len(edited) == len(text)  # same size: only the digest can tell
    path.write_text(edited)
    assert "does not match its sha256" in tiny.damage(model_copy, "model_index.json")


@pytest.mark.slow
def test_a_damaged_tiny_model_is_rebuilt_with_the_same_identity(tmp_path, cache_root, monkeypatch):
    from ldmprobe.models import sources, tiny

    models = tmp_path / "models"
    shutil.copytree(cache_root / "models" / "tiny-generator-v1", models / "tiny-generator-v1")
    folder = tiny.ensure_tiny_generator(models)
    before = sources.folder_fingerprint(folder)
    config = folder / "unet" / "config.json"
    config.write_text(config.read_text().replace('"layers_per_block": 1', '"layers_per_block": 2'))
    sources._FINGERPRINTS.clear()
    folder = tiny.ensure_tiny_generator(models)  # rebuilt
    assert tiny.damage(folder, "model_index.json") is None
    assert sources.folder_fingerprint(folder) == before
