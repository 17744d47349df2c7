"""The analysis of a sweep as a pure function of arrays: no model, no cache, no file."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ldmprobe.analysis.sweep import ImageCell, StatisticsSettings, SweepEmbeddings, analyse_sweep
from ldmprobe.analysis.sweep_results import SweepAnalysis, TermResult
from ldmprobe.records import to_json

TEMPLATES = ("a photo of a {} car", "a {} house at night")
PROBES = ("fire", "ocean", "tree")
DIM = 32


def _unit(v):
    return v / np.linalg.norm(v)


def planted(seeds: int = 8, *, failed=(), drop_nsfw=False, nsfw=(), templates=TEMPLATES, controls=0,
            wordy=False, bad=()) -> SweepEmbeddings:
    """'red' moves every image toward the probe 'fire'; 'blue' changes nothing.

    With ``wordy``, every modifier (terms and ``controls`` alike) also shifts each template's
    images in its own random direction: what any change of wording does to a generator.
    ``bad``: cells whose embedding is NaN (non-finite) or zero."""
    rng = np.random.default_rng(7)
    probe_emb = np.stack([_unit(rng.normal(size=DIM)) for _ in PROBES])
    fire = probe_emb[0]
    control_names = tuple(f"c{i}" for i in range(controls))
    centres = {t: rng.normal(size=DIM) for t in range(len(templates))}
    wording = {(t, term): (rng.normal(size=DIM) * 0.3 / np.sqrt(DIM) if wordy else np.zeros(DIM))
               for t in range(len(templates)) for term in ("red", "blue", *control_names)}
    images = {}
    for t in range(len(templates)):
        for s in range(seeds):
            base = _unit(centres[t] + rng.normal(size=DIM) * 0.3)
            moved = {"": base, "red": _unit(base + 0.5 * fire + wording[(t, "red")]),
                     "blue": _unit(base + rng.normal(size=DIM) * 1e-4 + wording[(t, "blue")])}
            moved.update({c: _unit(base + wording[(t, c)]) for c in control_names})
            for term, vector in moved.items():
                cell = (t, term, s)
                vector = vector.astype(np.float32)
                if cell in bad:
                    vector = np.full(DIM, np.nan if bad[cell] == "nan" else 0.0, dtype=np.float32)
                images[cell] = ImageCell(None if cell in failed else vector,
                                         failed=cell in failed, nsfw=cell in nsfw)
    names = ("", "red", "blue", *control_names)
    prompts = {(t, term): template.replace("{}", term).replace("  ", " ").strip()
               for t, template in enumerate(templates) for term in names}
    prompt_emb = {p: _unit(rng.normal(size=DIM)) for p in prompts.values()}
    return SweepEmbeddings(
        templates=tuple(templates), baseline="", terms=("red", "blue"), seeds=tuple(range(seeds)), images=images,
        prompts=prompts, prompt_embeddings=prompt_emb, probes=PROBES, probe_embeddings=probe_emb,
        vocabulary=("flame", "water", "leaf", "stone"), vocabulary_embeddings=np.stack(
            [_unit(rng.normal(size=DIM)) for _ in range(4)]), drop_nsfw=drop_nsfw, controls=control_names,
    )


EIGHT = tuple(f"picture {i} of a {{}} thing" for i in range(8))


SETTINGS = StatisticsSettings(permutations=199, bootstrap=199, seed=0)


def test_planted_effect_is_found_without_models():
    result = analyse_sweep(planted(), SETTINGS)
    assert isinstance(result, SweepAnalysis) and all(isinstance(t, TermResult) for t in result.terms)
    red, blue = result.term("red"), result.term("blue")
    assert result.terms[0].term == "red"  # ranked by drift
    drift = red.image_drift
    # no controls: the verdict is against the pairs (2 templates x 8 seeds: 2**14 exact patterns)
    assert drift.versus == "pairs" and drift.p_controls is None and drift.exact is True
    assert drift.p_value == drift.min_p == 2.0 ** -14
    assert drift.p_adjusted <= 0.01 and drift.estimate > 10 * abs(blue.image_drift.estimate)
    assert drift.ci_low > 0 and drift.ci_low <= drift.estimate <= drift.ci_high
    assert drift.centroid > 10 * blue.image_drift.centroid
    assert blue.image_drift.p_value > 0.05 and blue.image_drift.ci_low <= 0 <= blue.image_drift.ci_high
    top = red.probes[0]
    # two templates: the fixed p finds it, but nothing generalises over templates from two
    assert top.probe == "fire" and top.p_fixed == top.min_p and top.ci_low <= top.shift <= top.ci_high
    assert any("only 2 templates" in m for m in result.summary.design["messages"])
    assert top.generalises_to == "templates and seeds" and "only" in top.fixed_generalises_to
    assert all(p.p_fixed > 0.05 or p.p_adjusted > 0.05 for p in blue.probes)
    assert red.n_pairs == 16 and [t.n_pairs for t in red.templates] == [8, 8]
    assert any("wording changed the images" in note for note in result.summary.notes)


@pytest.mark.slow
def test_controls_separate_a_real_effect_from_any_change_of_wording():
    """Every modifier shifts each template's images somewhere: against its pairs each drift is
    'significant'; against 19 controls only the term that moves toward 'fire' stands out."""
    result = analyse_sweep(planted(seeds=4, templates=EIGHT, controls=19, wordy=True), SETTINGS)
    red, blue = result.term("red"), result.term("blue")
    assert [c.term for c in result.controls] == [f"c{i}" for i in range(19)]
    assert blue.image_drift.p_pairs <= 0.01  # the wording changed the images ...
    assert blue.image_drift.versus == "controls" and blue.image_drift.p_value > 0.05  # ... nothing more
    drift = red.image_drift
    assert drift.versus == "controls" and drift.p_value == drift.p_controls == drift.min_p == 1 / 20
    assert drift.n_resamples == 19 and drift.controls_ratio > 1
    assert drift.generalises_to == "modifiers like these controls"
    fire = red.probes[0]
    assert fire.probe == "fire" and fire.p_value < 0.001 and fire.p_adjusted < 0.01 and fire.ci_low > 0
    assert fire.method.startswith("crossed") and fire.df > 1 and fire.p_controls == 1 / 20
    assert fire.image_z > 1 and fire.text_z is not None
    assert result.summary.notes == () and result.summary.design["reachable"] is True
    assert result.summary.controls == tuple(f"c{i}" for i in range(19))


def test_headline_probe_p_is_crossed_and_p_fixed_is_the_sign_flip():
    from ldmprobe.analysis.inference import crossed_test, sign_flip_test

    data = planted(seeds=4, templates=EIGHT)
    red = analyse_sweep(data, SETTINGS).term("red")
    probes = np.stack([_unit(v) for v in data.probe_embeddings])
    y = np.array([[(_unit(data.images[(t, "red", s)].embedding.astype(np.float64))
                    - _unit(data.images[(t, "", s)].embedding.astype(np.float64))) @ probes[1]
                   for s in range(4)] for t in range(8)])
    row = next(r for r in red.probes if r.probe == "ocean")
    want = crossed_test(y)
    assert row.shift == pytest.approx(want.estimate) and row.p_value == pytest.approx(want.p_value)
    assert (row.ci_low, row.ci_high) == pytest.approx((want.ci_low, want.ci_high))
    fixed = sign_flip_test(y.ravel(), n_resamples=199, seed=0)
    assert row.n_resamples == 199 and row.exact is False and row.min_p == pytest.approx(1 / 200)
    assert abs(row.p_fixed - fixed.p_value) < 0.15  # same test, another random stream


def test_nonfinite_and_zero_embeddings_are_excluded_and_counted():
    bad = {(0, "red", 0): "nan", (1, "red", 3): "zero", (0, "", 2): "nan"}
    result = analyse_sweep(planted(seeds=4, bad=bad), SETTINGS)
    red = result.term("red")
    assert red.excluded == 2 and red.n_pairs == 8 - 3
    assert result.summary.excluded == {"": 1, "red": 2, "blue": 0}
    assert np.isfinite(red.image_drift.estimate) and np.isfinite(red.image_drift.p_value)
    everything = {cell: "nan" for cell in planted(seeds=2).images}
    with pytest.raises(ValueError, match="non-finite or zero-norm"):
        analyse_sweep(planted(seeds=2, bad=everything), SETTINGS)


def test_neighbours_are_listed_only_beyond_the_null_threshold():
    red = analyse_sweep(planted(), SETTINGS).term("red")
    near = red.direction_neighbours
    assert near.threshold is not None and 0 < near.threshold < 1 and near.alpha == 0.05
    assert all(score > near.threshold for _, score in near.toward)
    assert all(score < -near.threshold for _, score in near.away)


def test_rank_correlation_is_exact_for_few_terms():
    result = analyse_sweep(planted(seeds=4, templates=EIGHT, controls=2), SETTINGS)
    assert result.summary.text_image_rank_correlation is None  # 2 terms: no correlation
    data = dataclasses.replace(planted(seeds=2, controls=2), terms=("red", "blue", "c0", "c1"), controls=())
    corr = analyse_sweep(data, SETTINGS).summary.text_image_rank_correlation
    assert corr.exact is True and corr.n_resamples == 24 and corr.min_p == pytest.approx(2 / 24)


def test_probe_rows_carry_min_p_exact_and_resamples():
    """min_p / exact / n_resamples describe p_fixed; enumeration is chosen by the number of
    distinct sign patterns (2**(pairs - 1)), so 2 x 8 pairs are enumerated exactly."""
    row = analyse_sweep(planted(seeds=16), SETTINGS).term("red").probes[0]
    assert row.n_resamples == 199 and row.exact is False and row.min_p == pytest.approx(1 / 200)
    exact = analyse_sweep(planted(seeds=2), SETTINGS).term("red").probes[0]
    assert exact.exact is True and exact.n_resamples == 2 ** 3 and 0 < exact.min_p <= exact.p_fixed


def test_adjustment_leaves_the_unadjusted_results_alone():
    """Benjamini–Hochberg makes new results; it changes no p-value it was given."""
    from ldmprobe.analysis import sweep as analysis

    data, seen = planted(), []
    real = analysis._adjust

    def spy(terms):
        before = [dataclasses.replace(t) for t in terms]
        out = real(terms)
        seen.append((before, terms))
        return out

    analysis._adjust = spy
    try:
        analyse_sweep(data, SETTINGS)
    finally:
        analysis._adjust = real
    (before, after), = seen
    assert before == after and all(t.image_drift.p_adjusted is None for t in after)


def test_failed_and_dropped_images_are_excluded_and_counted():
    data = planted(seeds=4, failed={(0, "red", 1)}, nsfw={(1, "red", 2)}, drop_nsfw=True)
    red = analyse_sweep(data, SETTINGS).term("red")
    assert (red.failed, red.flagged, red.dropped, red.n_pairs) == (1, 1, 1, 6)


def test_no_pairs_gives_nulls_not_errors():
    data = planted(seeds=2, failed={(t, "red", s) for t in range(2) for s in range(2)})
    red = analyse_sweep(data, SETTINGS).term("red")
    assert red.n_pairs == 0 and red.image_drift.p_value is None and red.probes == ()
    assert red.to_dict()["direction_neighbours"]["toward"] == []
    assert red.to_dict()["direction_neighbours"]["threshold"] is None


def test_result_round_trips_through_json():
    result = analyse_sweep(planted(seeds=2), SETTINGS)
    again = SweepAnalysis.from_dict(json.loads(to_json(result)))
    assert to_json(again) == to_json(result)
    assert result.terms[0]["image_drift"]["centroid"] == result.terms[0].image_drift.centroid


def test_same_inputs_same_result():
    assert to_json(analyse_sweep(planted(), SETTINGS)) == to_json(analyse_sweep(planted(), SETTINGS))


def _scaled(data: SweepEmbeddings, scale: float) -> SweepEmbeddings:
    images = {cell: dataclasses.replace(c, embedding=None if c.embedding is None
                                        else c.embedding.astype(np.float64) * scale)
              for cell, c in data.images.items()}
    return dataclasses.replace(data, images=images)


@pytest.mark.parametrize("scale", [1e155, 1e-170])
def test_extreme_but_finite_scales_give_the_unit_rows_result(scale):
    """Rows scaled by 1e155 (squares overflow) or 1e-170 (squares underflow) are the same
    directions: every statistic equals the one on unit rows, nothing is excluded."""
    data = planted(seeds=4)
    want = analyse_sweep(data, SETTINGS).term("red")
    got = analyse_sweep(_scaled(data, scale), SETTINGS).term("red")
    assert got.excluded == 0 and got.n_pairs == want.n_pairs
    assert got.image_drift.estimate == pytest.approx(want.image_drift.estimate, rel=1e-9)
    for a, b in zip(got.probes, want.probes):
        assert (a.probe, a.n_cells) == (b.probe, b.n_cells)
        assert (a.shift, a.p_value, a.p_fixed) == pytest.approx((b.shift, b.p_value, b.p_fixed), rel=1e-6)


def test_zero_probe_embedding_is_refused_with_exit_code_2():
    from ldmprobe.errors import BadInputError, ExitCode

    data = planted(seeds=2)
    probes = np.array(data.probe_embeddings, dtype=np.float64)
    probes[1] = 0.0
    with pytest.raises(BadInputError, match="'ocean'") as err:
        analyse_sweep(dataclasses.replace(data, probe_embeddings=probes), SETTINGS)
    assert err.value.exit_code == ExitCode.BAD_INPUT


def test_rounding_level_differences_are_not_tested_as_data():
    """'same' differs from the baseline by ~1e-17 per coordinate: no crossed p, p_fixed 1."""
    data = planted(seeds=4, templates=EIGHT)
    rng = np.random.default_rng(5)
    images = dict(data.images)
    for (t, term, s), cell in data.images.items():
        if term == "":
            e = cell.embedding.astype(np.float64)
            images[(t, "same", s)] = ImageCell(e + rng.normal(size=e.shape) * 1e-17)
    prompts = dict(data.prompts)
    prompts.update({(t, "same"): f"same {t}" for t in range(len(EIGHT))})
    embeddings = dict(data.prompt_embeddings)
    embeddings.update({f"same {t}": _unit(rng.normal(size=DIM)) for t in range(len(EIGHT))})
    data = dataclasses.replace(data, terms=("same",), images=images, prompts=prompts,
                               prompt_embeddings=embeddings)
    same = analyse_sweep(data, SETTINGS).term("same")
    assert all(row.p_value is None or not np.isfinite(row.p_value) for row in same.probes)
    assert all(row.p_fixed == 1.0 and row.n_cells == 32 for row in same.probes)


def test_every_usable_cell_is_used_and_counted():
    failed = {(0, "red", 1), (3, "red", 2), (5, "", 0)}
    result = analyse_sweep(planted(seeds=4, templates=EIGHT, failed=failed), SETTINGS)
    assert all(row.n_cells == 32 - 3 for row in result.term("red").probes)
    assert all(row.n_cells == 32 - 1 for row in result.term("blue").probes)


def test_rank_correlation_says_when_it_cannot_reject():
    """Four terms: the exact two-sided p is at least 2/4! = 1/12 > 0.05, and the result says so."""
    data = dataclasses.replace(planted(seeds=4, controls=2, wordy=True), terms=("red", "blue", "c0", "c1"),
                               controls=())
    corr = analyse_sweep(data, SETTINGS).summary.text_image_rank_correlation
    assert corr.n_terms == 4 and corr.min_p == pytest.approx(1 / 12)
    assert "cannot be significant" in corr.note
    assert json.loads(to_json(corr))["note"] == corr.note


def test_design_check_states_the_bh_requirement_for_drift():
    from ldmprobe.analysis.inference import design_check

    check = design_check(0.05, n_templates=8, n_seeds=4, n_controls=19, n_terms=5)
    assert check.min_p["controls_bh"] == pytest.approx(5 / 20)
    assert any(">= 99 controls" in m and "p_controls" in m for m in check.messages)
    assert "controls_bh" not in design_check(0.05, n_templates=8, n_seeds=4, n_controls=19).min_p
    assert not any("BH" in m for m in design_check(0.05, n_templates=8, n_seeds=4, n_controls=99,
                                                   n_terms=5).messages)


def _u_by_double_loop(m, b, groups):
    """Unbiased drift: mean over templates of Σ_{i≠j} D_i·D_j / (n(n−1)), pair by pair."""
    per = []
    for g in sorted(set(groups)):
        d = [m[i] - b[i] for i in range(len(m)) if groups[i] == g]
        if len(d) >= 2:
            per.append(np.mean([d[i] @ d[j] for i in range(len(d)) for j in range(len(d)) if i != j]))
    return float(np.mean(per))


@pytest.mark.slow
def test_controls_are_compared_on_the_cells_the_term_has():
    """'blue' lost seeds 2 and 3 everywhere; its 19 controls kept them. Its drift and probe
    shifts are ranked among the controls' values on seeds 0 and 1 only."""
    failed = {(t, "blue", s) for t in range(len(EIGHT)) for s in (2, 3)}
    data = planted(seeds=4, templates=EIGHT, controls=19, wordy=True, failed=failed)
    blue = analyse_sweep(data, SETTINGS).term("blue")
    assert blue.n_pairs == 16 and all(row.n_cells == 16 for row in blue.probes)

    def pairs(term, seeds):
        keys = [(t, s) for t in range(len(EIGHT)) for s in seeds]
        m = np.stack([_unit(data.images[(t, term, s)].embedding.astype(np.float64)) for t, s in keys])
        b = np.stack([_unit(data.images[(t, "", s)].embedding.astype(np.float64)) for t, s in keys])
        return m, b, [t for t, _ in keys]

    x = _u_by_double_loop(*pairs("blue", (0, 1)))
    controls = [_u_by_double_loop(*pairs(f"c{i}", (0, 1))) for i in range(19)]
    assert blue.image_drift.estimate == pytest.approx(x, rel=1e-9)
    want = (1 + sum(c >= x for c in controls)) / 20
    assert blue.image_drift.p_controls == pytest.approx(want)
    probes = np.stack([_unit(v) for v in data.probe_embeddings])
    for row in blue.probes:
        p = probes[list(PROBES).index(row.probe)]
        shift = lambda term: float(np.mean((pairs(term, (0, 1))[0] - pairs(term, (0, 1))[1]) @ p))
        cs = [abs(shift(f"c{i}")) for i in range(19)]
        assert row.shift == pytest.approx(shift("blue"), rel=1e-9)
        assert row.p_controls == pytest.approx((1 + sum(c >= abs(row.shift) for c in cs)) / 20)
