"""The analysis of a sweep: a pure function of embeddings (see DESIGN.md, Statistics).

Arrays in, a typed :class:`~ldmprobe.analysis.sweep_results.SweepAnalysis` out: no model, no
cache, no file. The sweep use case gathers the arrays; a notebook or a test can hand in its
own (planted, or the user's own embeddings).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ldmprobe.analysis import stats
from ldmprobe.analysis.sweep_results import (
    ImageDrift, ProbeRow, RankCorrelation, SweepAnalysis, SweepSummary, TemplateImageDrift, TemplateResult,
    TermResult, TextDrift,
)
from ldmprobe.digest import canonical_json, sha256_hex

#: How many words toward and away from a term's drift direction are listed.
DIRECTION_K = 10

Cell = tuple[int, str, int]  # (template index, term, seed)


@dataclass(frozen=True)
class ImageCell:
    """One planned image: its unit embedding (None when it failed) and its flags."""

    embedding: np.ndarray | None
    failed: bool = False
    nsfw: bool = False


@dataclass(frozen=True)
class SweepEmbeddings:
    """Everything the analysis needs: image embeddings labelled by (template, term, seed),
    the prompts' text embeddings (and the generator's conditioning, where there is one),
    and the probe and vocabulary embeddings."""

    templates: tuple[str, ...]
    baseline: str
    terms: tuple[str, ...]
    seeds: tuple[int, ...]
    images: Mapping[Cell, ImageCell]
    prompts: Mapping[tuple[int, str], str]  # (template index, term) -> prompt text
    prompt_embeddings: Mapping[str, np.ndarray]
    probes: tuple[str, ...] = ()
    probe_embeddings: np.ndarray | None = None
    vocabulary: tuple[str, ...] = ()
    vocabulary_embeddings: np.ndarray | None = None
    conditioning: Mapping[str, np.ndarray] | None = None
    drop_nsfw: bool = False

    def usable(self, cell: ImageCell) -> bool:
        return not cell.failed and cell.embedding is not None and not (self.drop_nsfw and cell.nsfw)


@dataclass(frozen=True)
class StatisticsSettings:
    """Resampling settings: ``--permutations``, ``--bootstrap`` and ``--stats-seed``."""

    permutations: int = 9999
    bootstrap: int = 2000
    seed: int = 0


def term_seed(stats_seed: int, term: str) -> int:
    """The statistics seed of one term: fixed by --stats-seed and the term alone, so adding,
    removing or reordering other terms leaves its p-values and intervals unchanged."""
    return int(sha256_hex(canonical_json({"stats_seed": stats_seed, "term": term}))[:8], 16)


def analyse_sweep(data: SweepEmbeddings, settings: StatisticsSettings = StatisticsSettings()) -> SweepAnalysis:
    """Per-term drift, significance, probe shifts, text drift and direction neighbours,
    Benjamini–Hochberg adjusted across the run, ranked by centroid drift."""
    spread_all = _overall_spread(data)
    terms = [_analyse_term(data, settings, term, spread_all) for term in data.terms]
    terms = _adjust(terms)
    summary = SweepSummary(baseline_spread=spread_all, text_image_rank_correlation=_rank_correlation(terms))
    terms.sort(key=lambda t: -(t.image_drift.centroid if t.image_drift.centroid is not None else -1))
    return SweepAnalysis(terms=tuple(terms), summary=summary)


def _overall_spread(data: SweepEmbeddings) -> float:
    rows, groups = [], []
    for t in range(len(data.templates)):
        for s in data.seeds:
            cell = data.images[(t, data.baseline, s)]
            if data.usable(cell):
                rows.append(cell.embedding)
                groups.append(t)
    return stats.baseline_spread(np.stack(rows), groups) if rows else float("nan")


def _text_drift(data: SweepEmbeddings, m_prompts: list[str], b_prompts: list[str]) -> TextDrift:
    measurer = stats.text_drift(np.stack([data.prompt_embeddings[p] for p in m_prompts]),
                                np.stack([data.prompt_embeddings[p] for p in b_prompts]))
    conditioning = None
    if data.conditioning is not None:
        conditioning = stats.sequence_drift(np.stack([data.conditioning[p] for p in m_prompts]),
                                            np.stack([data.conditioning[p] for p in b_prompts]))
    return TextDrift(measurer=measurer, conditioning=conditioning)


@dataclass
class _Pairs:
    """A term's usable (term, baseline) image pairs with their template labels and counts."""

    term: list[np.ndarray] = dataclasses.field(default_factory=list)
    base: list[np.ndarray] = dataclasses.field(default_factory=list)
    groups: list[int] = dataclasses.field(default_factory=list)
    failed: int = 0
    flagged: int = 0
    dropped: int = 0


def _template_result(data: SweepEmbeddings, t: int, term: str, pairs: _Pairs) -> TemplateResult:
    """Collect template ``t``'s pairs into ``pairs`` and describe the template."""
    tm, tb = [], []
    for s in data.seeds:
        rm, rb = data.images[(t, term, s)], data.images[(t, data.baseline, s)]
        pairs.failed += rm.failed
        pairs.flagged += bool(rm.nsfw)
        pairs.dropped += data.drop_nsfw and bool(rm.nsfw)
        if data.usable(rm) and data.usable(rb):
            tm.append(rm.embedding)
            tb.append(rb.embedding)
    m_prompt, b_prompt = data.prompts[(t, term)], data.prompts[(t, data.baseline)]
    drift = TemplateImageDrift()
    if tm:
        drift = TemplateImageDrift(centroid=stats.centroid_drift(np.stack(tm), np.stack(tb)),
                                   paired=stats.paired_drift(np.stack(tm), np.stack(tb)),
                                   baseline_spread=stats.baseline_spread(np.stack(tb), [0] * len(tb)))
    pairs.term += tm
    pairs.base += tb
    pairs.groups += [t] * len(tm)
    return TemplateResult(template=data.templates[t], n_pairs=len(tm), prompt=m_prompt,
                          text_drift=_text_drift(data, [m_prompt], [b_prompt]), image_drift=drift)


def _analyse_term(data: SweepEmbeddings, settings: StatisticsSettings, term: str, spread_all: float) -> TermResult:
    pairs = _Pairs()
    per_template = tuple(_template_result(data, t, term, pairs) for t in range(len(data.templates)))
    m_prompts = [data.prompts[(t, term)] for t in range(len(data.templates))]
    b_prompts = [data.prompts[(t, data.baseline)] for t in range(len(data.templates))]
    image_drift, probes = ImageDrift(baseline_spread=spread_all), ()
    neighbours = stats.DirectionNeighbours((), ())
    if pairs.term:
        m_arr, b_arr = np.stack(pairs.term), np.stack(pairs.base)
        seed = term_seed(settings.seed, term)
        test = stats.drift_permutation_test(m_arr, b_arr, pairs.groups, n_resamples=settings.permutations, seed=seed)
        image_drift = ImageDrift(
            centroid=stats.centroid_drift(m_arr, b_arr), paired=stats.paired_drift(m_arr, b_arr),
            baseline_spread=spread_all, statistic=test.statistic, p_value=test.p_value, p_adjusted=None,
            exact=test.exact, n_resamples=test.n_resamples, min_p=test.min_p, seed=test.seed,
        )
        probes = _probe_rows(data, settings, m_arr, b_arr, pairs.groups, seed, m_prompts, b_prompts)
        if data.vocabulary_embeddings is not None and len(data.vocabulary) >= 2:
            neighbours = stats.direction_neighbours(m_arr.mean(0), b_arr.mean(0), data.vocabulary_embeddings,
                                                    data.vocabulary, k=min(DIRECTION_K, len(data.vocabulary)))
    return TermResult(
        term=term, n_pairs=len(pairs.term), failed=pairs.failed, flagged=pairs.flagged, dropped=pairs.dropped,
        text_drift=_text_drift(data, m_prompts, b_prompts), templates=per_template, image_drift=image_drift,
        probes=probes, direction_neighbours=neighbours,
    )


def _probe_rows(data: SweepEmbeddings, settings: StatisticsSettings, m_arr: np.ndarray, b_arr: np.ndarray,
                groups: list[int], seed: int, m_prompts: list[str], b_prompts: list[str]) -> tuple[ProbeRow, ...]:
    """Probe shifts of the images (with CI and p) beside the same shift of the prompts' text."""
    if data.probe_embeddings is None:
        return ()
    shifts = stats.probe_shift(m_arr, b_arr, data.probe_embeddings, groups, n_resamples=settings.permutations,
                               n_boot=settings.bootstrap, seed=seed)
    text = stats.text_shift(np.stack([data.prompt_embeddings[p] for p in m_prompts]),
                            np.stack([data.prompt_embeddings[p] for p in b_prompts]), data.probe_embeddings)
    rows = [
        ProbeRow(probe=data.probes[shift.probe_index], shift=shift.shift, ci_low=shift.ci_low,
                 ci_high=shift.ci_high, p_value=shift.p_value, p_adjusted=None, exact=shift.exact,
                 text_shift=float(text_value), min_p=shift.min_p, n_resamples=shift.n_resamples)
        for shift, text_value in zip(shifts, text)
    ]
    rows.sort(key=lambda row: row.shift, reverse=True)
    return tuple(rows)


def _adjust(terms: list[TermResult]) -> list[TermResult]:
    """Benjamini–Hochberg across the run: drift tests together, (term, probe) tests together.

    Returns new results; the inputs are left as they were.
    """
    drift_p = [np.nan if t.image_drift.p_value is None else t.image_drift.p_value for t in terms]
    drift_adj = stats.benjamini_hochberg(drift_p)
    probe_p = [row.p_value for t in terms for row in t.probes]
    probe_adj = iter(stats.benjamini_hochberg(probe_p) if probe_p else [])
    adjusted = []
    for term, adj in zip(terms, drift_adj):
        drift = dataclasses.replace(term.image_drift, p_adjusted=None if np.isnan(adj) else float(adj))
        probes = tuple(dataclasses.replace(row, p_adjusted=float(next(probe_adj))) for row in term.probes)
        adjusted.append(dataclasses.replace(term, image_drift=drift, probes=probes))
    return adjusted


def _rank_correlation(terms: list[TermResult]) -> RankCorrelation | None:
    pairs = [(t.text_drift.measurer, t.image_drift.centroid) for t in terms if t.image_drift.centroid is not None]
    if len(pairs) < 3:
        return None
    from scipy.stats import spearmanr

    rho = spearmanr([a for a, _ in pairs], [b for _, b in pairs])
    return RankCorrelation(spearman_rho=float(rho.statistic), p_value=float(rho.pvalue), n_terms=len(pairs))
