"""A term judged against its controls like with like: on the cells both have (issue 29).

A control term is exchangeable with the term under "no more than an irrelevant modifier"
only when both statistics are computed on the same (template, seed) cells. When a term lost
images (failures, NSFW drops, excluded embeddings) that a control kept, or the other way
round, both are recomputed on the cells they share before they are compared; when the cells
are the same, the reported estimates are compared as they are.
"""

from __future__ import annotations

import dataclasses
import numpy as np

from ldmprobe.analysis import stats
from ldmprobe.analysis.inference import control_comparison
from ldmprobe.analysis.inference_drift import drift_estimate
from ldmprobe.analysis.sweep_results import TermResult
from ldmprobe.records import nan_to_none
from ldmprobe.analysis.sweep_terms import TermCells


def _arrays(own: TermCells, base: TermCells, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Unit (term, baseline) rows of the cells in ``mask``, in template-then-seed order, and their templates."""
    return stats._unit(own.raw[mask]), stats._unit(base.raw[mask]), np.nonzero(mask)[0].tolist()


def _paired(term_cells: TermCells, control_cells: TermCells, base: TermCells, term_full, control_full, stat):
    """(term value, control value) on the cells both have; the full values when equal."""
    own, other = term_cells.usable & base.usable, control_cells.usable & base.usable
    if np.array_equal(own, other):
        return term_full, control_full
    common = own & other
    if not common.any():
        return np.nan, np.nan
    return stat(_arrays(term_cells, base, common)), stat(_arrays(control_cells, base, common))


def against_controls(data, term: TermResult, controls: list[TermResult], cells: dict[str, TermCells]) -> TermResult:
    """The headline drift verdict against the controls' estimates (rank p, floor 1/(K+1));
    each probe shift's |value| ranked among the controls' shifts toward that probe; each
    comparison on the cells the term and that control share (``cells``: every modifier's
    :class:`~ldmprobe.analysis.sweep_terms.TermCells`, the baseline's included)."""
    own, base = cells[term.term], cells[data.baseline]
    drift = term.image_drift
    pairs = [_paired(own, cells[c.term], base, drift.estimate, c.image_drift.estimate,
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
                values.append(_paired(own, cells[c.term], base, row.shift, match[0],
                                      lambda a, p=p: float(np.mean((a[0] - a[1]) @ p))))
        values = [(x, c) for x, c in values if np.isfinite(x) and np.isfinite(c)]
        if values and np.isfinite(row.shift):
            cmp = control_comparison(row.shift, [c for _, c in values], alternative="two-sided",
                                     term_values=[x for x, _ in values])
            row = dataclasses.replace(row, p_controls=cmp.p_value, controls_ratio=nan_to_none(cmp.ratio))
        rows.append(row)
    return dataclasses.replace(term, image_drift=drift, probes=tuple(rows))
