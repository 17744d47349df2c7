"""Inference that survives review: what each p-value generalises to, and no false precision.

Pure numpy/scipy; imports no other ldmprobe module. Arrays in, small frozen dataclass
results out (each with ``to_dict()``). Every p-value result carries ``p_value``, ``min_p``,
``exact``, ``n_resamples`` and ``generalises_to``. The pieces live in:

- inference_core:    input hygiene (``clean_rows``, ``clean_pairs``), ``format_p``,
                     ``choose_exact``, ``design_check``
- inference_crossed: ``crossed_test`` (templates and seeds as random factors, every cell,
                     generalised p), ``variance_components``, ``sign_flip_test`` (these
                     templates and seeds only), ``complete_subtable``
- inference_drift:   ``unbiased_drift``, ``control_comparison``, ``neighbour_null``,
                     ``vocabulary_z``, ``comparable_shifts``
- inference_perm:    ``block_weat`` (prompts permuted as blocks), ``spearman_test``
- inference_level:   ``level_check`` (where the crossed p is conservative at a row's own
                     estimated components: the probe rows' ``conservative`` flag),
                     ``generalised_level``
"""

from __future__ import annotations

from .inference_core import (
    CleanRows, DesignCheck, choose_exact, clean_pairs, clean_rows, design_check, format_p,
    format_p_adjusted, mc_error, require_finite,
)
from .inference_crossed import (
    CrossedTest, SignFlipTest, complete_subtable, crossed_test, sign_flip_test,
    variance_components,
)
from .inference_drift import (
    ComparableShifts, ControlComparison, NeighbourNull, UnbiasedDrift, comparable_shifts,
    control_comparison, neighbour_null, unbiased_drift, vocabulary_z,
)
from .inference_level import generalised_level, level_check
from .inference_perm import BlockWeat, SpearmanTest, block_weat, spearman_test

__all__ = [
    "BlockWeat", "CleanRows", "ComparableShifts", "ControlComparison", "CrossedTest",
    "DesignCheck", "NeighbourNull", "SignFlipTest", "SpearmanTest", "UnbiasedDrift",
    "block_weat", "choose_exact", "clean_pairs", "clean_rows", "comparable_shifts",
    "complete_subtable", "control_comparison", "crossed_test", "design_check", "format_p",
    "format_p_adjusted", "generalised_level", "level_check", "mc_error", "neighbour_null",
    "require_finite", "sign_flip_test", "spearman_test",
    "unbiased_drift", "variance_components", "vocabulary_z",
]
