"""The analysis of a sweep: a pure function of embeddings (see DESIGN.md, Statistics).

Arrays in, a typed :class:`~ldmprobe.analysis.sweep_results.SweepAnalysis` out: no model, no
cache, no file. The sweep use case gathers the arrays; a notebook or a test can hand in its
own (planted, or the user's own embeddings).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ldmprobe.analysis import stats
from ldmprobe.analysis.inference import design_check, spearman_test
from ldmprobe.analysis.rates import attach_attributes
from ldmprobe.analysis.sweep_results import (
    EncoderDrift, ImageDrift, Neighbours, RankCorrelation, SweepAnalysis, SweepSummary, TemplateImageDrift, TemplateResult,
    TermResult, TextDrift,
)
from ldmprobe.analysis.image_grid import Cell, ImageCell, ImageGrid  # noqa: F401  (importable from here)
from ldmprobe.analysis.inference_core import BadEmbeddingError
from ldmprobe.records import nan_to_none
from ldmprobe.analysis.sweep_controls import against_controls
from ldmprobe.analysis.sweep_terms import (
    DIRECTION_K, Pairs, TermCells, bad_embedding, check_probes, finish_image_drift,
    neighbours, prepare_image_drift, probe_rows,
    term_cells, term_seed,
)


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
    #: (encoder, part, model) -> prompt -> that output of that text encoder (issue 30)
    conditioning_by_encoder: Mapping[tuple[str, str, str], Mapping[str, np.ndarray]] | None = None
    drop_nsfw: bool = False
    controls: tuple[str, ...] = ()  # modifiers held irrelevant: generated and analysed like terms
    attributes: object | None = None  # analysis.rates.AttributeInput: attribute groups (rates, diversity)

    def usable(self, cell: ImageCell) -> bool:
        return not cell.failed and cell.embedding is not None and not (self.drop_nsfw and cell.nsfw)


@dataclass(frozen=True)
class StatisticsSettings:
    """Resampling settings: ``--permutations``, ``--bootstrap`` and ``--stats-seed``."""

    permutations: int = 9999
    bootstrap: int = 2000
    seed: int = 0
    alpha: float = 0.05


NO_CONTROLS_NOTE = ("no controls: a significant drift only means the wording changed the images, not that the "
                    "term did anything a neutral modifier would not; add controls to the spec")


def analyse_sweep(data: SweepEmbeddings, settings: StatisticsSettings = StatisticsSettings()) -> SweepAnalysis:
    """Per-term drift, probe shifts (templates and seeds as random factors), text drift and
    direction neighbours; each term judged against the controls when there are any;
    Benjamini–Hochberg adjusted across the run; ranked by the drift estimate."""
    _require_usable(data)
    cells = {name: term_cells(data, name) for name in dict.fromkeys((data.baseline, *data.terms, *data.controls))}
    spread_all = _overall_spread(cells[data.baseline])
    controls = [_analyse_term(data, settings, term, spread_all, cells) for term in data.controls]
    terms = [_against_controls(data, _analyse_term(data, settings, term, spread_all, cells), controls, cells)
             for term in data.terms]
    terms = _adjust(terms)
    terms.sort(key=lambda t: -(t.image_drift.estimate if t.image_drift.estimate is not None else -math.inf))
    summary = SweepSummary(
        baseline_spread=spread_all, text_image_rank_correlation=_rank_correlation(terms, settings),
        controls=tuple(data.controls), excluded=_excluded(data, cells), design=_design(data, settings),
        notes=() if data.controls else (NO_CONTROLS_NOTE,),
    )
    terms, controls, base_attributes = attach_attributes(data, settings, terms, controls, cells=cells)
    return SweepAnalysis(terms=tuple(terms), summary=summary, controls=tuple(controls),
                         baseline_result=base_attributes)


def _require_usable(data: SweepEmbeddings) -> None:
    """An error (exit 2) when a probe embedding cannot be normalised or every generated
    embedding is non-finite or zero-norm (nothing is left)."""
    check_probes(data.probe_embeddings if data.probes else None, data.probes)
    usable = 0
    for cell in data.images.values():  # one cell at a time: the first good embedding ends the check
        if data.usable(cell):
            if not bad_embedding(cell.embedding):
                return
            usable += 1
    if usable:
        raise BadEmbeddingError(f"all {usable} image embeddings are non-finite or zero-norm; nothing is left to "
                         "analyse (fp16 overflow or black images?); rerun with --dtype float32")


def _excluded(data: SweepEmbeddings, cells: dict) -> dict:
    counts = {term: 0 for term in (data.baseline, *data.terms, *data.controls)}
    for term in counts:
        counts[term] = int(cells[term].excluded.sum())
    return counts


def _design(data: SweepEmbeddings, settings: StatisticsSettings) -> dict:
    check = design_check(settings.alpha, n_templates=len(data.templates), n_seeds=len(data.seeds),
                         n_controls=len(data.controls), n_resamples=settings.permutations,
                         n_terms=len(data.terms))
    return check.to_dict()


def _overall_spread(base: TermCells) -> float:
    if not base.usable.any():
        return float("nan")
    return stats.baseline_spread(base.raw[base.usable], np.nonzero(base.usable)[0])


def _text_drift(data: SweepEmbeddings, m_prompts: list[str], b_prompts: list[str]) -> TextDrift:
    measurer = stats.text_drift(np.stack([data.prompt_embeddings[p] for p in m_prompts]),
                                np.stack([data.prompt_embeddings[p] for p in b_prompts]))
    conditioning = None
    if data.conditioning is not None:
        conditioning = stats.sequence_drift(np.stack([data.conditioning[p] for p in m_prompts]),
                                            np.stack([data.conditioning[p] for p in b_prompts]))
    by_encoder = []
    for (encoder, part, model), arrays in (data.conditioning_by_encoder or {}).items():
        m, b = np.stack([arrays[p] for p in m_prompts]), np.stack([arrays[p] for p in b_prompts])
        estimate = stats.sequence_drift(m, b) if part == "tokens" else stats.text_drift(m, b)
        by_encoder.append(EncoderDrift(encoder=encoder, part=part, estimate=estimate, model=model))
    return TextDrift(measurer=measurer, conditioning=conditioning, conditioning_by_encoder=tuple(by_encoder))


def _template_result(data: SweepEmbeddings, t: int, cells: TermCells, base: TermCells, term: str,
                     pairs: Pairs) -> TemplateResult:
    """Collect template ``t``'s pairs into ``pairs`` and describe the template."""
    both = cells.usable[t] & base.usable[t]
    pairs.failed += int(cells.failed[t].sum())
    pairs.flagged += int(cells.flagged[t].sum())
    pairs.dropped += int(cells.dropped[t].sum())
    pairs.excluded += int(cells.excluded[t].sum())
    tm, tb = cells.template(t)[both], base.template(t)[both]
    m_prompt, b_prompt = data.prompts[(t, term)], data.prompts[(t, data.baseline)]
    drift = TemplateImageDrift()
    if len(tm):
        drift = TemplateImageDrift(centroid=stats.centroid_drift(tm, tb), paired=stats.paired_drift(tm, tb),
                                   baseline_spread=stats.baseline_spread(tb, [0] * len(tb)))
        pairs.term.append(tm)
        pairs.base.append(tb)
    pairs.seeds += np.flatnonzero(both).tolist()
    pairs.groups += [t] * len(tm)
    return TemplateResult(template=data.templates[t], n_pairs=len(tm), prompt=m_prompt,
                          text_drift=_text_drift(data, [m_prompt], [b_prompt]), image_drift=drift)


def _analyse_term(data: SweepEmbeddings, settings: StatisticsSettings, term: str, spread_all: float,
                  cells: dict) -> TermResult:
    pairs = Pairs()
    per_template = tuple(_template_result(data, t, cells[term], cells[data.baseline], term, pairs)
                         for t in range(len(data.templates)))
    m_prompts = [data.prompts[(t, term)] for t in range(len(data.templates))]
    b_prompts = [data.prompts[(t, data.baseline)] for t in range(len(data.templates))]
    drift, probes, near = ImageDrift(baseline_spread=spread_all), (), Neighbours()
    if pairs.n:
        m_arr, b_arr = pairs.arrays()
        seed = term_seed(settings.seed, term)
        text_m = np.stack([data.prompt_embeddings[p] for p in m_prompts])
        text_b = np.stack([data.prompt_embeddings[p] for p in b_prompts])
        # each statistic draws from its own stream (seeded by the term), so their order is free:
        # the pairs' rows go before the drift's resampling, whose memory is the largest
        probes = probe_rows(data, settings, m_arr, b_arr, pairs, seed, text_m, text_b)
        near = neighbours(data, m_arr, b_arr, seed)
        prepared = prepare_image_drift(m_arr, b_arr, pairs.groups, seed, spread_all)
        del m_arr, b_arr
        drift = finish_image_drift(prepared, settings)
    return TermResult(
        term=term, n_pairs=pairs.n, failed=pairs.failed, flagged=pairs.flagged, dropped=pairs.dropped,
        excluded=pairs.excluded, text_drift=_text_drift(data, m_prompts, b_prompts), templates=per_template,
        image_drift=drift, probes=probes, direction_neighbours=near,
    )


def _against_controls(data: SweepEmbeddings, term: TermResult, controls: list[TermResult], cells: dict) -> TermResult:
    """The term against its controls, each comparison on the cells both have
    (:func:`ldmprobe.analysis.sweep_controls.against_controls`)."""
    if not controls:
        return term
    return against_controls(data, term, controls, cells)


def _adjust(terms: list[TermResult]) -> list[TermResult]:
    """Benjamini–Hochberg across the run: headline drift verdicts together, headline (term,
    probe) p-values together. Returns new results; the inputs are left as they were."""
    drift_p = [np.nan if t.image_drift.p_value is None else t.image_drift.p_value for t in terms]
    drift_adj = stats.benjamini_hochberg(drift_p)
    probe_p = [np.nan if row.p_value is None else row.p_value for t in terms for row in t.probes]
    probe_adj = iter(stats.benjamini_hochberg(probe_p) if probe_p else [])
    adjusted = []
    for term, adj in zip(terms, drift_adj):
        drift = dataclasses.replace(term.image_drift, p_adjusted=nan_to_none(adj))
        probes = tuple(dataclasses.replace(row, p_adjusted=nan_to_none(next(probe_adj))) for row in term.probes)
        adjusted.append(dataclasses.replace(term, image_drift=drift, probes=probes))
    return adjusted


def _rank_correlation(terms: list[TermResult], settings: StatisticsSettings) -> RankCorrelation | None:
    """Spearman's ρ of text drift and the image drift estimate, exact permutation p for small n."""
    pairs = [(t.text_drift.measurer, t.image_drift.estimate) for t in terms if t.image_drift.estimate is not None]
    if len(pairs) < 3:
        return None
    try:
        test = spearman_test([a for a, _ in pairs], [b for _, b in pairs], n_resamples=settings.permutations,
                             seed=settings.seed)
    except ValueError:  # constant ranks (e.g. equal text drifts): no correlation to test
        return None
    note = None
    if test.min_p > settings.alpha:  # e.g. 4 terms: exact two-sided p >= 2/4! = 1/12
        note = (f"with {test.n} terms the smallest attainable p is {test.min_p:.3g} > α = {settings.alpha}: "
                "this correlation cannot be significant whatever the data")
    return RankCorrelation(spearman_rho=test.statistic, p_value=test.p_value, n_terms=test.n, exact=test.exact,
                           min_p=test.min_p, n_resamples=test.n_resamples, note=note)
