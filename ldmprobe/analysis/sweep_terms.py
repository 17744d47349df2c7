"""One term's image statistics in a sweep: drift, probe shifts, direction neighbours.

Pure numpy / scipy on a term's usable (term, baseline) pairs, built on
:mod:`ldmprobe.analysis.inference` (see DESIGN.md, Statistics). The comparison with control
terms and the adjustment across the run are in :mod:`ldmprobe.analysis.sweep`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ldmprobe.analysis import stats
from ldmprobe.analysis.inference import (
    crossed_test, neighbour_null, sign_flip_test, vocabulary_z,
)
from ldmprobe.analysis.inference_drift import drift_parts, resampled_drift
from ldmprobe.analysis.inference_crossed import crossed_fields, fixed_fields
from ldmprobe.analysis.inference_level import level_check
from ldmprobe.analysis.image_grid import ImageGrid, TermVectors
from ldmprobe.analysis.inference_core import BadEmbeddingError, unit_rows
from ldmprobe.analysis.sweep_results import ImageDrift, Neighbours, ProbeRow
from ldmprobe.digest import canonical_json, sha256_hex

#: How many words toward and away from a term's drift direction are listed (at most).
DIRECTION_K = 10
#: Resamples of the neighbour null (the threshold is its 95 % quantile).
NEIGHBOUR_RESAMPLES = 999
#: Per-pair cosine differences within this of each other are rounding, not data: cosines of
#: unit vectors in float64 carry errors of about d · 2⁻⁵³ (≈ 1e-13 at d = 1024).
ROUNDING = 1e-12
#: What a drift p against the pairs alone means.
PAIRS_NOTE = "the wording changed the images (these templates and seeds)"


def bad_embedding(vector) -> bool:
    """True for an embedding that cannot be normalised: a non-finite value or all zeros
    (excluded and counted before any statistic; any finite non-zero scale is fine)."""
    return not bool(unit_rows(np.asarray(vector, dtype=np.float64).ravel())[1])


@dataclass(frozen=True)
class TermCells:
    """One modifier's (templates × seeds) images as arrays, gathered once per analysis so that
    every statistic selects its cells with a mask instead of visiting them one by one."""

    vectors: np.ndarray | TermVectors  # (T, S, d) embeddings as given (NaN rows: no embedding), or read when asked
    usable: np.ndarray  # (T, S): kept (not failed, not a dropped NSFW image) and normalisable
    failed: np.ndarray
    flagged: np.ndarray  # NSFW-flagged
    dropped: np.ndarray  # flagged and dropped (``drop_nsfw``)
    excluded: np.ndarray  # kept, but the embedding is non-finite or zero

    @property
    def raw(self) -> np.ndarray:
        """The (T, S, d) embeddings (read whole when they are held in a row source)."""
        return self.vectors if isinstance(self.vectors, np.ndarray) else self.vectors.read()

    def template(self, t: int) -> np.ndarray:
        """Template ``t``'s (S, d) embeddings."""
        return self.vectors[t] if isinstance(self.vectors, np.ndarray) else self.vectors.template(t)


def term_cells(data, term: str) -> TermCells:
    """The :class:`TermCells` of ``term`` (the baseline, a term or a control); from an
    :class:`~ldmprobe.analysis.image_grid.ImageGrid`, its embeddings are a view of the grid."""
    shape = (len(data.templates), len(data.seeds))
    block = data.images.term_block(term, data.seeds) if isinstance(data.images, ImageGrid) else None
    if block is not None and block[1].any():
        vectors, have, failed, flagged = block
        raw = vectors.reshape(*shape, -1) if isinstance(vectors, np.ndarray) else vectors.read()
        kept = ~failed & have & ~(flagged & bool(data.drop_nsfw))
        finite = np.isfinite(raw).all(axis=-1)
        normalisable = finite & (raw != 0).any(axis=-1)  # unit_rows' mask, without its float64 copies
        dropped = flagged & bool(data.drop_nsfw)
        held = raw if isinstance(vectors, np.ndarray) else vectors  # read again when asked for
        return TermCells(held, kept & normalisable, failed.copy(), flagged.copy(), dropped, kept & ~normalisable)
    cells = [data.images[(t, term, s)] for t in range(shape[0]) for s in data.seeds]
    failed = np.array([bool(c.failed) for c in cells], dtype=bool)
    flagged = np.array([bool(c.nsfw) for c in cells], dtype=bool)
    have = np.array([c.embedding is not None for c in cells], dtype=bool)
    kept = np.array([data.usable(c) for c in cells], dtype=bool)
    given = [np.asarray(c.embedding).ravel() for c in cells if c.embedding is not None]
    dim = len(given[0]) if given else 0
    raw = np.full((len(cells), dim), np.nan, dtype=np.result_type(np.float32, *{g.dtype for g in given}))
    if given:
        raw[have] = np.stack(given)
    normalisable = unit_rows(raw)[1] if dim else np.zeros(len(cells), dtype=bool)
    dropped = flagged & bool(data.drop_nsfw)
    return TermCells(raw.reshape(*shape, dim), (kept & normalisable).reshape(shape), failed.reshape(shape),
                     flagged.reshape(shape), dropped.reshape(shape), (kept & ~normalisable).reshape(shape))


@dataclass
class Pairs:
    """A term's usable (term, baseline) image pairs with their template and seed positions."""

    term: list[np.ndarray] = field(default_factory=list)  # blocks of raw rows, one per template
    base: list[np.ndarray] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)  # position in the spec's seeds
    failed: int = 0
    flagged: int = 0
    dropped: int = 0
    excluded: int = 0

    @property
    def n(self) -> int:
        return len(self.groups)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The pairs' unit rows (term, baseline); the blocks are let go (asked for once)."""
        m = stats._unit(np.concatenate(self.term))
        self.term.clear()
        b = stats._unit(np.concatenate(self.base))
        self.base.clear()
        return m, b


def _rng(seed: int, *salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, *salt])


def image_drift(m: np.ndarray, b: np.ndarray, groups: list[int], settings, seed: int,
                spread_all: float) -> ImageDrift:
    """Unbiased drift with its bootstrap CI and the within-pairs p (the headline verdict until
    controls replace it); centroid and paired drift kept for continuity."""
    return finish_image_drift(prepare_image_drift(m, b, groups, seed, spread_all), settings)


@dataclass(frozen=True)
class PreparedDrift:
    """:func:`image_drift` up to its resampling: what needs the rows is done (the caller may let
    them go before :func:`finish_image_drift`)."""

    base: ImageDrift
    parts: tuple | None  # inference_drift.drift_parts'; None: no template with two usable pairs
    seed: int
    spread_all: float


def prepare_image_drift(m: np.ndarray, b: np.ndarray, groups: list[int], seed: int,
                        spread_all: float) -> PreparedDrift:
    base = ImageDrift(centroid=stats.centroid_drift(m, b), paired=stats.paired_drift(m, b),
                      baseline_spread=spread_all, seed=seed)
    try:
        parts = drift_parts(m, b, groups)
    except ValueError:  # no template with two usable pairs: no unbiased estimate
        parts = None
    return PreparedDrift(base, parts, seed, spread_all)


def finish_image_drift(prepared: PreparedDrift, settings) -> ImageDrift:
    base, seed, spread_all = prepared.base, prepared.seed, prepared.spread_all
    if prepared.parts is None:
        return base
    try:
        u = resampled_drift(prepared.parts, n_boot=settings.bootstrap, n_resamples=settings.permutations,
                            seed=_rng(seed, 1))
    except ValueError:
        return base
    return ImageDrift(
        estimate=u.estimate, ci_low=u.ci_low, ci_high=u.ci_high, standardised=u.standardised,
        p_value=u.p_value, p_adjusted=None, versus="pairs", p_controls=None, controls_ratio=None,
        p_pairs=u.p_value, min_p=u.min_p, exact=u.exact, n_resamples=u.n_resamples,
        generalises_to=PAIRS_NOTE, centroid=base.centroid, paired=base.paired,
        baseline_spread=spread_all, seed=seed,
    )


def probe_table(m: np.ndarray, b: np.ndarray, probe: np.ndarray, pairs: Pairs, shape: tuple[int, int]):
    """The (templates × seeds) table of per-pair shifts cos(m, p) − cos(b, p); NaN: no pair."""
    y = np.full(shape, np.nan)
    y[pairs.groups, pairs.seeds] = (m - b) @ probe
    return y


def vocabulary_shift_z(m_mean_diff: np.ndarray, probes: np.ndarray, vocabulary: np.ndarray | None):
    """z of each probe's shift among the shifts toward every vocabulary word (None: no scale)."""
    if vocabulary is None or len(vocabulary) < 2:
        return [None] * len(probes)
    shifts = np.concatenate([probes @ m_mean_diff, stats._unit(vocabulary) @ m_mean_diff])
    try:
        z = vocabulary_z(shifts)
    except ValueError:
        return [None] * len(probes)
    return [float(v) for v in z[: len(probes)]]


def check_probes(probes, names) -> None:
    """Refuse probe embeddings that cannot be normalised (all zeros or non-finite): a shift
    toward such a probe means nothing. BadEmbeddingError: exit 2."""
    if probes is None:
        return
    _, ok = unit_rows(np.atleast_2d(np.asarray(probes, dtype=np.float64)))
    bad = [str(names[i]) if i < len(names) else str(i) for i in np.flatnonzero(~ok)]
    if bad:
        raise BadEmbeddingError(
            f"probe embedding(s) {', '.join(repr(b) for b in bad)} are all zeros or not finite; "
            "a shift toward them means nothing (check the probe words or the embeddings file)")


def probe_rows(data, settings, m: np.ndarray, b: np.ndarray, pairs: Pairs, seed: int,
               text_m: np.ndarray, text_b: np.ndarray) -> tuple[ProbeRow, ...]:
    """Per probe: the crossed headline, the sign-flip p_fixed, and text vs image on one scale."""
    if data.probe_embeddings is None or not len(data.probes):
        return ()
    probes = stats._unit(np.asarray(data.probe_embeddings, dtype=np.float64))
    text = stats.text_shift(text_m, text_b, probes)
    vocab = data.vocabulary_embeddings
    image_z = vocabulary_shift_z(m.mean(0) - b.mean(0), probes, vocab)
    text_z = vocabulary_shift_z(stats._unit(text_m).mean(0) - stats._unit(text_b).mean(0), probes, vocab)
    shape = (len(data.templates), len(data.seeds))
    rows = []
    for i, name in enumerate(data.probes):
        y = probe_table(m, b, probes[i], pairs, shape)
        crossed = crossed_test(y, atol=ROUNDING)  # every usable cell: shift, p and p_fixed alike
        d = y[np.isfinite(y)]
        fixed = sign_flip_test(np.where(np.abs(d) <= ROUNDING, 0.0, d), n_resamples=settings.permutations,
                               seed=_rng(seed, 2, i))
        rows.append(ProbeRow(
            probe=name, shift=crossed.estimate, **crossed_fields(crossed),
            **fixed_fields(fixed, fixed.generalises_to + " only"), p_controls=None,
            controls_ratio=None, text_shift=float(text[i]), text_z=text_z[i], image_z=image_z[i],
            n_cells=crossed.n_cells, **level_check(y, crossed),
        ))
    rows.sort(key=lambda row: row.shift, reverse=True)
    return tuple(rows)


def neighbours(data, m: np.ndarray, b: np.ndarray, seed: int) -> Neighbours:
    """Direction neighbours beyond the sign-flip null's threshold (nothing listed below it)."""
    vocab = data.vocabulary_embeddings
    if vocab is None or len(data.vocabulary) < 2 or len(m) < 2:
        return Neighbours()
    keep = np.flatnonzero(unit_rows(np.asarray(vocab, dtype=np.float64).reshape(len(vocab), -1))[1]).tolist()
    if len(keep) < 2:
        return Neighbours()
    result = neighbour_null(m, b, np.asarray(vocab)[keep], [data.vocabulary[i] for i in keep],
                            k=min(DIRECTION_K, len(keep)), n_resamples=NEIGHBOUR_RESAMPLES,
                            seed=_rng(seed, 3))
    return Neighbours(toward=result.toward, away=result.away, threshold=result.threshold,
                      alpha=result.alpha, n_resamples=result.n_resamples, null=result.null)


def term_seed(stats_seed: int, term: str) -> int:
    """The statistics seed of one term: fixed by --stats-seed and the term alone, so adding,
    removing or reordering other terms leaves its p-values and intervals unchanged."""
    return int(sha256_hex(canonical_json({"stats_seed": stats_seed, "term": term}))[:8], 16)
