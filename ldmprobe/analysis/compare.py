"""Two runs of one spec compared pair by pair: did run B's terms move the images more or less?

Pure numpy / scipy. Images are paired by (template, term, seed) across the runs, so each
cell (t, s) of a term has four images: term and baseline in run A and in run B, with
D^R_ts = e^R(t, m, s) − e^R(t, b, s) the pair's drift vector in run R.

- Probe shift: the per-cell difference d_ts = (D^B_ts − D^A_ts)·τ_p is the difference of
  the two runs' per-pair shifts; its template × seed table gets the crossed test (templates
  and seeds as random factors) and the paired sign-flip test ("these templates and seeds").
- Image drift: the unbiased drift of run R in template t is U^R_t = Σ_{i≠j} D_i·D_j / n(n−1).
  Its difference splits exactly into per-cell terms
      c_ts = (D^B_ts − D^A_ts)·mean_{j≠s}(D^A_tj + D^B_tj),   mean_s c_ts = U^B_t − U^A_t,
  so the same crossed test runs on the c table. Swapping run A's and run B's images of one
  cell flips the sign of that cell's c and leaves the others unchanged, so the sign-flip
  test on c is the exact permutation test of "the two generators are the same" on these
  templates and seeds. The bootstrap CI resamples templates, then pairs, with the same draws
  for both runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ldmprobe.analysis import stats
from ldmprobe.analysis.inference import crossed_test, design_check, sign_flip_test
from ldmprobe.analysis.inference_crossed import CrossedRow, crossed_fields, fixed_fields
from ldmprobe.analysis.inference_drift import boot_drift  # the sweep's templates-then-pairs bootstrap
from ldmprobe.analysis.sweep import StatisticsSettings, term_seed
from ldmprobe.records import Count, Record, nan_to_none, schema

Cell = tuple[int, str, int]  # (template index, term, seed)
FIXED_NOTE = "these templates and seeds only (run A's and run B's images swapped within cells)"


@dataclass(frozen=True)
class CompareEmbeddings:
    """Both runs' image embeddings by (template index, term, seed); None: not usable
    (failed, dropped). Probe embeddings are the measurer's, shared by both runs."""

    templates: tuple[str, ...]
    baseline: str
    terms: tuple[str, ...]
    seeds: tuple[int, ...]
    images_a: Mapping[Cell, np.ndarray | None]
    images_b: Mapping[Cell, np.ndarray | None]
    probes: tuple[str, ...] = ()
    probe_embeddings: np.ndarray | None = None


CompareSettings = StatisticsSettings  # the sweep's resampling settings, under the name the compare API uses


#: A verdict on one change from run A to run B.
Verdict = Literal["better", "worse", "no clear change", "untested"]

#: What the crossed-row fields mean in a comparison (compare.schema.json's words).
CHANGE_FIELDS = {
    "p_value": {"description": "Headline two-sided p of B − A = 0: crossed variance-components t-test on the"
                    " template × seed table of per-cell differences (templates and seeds as "
                    "random factors, Satterthwaite df)."},
    "p_adjusted": {"description": "Benjamini–Hochberg adjusted p_value (drift: across terms; probes: across "
                    "every (term, probe) test)."},
    "p_fixed": {"description": "Paired sign-flip p: run A's and run B's images swapped within cells (these "
                    "templates and seeds only)."},
    "generalises_to": {"minLength": 1}, "fixed_generalises_to": {"minLength": 1}}


@dataclass(frozen=True)
class DriftChange(CrossedRow):
    """B − A in a term's unbiased image drift; p and CI from the crossed test on the c table."""

    json_schema = {"description": "B − A in the term's unbiased image drift (squared distance of mean embeddings from the baseline's).",
                   "properties": CHANGE_FIELDS}

    drift_a: float | None
    drift_b: float | None
    difference: float | None = field(metadata=schema(
        "mean of the template x seed table's complete part (= drift_b - drift_a when complete)"))
    boot_ci_low: float | None = field(metadata=schema("Percentile bootstrap over templates then pairs, the same draws for both runs."))
    boot_ci_high: float | None
    n_boot: Count
    verdict: Verdict = field(metadata=schema("better: B drifts less"))


@dataclass(frozen=True)
class ProbeChange(CrossedRow):
    """B − A in a term's shift toward one probe word."""

    json_schema = {"description": "B − A in the term's mean shift in cosine toward one probe word.",
                   "properties": CHANGE_FIELDS}

    probe: str
    shift_a: float | None
    shift_b: float | None
    difference: float | None
    verdict: Verdict = field(metadata=schema("better: |shift_b| < |shift_a|"))


@dataclass(frozen=True)
class TermChange(Record):
    """B − A for one term: its drift's change, each probe's, and how many probes moved less
    (better) or more (worse) in B."""

    term: str
    n_pairs: Count = field(metadata=schema("cells whose four images are usable"))
    n_excluded: Count = field(metadata=schema(
        "cells left out: an image failed, was dropped, or is non-finite / zero-norm"))
    drift: DriftChange
    probes: tuple[ProbeChange, ...]
    n_better: Count = field(metadata=schema("probes that moved less in B (after Benjamini-Hochberg)"))
    n_worse: Count
    verdict: Verdict = field(metadata=schema("the drift's verdict"))


@dataclass(frozen=True)
class CompareAnalysis(Record):
    terms: tuple[TermChange, ...]
    alpha: float
    design: dict
    notes: tuple[str, ...]
    paired: bool = True  # images paired by (template, term, seed); False: other seeds, rates only
    rates: tuple = ()  # analysis.compare_rates.RateChange per (term, group, option)
    diversity: tuple = ()  # analysis.compare_rates.DiversityChange per term


# ----------------------------------------------------------------------------- tables


def drift_vectors(data: CompareEmbeddings, term: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(D^A, D^B) as (T, S, d) arrays of unit-embedding differences, NaN where a cell is not
    usable in both runs, and the number of such cells."""
    first = next(v for v in (*data.images_a.values(), *data.images_b.values()) if v is not None)
    shape = (len(data.templates), len(data.seeds), len(np.ravel(first)))
    out = [np.full(shape, np.nan), np.full(shape, np.nan)]
    excluded = 0
    for t in range(len(data.templates)):
        for j, s in enumerate(data.seeds):
            rows = [images.get(key) for images in (data.images_a, data.images_b)
                    for key in ((t, term, s), (t, data.baseline, s))]
            if any(r is None or _bad(r) for r in rows):
                excluded += 1
                continue
            unit = [np.ravel(r) / np.linalg.norm(r) for r in np.asarray(rows, dtype=np.float64)]
            out[0][t, j], out[1][t, j] = unit[0] - unit[1], unit[2] - unit[3]
    return out[0], out[1], excluded


def _bad(row) -> bool:
    row = np.asarray(row, dtype=np.float64)
    return not np.isfinite(row).all() or not np.linalg.norm(row) > 0


def drift_cell_table(da: np.ndarray, db: np.ndarray) -> np.ndarray:
    """c_ts = (D^B_ts − D^A_ts)·mean_{j≠s}(D^A_tj + D^B_tj) over the usable cells of each
    template; NaN for unusable cells and templates with fewer than 2 usable cells."""
    c = np.full(da.shape[:2], np.nan)
    for t in range(da.shape[0]):
        ok = np.flatnonzero(np.isfinite(da[t]).all(1) & np.isfinite(db[t]).all(1))
        n = len(ok)
        if n < 2:
            continue
        total = da[t, ok] + db[t, ok]
        others = (total.sum(0) - total) / (n - 1)
        c[t, ok] = np.einsum("ij,ij->i", db[t, ok] - da[t, ok], others)
    return c


def unbiased_by_template(d: np.ndarray) -> np.ndarray:
    """U_t = (‖Σ D‖² − Σ‖D‖²) / n(n−1) per template over its usable cells (NaN: fewer than 2)."""
    out = np.full(d.shape[0], np.nan)
    for t in range(d.shape[0]):
        rows = d[t][np.isfinite(d[t]).all(1)]
        n = len(rows)
        if n >= 2:
            total = rows.sum(0)
            out[t] = (total @ total - np.einsum("ij,ij->", rows, rows)) / (n * (n - 1))
    return out


def _grams(da: np.ndarray, db: np.ndarray) -> list[np.ndarray]:
    """Per template with >= 2 usable cells: G^B − G^A (the bootstrap is linear in the Gram matrix)."""
    out = []
    for t in range(da.shape[0]):
        ok = np.isfinite(da[t]).all(1) & np.isfinite(db[t]).all(1)
        if ok.sum() >= 2:
            out.append(db[t, ok] @ db[t, ok].T - da[t, ok] @ da[t, ok].T)
    return out


# ----------------------------------------------------------------------------- statistics


def _tests(y: np.ndarray, settings: CompareSettings, rng: np.random.Generator):
    """Crossed test and sign-flip test of a template × seed table (None, None: too few cells)."""
    if np.count_nonzero(np.isfinite(y)) < 2:
        return None, None
    return crossed_test(y), sign_flip_test(y[np.isfinite(y)], n_resamples=settings.permutations,
                                           seed=rng)


def drift_change(da: np.ndarray, db: np.ndarray, settings: CompareSettings = CompareSettings(), *,
                 seed: int = 0) -> DriftChange:
    """B − A in unbiased drift from (T, S, d) drift-vector arrays (NaN rows: unusable cells)."""
    rng = np.random.default_rng([seed, 11])
    u_a, u_b = unbiased_by_template(da), unbiased_by_template(db)
    both = np.isfinite(u_a) & np.isfinite(u_b)
    crossed, fixed = _tests(drift_cell_table(da, db), settings, rng)
    grams = _grams(da, db)
    low = high = None
    if grams:
        boot = boot_drift(grams, settings.bootstrap, np.random.default_rng([seed, 12]))
        low, high = (float(q) for q in np.quantile(boot, [0.025, 0.975]))
    return DriftChange(
        drift_a=nan_to_none(u_a[both].mean()) if both.any() else None,
        drift_b=nan_to_none(u_b[both].mean()) if both.any() else None,
        difference=nan_to_none(crossed.estimate) if crossed else None, **crossed_fields(crossed), boot_ci_low=low,
        boot_ci_high=high, n_boot=settings.bootstrap if grams else 0, **fixed_fields(fixed, FIXED_NOTE),
        verdict="untested")


def probe_change(da: np.ndarray, db: np.ndarray, probe: np.ndarray, name: str,
                 settings: CompareSettings = CompareSettings(), *, seed: int = 0, index: int = 0) -> ProbeChange:
    """B − A in the shift toward one (unit) probe embedding, from (T, S, d) drift vectors."""
    y_a, y_b = da @ probe, db @ probe
    crossed, fixed = _tests(y_b - y_a, settings, np.random.default_rng([seed, 13, index]))
    ok = np.isfinite(y_a) & np.isfinite(y_b)
    return ProbeChange(
        probe=name, shift_a=nan_to_none(y_a[ok].mean()) if ok.any() else None,
        shift_b=nan_to_none(y_b[ok].mean()) if ok.any() else None,
        difference=nan_to_none(crossed.estimate) if crossed else None, **crossed_fields(crossed),
        **fixed_fields(fixed, FIXED_NOTE), verdict="untested")


# ----------------------------------------------------------------------------- the comparison


def _verdict(p_adjusted, alpha: float, better: bool, difference=None) -> str:
    if p_adjusted is None:  # no test; identical images in both runs (B − A = 0 in every cell) are no change
        return "no clear change" if difference == 0 else "untested"
    if p_adjusted >= alpha:
        return "no clear change"
    return "better" if better else "worse"


def _term_change(data: CompareEmbeddings, settings: CompareSettings, term: str) -> TermChange:
    da, db, excluded = drift_vectors(data, term)
    seed = term_seed(settings.seed, term)
    drift = drift_change(da, db, settings, seed=seed)
    probes = ()
    if data.probe_embeddings is not None and len(data.probes):
        units = stats._unit(np.asarray(data.probe_embeddings, dtype=np.float64))
        probes = tuple(probe_change(da, db, units[i], name, settings, seed=seed, index=i)
                       for i, name in enumerate(data.probes))
    n_pairs = int(np.isfinite(da).all(2).sum())
    return TermChange(term=term, n_pairs=n_pairs, n_excluded=excluded, drift=drift, probes=probes,
                      n_better=0, n_worse=0, verdict="untested")


def _adjust(terms: list[TermChange], alpha: float) -> list[TermChange]:
    """Benjamini–Hochberg: the drift tests across terms, the (term, probe) tests across the run;
    then each verdict from its adjusted p."""
    import dataclasses

    def bh(values):
        p = [np.nan if v is None else v for v in values]
        return iter(stats.benjamini_hochberg(p)) if p else iter(())

    drift_adj = bh([t.drift.p_value for t in terms])
    probe_adj = bh([row.p_value for t in terms for row in t.probes])
    out = []
    for term in terms:
        adj = nan_to_none(next(drift_adj))
        d = term.drift
        drift = dataclasses.replace(d, p_adjusted=adj, verdict=_verdict(adj, alpha, (d.difference or 0) < 0,
                                                                      d.difference))
        rows = []
        for row in term.probes:
            p_adj = nan_to_none(next(probe_adj))
            less = row.shift_a is not None and abs(row.shift_b) < abs(row.shift_a)
            rows.append(dataclasses.replace(row, p_adjusted=p_adj, verdict=_verdict(p_adj, alpha, less, row.difference)))
        out.append(dataclasses.replace(
            term, drift=drift, probes=tuple(rows), verdict=drift.verdict,
            n_better=sum(r.verdict == "better" for r in rows), n_worse=sum(r.verdict == "worse" for r in rows)))
    return out


def compare_embeddings(data: CompareEmbeddings, settings: CompareSettings = CompareSettings()) -> CompareAnalysis:
    """Per term: B − A in image drift and in each probe shift, BH-adjusted, with verdicts."""
    if not any(v is not None for v in (*data.images_a.values(), *data.images_b.values())):
        raise ValueError("no usable image embedding in either run; nothing to compare")
    terms = _adjust([_term_change(data, settings, term) for term in data.terms], settings.alpha)
    check = design_check(settings.alpha, n_templates=len(data.templates), n_seeds=len(data.seeds),
                         n_resamples=settings.permutations)
    messages = tuple(m for m in check.messages if not m.startswith("no controls"))
    notes = ("p and 95% CI: templates and seeds as random factors (crossed test on the template × seed "
             "table of per-cell differences B − A); p fixed: these templates and seeds only; verdicts use "
             f"the Benjamini–Hochberg adjusted p at alpha {settings.alpha}.",)
    design = check.to_dict()
    design["min_p"].pop("controls", None)  # a comparison has no control terms
    design["messages"] = list(messages)
    return CompareAnalysis(terms=tuple(terms), alpha=settings.alpha, design=design, notes=notes)


def unpaired_analysis(settings: CompareSettings = CompareSettings()) -> CompareAnalysis:
    """Runs that do not pair image by image (other seeds): no drift or probe comparison."""
    note = ("the runs were made with different seeds, so their images do not pair by (template, term, seed): image "
            "drift and probe shifts are not compared; attribute rates and diversity are, unpaired.")
    return CompareAnalysis(terms=(), alpha=settings.alpha, design={}, notes=(note,), paired=False)
