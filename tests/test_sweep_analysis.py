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


def planted(seeds: int = 8, *, failed=(), drop_nsfw=False, nsfw=()) -> SweepEmbeddings:
    """'red' moves every image toward the probe 'fire'; 'blue' changes nothing."""
    rng = np.random.default_rng(7)
    probe_emb = np.stack([_unit(rng.normal(size=DIM)) for _ in PROBES])
    fire = probe_emb[0]
    centres = {t: rng.normal(size=DIM) for t in range(len(TEMPLATES))}
    images = {}
    for t in range(len(TEMPLATES)):
        for s in range(seeds):
            base = _unit(centres[t] + rng.normal(size=DIM) * 0.3)
            for term, vector in (("", base), ("red", _unit(base + 0.5 * fire)),
                                 ("blue", _unit(base + rng.normal(size=DIM) * 1e-4))):
                cell = (t, term, s)
                images[cell] = ImageCell(None if cell in failed else vector.astype(np.float32),
                                         failed=cell in failed, nsfw=cell in nsfw)
    prompts = {(t, term): template.replace("{}", term).replace("  ", " ").strip()
               for t, template in enumerate(TEMPLATES) for term in ("", "red", "blue")}
    prompt_emb = {p: _unit(rng.normal(size=DIM)) for p in prompts.values()}
    return SweepEmbeddings(
        templates=TEMPLATES, baseline="", terms=("red", "blue"), seeds=tuple(range(seeds)), images=images,
        prompts=prompts, prompt_embeddings=prompt_emb, probes=PROBES, probe_embeddings=probe_emb,
        vocabulary=("flame", "water", "leaf", "stone"), vocabulary_embeddings=np.stack(
            [_unit(rng.normal(size=DIM)) for _ in range(4)]), drop_nsfw=drop_nsfw,
    )


SETTINGS = StatisticsSettings(permutations=199, bootstrap=199, seed=0)


def test_planted_effect_is_found_without_models():
    result = analyse_sweep(planted(), SETTINGS)
    assert isinstance(result, SweepAnalysis) and all(isinstance(t, TermResult) for t in result.terms)
    red, blue = result.term("red"), result.term("blue")
    assert result.terms[0].term == "red"  # ranked by drift
    assert red.image_drift.p_value == red.image_drift.min_p == 1 / 200
    assert red.image_drift.p_adjusted <= 0.01 and red.image_drift.centroid > 10 * blue.image_drift.centroid
    assert blue.image_drift.p_value > 0.05
    top = red.probes[0]
    assert top.probe == "fire" and top.ci_low > 0 and top.p_adjusted <= 0.05
    assert all(p.p_adjusted > 0.05 for p in blue.probes)
    assert red.n_pairs == 16 and [t.n_pairs for t in red.templates] == [8, 8]


def test_probe_rows_carry_min_p_exact_and_resamples():
    row = analyse_sweep(planted(), SETTINGS).term("red").probes[0]
    assert row.n_resamples == 199 and row.exact is False and row.min_p == pytest.approx(1 / 200)
    exact = analyse_sweep(planted(seeds=2), SETTINGS).term("red").probes[0]
    assert exact.exact is True and exact.n_resamples == 2 ** 4 and 0 < exact.min_p <= exact.p_value


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
    assert red.to_dict()["direction_neighbours"] == {"toward": [], "away": []}


def test_result_round_trips_through_json():
    result = analyse_sweep(planted(seeds=2), SETTINGS)
    again = SweepAnalysis.from_dict(json.loads(to_json(result)))
    assert to_json(again) == to_json(result)
    assert result.terms[0]["image_drift"]["centroid"] == result.terms[0].image_drift.centroid


def test_same_inputs_same_result():
    assert to_json(analyse_sweep(planted(), SETTINGS)) == to_json(analyse_sweep(planted(), SETTINGS))
