"""``trace``: follow terms through the conditioning, cross-attention, denoising steps and VAE.

:func:`run_trace` takes a spec and :class:`TraceOptions` as a sweep does: the settings are
resolved with the spec in the sweep's one place (``make_plan``: the command's, else the spec's,
else the defaults), so a trace's plain images are the sweep's own (its recipe, keys, call shape
and slots, made and stored by the sweep's engine). It composes the engine (``engine.trace_*``:
hybrid conditionings, attention recording, step switches, VAE round trips, each job at the slot
of the sweep image it stands in for) and the pure analysis (``analysis.trace``) into one typed
:class:`TraceResult`. It prints nothing; progress goes to ``on_progress(section, done, total)``.
:func:`trace` also writes the run folder (results.json, then report.html).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from ldmprobe.engine.sweep_setup import GenerationOptions, SweepOptions, SweepSetup, as_sweep_options, make_plan
from ldmprobe.errors import BadInputError
from ldmprobe.results.trace import SECTIONS, TraceCost, TraceResult  # noqa: F401  (re-exported)
from ldmprobe.usecases.trace_parts import Progress, Run, attention, conditioning, plain_images, steps, vae
from ldmprobe.usecases.trace_parts import switch_grid  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class TraceOptions(GenerationOptions):
    """How to trace a spec (the spec says what: templates, terms, baseline, seeds, probes).

    ``switch_ks`` None: the quarters of the steps; ``noun`` None: the last content token;
    ``variants`` None: each of the architecture's hybrid parts. The models and generation
    settings are a sweep's (:class:`GenerationOptions`)."""

    sections: tuple[str, ...] = SECTIONS
    variants: tuple[str, ...] | None = None
    switch_ks: tuple[int, ...] | None = None
    noun: str | None = None
    n_boot: int = 2000
    stats_seed: int = 0  # seed of the statistics (bootstrap, sign flips), as a sweep's
    attention_mass: float = 0.5
    region: str = "auto"  # attention: "object", "noun", or "auto" (object where pictures have plain backgrounds)
    image_folder: str | None = None


def sweep_options(options: TraceOptions) -> SweepOptions:
    """The sweep's options for ``options``: its generation settings (the sweep's plan resolves
    them with the spec); trace reads no vocabulary."""
    return as_sweep_options(options, vocab=())


def plan_trace(spec, options: TraceOptions, reporter=None) -> SweepSetup:
    """Check the request and make the sweep's plan (its first guidance / steps level), loading no model."""
    unknown = set(options.sections) - set(SECTIONS)
    if unknown:
        raise BadInputError(f"unknown trace section(s) {sorted(unknown)}; choose from {SECTIONS}")
    bad = [t for t in spec.templates if t.count("{}") != 1]
    if bad:
        raise BadInputError(f"trace needs templates with exactly one '{{}}', not {bad}")
    if not spec.terms:
        raise BadInputError(f"spec {spec.name!r} has no terms to trace; add terms or pass --term.")
    if not spec.probes:
        raise BadInputError(f"spec {spec.name!r} has no probes; trace measures probe shifts: pass --probe TEXT.")
    missing = [t for t in spec.templates if options.noun and options.noun not in t]
    if missing:
        raise BadInputError(f"--noun {options.noun!r} is not in template(s) {missing}; every template must contain it.")
    # trace reads no [attributes]: their texts are neither checked nor embedded here
    planned = dataclasses.replace(spec, attributes=(), reference_rates=(), reference_source=None, calibration=None)
    setup = make_plan(planned, sweep_options(options), reporter=reporter)
    from ldmprobe.engine.trace_condition import check_variants
    from ldmprobe.engine.trace_generate import refuse_architecture

    refuse_architecture(setup.generator_folder)
    check_variants(options.variants, setup.generator_folder)
    steps = setup.recipe.steps
    if steps < 2 and "steps" in options.sections:  # as --steps (at least 2) on the command line
        raise BadInputError(f"the steps part needs at least 2 denoising steps to switch between; the spec makes "
                            f"{steps}. Set steps >= 2 (or --steps), or leave the part out (--parts).")
    bad = [k for k in options.switch_ks or () if not 0 < k < steps]
    if bad:
        raise BadInputError(f"--switch-steps must lie strictly between 0 and the steps ({steps}); got {bad}. "
                            "k = 0 and k = steps are the plain images, always included.")
    if not setup.several_levels:
        return setup
    level = setup.level_setup(0)
    note = (f"trace makes one level, guidance {level.recipe.guidance:g} and {level.recipe.steps} steps (the spec's "
            f"first); the spec lists guidance {list(spec.guidance_levels) or [spec.guidance]} and steps "
            f"{list(spec.steps_levels) or [spec.steps]}: pass --guidance / --steps for another")
    if reporter is not None:
        reporter.warn(note)
    return dataclasses.replace(level, notes=[*level.notes, note])


def run_trace(spec, options: TraceOptions, *, models=None, on_progress: Progress | None = None,
              reporter=None) -> TraceResult:
    """Trace each term of ``spec`` through the chosen sections (``options.sections``).

    ``models``: a :class:`~ldmprobe.models.loader.ModelLoader` (None: the plan's models, loaded
    when first used); ``reporter`` gets the plan's warnings."""
    from ldmprobe.engine.sweep_images import model_loader

    setup = plan_trace(spec, options, reporter)
    return _traced(spec, options, setup, models if models is not None else model_loader(setup), on_progress)


def _traced(spec, options: TraceOptions, setup: SweepSetup, loader, on_progress: Progress | None) -> TraceResult:
    run = Run(spec, setup, loader, options, on_progress)
    if options.variants is None:
        run.o = options = dataclasses.replace(options, variants=run.layout.parts)
    plain = plain_images(run)
    sections = set(options.sections)
    effects = conditioning(run, plain) if "conditioning" in sections else ()
    switches = steps(run, plain) if "steps" in sections else ()
    attended, overhead = attention(run, plain) if "attention" in sections else ((), math.nan)
    round_trips, folder = vae(run, plain) if "vae" in sections else ((), ())
    n_plain, plain_made, plain_seconds = run.costs[0][1:]
    per = plain_seconds if plain_made == n_plain and plain_seconds > 0 else math.nan  # NaN: plain was cached
    costs = tuple(TraceCost(name, n, made, s, n / n_plain, s / per) for name, n, made, s in run.costs)
    notes = (["tiny models: random weights, these numbers mean nothing"] if setup.tiny else []) + [
        n for n in setup.notes if n not in run.notes] + run.notes  # the plan's notes (levels, truncation) too
    return TraceResult(_config(spec, options, setup), effects, attended, switches, round_trips, folder, costs,
                       overhead, tuple(notes), spec=spec.to_dict(),
                       pictures={**run.pictures, "plain_pixels": plain["pixels"]})


def _config(spec, options: TraceOptions, setup: SweepSetup) -> dict:
    """What was traced and the settings it was made with (the sweep's recipe block)."""
    from ldmprobe.engine.sweep_setup import recipe_settings
    from ldmprobe.engine.workitems import call_shape

    shape = call_shape(setup.recipe, setup.device)
    return {"templates": spec.templates, "terms": spec.terms, "baseline": spec.baseline, "seeds": spec.seeds,
            "probes": spec.probes, **{k: getattr(options, k) for k in _CONFIG},
            "random_state": options.stats_seed, "batch_size": shape,
            "settings": {**recipe_settings(setup.recipe), "negative_prompt": setup.recipe.negative_prompt,
                         "call_shape": shape}}


_CONFIG = ("noun", "sections", "variants", "switch_ks", "n_boot", "attention_mass", "region", "image_folder")


def trace(spec, options: TraceOptions, reporter=None, *, report: bool = True) -> TraceResult:
    """:func:`run_trace` and its run folder: results.json, then (``report``) report.html and its
    figures. ``options.out`` None: a new ``runs/NAME-trace-YYYYmmdd-HHMMSS[-N]``; the folder is
    checked and reserved before any model loads, written beside itself and moved into place at
    the end, as a sweep's is (``options.replace``: an earlier run folder there is replaced whole)."""
    from ldmprobe.engine.sweep_images import model_loader
    from ldmprobe.models import sources as models
    from ldmprobe.results.provenance import now_iso, provenance
    from ldmprobe.results.run_folder import prepare_out, release_out

    started = now_iso()
    out = prepare_out(options.out, spec_name=f"{spec.name}-trace", runs_dir=Path(options.runs_dir),
                      replace=options.replace, kind="trace")
    try:
        setup = plan_trace(spec, options, reporter)
        loader = model_loader(setup)
        if setup.tiny and reporter is not None:
            reporter.warn(models.TINY_WARNING)
        progress = (lambda section, done, total: reporter.progress(f"trace: {section}", done, total)) \
            if reporter is not None else None
        result = _traced(spec, options, setup, loader, progress)
        block = provenance(started=started, tiny=setup.tiny, reference=setup.reference, device=loader.device,
                           dtype=loader.dtype, models={
                               "generator": setup.generator_ref.spec, "measurer": setup.measurer_ref.spec,
                               "generator_identity": setup.recipe.pipeline_dict,
                               "measurer_identity": models.measurer_identity(setup.measurer_ref)})
        return _write_folder(out, dataclasses.replace(result, provenance=block), report, options.replace)
    except BaseException:
        release_out(out)  # a folder this trace reserved and never wrote is removed again
        raise


def _write_folder(out: Path, result: TraceResult, report: bool, replace: bool) -> TraceResult:
    """The run folder, staged beside ``out`` and published whole (the sweep's writer): the figures,
    results.json (listing them), then report.html from the result."""
    from ldmprobe.render.trace_report import REPORT_NAME, draw_figures, write_page
    from ldmprobe.results.run_folder import staged_folder
    from ldmprobe.results.trace import TraceRun, write_results

    with staged_folder(out, replace=replace) as staging:
        page, figures = {}, []
        if report:
            try:
                page, figures = draw_figures(staging, result)
            except Exception as exc:  # plotting failed (backend, fonts): the results still count
                shutil.rmtree(staging / "figures", ignore_errors=True)
                report = False
                result = dataclasses.replace(result, notes=(*result.notes, f"report.html and its figures were not "
                                                            f"written: drawing failed ({type(exc).__name__}: {exc})"))
        result = result.with_run(TraceRun(out=str(out), report=REPORT_NAME if report else None,
                                          figures=tuple(p.relative_to(staging).as_posix() for p in figures)))
        write_results(staging, result)
        if report:
            write_page(staging, page)
    return result
