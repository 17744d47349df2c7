"""Trends over guidance: how a term's (corrected) rate of each option changes per unit of guidance.

Pure functions of arrays. For one option, every image has a value: its label indicator, or
with a calibration the corrected value ``W[label, j]`` (a corrected rate is the mean of
these, linear in the labels, so the slope of the corrected rate is the mean of their slopes).
Per (template, seed) cell, the least-squares slope of that value over the guidance levels
(the same template and seed at each level: paired across levels, as terms are paired with the
baseline); the slope of the rate is then the crossed test on the template × seed table of
slopes (``crossed_test`` through ``rates.table_mean``: templates and seeds as random
factors, the standard of every other statistic). A corrected slope's interval adds the
calibration set's own uncertainty: the variance of the mean slope over the bootstrap
resamples of the calibration images, as the rates do. Benjamini–Hochberg across the options
of each group of a term, as the rates.

Unit: ``slope`` is a share of images per unit of guidance scale (0.02 = two more images in a
hundred for each step of 1 in guidance).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ldmprobe.analysis import stats
from ldmprobe.analysis.inference_crossed import crossed_test
from ldmprobe.analysis.rates import embedding_table, label_table, option_values, table_mean
from ldmprobe.records import Count, Probability, Record, schema


@dataclass(frozen=True)
class TrendRow(Record):
    """The slope of one term's rate of ``option`` over the guidance levels (at ``steps`` steps);
    the fields are described in ``json_schema`` (the published schema's words)."""

    json_schema = {
        "description": "The slope of one term's rate of one option over the guidance levels (at "
                        "'steps' steps). slope, ci_low, ci_high: share of images per unit of "
                        "guidance scale (0.02 = two more images in a hundred for each 1 of "
                        "guidance), from the least-squares slope over the levels of each "
                        "(template, seed) cell's label indicator (or corrected value, where "
                        "'corrected'), tested with templates and seeds as crossed random factors;"
                        " a corrected slope's interval adds the calibration set's own "
                        "uncertainty. p_value: slope 0; p_adjusted: Benjamini-Hochberg across the"
                        " options of the term's group. rates: the rate (share of images 0-1) at "
                        "each level of 'guidance'. term '' is the baseline.",
        "required": ("term", "group", "option", "slope", "ci_low", "ci_high", "p_value")}

    term: str
    group: str
    option: str
    slope: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: Probability
    p_adjusted: Probability = None
    corrected: bool = False
    steps: int | None = field(default=None, metadata=schema(minimum=1))
    guidance: tuple[float, ...] = field(default=(), metadata=schema(items={"type": "number", "minimum": 0}, minItems=2))
    rates: tuple[float | None, ...] = field(default=(), metadata=schema(
        items={"type": ["number", "null"], "minimum": 0, "maximum": 1}))
    n_cells: Count = 0
    method: str = ""
    generalises_to: str = ""


def cell_slopes(values, x) -> np.ndarray:
    """Least-squares slope over the levels (axis 0) of ``values`` (L, ...) against ``x`` (L,),
    per cell, from the levels where the cell has a finite value; NaN where fewer than two
    distinct levels remain."""
    v = np.asarray(values, np.float64)
    x = np.asarray(x, np.float64).reshape((-1,) + (1,) * (v.ndim - 1))
    ok = np.isfinite(v)
    n = np.maximum(ok.sum(axis=0), 1)
    xs = np.broadcast_to(x, v.shape)
    x_mean = np.where(ok, xs, 0.0).sum(axis=0) / n
    y_mean = np.where(ok, v, 0.0).sum(axis=0) / n
    dx = np.where(ok, xs - x_mean, 0.0)
    sxx = (dx * dx).sum(axis=0)
    sxy = (dx * np.where(ok, v - y_mean, 0.0)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), np.nan)


def _calibration_var(labels: Sequence[np.ndarray], x, boot) -> np.ndarray:
    """(k,) variance over calibration resamples of the mean slope of each option."""
    if boot is None or len(boot) < 2:
        return None
    means = [np.nanmean(cell_slopes(np.stack([option_values(lab, b) for lab in labels]), x), axis=(0, 1))
             for b in boot]
    return np.var(np.array(means), axis=0, ddof=1)


def _rate(table) -> float | None:
    table = np.asarray(table, np.float64)
    if not np.isfinite(table).any():
        return None
    return min(1.0, max(0.0, float(crossed_test(table).estimate)))


def option_trends(labels: Sequence[np.ndarray], guidance: Sequence[float], *, term: str, group: str,
                  options: tuple[str, ...], correction=None, steps: int | None = None,
                  level: float = 0.95) -> list[TrendRow]:
    """One term's trend rows of one group: ``labels`` = a (T, S) label table (-1: no image)
    per guidance level, the same templates and seeds at every level."""
    k = len(options)
    weights = correction.weights if correction is not None else np.eye(k)
    values = np.stack([option_values(lab, weights) for lab in labels])  # (L, T, S, k)
    slopes = cell_slopes(values, guidance)  # (T, S, k)
    extra = _calibration_var(labels, guidance, correction.boot if correction is not None else None)
    rows = []
    for j, option in enumerate(options):
        rates = tuple(_rate(values[i, ..., j]) for i in range(len(labels)))
        row = dict(term=term, group=group, option=option, corrected=correction is not None, steps=steps,
                   guidance=tuple(float(g) for g in guidance), rates=rates)
        if not np.isfinite(slopes[..., j]).any():
            rows.append(TrendRow(slope=None, ci_low=None, ci_high=None, p_value=None, **row))
            continue
        fit = table_mean(slopes[..., j], level=level, extra_var=0.0 if extra is None else float(extra[j]))
        rows.append(TrendRow(slope=fit.estimate, ci_low=fit.low, ci_high=fit.high, p_value=fit.p_value,
                             n_cells=fit.n, method=fit.method, generalises_to=fit.generalises_to, **row))
    return _adjust(rows)


def _adjust(rows: list[TrendRow]) -> list[TrendRow]:
    p = [np.nan if r.p_value is None else r.p_value for r in rows]
    if not np.isfinite(p).any():
        return rows
    return [dataclasses.replace(r, p_adjusted=None if not np.isfinite(a) else float(a))
            for r, a in zip(rows, stats.benjamini_hochberg(p))]


def sweep_trends(datas: Sequence, levels: Sequence[tuple[float, int]], *, alpha: float = 0.05) -> tuple[TrendRow, ...]:
    """Trend rows of every term (baseline, terms, controls), group and option over the guidance
    levels, one set per steps value that has two or more guidance levels. ``datas``: one
    :class:`~ldmprobe.analysis.sweep.SweepEmbeddings` per level of ``levels`` ((guidance,
    steps) pairs), the same spec at each. Empty without attribute groups."""
    attrs = getattr(datas[0], "attributes", None) if datas else None
    if attrs is None or not attrs.groups:
        return ()
    first = datas[0]
    names = tuple(dict.fromkeys((first.baseline, *first.terms, *first.controls)))
    out: list[TrendRow] = []
    for steps in dict.fromkeys(s for _, s in levels):
        index = [i for i, (_, s) in enumerate(levels) if s == steps]
        if len({levels[i][0] for i in index}) < 2:
            continue
        guidance = [levels[i][0] for i in index]
        for term in names:
            tables = [embedding_table(datas[i], term) for i in index]
            for (group, options), texts in zip(attrs.groups, attrs.option_embeddings):
                labels = [label_table(emb, texts, attrs.logit_scale)[0] for emb in tables]
                out += option_trends(labels, guidance, term=term, group=group, options=options, steps=steps,
                                     correction=attrs.corrections.get(group), level=1 - alpha)
    return tuple(out)
