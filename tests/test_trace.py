"""trace: hybrid conditionings, cross-attention maps, step switches, VAE round trips (tiny models).

Planted truths: a hybrid that takes nothing from the term reproduces the baseline images; a
step switch at k = 0 / k = all steps reproduces the plain term / baseline images; attention
maps over all token positions sum to 1 at every pixel; identical VAE inputs give identical
outputs. Analysis functions are checked on planted arrays.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ldmprobe.analysis import trace as at

STEPS = 3
TEMPLATE = "a photo of the {} house"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def settings(tiny_generator):
    """The sweep's recipe the engine tests generate at (trace has no settings type of its own)."""
    from ldmprobe.engine.workitems import Recipe

    return Recipe(pipeline=tiny_generator.identity, scheduler={"class": "test"}, steps=STEPS, guidance=7.5,
                  width=64, height=64, dtype="float32")


def _plain_images(gen, prompts, seeds):
    """Images straight from prompt strings (the pipeline's own encoding), as uint8."""
    import torch

    with torch.inference_mode():
        out = gen.pipe(prompt=list(prompts), num_inference_steps=STEPS, guidance_scale=7.5, output_type="np",
                       generator=[torch.Generator("cpu").manual_seed(s) for s in seeds])
    return (np.clip(out.images, 0, 1) * 255).round().astype(np.uint8)


def _maxdiff(a, b) -> int:
    return int(np.abs(np.asarray(a, int) - np.asarray(b, int)).max())


# ----------------------------------------------------------------------------- conditioning


@pytest.mark.parametrize("template,term,baseline,start,n_mod,n_content", [
    (TEMPLATE, "fancy", "", 5, 1, 1),
    (TEMPLATE, "afro-american", "", 5, 3, 1),  # several tokens
    ("a house that is {}", "very fancy", "", 5, 2, 0),  # modifier last: no later content
    (TEMPLATE, "afro-american", "big", 5, 3, 1),  # baseline word, shorter than the term
    (TEMPLATE, "big", "afro-american", 5, 1, 1),  # baseline word, longer than the term
])
def test_spans_alignment_and_hybrids(tiny_generator, template, term, baseline, start, n_mod, n_content):
    from ldmprobe.engine import trace_condition as tc

    spans = tc.locate_modifier(tiny_generator.pipe.tokenizer, template, term, baseline)
    assert (spans.start, spans.n_modifier, len(spans.content)) == (start, n_mod, n_content)
    a = tc.alignment(spans)
    assert sorted(a) == list(range(77))
    assert (a[:start] == np.arange(start)).all()
    rng = np.random.default_rng(0)
    term_states, base_states = rng.normal(size=(77, 4)), rng.normal(size=(77, 4))
    none = tc.hybrid(term_states, base_states, spans, ())
    assert sorted(map(tuple, none)) == sorted(map(tuple, base_states))  # the baseline's states, reordered
    assert np.array_equal(tc.hybrid(term_states, base_states, spans, tc.PARTS)[start:], term_states[start:])
    mod = tc.hybrid(term_states, base_states, spans, ("modifier",))
    assert np.array_equal(mod[list(spans.modifier)], term_states[list(spans.modifier)])
    assert np.array_equal(mod[spans.eot:], none[spans.eot:])
    with pytest.raises(ValueError, match="unknown hybrid part"):
        tc.hybrid(term_states, base_states, spans, ("noun",))


@pytest.mark.slow
def test_hybrid_without_term_parts_reproduces_baseline(tiny_generator, settings):
    """Planted: the 'none' hybrid (baseline states, term layout) gives the baseline images."""
    from ldmprobe.engine import trace_condition as tc
    from ldmprobe.engine.trace_generate import CondJob, encode_prompts, generate_jobs

    cases = [(TEMPLATE, "afro-american"), ("a house that is {}", "very fancy")]
    jobs, base_prompts = [], []
    for template, term in cases:
        (hyb,) = tc.build_hybrids(tiny_generator, template, [term], "", ["none", "all"])
        base_prompts.append(tc.fill(template, ""))
        jobs += [CondJob(seed, hyb.states[v]) for v in ("none", "all") for seed in (0, 1)]
        assert np.allclose(hyb.states["all"].tokens, encode_prompts(tiny_generator, [tc.fill(template, term)])[0].tokens)
    made = generate_jobs(tiny_generator, jobs, settings, shape=4).pixels
    plain = _plain_images(tiny_generator, [p for p in base_prompts for _ in (0, 1)], [0, 1, 0, 1])
    for c in range(2):
        assert _maxdiff(made[4 * c : 4 * c + 2], plain[2 * c : 2 * c + 2]) <= 2
        assert _maxdiff(made[4 * c + 2 : 4 * c + 4], plain[2 * c : 2 * c + 2]) > 2  # the term does change them


# ----------------------------------------------------------------------------- steps


@pytest.mark.slow
def test_step_switch_endpoints_equal_plain_images(tiny_generator, settings):
    from ldmprobe.engine.trace_generate import CondJob, encode_prompts, generate_jobs

    prompts = [TEMPLATE.format(""), TEMPLATE.format("fancy")]
    base, term = encode_prompts(tiny_generator, [" ".join(p.split()) for p in prompts])
    jobs = [CondJob(3, base, term, 0), CondJob(3, base, term, STEPS), CondJob(3, term, base, 0),
            CondJob(3, term, base, STEPS), CondJob(3, base, term, 1), CondJob(3, term, base, 1)]
    made = generate_jobs(tiny_generator, jobs, settings, shape=6).pixels  # switch points mixed in one batch
    plain_base, plain_term = _plain_images(tiny_generator, [" ".join(p.split()) for p in prompts], [3, 3])
    assert _maxdiff(made[0], plain_term) <= 2 and _maxdiff(made[1], plain_base) <= 2
    assert _maxdiff(made[2], plain_base) <= 2 and _maxdiff(made[3], plain_term) <= 2
    assert _maxdiff(made[4], made[5]) > 0  # a mid switch depends on the direction


def test_switch_grid():
    from ldmprobe.usecases.trace import switch_grid

    assert switch_grid(20) == (5, 10, 15)
    assert switch_grid(4, [0, 2, 2, 4, 9]) == (2,)


# ----------------------------------------------------------------------------- attention


@pytest.mark.slow
def test_attention_maps_sum_restore_and_leave_images_alone(tiny_generator, settings):
    from ldmprobe.engine.trace_attention import AttentionRecorder, tracing, upsample
    from ldmprobe.engine.trace_generate import CondJob, encode_prompts, generate_jobs

    unet = tiny_generator.pipe.unet
    before = dict(unet.attn_processors)
    cond = encode_prompts(tiny_generator, ["a photo of the fancy house", ""])  # "" = the negative prompt
    jobs = [CondJob(seed, c) for c in cond for seed in (0, 1)]
    plain = generate_jobs(tiny_generator, jobs, settings, shape=3)
    recorders = {half: AttentionRecorder((32, 32), half=half) for half in ("cond", "uncond")}
    traced = {}
    for half, rec in recorders.items():
        with tracing(unet, rec):
            traced[half] = generate_jobs(tiny_generator, jobs, settings, shape=3, recorder=rec)
        assert np.array_equal(traced[half].pixels, plain.pixels)  # the layer output is the original processor's
    after = dict(unet.attn_processors)
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    maps = traced["cond"].maps  # the jobs' maps in job order; the padded call's filler row left out
    assert maps.shape == (4, 77, 32, 32) and (maps >= 0).all()
    assert np.allclose(maps.sum(1), 1.0, atol=1e-5)
    assert np.allclose(upsample(maps[:1], (64, 64)).sum(1), 1.0, atol=1e-5)
    assert not np.allclose(maps[0], maps[2])  # per-prompt maps, not a batch mix
    neg = traced["uncond"].maps
    assert np.allclose(neg.sum(1), 1.0, atol=1e-5)
    assert not np.allclose(neg[0], maps[0], atol=1e-4)  # the halves are not mixed ...
    assert np.allclose(neg[2], maps[2], atol=1e-5)  # ... and equal when the prompt is the negative prompt
    with pytest.raises(RuntimeError):
        with tracing(unet, AttentionRecorder((32, 32))):
            raise RuntimeError("interrupted")
    assert all(unet.attn_processors[k] is before[k] for k in before)


def test_attention_numbers_on_planted_maps():
    noun = np.zeros((2, 2, 4, 4))
    noun[..., :2, :] = 1.0  # the noun fills the top half
    mod = np.ones((2, 2, 4, 4))
    mod[..., :2, :] = 3.0  # the modifier puts 3/4 of its attention on the object
    shares = np.full((2, 2, 2), 0.5)
    out = at.attention_numbers("x", mod, noun, shares, ["a", "b"])
    assert out.region_area == pytest.approx(0.25)  # half of the noun's mass: 4 of its 8 pixels
    assert out.inside_share == pytest.approx(12 / 32)
    assert out.excess_test.estimate == pytest.approx(12 / 32 - 0.25)
    assert out.token_shares == {"a": 0.5, "b": 0.5}
    assert at.concentration(np.ones((4, 4))) == pytest.approx((1.0, 0.0))
    one_hot = np.zeros((4, 4))
    one_hot[1, 2] = 1
    entropy, gini = at.concentration(one_hot)
    assert entropy == 0.0 and gini == pytest.approx(15 / 16)
    assert at.noun_region(np.array([[4.0, 3.0], [2.0, 1.0]]), 0.5).tolist() == [[True, True], [False, False]]


# ----------------------------------------------------------------------------- analysis


def _planted(seed=0, t=3, s=4, d=8):
    rng = np.random.default_rng(seed)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    base = unit(rng.normal(size=(t, s, d)))
    shift_a, shift_b = np.zeros(d), np.zeros(d)
    shift_a[0], shift_b[1] = 0.3, 0.2
    return base, base + shift_a + shift_b, base + shift_a, base + shift_b


def test_variant_shares_on_planted_shifts():
    base, term, part_a, part_b = _planted()
    probes = np.eye(8)[:2]
    table = at.variant_effects("t", base, term, {"none": base.copy(), "a": part_a, "b": part_b, "all": term},
                               probes, ["p0", "p1"], n_boot=300, seed=1)
    assert table.variant("none").drift_share == pytest.approx(0.0, abs=1e-12)
    assert table.variant("all").drift_share == pytest.approx(1.0)
    a, b = table.variant("a"), table.variant("b")
    assert a.projection_share + b.projection_share == pytest.approx(1.0)  # additive shifts add up
    assert a.projection_share == pytest.approx(0.09 / 0.13)
    assert a.probe_share == pytest.approx((1.0, 0.0)) and b.probe_share == pytest.approx((0.0, 1.0))
    assert a.drift_share_ci[0] <= a.drift_share <= a.drift_share_ci[1]
    json.dumps(table.to_dict())
    with pytest.raises(ValueError, match="non-finite"):
        at.variant_effects("t", base, term, {"bad": np.full_like(base, np.nan)}, probes, ["p0", "p1"])


def test_psnr_against_independent_computation():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0, 0] = (int(a[0, 0, 0, 0]) + 10) % 256
    b[1] = 255 - a[1]
    values = at.psnr(a, b)
    for i in range(3):
        mse = sum((float(x) - float(y)) ** 2 for x, y in zip(a[i].ravel(), b[i].ravel())) / a[i].size
        expected = at.PSNR_CAP if mse == 0 else min(at.PSNR_CAP, 20 * np.log10(255) - 10 * np.log10(mse))
        assert values[i] == pytest.approx(expected)


# ----------------------------------------------------------------------------- autoencoder


@pytest.mark.slow
def test_vae_round_trip_is_deterministic_and_folder_groups(tiny_generator, tmp_path):
    from PIL import Image

    from ldmprobe.engine.trace_vae import load_folder, round_trip

    flat = np.zeros((2, 64, 64, 3), np.uint8)
    flat[:] = (200, 180, 40)
    first, second = round_trip(tiny_generator, flat), round_trip(tiny_generator, flat)
    assert first.shape == flat.shape and first.dtype == np.uint8
    assert np.array_equal(first, second) and np.array_equal(first[0], first[1])
    for group, colour in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        (tmp_path / group).mkdir()
        Image.new("RGB", (80, 40), colour).save(tmp_path / group / "x.png")
    folder = load_folder(tmp_path, (64, 64))
    assert folder.groups == ("a", "b") and folder.pixels.shape == (2, 64, 64, 3)
    groups = at.vae_groups(folder.groups, at.psnr(folder.pixels, round_trip(tiny_generator, folder.pixels)),
                           np.eye(2), np.eye(2), n_boot=50)
    assert [g.group for g in groups] == ["a", "b"] and groups[0].embedding_change == pytest.approx(0.0)


# ----------------------------------------------------------------------------- use case


def _tiny_models(generator, measurer):
    from ldmprobe.models.loader import ModelLoader

    return ModelLoader(generator.ref, measurer.ref, device="cpu", dtype="float32", generator=generator,
                       measurer=measurer)


@pytest.mark.slow
def test_run_trace_end_to_end_on_tiny(tiny_generator, tiny_measurer, fresh_cache):
    from ldmprobe.store.images import ImageStore
    from ldmprobe.records import to_json
    from ldmprobe.specs.sweep import Spec
    from ldmprobe.usecases.trace import TraceOptions, plan_trace, run_trace

    ticks = []
    spec = Spec(name="e2e", templates=(TEMPLATE, "a {} house in a street"), baseline="", terms=("afro-american",),
                seeds=(0, 1), probes=("a yellow background",), steps=STEPS, guidance=7.5, pipeline="tiny",
                measurer="tiny")
    options = TraceOptions(variants=("none", "modifier", "content", "eot_pad"), n_boot=200, noun="house",
                           device="cpu")
    loaded = _tiny_models(tiny_generator, tiny_measurer)
    result = run_trace(spec, options, models=loaded, on_progress=lambda *args: ticks.append(args))
    data = json.loads(to_json(result))
    assert data["kind"] == "trace" and "pictures" not in data and "tiny" in data["notes"][0]
    assert data["config"]["settings"]["steps"] == STEPS and data["config"]["settings"]["call_shape"] == 4
    # the plain images are the sweep's own: a sweep of the same spec finds every image it plans cached
    setup = plan_trace(spec, options)
    assert len(setup.items) == 8 and all(ImageStore().has(i.key) for i in setup.items)
    (cond,) = result.conditioning
    assert cond.variant("none").drift_share == pytest.approx(0.0, abs=0.02)
    (steps,) = result.steps
    assert [v.variant for v in steps.variants][:2] == ["baseline>term@0", "term>baseline@0"]
    assert steps.variant(f"baseline>term@{STEPS}").projection_share == pytest.approx(0.0)
    (attn,) = result.attention
    assert set(attn.token_shares) == {"start", "modifier", "noun", "other", "eot_pad"}
    assert sum(attn.token_shares.values()) == pytest.approx(1.0, abs=1e-5)
    assert result.pictures["attention_maps"].shape == (1, 2, 2, 5, 64, 64)
    # traced images sit at their sweep images' slots: they differ only by the conditioning's encoding
    (same,) = [n for n in result.notes if "traced images differ" in n]
    assert int(same.split("at most ")[1].split("/")[0]) <= 2
    assert [c.section for c in result.costs] == ["plain", "conditioning", "steps", "attention", "vae"]
    assert result.costs[1].images == 2 * 2 * 4 and result.costs[2].images == 2 * 2 * 2 * 2
    assert len(result.vae) == 1 and np.isfinite(result.vae[0].psnr)
    assert {t[0] for t in ticks} == {"plain", "conditioning", "steps", "attention"}
    assert all(c.generated == c.images for c in result.costs if c.section != "vae")
    assert np.isfinite(result.attention_overhead)
    assert result.costs[-1].section == "vae" and result.costs[-1].generated == 0  # round trips make no image
    again = run_trace(spec, options, models=loaded)  # warm: everything from the cache
    assert [c.generated for c in again.costs] == [0] * 5 and np.isnan(again.attention_overhead)
    assert "tiny" in again.notes[0]
    assert again.conditioning[0].to_dict() == cond.to_dict()
    assert np.array_equal(again.pictures["attention_maps"], result.pictures["attention_maps"])


def test_jobs_sit_at_their_slots_in_calls_of_one_shape():
    """The sweep's layout: each index at slot % shape of the first call with it free."""
    from ldmprobe.engine.generate import place

    assert place([5, 1, 5, 2, 4], 4) == [[4, 0, 3, None], [None, 1, None, None], [None, 2, None, None]]
    assert place(range(5), 2) == [[0, 1], [2, 3], [4, None]]


@pytest.mark.slow
def test_trace_modules_import_no_torch():
    code = ("import sys, ldmprobe.usecases.trace, ldmprobe.engine.trace_attention, "
            "ldmprobe.engine.trace_vae; print(sorted(m for m in ('torch', 'diffusers', 'open_clip') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_trace_plans_one_level_with_a_note_and_reads_no_attributes(tiny_generator, tiny_measurer):
    """A spec with guidance / steps lists is traced at its first level, said in a warning and a
    note; its [attributes] (which trace never embeds) are not checked, even when too long."""
    from ldmprobe.specs.attributes import AttributeGroup
    from ldmprobe.specs.sweep import Spec
    from ldmprobe.usecases.trace import TraceOptions, plan_trace

    long_text = " ".join(["big"] * 80)
    spec = Spec(name="levels", templates=(TEMPLATE,), baseline="", terms=("red",), seeds=(0,),
                probes=("a yellow background",), guidance=3.0, guidance_levels=(3.0, 5.0), pipeline="tiny",
                measurer="tiny", attributes=(AttributeGroup("colour", ("red", "blue"),
                                                            (f"{long_text} red", f"{long_text} blue")),))
    warned = []
    reporter = type("R", (), {"warn": lambda self, m: warned.append(m), "__getattr__": lambda self, n: lambda *a, **k: None})()
    setup = plan_trace(spec, TraceOptions(device="cpu"), reporter)
    assert setup.recipe.guidance == 3.0 and len(setup.levels) == 1
    (note,) = [n for n in setup.notes if "one level" in n]
    assert "guidance 3" in note and "[3.0, 5.0]" in note and note in warned


def test_a_spec_with_one_step_cannot_trace_the_steps_part(tiny_generator, tiny_measurer):
    """`--steps 1` is refused on the command line; a spec's `steps = 1` is refused the same way
    (it ran with an empty steps part), before any model loads; without the part it plans."""
    from ldmprobe.errors import BadInputError
    from ldmprobe.specs.sweep import Spec
    from ldmprobe.usecases.trace import TraceOptions, plan_trace

    spec = Spec(name="one-step", templates=(TEMPLATE,), baseline="", terms=("red",), seeds=(0,),
                probes=("a yellow background",), steps=1, pipeline="tiny", measurer="tiny")
    with pytest.raises(BadInputError, match="at least 2 denoising steps"):
        plan_trace(spec, TraceOptions(device="cpu"))
    assert plan_trace(spec, TraceOptions(device="cpu", sections=("conditioning",))).recipe.steps == 1
