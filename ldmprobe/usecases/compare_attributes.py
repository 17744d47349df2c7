"""`ldmprobe compare`: the two runs' attribute rates and diversity, B − A.

Both runs must measure the same ``[attributes]`` (and calibration set) with one measurer; the
option texts' embeddings, the measurer's logit scale and the calibration's corrections are the
sweep's own, read from its cache (the measurer is loaded only for what is not cached). Runs
from embeddings files use the option embeddings and logit scale their files carry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ldmprobe.analysis.compare import CompareAnalysis, CompareSettings
from ldmprobe.analysis.compare_rates import AttributeRuns, compare_attributes
from ldmprobe.results.compare import RunData, same_attributes

RATES_NOTE = ("rates: share of each term's images the measurer labels with each option (0-1), B − A; "
              "{how}; p and 95% CI treat templates and seeds as random factors, verdicts (higher / lower) use the "
              "Benjamini–Hochberg adjusted p across each group's options at alpha {alpha}. Diversity: Vendi score "
              "(effective number of distinct images) and effective number of options, B − A, intervals by "
              "resampling templates and seeds; narrows / widens only where the interval excludes 0.")


@dataclass(frozen=True)
class _Setup:
    """What the sweep's attribute inputs read of a setup: the spec and the measurer's reference."""

    spec: object
    measurer_ref: object


def attribute_input(run: RunData, loader, *, reporter=None):
    """The run's :class:`~ldmprobe.analysis.rates.AttributeInput` (None: the spec has no attributes,
    or a run from an embeddings file whose file carries no option embeddings)."""
    from ldmprobe.specs.sweep import SPEC_KEYS, spec_from_dict

    spec = spec_from_dict({k: v for k, v in run.spec.items() if k in SPEC_KEYS}, source=str(run.path / "results.json"))
    if not spec.attributes:
        return None
    if run.from_embeddings:
        return _from_file(run, spec)
    from ldmprobe.engine.encode import DEFAULT_PROBE_TEMPLATES
    from ldmprobe.usecases.sweep_attributes import attribute_fields

    return attribute_fields(_Setup(spec, loader.measurer_ref), loader, tuple(DEFAULT_PROBE_TEMPLATES),
                            reporter=reporter)["attributes"]


def _from_file(run: RunData, spec):
    """A run from an embeddings file: the rates' inputs its file carries (None: no option arrays)."""
    from pathlib import Path

    from ldmprobe.specs.own_attributes import file_attributes
    from ldmprobe.usecases.sweep_own import file_attribute_input

    found = file_attributes(Path(str(run.source.get("path"))), spec, int(run.source.get("dim") or 0))
    return None if found is None else file_attribute_input(spec, found)


def term_tables(images: dict, spec: dict, terms) -> dict[str, np.ndarray]:
    """term -> (T, S, d) unit image embeddings of one run (NaN rows: failed, dropped, unusable)."""
    seeds = list(spec.get("seeds") or [])
    vectors = [v for v in images.values() if v is not None]
    d = len(np.ravel(vectors[0])) if vectors else 1
    out = {}
    for term in terms:
        table = np.full((len(spec["templates"]), len(seeds), d), np.nan)
        for t in range(table.shape[0]):
            for j, seed in enumerate(seeds):
                v = images.get((t, term, seed))
                if v is None:
                    continue
                v = np.ravel(np.asarray(v, np.float64))
                norm = np.linalg.norm(v)
                if np.isfinite(v).all() and norm > 0:
                    table[t, j] = v / norm
        out[term] = table
    return out


def with_attributes(analysis: CompareAnalysis, a: RunData, b: RunData, images, settings: CompareSettings, *,
                    paired: bool, loader, reporter=None) -> CompareAnalysis:
    """``analysis`` with the runs' rate and diversity changes (unchanged without attributes)."""
    if not (a.spec.get("attributes") or b.spec.get("attributes")):
        return analysis
    if not same_attributes(a, b):
        note = "rates not compared: the runs' [attributes] (or calibration sets) differ, so they measure different things."
        return dataclasses.replace(analysis, notes=(*analysis.notes, note))
    attrs = attribute_input(a, loader, reporter=reporter)
    if attrs is None:
        note = ("rates not compared: the runs' embeddings files carry no option embeddings and logit scale "
                "('option', 'option_embedding', 'logit_scale').")
        return dataclasses.replace(analysis, notes=(*analysis.notes, note))
    controls = [c for c in a.spec.get("controls") or [] if c in (b.spec.get("controls") or [])]
    terms = (a.spec.get("baseline", ""), *a.spec["terms"], *controls)
    runs = AttributeRuns(terms=terms, images_a=term_tables(images.images_a, a.spec, terms),
                         images_b=term_tables(images.images_b, b.spec, terms), paired=paired)
    rates, diversity = compare_attributes(runs, attrs, alpha=settings.alpha, n_resamples=min(settings.bootstrap, 400),
                                          seed=settings.seed)
    how = ("paired by template × seed cell (both runs made the same cells)" if paired else
           "unpaired (the runs' seeds differ: each run's own variation added, Welch–Satterthwaite df)")
    corrected = " Corrected for the measurer's errors through the calibration set." if attrs.corrections else ""
    note = RATES_NOTE.format(how=how, alpha=settings.alpha) + corrected
    return dataclasses.replace(analysis, rates=rates, diversity=diversity, notes=(*analysis.notes, note))
