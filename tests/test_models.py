"""Foundation: tiny models through the real loading path, tokenizer parity, resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ldmprobe.store.files import atomic_write_bytes, cache_root
from ldmprobe.models import load as model_load
from ldmprobe.models import sources as models
from ldmprobe.models import tiny
from ldmprobe.errors import UnknownModelError


def _generate(generator, prompts, seeds, steps=3):
    out = generator.pipe(
        list(prompts), num_inference_steps=steps, guidance_scale=7.5,
        generator=[torch.Generator("cpu").manual_seed(s) for s in seeds], output_type="np",
    )
    return out.images


def test_tiny_generator_loads_from_cache_folder(tiny_generator, cache_root):
    assert tiny_generator.folder.parent == cache_root / "models"
    assert (tiny_generator.folder / "model_index.json").is_file()
    assert tiny.is_tiny_folder(tiny_generator.folder)
    assert type(tiny_generator.pipe).__name__ == "StableDiffusionPipeline"
    assert tiny_generator.identity["source"] == "tiny"
    assert len(tiny_generator.identity["fingerprint"]) == 64


@pytest.mark.slow
def test_tiny_generator_images_shape_finite_deterministic(tiny_generator):
    first = _generate(tiny_generator, ["a photo of a house", "a photo of a fancy house"], [1, 2])
    again = _generate(tiny_generator, ["a photo of a house", "a photo of a fancy house"], [1, 2])
    other_seed = _generate(tiny_generator, ["a photo of a house"], [3])
    assert first.shape == (2, 64, 64, 3)
    assert np.isfinite(first).all()
    np.testing.assert_allclose(first, again, atol=1e-6)
    assert np.abs(first[0] - other_seed[0]).max() > 1e-3


@pytest.mark.slow
def test_tiny_generator_batched_matches_one_at_a_time(tiny_generator):
    batched = _generate(tiny_generator, ["a house", "a hut", "a mansion"], [5, 6, 7])
    single = np.concatenate([_generate(tiny_generator, [p], [s]) for p, s in
                             zip(["a house", "a hut", "a mansion"], [5, 6, 7])])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_tiny_measurer_embeddings(tiny_measurer):
    from PIL import Image

    from ldmprobe.engine.encode import encode_images, encode_texts

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(3)]
    emb = encode_images(tiny_measurer, images)
    texts = encode_texts(tiny_measurer, ["a house", "a dog"])
    assert emb.shape == (3, 64) and texts.shape == (2, 64)
    assert np.isfinite(emb).all() and np.isfinite(texts).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(encode_images(tiny_measurer, images), emb, atol=1e-6)
    assert tiny_measurer.identity["source"] == "tiny"


@pytest.mark.slow
def test_tiny_build_is_deterministic(tmp_path, tiny_generator, tiny_measurer):
    """A rebuild in another folder has the same fingerprint: same weights from the fixed seed."""
    gen = tiny.ensure_tiny_generator(tmp_path)
    meas = tiny.ensure_tiny_measurer(tmp_path)
    assert models.folder_fingerprint(gen) == tiny_generator.identity["fingerprint"]
    assert models.folder_fingerprint(meas) == tiny_measurer.identity["fingerprint"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folders left behind"


PROMPTS = [
    "a photo of a fancy house",
    "A PHOTO OF AN African Man And His House",
    "Hello, World!!! 123 4567.89",
    "don't stop; it's Mr. O'Neil's dog",
    "日本の家の写真",
    "Привет, мир",
    "café naïve résumé façade",
    "🏠 a house with an emoji 🏡🔥",
    "tabs\tand\nnewlines   and  spaces",
    "x" * 400,
    " ".join(["word"] * 120),
    "",
]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_rebuilt_tokenizer_matches_open_clip(prompt, tiny_generator):
    import open_clip

    reference = open_clip.get_tokenizer("ViT-L-14")([prompt])[0].tolist()
    ours = tiny_generator.pipe.tokenizer(prompt, truncation=True, max_length=77).input_ids
    end = reference.index(49407) + 1
    if len(ours) == 77:  # open_clip truncates by forcing the end token into the last slot
        assert ours[:76] == reference[:76] and reference[76] == 49407
    else:
        assert ours == reference[:end]


def test_rebuilt_vocabulary_layout():
    vocab, merges = tiny.clip_bpe_vocab_and_merges()
    assert len(vocab) == 49408 and len(merges) == 48894
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407


def test_resolve_generator_presets_and_errors(tmp_path):
    assert models.resolve_generator("sd15").location == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert models.resolve_generator("tiny").is_tiny
    assert models.resolve_generator("some-org/some-model").source == "hub"
    with pytest.raises(UnknownModelError, match="stable-diffusion-v1-5/stable-diffusion-v1-5"):
        models.resolve_generator("runwayml/stable-diffusion-v1-5")
    with pytest.raises(UnknownModelError, match="Did you mean 'sd15'"):
        models.resolve_generator("sd1.5")
    with pytest.raises(UnknownModelError, match="model_index.json"):
        models.resolve_generator(str(tmp_path))


def test_resolve_measurer_forms(tmp_path):
    ref = models.resolve_measurer("ViT-L-14-quickgelu:openai")
    assert (ref.source, ref.name, ref.pretrained) == ("pretrained", "ViT-L-14-quickgelu", "openai")
    assert models.resolve_measurer("hf-hub:org/repo").source == "hf-hub"
    assert models.resolve_measurer("tiny").is_tiny
    with pytest.raises(UnknownModelError, match="open_clip model folder"):
        models.resolve_measurer(f"local-dir:{tmp_path}")
    with pytest.raises(UnknownModelError, match="NAME:PRETRAINED"):
        models.resolve_measurer("ViT-L-14")


def test_unknown_open_clip_name_is_bad_input():
    with pytest.raises(UnknownModelError, match="no model 'ViT-Q-99'"):
        model_load.load_measurer(models.resolve_measurer("ViT-Q-99:openai"), offline=True)
    with pytest.raises(UnknownModelError, match="no pretrained weights 'nosuchtag'"):
        model_load.load_measurer(models.resolve_measurer("ViT-B-32:nosuchtag"), offline=True)


def test_local_folder_generator_has_fingerprint_identity(tiny_generator):
    ref = models.resolve_generator(str(tiny_generator.folder))
    assert ref.source == "local"
    identity = models.generator_identity(ref, tiny_generator.folder)
    assert identity["fingerprint"] == tiny_generator.identity["fingerprint"]
    scheduler = models.scheduler_identity(tiny_generator.folder)
    assert scheduler["class"] == "DDIMScheduler" and scheduler["config"]["steps_offset"] == 1


def test_cache_root_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("LDMPROBE_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("LDMPROBE_CACHE")
    import platformdirs

    assert cache_root() == __import__("pathlib").Path(platformdirs.user_cache_dir("ldmprobe", appauthor=False))


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_trimmed_text_encoding_matches_open_clip(tiny_measurer):
    """encode_texts cuts padding after the end-of-text token; it must equal encode_text."""
    import torch

    from ldmprobe.engine.encode import _trimmable, encode_texts

    texts = ["red", "a photo of a fancy house", "x " * 100, "", "🏠 emoji", "a much longer prompt " * 3,
             "don't", "日本"]
    assert _trimmable(tiny_measurer.model)
    ours = encode_texts(tiny_measurer, texts, batch_size=3)
    with torch.inference_mode():
        reference = tiny_measurer.model.encode_text(tiny_measurer.tokenizer(texts)).float().numpy()
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    np.testing.assert_allclose(ours, reference, atol=2e-5)


@pytest.mark.skipif(not hasattr(__import__("os"), "fchmod"), reason="no POSIX permissions")
def test_atomic_write_respects_umask(tmp_path):
    """mkstemp makes 0600 files; a shared cache needs what a plain open() would give."""
    import os

    from ldmprobe.store import files

    old = os.umask(0o022)
    try:
        mode = files._file_mode()
        files._FILE_MODE, saved = mode, files._FILE_MODE
        files.atomic_write_bytes(tmp_path / "f.bin", b"x")
        files._FILE_MODE = saved
    finally:
        os.umask(old)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o644
