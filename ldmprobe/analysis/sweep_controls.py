"""A term judged against its controls like with like: on the cells both have (issue 29).

A control term is exchangeable with the term under "no more than an irrelevant modifier"
only when both statistics are computed on the same (template, seed) cells. When a term lost
images (failures, NSFW drops, excluded embeddings) that a control kept, or the other way
round, both are recomputed on the cells they share before they are compared; when the cells
are the same, the reported estimates are compared as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ldmprobe.analysis import stats
from ldmprobe.analysis.inference import control_comparison
from ldmprobe.analysis.inference_drift import drift_estimate
from ldmprobe.analysis.sweep_results import TermResult
from ldmprobe.analysis.sweep_terms import nan_to_none

Cells = dict  # (template index, seed position) -> (term unit row, baseline unit row)


def usable_cells(data, term: str, usable: Callable) -> Cells:
    """The term's usable (term, baseline) pairs by (template, seed position), unit rows."""
    out = {}
    for t in range(len(data.templates)):
        for j, s in enumerate(data.seeds):
            rm, rb = data.images[(t, term, s)], data.images[(t, data.baseline, s)]
            if usable(data, rm) and usable(data, rb):
                out[(t, j)] = (rm.embedding, rb.embedding)
    return out


def _arrays(cells: Cells, keys) -> tuple[np.ndarray, np.ndarray, list[int]]:
    m = stats._unit(np.stack([cells[k][0] for k in keys]))
    b = stats._unit(np.stack([cells[k][1] for k in keys]))
    return m, b, [t for t, _ in keys]


def _paired(term_cells: Cells, control_cells: Cells, term_full, control_full, stat):
    """(term value, control value) on the cells both have; the full values when equal."""
    if term_cells.keys() == control_cells.keys():
        return term_full, control_full
    common = sorted(term_cells.keys() & control_cells.keys())
    if not common:
        return np.nan, np.nan
    return stat(_arrays(term_cells, common)), stat(_arrays(control_cells, common))


def against_controls(data, term: TermResult, controls: list[TermResult], cells: dict[str, Cells]) -> TermResult:
    """The headline drift verdict against the controls' estimates (rank p, floor 1/(K+1));
    each probe shift's |value| ranked among the controls' shifts toward that probe; each
    comparison on the cells the term and that control share."""
    own = cells[term.term]
    drift = term.image_drift
    pairs = [_paired(own, cells[c.term], drift.estimate, c.image_drift.estimate,
                     lambda a: drift_estimate(*a))
             for c in controls if c.image_drift.estimate is not None]
    pairs = [(x, c) for x, c in pairs if x is not None and np.isfinite(x) and np.isfinite(c)]
    if drift.estimate is not None and pairs:
        cmp = control_comparison(drift.estimate, [c for _, c in pairs], alternative="greater",
                                 term_values=[x for x, _ in pairs])
        drift = dataclasses.replace(
            drift, p_value=cmp.p_value, versus="controls", p_controls=cmp.p_value,
            controls_ratio=nan_to_none(cmp.ratio), min_p=cmp.min_p, exact=True, n_resamples=cmp.n_controls,
            generalises_to=cmp.generalises_to)
    probes = (stats._unit(np.asarray(data.probe_embeddings, dtype=np.float64))
              if data.probe_embeddings is not None and len(data.probes) else None)
    rows = []
    for row in term.probes:
        p = probes[list(data.probes).index(row.probe)] if probes is not None else None
        values = []
        for c in controls:
            match = [r.shift for r in c.probes if r.probe == row.probe]
            if match and p is not None:
                values.append(_paired(own, cells[c.term], row.shift, match[0],
                                      lambda a, p=p: float(np.mean((a[0] - a[1]) @ p))))
        values = [(x, c) for x, c in values if np.isfinite(x) and np.isfinite(c)]
        if values and np.isfinite(row.shift):
            cmp = control_comparison(row.shift, [c for _, c in values], alternative="two-sided",
                                     term_values=[x for x, _ in values])
            row = dataclasses.replace(row, p_controls=cmp.p_value, controls_ratio=nan_to_none(cmp.ratio))
        rows.append(row)
    return dataclasses.replace(term, image_drift=drift, probes=tuple(rows))
