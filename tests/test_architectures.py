"""Current architectures offline: tiny SDXL, SD 3 and Flux generators and a tiny SigLIP measurer,
built from configs, loaded back like real models, and run through the commands end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ldmprobe.models import configs, tiny, tiny_arch
from ldmprobe.models import load as model_load
from ldmprobe.models import sources as models

ARCHS = {"tiny-sdxl": ("StableDiffusionXLPipeline", "sdxl"), "tiny-sd3": ("StableDiffusion3Pipeline", "sd3"),
         "tiny-flux": ("FluxPipeline", "flux")}


@pytest.fixture(scope="session")
def arch_generators(cache_root):
    return {name: model_load.load_generator(models.resolve_generator(name), device="cpu", dtype="float32")
            for name in ARCHS}


@pytest.fixture(scope="session")
def siglip(cache_root):
    return model_load.load_measurer(models.resolve_measurer("tiny-siglip"), device="cpu")


@pytest.mark.parametrize("name", list(ARCHS))
def test_tiny_builds_load_as_ordinary_folders(arch_generators, cache_root, name):
    loaded = arch_generators[name]
    cls, family = ARCHS[name]
    assert type(loaded.pipe).__name__ == cls
    assert loaded.folder.parent == cache_root / "models"
    assert loaded.ref.is_tiny and tiny.is_tiny_folder(loaded.folder)
    marker = json.loads((loaded.folder / tiny.MARKER).read_text())
    assert marker["architecture"] == family and marker["role"] == "generator"
    weights = list(loaded.folder.rglob("*.safetensors"))
    assert weights and not list(loaded.folder.rglob("*.bin"))
    assert tiny.damage(loaded.folder, "model_index.json") is None
    assert configs.architecture(loaded.folder) == family
    assert configs.native_image_size(loaded.folder) == (64, 64)
    assert loaded.identity["architecture"] == family
    assert loaded.identity["class"] == cls


def test_guidance_semantics_read_from_the_folder(arch_generators):
    semantics = {name: configs.guidance_semantics(arch_generators[name].folder)["kind"] for name in ARCHS}
    assert semantics == {"tiny-sdxl": "cfg", "tiny-sd3": "cfg", "tiny-flux": "distilled"}
    assert arch_generators["tiny-flux"].identity["guidance"] == "distilled"


def test_guidance_semantics_of_a_folder_without_guidance_embedding(tmp_path):
    (tmp_path / "transformer").mkdir()
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({"guidance_embeds": False}))
    assert configs.guidance_semantics(tmp_path)["kind"] == "none"  # schnell: the scale does nothing
    assert configs.native_image_size(tmp_path) == (1024, 1024)  # diffusers' default, VAE factor 8


@pytest.mark.slow
def test_sd1_identity_unchanged_by_architecture_fields(tiny_generator):
    """SD 1.x identities (and so every cache key made with them) keep their old fields."""
    assert set(tiny_generator.identity) == {"class", "source", "fingerprint"}


@pytest.mark.parametrize("name", list(ARCHS))
def test_tiny_build_is_deterministic(tmp_path, arch_generators, name):
    rebuilt = tiny_arch.ensure_generator(tmp_path, name)
    assert models.folder_fingerprint(rebuilt) == arch_generators[name].identity["fingerprint"]


@pytest.mark.parametrize("name", list(ARCHS))
def test_tiny_builds_generate_finite_seeded_images(arch_generators, name):
    pipe = arch_generators[name].pipe

    def make(seed):
        return pipe(prompt=["a photo of a red car"], num_inference_steps=2, guidance_scale=3.0, width=64, height=64,
                    generator=[torch.Generator("cpu").manual_seed(seed)], output_type="np").images

    first, again, other = make(1), make(1), make(2)
    assert first.shape == (1, 64, 64, 3) and np.isfinite(first).all()
    np.testing.assert_allclose(first, again, atol=1e-6)
    assert np.abs(first - other).max() > 1e-4


@pytest.mark.slow
def test_t5_tokenizer_is_sentencepiece_like():
    tokenizer = tiny_arch.build_t5_tokenizer()
    ids = tokenizer("a photo of a fancy house").input_ids
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.pad_token == "<pad>"
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert "▁photo" in pieces and "▁house" in pieces
    assert tokenizer.unk_token_id not in ids


def test_tiny_siglip_loads_through_local_dir(siglip):
    assert siglip.ref.is_tiny and siglip.loss == "sigmoid"
    assert siglip.embed_dim == 64
    marker = json.loads((models.tiny_measurer_folder(siglip.ref) / tiny.MARKER).read_text())
    assert marker["architecture"] == "siglip"
    assert float(siglip.model.logit_bias.detach()) == pytest.approx(-10.0)
    from ldmprobe.engine.encode import encode_texts

    texts = encode_texts(siglip, ["a house", "a dog"])
    assert texts.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)


def test_zero_shot_follows_each_loss(siglip, tiny_measurer):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, 64))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    texts = rng.normal(size=(4, 64))
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    cos = images @ texts.T
    scale = float(np.exp(siglip.model.logit_scale.item()))
    expected = 1 / (1 + np.exp(-(scale * cos + siglip.model.logit_bias.item())))  # sigmoid loss, bias b
    np.testing.assert_allclose(siglip.zero_shot(images, texts), expected, rtol=1e-6)
    assert not np.allclose(siglip.zero_shot(images, texts).sum(1), 1)  # independent per label
    clip = tiny_measurer.zero_shot(images, texts)
    assert tiny_measurer.loss == "softmax"
    logits = np.exp(tiny_measurer.model.logit_scale.item()) * cos
    np.testing.assert_allclose(clip, np.exp(logits) / np.exp(logits).sum(1, keepdims=True), rtol=1e-6)


def test_models_lists_real_presets_with_licences(cache_root):
    from ldmprobe.models.inventory import model_inventory

    doc = model_inventory()
    rows = {r["name"]: r for r in doc["generators"] + doc["measurers"]}
    for name in ("tiny-sdxl", "tiny-sd3", "tiny-flux", "tiny-siglip"):
        assert rows[name]["local"] is True
    for name in ("sdxl", "sd35-medium", "sd35-large", "flux-schnell", "flux-dev"):
        assert rows[name]["licence"] and rows[name]["needs"]
    assert rows["flux-dev"]["gated"] and "GATED" in rows["flux-dev"]["licence"]
    assert not rows["flux-schnell"]["gated"] and not rows["sdxl"]["gated"]
    assert models.resolve_generator("sd35-large").location == "stabilityai/stable-diffusion-3.5-large"


@pytest.mark.parametrize("name", list(ARCHS))
def test_per_encoder_outputs_are_what_the_pipeline_feeds_its_denoiser(arch_generators, name):
    """Each encoder output and the assembled conditioning equal the pipeline's own encode_prompt."""
    from ldmprobe.engine.conditioning_arch import T5_TOKENS_KEPT, denoiser_conditioning, encode_by_encoder

    loaded = arch_generators[name]
    prompts = ["a photo of a red car", "a blue house at night", "a cat"]
    parts = encode_by_encoder(loaded, prompts)
    family = ARCHS[name][1]
    pipe = loaded.pipe
    with torch.inference_mode():
        if family == "sdxl":
            embeds, _, pooled, _ = pipe.encode_prompt(prompts, device="cpu", do_classifier_free_guidance=False)
            expect_parts = {("text_encoder", "tokens"), ("text_encoder_2", "tokens"), ("text_encoder_2", "pooled")}
            np.testing.assert_allclose(parts[("text_encoder_2", "pooled")], pooled.numpy(), atol=1e-5)
        elif family == "sd3":
            embeds, _, pooled, _ = pipe.encode_prompt(prompts, prompts, prompts, device="cpu",
                                                      do_classifier_free_guidance=False)
            embeds = embeds[:, : 77 + T5_TOKENS_KEPT]
            expect_parts = {("text_encoder", "tokens"), ("text_encoder", "pooled"), ("text_encoder_2", "tokens"),
                            ("text_encoder_2", "pooled"), ("text_encoder_3", "tokens")}
            np.testing.assert_allclose(np.concatenate([parts[("text_encoder", "pooled")],
                                                       parts[("text_encoder_2", "pooled")]], -1), pooled.numpy(),
                                       atol=1e-5)
        else:
            embeds, pooled, _ = pipe.encode_prompt(prompts, prompts, device="cpu")
            embeds = embeds[:, :T5_TOKENS_KEPT]
            expect_parts = {("text_encoder", "pooled"), ("text_encoder_2", "tokens")}
            np.testing.assert_allclose(parts[("text_encoder", "pooled")], pooled.numpy(), atol=1e-5)
    assert set(parts) == expect_parts
    np.testing.assert_allclose(denoiser_conditioning(parts, family), embeds.numpy(), atol=1e-5)
    one = encode_by_encoder(loaded, prompts[:1])  # a prompt's value does not depend on the others
    for key in parts:
        np.testing.assert_array_equal(one[key][0], parts[key][0])


def _sweep(tmp_path, pipeline, *extra):
    from click.testing import CliRunner

    from ldmprobe.cli.main import main

    spec = tmp_path / "arch.toml"
    spec.write_text('name = "arch"\ntemplates = ["a photo of a {} car", "a {} house"]\nbaseline = ""\n'
                    'terms = ["red"]\ncontrols = ["big"]\nprobes = ["fire", "ocean"]\nseeds = 2\nsteps = 1\n')
    result = CliRunner().invoke(main, ["sweep", str(spec), "--pipeline", pipeline, "--measurer", "tiny-siglip",
                                       "--format", "json", "--permutations", "99", "--bootstrap", "99",
                                       "--out", str(tmp_path / "run"), *extra])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


PARTS = {"tiny": {("text_encoder", "tokens")},
         "tiny-sdxl": {("text_encoder", "tokens"), ("text_encoder_2", "tokens"), ("text_encoder_2", "pooled")},
         "tiny-sd3": {("text_encoder", "tokens"), ("text_encoder", "pooled"), ("text_encoder_2", "tokens"),
                      ("text_encoder_2", "pooled"), ("text_encoder_3", "tokens")},
         "tiny-flux": {("text_encoder", "pooled"), ("text_encoder_2", "tokens")}}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PARTS))
def test_sweep_reports_conditioning_by_encoder(fresh_cache, tmp_path, arch_generators, name):
    from ldmprobe.results.provenance import validate_document

    doc = _sweep(tmp_path, name)
    validate_document(doc, "sweep")
    for row in doc["terms"] + doc["controls"]:
        drift = row["text_drift"]
        rows = drift["conditioning_by_encoder"]
        assert {(r["encoder"], r["part"]) for r in rows} == PARTS[name]
        assert all(r["estimate"] is not None and r["estimate"] > 0 for r in rows)
        assert drift["conditioning"] is not None and drift["measurer"] is not None
    assert doc["config"]["width"] == 64 and doc["config"]["steps"] == 1
    again = _sweep(tmp_path / "again", name) if (tmp_path / "again").mkdir() is None else None
    assert again["terms"][0]["text_drift"] == doc["terms"][0]["text_drift"]  # from the cache, same numbers


def _trace(tmp_path, spec_extra: str, *args):
    from click.testing import CliRunner

    from ldmprobe.cli.main import main

    spec = tmp_path / "trace.toml"
    spec.write_text('name = "t"\ntemplates = ["a photo of the {} house"]\nbaseline = ""\nterms = ["fancy"]\n'
                    'probes = ["a yellow background"]\nseeds = 1\n' + spec_extra)
    return CliRunner().invoke(main, ["trace", str(spec), "--device", "cpu", "--steps", "2", "--bootstrap", "20",
                                     "--parts", "vae", "--format", "json", "--no-report",
                                     "--out", str(tmp_path / "run"), *args])


@pytest.mark.parametrize("name", list(ARCHS))
def test_trace_runs_every_part_on_new_architectures(tmp_path, arch_generators, name):
    result = _trace(tmp_path, "", "--pipeline", name, "--measurer", "tiny", "--parts",
                    "conditioning,attention,steps,vae", "--switch-steps", "1")
    assert result.exit_code == 0, (result.output, result.exception)
    doc = json.loads(result.stdout)
    assert all(doc[section] for section in ("conditioning", "attention", "steps", "vae"))
    variants = [v["variant"] for v in doc["conditioning"][0]["variants"]]
    assert "pooled" in variants and ("before" in variants) == (name != "tiny-sdxl")


def test_trace_refuses_a_part_the_architecture_lacks(tmp_path, arch_generators):
    result = _trace(tmp_path, "", "--pipeline", "tiny", "--measurer", "tiny", "--variants", "pooled,modifier")
    assert result.exit_code == 2 and "pooled" in result.stderr and result.stdout == ""
    assert not (tmp_path / "run").exists()


def test_trace_honours_the_specs_model_keys(tmp_path, arch_generators):
    spec_models = _trace(tmp_path, 'pipeline = "tiny-flux"\nmeasurer = "tiny"\n')  # no flags: the spec's models
    assert spec_models.exit_code == 0, (spec_models.output, spec_models.exception)
    assert json.loads(spec_models.stdout)["provenance"]["models"]["generator"] == "tiny-flux"
    (tmp_path / "run").rename(tmp_path / "run-flux")
    flagged = _trace(tmp_path, 'pipeline = "tiny-flux"\nmeasurer = "tiny"\n', "--pipeline", "tiny")  # a flag wins
    assert flagged.exit_code == 0, (flagged.output, flagged.exception)
    doc = json.loads(flagged.stdout)
    assert doc["provenance"]["models"]["generator"] == "tiny" and doc["vae"]


def test_memory_options_are_validated_applied_and_recorded(monkeypatch, arch_generators, tiny_generator):
    from ldmprobe.errors import BadInputError
    from ldmprobe.models import runtime

    monkeypatch.setenv(runtime.MEMORY_ENV, "vae-tiling, attention-slicing")
    assert runtime.memory_options() == ("attention-slicing", "vae-tiling")
    loaded = arch_generators["tiny-sdxl"]
    assert models.generator_identity(loaded.ref, loaded.folder)["memory"] == ["attention-slicing", "vae-tiling"]
    assert runtime.apply_memory_options(loaded.pipe, runtime.memory_options(), "cpu") is False
    assert loaded.pipe.vae.use_tiling
    loaded.pipe.vae.disable_tiling()
    loaded.pipe.disable_attention_slicing()
    assert runtime.apply_memory_options(loaded.pipe, ("cpu-offload",), "cpu") is False  # nothing to offload to
    monkeypatch.setenv(runtime.MEMORY_ENV, "vae-tiling,turbo")
    with pytest.raises(BadInputError, match="turbo"):
        runtime.memory_options()
    monkeypatch.delenv(runtime.MEMORY_ENV)
    assert "memory" not in models.generator_identity(tiny_generator.ref, tiny_generator.folder)


def test_bfloat16_for_sd3_and_flux_on_cuda_only(arch_generators, tiny_generator):
    from ldmprobe.models.runtime import preferred_dtype

    for name, expected in (("tiny-sd3", "bfloat16"), ("tiny-flux", "bfloat16"), ("tiny-sdxl", "float16")):
        assert preferred_dtype(arch_generators[name].folder, "cuda", "float16") == expected
        assert preferred_dtype(arch_generators[name].folder, "cpu", "float32") == "float32"
    assert preferred_dtype(tiny_generator.folder, "cuda", "float16") == "float16"
    assert preferred_dtype(arch_generators["tiny-flux"].folder, "cuda", "float32") == "float32"  # asked for


class _NoNegative:
    def __init__(self):
        self.calls = []

    def __call__(self, prompt, num_inference_steps, generator, output_type, width=None, height=None):
        self.calls.append(dict(prompt=prompt, width=width))
        return "images"


class _NotTextToImage:
    def __call__(self, image, num_inference_steps):
        return None


def test_generic_pipeline_call_leaves_out_what_it_does_not_take():
    from ldmprobe.errors import BadInputError
    from ldmprobe.models.runtime import CallAdapter, adapt_call

    pipe = _NoNegative()
    adapted = adapt_call(pipe)
    assert isinstance(adapted, CallAdapter) and set(adapted.dropped) == {"negative_prompt", "guidance_scale"}
    out = adapted(prompt=["a"], num_inference_steps=2, guidance_scale=7.5, negative_prompt=["x"], width=64,
                  height=64, generator=[None], output_type="np")
    assert out == "images" and pipe.calls == [{"prompt": ["a"], "width": 64}]
    adapted.marker = 1  # attributes are the pipeline's own
    assert pipe.marker == 1 and adapted.calls is pipe.calls
    with pytest.raises(BadInputError, match="not a text-to-image pipeline"):
        adapt_call(_NotTextToImage())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ARCHS))
def test_neighbours_images_and_assoc_on_generated_sets(fresh_cache, tmp_path, arch_generators, name):
    from click.testing import CliRunner

    from ldmprobe.cli.main import main

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("house\ncar\ntree\nfire\nocean\n")
    result = CliRunner().invoke(main, ["neighbours", "fancy", "--context", "a photo of a {} house", "--images", "2",
                                       "--pipeline", name, "--measurer", "tiny-siglip", "--vocab", str(vocab),
                                       "--steps", "1", "--format", "json"])
    assert result.exit_code == 0, (result.output, result.exception)
    doc = json.loads(result.stdout)
    assert len(doc["image_neighbours"]) == 5 and doc["overlap"] is not None
    spec = tmp_path / "a.toml"
    spec.write_text('name = "a"\n[X]\nlabel = "s"\nprompts = ["a person studying physics", "a person studying '
                    'chemistry"]\nseeds = [0]\n[Y]\nlabel = "a"\nprompts = ["a person studying poetry", "a person '
                    'studying music"]\nseeds = [0]\n[A]\nlabel = "m"\nwords = ["man", "male"]\n[B]\nlabel = "f"\n'
                    'words = ["woman", "female"]\n')
    result = CliRunner().invoke(main, ["assoc", str(spec), "--pipeline", name, "--measurer", "tiny-siglip",
                                       "--steps", "1", "--format", "json"])
    assert result.exit_code == 0, (result.output, result.exception)
    doc = json.loads(result.stdout)
    assert len(doc["images"]) == 4 and doc["result"]["effect_size"] is not None


@pytest.mark.gpu
@pytest.mark.weights
@pytest.mark.parametrize("preset", ["sdxl", "sd35-medium", "flux-schnell"])
def test_real_presets_make_an_image_on_the_gpu(preset):
    """Needs the real weights in the Hugging Face cache and a CUDA card (skipped by default)."""
    loaded = model_load.load_generator(models.resolve_generator(preset), device="cuda",
                                       dtype="bfloat16" if preset != "sdxl" else "float16", offline=True)
    images = loaded.pipe(prompt=["a photo of a house"], num_inference_steps=4, guidance_scale=0.0 if "schnell"
                         in preset else 5.0, generator=[torch.Generator("cpu").manual_seed(0)],
                         output_type="np").images
    assert images.shape[1:] == (1024, 1024, 3) and np.isfinite(images).all() and images.max() > 0


def test_dry_run_says_what_guidance_means_on_each_model(fresh_cache, tmp_path, arch_generators):
    from click.testing import CliRunner

    from ldmprobe.cli.main import main

    spec = tmp_path / "g.toml"
    spec.write_text('name = "g"\ntemplates = ["a {} house"]\nbaseline = ""\nterms = ["red"]\nseeds = 1\n')

    def plan(name, *extra):
        result = CliRunner().invoke(main, ["sweep", str(spec), "--pipeline", name, "--measurer", "tiny-siglip",
                                           "--dry-run", "--format", "json", *extra])
        assert result.exit_code == 0, (result.output, result.exception)
        return json.loads(result.stdout)

    flux = plan("tiny-flux", "--negative-prompt", "blurry")
    assert any("guidance-distilled" in n for n in flux["notes"])
    assert any("negative prompt has no effect" in n for n in flux["notes"])
    assert flux["config"]["pipeline"]["identity"]["guidance"] == "distilled"
    sdxl = plan("tiny-sdxl", "--negative-prompt", "blurry")
    assert not any("guidance" in n for n in sdxl["notes"])
    assert sdxl["config"]["width"] == 64 and sdxl["counts"]["planned"] == 2


def test_conditioning_by_encoder_estimates_match_a_direct_computation():
    """Planted per-encoder arrays: token rows are mean over templates of 1 − mean_pos cos, pooled
    rows mean over templates of 1 − cos, each computed here directly."""
    from ldmprobe.analysis.sweep import SweepEmbeddings, _text_drift

    rng = np.random.default_rng(3)
    m_prompts, b_prompts = ["a red car", "a red house"], ["a car", "a house"]
    prompts = m_prompts + b_prompts
    tokens = {p: rng.normal(size=(5, 4)) for p in prompts}
    pooled = {p: rng.normal(size=4) for p in prompts}
    text = {p: rng.normal(size=4) for p in prompts}
    data = SweepEmbeddings(templates=("a {} car", "a {} house"), baseline="", terms=("red",), seeds=(0,), images={},
                           prompts={}, prompt_embeddings=text,
                           conditioning_by_encoder={("text_encoder_3", "tokens", "T5"): tokens,
                                                    ("text_encoder", "pooled", "CLIP-L"): pooled})

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    want_tokens = np.mean([1 - np.mean([cos(tokens[m][i], tokens[b][i]) for i in range(5)])
                           for m, b in zip(m_prompts, b_prompts)])
    want_pooled = np.mean([1 - cos(pooled[m], pooled[b]) for m, b in zip(m_prompts, b_prompts)])
    rows = {(r.encoder, r.part): r for r in _text_drift(data, m_prompts, b_prompts).conditioning_by_encoder}
    assert rows[("text_encoder_3", "tokens")].estimate == pytest.approx(want_tokens, rel=1e-12)
    assert rows[("text_encoder", "pooled")].estimate == pytest.approx(want_pooled, rel=1e-12)
    assert rows[("text_encoder_3", "tokens")].model == "T5"
    none = SweepEmbeddings(templates=("t",), baseline="", terms=("red",), seeds=(0,), images={}, prompts={},
                           prompt_embeddings=text)
    assert _text_drift(none, m_prompts, b_prompts).conditioning_by_encoder == ()
