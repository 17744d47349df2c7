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
from ldmprobe.errors import BadInputError
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


def _file_calibration(run: RunData):
    """(calibration embeddings, their (group, option) labels) of a run's embeddings file, or None."""
    from pathlib import Path

    from ldmprobe.specs.own_attributes import CALIBRATION_ARRAYS
    from ldmprobe.specs.sweep_sources import _load_npz

    arrays, _ = _load_npz(Path(str(run.source.get("path"))))
    if not all(name in arrays for name in CALIBRATION_ARRAYS):
        return None
    return tuple(np.asarray(arrays[name]) for name in CALIBRATION_ARRAYS)


def check_same_calibration(a: RunData, b: RunData) -> None:
    """Two runs from embeddings files correct their rates through the same calibration arrays, or
    neither corrects: else each run's rates would not be what its own sweep reported (one run's
    correction applied to the other's images). A BadInputError (exit 2) names the difference."""
    ca, cb = _file_calibration(a), _file_calibration(b)
    if ca is None and cb is None:
        return
    if ca is not None and cb is not None and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(ca, cb)):
        return

    def said(run, cal):
        path = run.source.get("path")
        return (f"{path} has no calibration arrays (raw rates)" if cal is None else
                f"{path} has calibration arrays of {len(cal[0])} labelled images (corrected rates)")

    what = ("their calibration arrays differ" if ca is not None and cb is not None else
            "one run's rates are corrected through a calibration set and the other's are not")
    raise BadInputError(
        f"the runs' rates cannot be compared: {what} (A: {said(a, ca)}; B: {said(b, cb)}). compare needs the same "
        "calibration set for both runs (docs/RATES.md); give both embeddings files the same calibration_embedding / "
        "calibration_group / calibration_option arrays, or neither, and sweep them again.")


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
    if a.from_embeddings:
        attrs_b = attribute_input(b, loader, reporter=reporter)
        if (attrs is None) != (attrs_b is None):
            attrs = None
        elif attrs is not None:
            check_same_calibration(a, b)
    if attrs is None:
        note = ("rates not compared: the runs' embeddings files do not both carry option embeddings and a logit scale "
                "('option', 'option_embedding', 'logit_scale').")
        return dataclasses.replace(analysis, notes=(*analysis.notes, note))
    controls = [c for c in a.spec.get("controls") or [] if c in (b.spec.get("controls") or [])]
    terms = (a.spec.get("baseline", ""), *a.spec["terms"], *controls)
    runs = AttributeRuns(terms=terms, images_a=term_tables(images.images_a, a.spec, terms),
                         images_b=term_tables(images.images_b, b.spec, terms), paired=paired)
    rates, diversity = compare_attributes(runs, attrs, alpha=settings.alpha, n_resamples=min(settings.bootstrap, 400),
                                          seed=settings.seed)
    how = ("paired by template × seed cell (both runs made the same cells)" if paired else
           "unpaired (the runs' seeds differ: each run's own crossed interval, half-widths combined in quadrature)")
    corrected = " Corrected for the measurer's errors through the calibration set." if attrs.corrections else ""
    note = RATES_NOTE.format(how=how, alpha=settings.alpha) + corrected
    return dataclasses.replace(analysis, rates=rates, diversity=diversity, notes=(*analysis.notes, note))
