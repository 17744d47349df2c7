"""trace's attention region: each picture's object segmented from its plain background, and the
noun's own excess there, which says whether the maps carry a spatial signal at all."""

from __future__ import annotations

import numpy as np
import pytest

from ldmprobe.analysis.trace import attention_numbers, object_region


def _picture(rng, background=(200, 180, 40), box=(8, 20, 10, 24), side=32, noise=3.0):
    img = np.empty((side, side, 3))
    img[:] = background
    top, bottom, left, right = box
    img[top:bottom, left:right] = (40, 60, 200)
    return np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8), box


def test_object_region_finds_the_planted_object():
    rng = np.random.default_rng(0)
    img, (top, bottom, left, right) = _picture(rng)
    mask = object_region(img)
    expect = np.zeros((32, 32), bool)
    expect[top:bottom, left:right] = True
    assert np.array_equal(mask, expect)


def test_object_region_refuses_pictures_without_a_plain_background():
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 255, 32)
    gradient = np.stack([np.add.outer(ramp, ramp) / 2] * 3, -1).astype(np.uint8)
    assert object_region(gradient) is None  # the border is not one colour
    assert object_region(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) is None  # noise
    assert object_region(np.full((32, 32, 3), 90, np.uint8)) is None  # no object
    with pytest.raises(ValueError):
        object_region(np.zeros((3, 3, 3), np.uint8))


def _maps(rng, regions, on_object: float, n_t=3, n_s=8):
    """Attention maps (T, S, 32, 32): noise plus ``on_object`` extra weight on each picture's object."""
    maps = 1.0 + 0.05 * rng.random((n_t, n_s, 32, 32))
    for t in range(n_t):
        for s in range(n_s):
            maps[t, s][regions[t][s]] += on_object
    return maps


def _regions(rng, n_t=3, n_s=8):
    out = []
    for _ in range(n_t):
        row = []
        for _ in range(n_s):
            top, left = rng.integers(0, 16, 2)
            mask = np.zeros((32, 32), bool)
            mask[top:top + 12, left:left + 10] = True
            row.append(mask)
        out.append(row)
    return out


def test_planted_noun_on_object_is_a_spatial_signal_and_modifier_off_object_is_negative():
    rng = np.random.default_rng(2)
    regions = _regions(rng)
    noun = _maps(rng, regions, on_object=1.0)
    modifier = 2.0 - _maps(rng, regions, on_object=0.8)  # the modifier looks at the background
    shares = np.ones((3, 8, 2)) / 2
    a = attention_numbers("w", modifier, noun, shares, ["modifier", "noun"], regions=regions)
    area = np.mean([[r.mean() for r in row] for row in regions])
    assert a.region == "object" and a.n_regions == 24
    assert a.region_area == pytest.approx(area)
    assert a.spatial_signal == "yes" and a.noun_excess_test.estimate > 0.05  # planted: about 0.09
    assert a.excess_test.estimate < 0 and a.excess_test.p_value < 0.05
    # direct computation of one image's inside share
    m = modifier[1, 3]
    assert a.inside_share == pytest.approx(np.mean([[modifier[t, s][regions[t][s]].sum() / modifier[t, s].sum()
                                                     for s in range(8)] for t in range(3)]))
    assert m.sum() > 0


def test_uniform_maps_carry_no_spatial_signal():
    rng = np.random.default_rng(3)
    regions = _regions(rng)
    flat = np.ones((3, 8, 32, 32))
    a = attention_numbers("w", flat, flat, np.ones((3, 8, 1)), ["noun"], regions=regions)
    assert a.spatial_signal == "no" and a.excess_test.estimate == pytest.approx(0.0, abs=1e-12)


def test_spatial_signal_false_positive_rate_near_alpha():
    """Under no effect (noise maps, unrelated regions) "yes" comes up at about alpha."""
    rng = np.random.default_rng(4)
    hits, runs = 0, 400
    for _ in range(runs):
        regions = _regions(rng, 3, 6)
        noun = 1.0 + rng.random((3, 6, 32, 32))
        a = attention_numbers("w", noun, noun, np.ones((3, 6, 1)), ["noun"], regions=regions)
        hits += a.spatial_signal == "yes"
    rate = hits / runs  # one-sided at 0.05: expect about 0.025, the MC sd at 400 runs is 0.008
    assert rate <= 0.06


def test_images_without_a_region_are_left_out():
    rng = np.random.default_rng(5)
    regions = _regions(rng)
    regions[0][0] = None
    noun = 1.0 + rng.random((3, 8, 32, 32))
    for t, row in enumerate(regions):
        for s, r in enumerate(row):
            if r is not None:
                noun[t, s][r] += 1.0
    a = attention_numbers("w", noun, noun, np.ones((3, 8, 1)), ["noun"], regions=regions)
    assert a.n_regions == 23 and np.isfinite(a.inside_share)


def test_noun_region_is_still_the_default(tiny_generator, tiny_measurer, fresh_cache):
    """Tiny pictures are noise: auto falls back to the noun's own region and says so; object is refused."""
    import dataclasses

    from ldmprobe.models.loader import ModelLoader
    from ldmprobe.specs.sweep import Spec
    from ldmprobe.usecases.trace import TraceOptions, run_trace

    spec = Spec(name="region", templates=("a photo of a {} house",), baseline="", terms=("fancy",), seeds=(0, 1),
                probes=("a yellow background",), steps=2, guidance=5.0)
    options = TraceOptions(sections=("attention",), n_boot=20, pipeline="tiny", measurer="tiny", device="cpu")
    models = ModelLoader(tiny_generator.ref, tiny_measurer.ref, device="cpu", dtype="float32",
                         generator=tiny_generator, measurer=tiny_measurer)
    result = run_trace(spec, options, models=models)
    assert result.attention[0].region == "noun"
    assert any("noun's own region" in note for note in result.notes)
    with pytest.raises(ValueError, match="plain background"):
        run_trace(spec, dataclasses.replace(options, region="object"), models=models)
