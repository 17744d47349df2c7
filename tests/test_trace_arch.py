"""trace on SDXL, SD 3 and Flux (tiny random-weight builds): hybrids over every encoder block and the
pooled vector, step switches of tokens and pooled vector, and joint-attention maps that leave the
images untouched."""

from __future__ import annotations

import numpy as np
import pytest

from ldmprobe.engine import trace_condition as tc
from ldmprobe.engine import trace_text as tt
from ldmprobe.engine.trace_attention import AttentionRecorder, tracing
from ldmprobe.engine.trace_generate import CondJob, _denoiser, encode_prompts, generate_jobs
from ldmprobe.engine.workitems import Recipe

pytestmark = pytest.mark.slow

NAMES = ("tiny-sdxl", "tiny-sd3", "tiny-flux")
TEMPLATE = "a photo of a {} house"
STEPS = 4


@pytest.fixture(scope="module")
def generators(cache_root):
    from ldmprobe.models import load as model_load
    from ldmprobe.models import sources as models

    return {name: model_load.load_generator(models.resolve_generator(name), device="cpu", dtype="float32")
            for name in NAMES}


@pytest.fixture(scope="module")
def settings():
    """The sweep's recipe the engine tests generate at."""
    return Recipe(pipeline={"id": "tiny"}, scheduler={"class": "test"}, steps=STEPS, guidance=5.0, width=64,
                  height=64, dtype="float32")


def _latents(loaded, settings, cond, seed: int = 0):
    """The final latents (float, before the VAE) of one image: a finer check than uint8 pixels."""
    import torch

    pipe = loaded.pipe
    kwargs = tt.pipe_kwargs(tt.family_of(loaded), [cond], tt.negative(loaded, ""), pipe.device, torch.float32)
    with torch.inference_mode():
        return pipe(num_inference_steps=settings.steps, guidance_scale=settings.guidance, height=64, width=64,
                    output_type="latent", generator=[torch.Generator("cpu").manual_seed(seed)], **kwargs).images


def _maxdiff(a, b) -> int:
    return int(np.abs(np.asarray(a, int) - np.asarray(b, int)).max())


@pytest.mark.parametrize("name", NAMES)
def test_layout_covers_the_pipelines_conditioning(generators, name):
    loaded = generators[name]
    text_layout = tt.layout(loaded)
    (cond,) = encode_prompts(loaded, [TEMPLATE.format("fancy")])
    assert cond.tokens.shape[0] == text_layout.rows and cond.pooled is not None
    assert [b.bidirectional for b in text_layout.blocks] == {"tiny-sdxl": [False], "tiny-sd3": [False, True],
                                                              "tiny-flux": [True]}[name]
    assert "pooled" in text_layout.parts and ("before" in text_layout.parts) == (name != "tiny-sdxl")


@pytest.mark.parametrize("name", NAMES)
def test_hybrids_none_gives_the_baseline_and_all_the_term(generators, settings, name):
    """Planted: the aligned 'none' hybrid holds the baseline's rows (reordered) and pooled vector, so it
    makes the baseline's images; 'all' is the term's conditioning exactly; single parts differ."""
    loaded = generators[name]
    base, term = encode_prompts(loaded, [tc.fill(TEMPLATE, ""), tc.fill(TEMPLATE, "fancy")])
    (hyb,) = tc.build_hybrids(loaded, TEMPLATE, ["fancy"], "", ["none", "all", "pooled", "modifier"])
    assert np.array_equal(hyb.states["all"].tokens, term.tokens)
    assert np.array_equal(hyb.states["all"].pooled, term.pooled)
    assert np.array_equal(hyb.states["none"].pooled, base.pooled)
    assert sorted(map(tuple, hyb.states["none"].tokens)) == sorted(map(tuple, base.tokens))
    assert np.array_equal(hyb.states["pooled"].pooled, term.pooled)
    assert not np.array_equal(hyb.states["modifier"].tokens, hyb.states["none"].tokens)
    none, plain, term_latents = (_latents(loaded, settings, c) for c in (hyb.states["none"], base, term))
    moved = float((term_latents - plain).abs().max())
    assert moved > 1e-3  # the term does change the result ...
    assert float((none - plain).abs().max()) < 1e-3 * moved  # ... and 'none' is the baseline up to float order


@pytest.mark.parametrize("name", NAMES)
def test_step_switch_endpoints_equal_plain_images(generators, settings, name):
    loaded = generators[name]
    base, term = encode_prompts(loaded, [tc.fill(TEMPLATE, ""), tc.fill(TEMPLATE, "fancy")])
    jobs = [CondJob(3, base, term, 0), CondJob(3, base, term, STEPS), CondJob(3, term, base, 0),
            CondJob(3, term, base, STEPS), CondJob(3, base, term, 2), CondJob(3, term, base, 2)]
    made = generate_jobs(loaded, jobs, settings, shape=6).pixels  # switch points mixed in one batch
    plain = generate_jobs(loaded, [CondJob(3, base), CondJob(3, term)] * 3, settings, shape=6).pixels
    assert _maxdiff(made[0], plain[1]) == 0 and _maxdiff(made[1], plain[0]) == 0
    assert _maxdiff(made[2], plain[0]) == 0 and _maxdiff(made[3], plain[1]) == 0
    assert _maxdiff(made[4], made[5]) > 0  # a mid switch depends on the direction


@pytest.mark.parametrize("name", NAMES)
def test_a_switch_moves_the_pooled_vector_too(generators, settings, name):
    """Two conditionings that differ only in the pooled vector: switching between them mid-way must
    change the image (the pooled vector is switched, not left at the start)."""
    loaded = generators[name]
    base, term = encode_prompts(loaded, [tc.fill(TEMPLATE, ""), tc.fill(TEMPLATE, "fancy")])
    only_pooled = tt.TextCond(base.tokens, term.pooled)
    jobs = [CondJob(5, base), CondJob(5, base, only_pooled, 1)]
    px = generate_jobs(loaded, jobs, settings, shape=2).pixels
    assert _maxdiff(px[0], px[1]) > 0


@pytest.mark.parametrize("name", NAMES)
def test_attention_tracing_leaves_images_alone_and_maps_sum_to_one(generators, settings, name):
    loaded = generators[name]
    denoiser = _denoiser(loaded.pipe)
    before = dict(denoiser.attn_processors)
    text_layout = tt.layout(loaded)
    conds = encode_prompts(loaded, [tc.fill(TEMPLATE, "fancy"), tc.fill(TEMPLATE, "old")])
    jobs = [CondJob(seed, c) for c in conds for seed in (0, 1)]
    plain = generate_jobs(loaded, jobs, settings, shape=2)
    recorder = AttentionRecorder((32, 32))
    with tracing(denoiser, recorder, family=text_layout.family, text_rows=text_layout.rows):
        traced = generate_jobs(loaded, jobs, settings, shape=2, recorder=recorder)
    assert np.array_equal(traced.pixels, plain.pixels)  # recording does not touch the layer's output
    after = dict(denoiser.attn_processors)
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    maps = traced.maps
    assert maps.shape == (4, text_layout.rows, 32, 32) and (maps >= 0).all()
    assert np.allclose(maps.sum(1), 1.0, atol=1e-4)
    assert not np.allclose(maps[0], maps[2])  # per-prompt maps, not a batch mix
    if text_layout.family != "sdxl":
        assert 0 < recorder.text_share < 1


def test_joint_attention_record_matches_a_direct_softmax():
    """record_joint against a brute-force computation: image queries' softmax over all keys, text
    columns renormalised, averaged over heads, for text placed first and last."""
    import torch

    rng = np.random.default_rng(0)
    n, heads, n_img, n_txt, dim = 2, 3, 16, 5, 8
    q = torch.from_numpy(rng.normal(size=(n, heads, n_img + n_txt, dim)).astype(np.float32))
    k = torch.from_numpy(rng.normal(size=(n, heads, n_img + n_txt, dim)).astype(np.float32))
    for text_first in (True, False):
        rec = AttentionRecorder((4, 4))
        rec.begin(n)
        rec.record_joint(q, k, None, n_txt, text_first)
        got = rec.end()
        expect = np.zeros((n, n_txt, n_img))
        for i in range(n):
            for h in range(heads):
                for p in range(n_img):
                    qi = (n_txt + p) if text_first else p
                    logits = (q[i, h, qi] @ k[i, h].T).numpy() / np.sqrt(dim)
                    probs = np.exp(logits - logits.max())
                    probs /= probs.sum()
                    text = probs[:n_txt] if text_first else probs[n_img:]
                    expect[i, :, p] += text / text.sum() / heads
        assert np.allclose(got.reshape(n, n_txt, n_img), expect, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_token_groups_cover_every_block(generators, name):
    from ldmprobe.specs.sweep import Spec
    from ldmprobe.usecases.trace import TraceOptions
    from ldmprobe.usecases.trace_parts import _token_groups  # the engine's token_groups on a run

    loaded = generators[name]

    class Run:
        layout = tt.layout(loaded)
        spec = Spec(name="t", templates=(TEMPLATE,), baseline="", terms=("fancy",))
        o = TraceOptions()

    groups = _token_groups(Run, TEMPLATE, "fancy")
    rows = [p for positions in groups.values() for p in positions]
    assert sorted(rows) == list(range(Run.layout.rows))  # a partition of the conditioning rows
    assert groups["modifier"] and groups["noun"]
    assert bool(groups["start"]) == (name != "tiny-flux")  # T5 has no start token


def test_default_guidance_is_the_generators_own(generators, tmp_path):
    """Unset guidance follows the pipeline's own default (Flux.1 dev 3.5, not SD's 7.5); a spec's wins."""
    import json

    from ldmprobe.models import configs
    from ldmprobe.specs.generation import DEFAULT_TINY_STEPS, GenerationSettings
    from ldmprobe.specs.sweep import Spec
    from ldmprobe.usecases.trace import TraceOptions, plan_trace

    got = {name: configs.default_guidance(generators[name].folder) for name in NAMES}
    assert got == {"tiny-sdxl": 5.0, "tiny-sd3": 7.0, "tiny-flux": 3.5}
    (tmp_path / "transformer").mkdir()
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({"guidance_embeds": False}))
    assert configs.default_guidance(tmp_path) == 0.0  # schnell takes no guidance
    assert GenerationSettings.resolve(steps=None, guidance=None, model_guidance=3.5).guidance == 3.5
    assert GenerationSettings.resolve(steps=None, guidance=None, spec_guidance=6.0, model_guidance=3.5).guidance == 6.0
    assert GenerationSettings.resolve(steps=None, guidance=2.0, spec_guidance=6.0, model_guidance=3.5).guidance == 2.0
    # trace resolves its settings in the sweep's plan: the option, else the spec, else the default, and
    # the spec's pipeline / measurer keys name the models unless an option does
    spec = Spec(name="t", templates=(TEMPLATE,), baseline="", terms=("fancy",), probes=("a yellow background",),
                pipeline="tiny-flux", measurer="tiny")

    def recipe(options=TraceOptions(), **keys):
        setup = plan_trace(Spec(**{**spec.to_dict(), **keys}) if keys else spec, options)
        return setup.generator_ref.spec, setup.recipe

    assert recipe() == (
        "tiny-flux", plan_trace(spec, TraceOptions(pipeline="tiny-flux", measurer="tiny")).recipe)
    assert recipe()[1].guidance == 3.5 and recipe()[1].steps == DEFAULT_TINY_STEPS
    assert recipe(TraceOptions(guidance=1.0))[1].guidance == 1.0
    assert recipe(guidance=6.0, steps=3)[1].guidance == 6.0 and recipe(steps=3)[1].steps == 3
    assert recipe(TraceOptions(guidance=2.0, steps=2), guidance=6.0, steps=3)[1].guidance == 2.0
    assert recipe(TraceOptions(pipeline="tiny-sdxl"))[0] == "tiny-sdxl"


def test_prompt_limits_follow_the_encoder_the_denoiser_reads(fresh_cache, tmp_path, generators):
    """With T5 (Flux), a prompt over CLIP's 77 tokens is planned with a note (T5 reads it whole); one
    over T5's 512 exits 2 before any model loads. SD 1.x still refuses at 77."""
    import json

    from click.testing import CliRunner

    from ldmprobe.cli.main import main

    def plan(name, words):
        spec = tmp_path / f"long-{name}-{words}.toml"
        template = " ".join(["a quiet street"] * words) + " with a {} house"
        spec.write_text(f'name = "long"\ntemplates = ["{template}"]\nbaseline = ""\nterms = ["red"]\nseeds = 1\n')
        return CliRunner().invoke(main, ["sweep", str(spec), "--pipeline", name, "--measurer", "tiny", "--dry-run",
                                         "--format", "json"])

    ok = plan("tiny-flux", 30)  # about 95 CLIP tokens
    assert ok.exit_code == 0, (ok.output, ok.exception)
    assert any("over CLIP's 77 tokens" in n and "T5 reads them whole" in n for n in json.loads(ok.stdout)["notes"])
    too_long = plan("tiny-flux", 200)  # over 512 T5 tokens
    assert too_long.exit_code == 2 and "512 tokens" in too_long.stderr
    sd1 = plan("tiny", 30)
    assert sd1.exit_code == 2 and "77 tokens" in sd1.stderr
