"""The probe rows' conservative flag (inference_level): the plug-in components against the
two-way ANOVA, the level against brute-force simulation of the crossed test, the critical
value against the shipped p, and the flag on planted truths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ldmprobe.analysis.inference_crossed import _fiducial, crossed_test
from ldmprobe.analysis.inference_level import (
    LEVEL_FLOOR, _critical, _interp, generalised_level, level_check, level_note, plug_in,
)

DFS_8X4 = (7, 3, 21)


def anova_lambdas(y):
    """(max(MS_T, MS_E), max(MS_S, MS_E), MS_E) of a complete table: the mean squares' expectations
    at the two-way ANOVA components with negative ones set to 0."""
    n_t, n_s = y.shape
    g, row, col = y.mean(), y.mean(1), y.mean(0)
    ms_t = n_s * np.sum((row - g) ** 2) / (n_t - 1)
    ms_s = n_t * np.sum((col - g) ** 2) / (n_s - 1)
    ms_e = np.sum((y - row[:, None] - col[None] + g) ** 2) / ((n_t - 1) * (n_s - 1))
    return max(ms_t, ms_e), max(ms_s, ms_e), ms_e


def null_table(rng, sd_t=0.0, sd_s=0.0, shape=(8, 4)):
    return (sd_t * rng.normal(size=(shape[0], 1)) + sd_s * rng.normal(size=(1, shape[1]))
            + rng.normal(size=shape))


def test_plug_in_is_the_anova_mean_squares_floored_at_the_residual():
    rng = np.random.default_rng(1)
    for sd_s in (0.0, 0.5, 3.0):
        y = null_table(rng, sd_s=sd_s)
        lam, dfs = plug_in(y)
        assert dfs == DFS_8X4
        np.testing.assert_allclose(lam, anova_lambdas(y), rtol=1e-10)


def test_critical_value_is_where_the_shipped_p_equals_alpha():
    """x*/√MS_E from the grid against a bisection on crossed_test's own p (4,096 fiducial draws)."""
    table = _critical(DFS_8X4, 0.05)
    for f_t, f_s in ((0.5, 1.3), (1.0, 1.0), (2.7, 0.4), (40.0, 3.0), (1.0, 900.0)):
        lo, hi = 0.0, 1.0
        while _fiducial(hi, (f_t, f_s, 1.0), DFS_8X4, 1, 0.95, False)[0] > 0.05:
            hi *= 2
        for _ in range(50):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _fiducial(mid, (f_t, f_s, 1.0), DFS_8X4, 1, 0.95, False)[0] > 0.05 else (lo, mid)
        got = float(np.exp(_interp(table, np.array([f_t]), np.array([f_s])))[0])
        assert got == pytest.approx(lo, rel=0.01), (f_t, f_s)


@pytest.mark.parametrize("lam, sd_t, sd_s", [((1.0, 1.0, 1.0), 0.0, 0.0),  # residual only
                                             ((1.0, 1.0 + 8 * 9.0, 1.0), 0.0, 3.0)])  # seed SD 3
def test_level_matches_brute_force_simulation_of_the_crossed_test(lam, sd_t, sd_s):
    """The level at a truth against the rejection rate of crossed_test on tables drawn from it."""
    rng = np.random.default_rng(29)
    n = 3000
    k = sum(crossed_test(null_table(rng, sd_t, sd_s), interval=False).p_value <= 0.05 for _ in range(n))
    rate, se = k / n, math.sqrt(0.05 * 0.95 / n)
    assert abs(generalised_level(lam, DFS_8X4) - rate) < 4 * se + 0.002


def test_level_at_the_limits():
    assert generalised_level((1.0, 1.0, 1.0), DFS_8X4) < LEVEL_FLOOR  # the documented 0.027
    assert abs(generalised_level((1.0, 1e7, 1.0), DFS_8X4) - 0.05) < 0.003  # one factor: the exact t
    assert generalised_level((1e7, 1e7, 1.0), DFS_8X4) < LEVEL_FLOOR  # both dominate: Behrens–Fisher
    assert math.isnan(generalised_level((1.0, 1.0, 0.0), DFS_8X4))
    assert math.isnan(generalised_level((0.5, 0.5, 1.0), DFS_8X4))  # no model has these


def test_the_flag_is_the_rule_at_the_row_components():
    rng = np.random.default_rng(3)
    for sd_s in (0.0, 1.0, 3.0):
        y = null_table(rng, sd_s=sd_s)
        check = level_check(y, crossed_test(y))
        level = generalised_level(anova_lambdas(y), DFS_8X4)
        assert check["level_05"] == pytest.approx(level, abs=1e-12)
        assert check["conservative"] == (level < LEVEL_FLOOR)
        assert check["level_note"] == (level_note(level) if level < LEVEL_FLOOR else None)


def test_the_flag_on_planted_truths():
    """Residual only at 8 × 4: the test is conservative (0.027) and nearly every table is
    flagged; seed SD 3: the test is at nominal and few tables are."""
    rng = np.random.default_rng(11)

    def share(sd_s, reps=150):
        return np.mean([level_check(y, crossed_test(y, interval=False))["conservative"]
                        for y in (null_table(rng, sd_s=sd_s) for _ in range(reps))])

    assert share(0.0) > 0.9
    assert share(3.0) < 0.15


def test_no_flag_where_the_p_is_not_the_crossed_generalised_p():
    rng = np.random.default_rng(5)
    one_seed = rng.normal(size=(8, 1))
    constant = np.full((8, 4), 0.3)
    for y in (one_seed, constant):
        assert level_check(y, crossed_test(y)) == {"level_05": None, "conservative": False, "level_note": None}


def test_missing_cells_use_the_tests_df_and_every_cell():
    rng = np.random.default_rng(7)
    y = null_table(rng)
    y[0, 0] = y[3, 2] = np.nan
    y[:, 3] = np.nan  # a seed with no usable cell is dropped, as crossed_test drops it
    lam, dfs = plug_in(y)
    assert dfs == (7, 2, 22 - 8 - 3 + 1)
    assert lam[2] >= 0 and lam[0] >= lam[2] and lam[1] >= lam[2]


def _flagged_document():
    from tests.test_tables_80 import sweep_document

    document = sweep_document()
    term = document["terms"][0]
    term["probes"] = [dict(q) for q in term["probes"]]
    term["probes"][1].update(conservative=True, level_05=0.0281, level_note=level_note(0.0281))
    return document, term


def test_the_terminal_table_marks_a_conservative_p_and_says_what_it_means():
    from ldmprobe.render.sweep import render_sweep
    from tests.support import render_text

    document, _ = _flagged_document()
    text = " ".join(render_text(render_sweep(document), width=120).split())
    assert "0.25°" in text and text.count("°") == 2  # the one row's p and the caption
    assert "p°: conservative here (true level about 0.03 at 0.05" in text
    assert "weak evidence of no shift" in text


def test_the_report_marks_a_conservative_p_and_prints_its_note():
    from markupsafe import escape

    from ldmprobe.render.html import macros
    from ldmprobe.render.report_parts import FORMATS

    document, term = _flagged_document()
    term["image_drift"].update(centroid=0.01, baseline_spread=0.1)
    term.update(templates=[], flagged=0, neighbours={})
    for q in term["probes"]:
        q.setdefault("text_shift", 0.1)
    html = str(macros("report_parts.html.j2", **FORMATS, probe_plot=lambda t: "", with_pairs=set(),
                      thumbnails={}).term_section(term))
    note = str(escape(level_note(0.0281)))  # autoescaped: row's -> row&#39;s
    assert html.count("°<") == 1 and f'title="{note}">0.25°<' in html
    assert f'<p class="note">p° (a small object): {note}.</p>' in html
