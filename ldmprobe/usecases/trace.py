"""``trace``: follow terms through the conditioning, cross-attention, denoising steps and VAE.

:func:`run_trace` composes the engine (``engine.trace_*``: hybrid conditionings, attention
recording, step switches, VAE round trips) and the pure analysis (``analysis.trace``) into
one typed :class:`TraceResult`. It prints nothing; progress goes to ``on_progress(section,
done, total)``. Every image of a run is generated from explicit conditioning under the same
seeds, so the plain baseline and term images, the hybrids and the step switches of a
(template, seed) share their starting noise.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ldmprobe.analysis.trace import (
    AttentionTrace, EffectTable, VaeGroup, VaeTrace, attention_numbers, psnr, vae_effects, vae_groups,
    variant_effects,
)
from ldmprobe.engine.trace_condition import build_hybrids, fill
from ldmprobe.engine.trace_generate import CondJob, GenSettings, encode_prompts
from ldmprobe.results.trace import SECTIONS, TraceCost, TraceResult  # noqa: F401  (re-exported)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TraceOptions:
    """What to trace. ``switch_ks`` None: the quarters of ``steps``; ``noun`` None: see ``noun_positions``."""

    templates: tuple[str, ...]
    terms: tuple[str, ...]
    baseline: str = ""
    seeds: tuple[int, ...] = (0, 1)
    probes: tuple[str, ...] = ("a yellow background",)
    noun: str | None = None
    sections: tuple[str, ...] = SECTIONS
    variants: tuple[str, ...] | None = None  # None: each of the architecture's hybrid parts
    switch_ks: tuple[int, ...] | None = None
    settings: GenSettings = field(default_factory=GenSettings)
    batch_size: int = 4
    n_boot: int = 2000
    random_state: int = 0
    attention_mass: float = 0.5
    region: str = "auto"  # attention: "object", "noun", or "auto" (object where pictures have plain backgrounds)
    image_folder: str | None = None
    cache: bool = True  # read and write trace images and maps in the cache


class _Run:
    """State shared by the sections of one run (models, grid, plain images and embeddings)."""

    def __init__(self, generator, measurer, options: TraceOptions, on_progress: Progress | None):
        from ldmprobe.engine.encode import encode_in_templates
        from ldmprobe.engine.trace_text import layout

        self.g, self.m, self.o = generator, measurer, options
        self.layout = layout(generator)
        self.progress = on_progress or (lambda section, done, total: None)
        self.n_t, self.n_s = len(options.templates), len(options.seeds)
        self.probes = encode_in_templates(measurer, list(options.probes))
        self.costs: list[tuple[str, int, int, float]] = []
        self.notes: list[str] = []
        self.pictures: dict = {}

    def generate(self, section: str, jobs: Sequence[CondJob], recorder=None):
        """Images (and attention maps with a recorder) of the jobs, cached ones read back."""
        from ldmprobe.engine.trace_cache import cached_generate

        done = [0]

        def tick(n):
            done[0] += n
            self.progress(section, done[0], len(jobs))

        made = cached_generate(self.g, jobs, self.o.settings, cache=self.o.cache, batch_size=self.o.batch_size,
                               recorder=recorder, on_batch=tick)
        bad = sum(f is not None for f in made.images.failed)
        if bad:
            self.notes.append(f"{section}: {bad} image(s) failed (NaN or black) and are left out")
        self.costs.append((section, len(jobs), made.made, made.images.seconds))
        return made

    def embed(self, pixels: np.ndarray, failed=()) -> np.ndarray:
        from ldmprobe.engine.encode import encode_images
        from ldmprobe.engine.trace_vae import to_pil

        rows = encode_images(self.m, to_pil(pixels)) if len(pixels) else np.zeros((0, 1), np.float32)
        for i, problem in enumerate(failed):
            if problem is not None:
                rows[i] = np.nan
        return rows

    def grid(self, rows: np.ndarray, n_groups: int = 1) -> np.ndarray:
        """Rows in (group, template, seed) order to (group, T, S, ...)."""
        return rows.reshape((n_groups, self.n_t, self.n_s) + rows.shape[1:])


def _plain(run: _Run) -> dict:
    """Baseline and term images and embeddings, generated from the prompts' own conditioning."""
    o = run.o
    words = (o.baseline,) + tuple(o.terms)
    states = {(w, t): s for t in o.templates for w, s in
              zip(words, encode_prompts(run.g, [fill(t, w) for w in words]))}
    jobs = [CondJob(seed, states[(w, t)], label=_label(t, w)) for w in words for t in o.templates
            for seed in o.seeds]
    made = run.generate("plain", jobs)
    images = made.images
    emb = run.grid(run.embed(images.pixels, images.failed), len(words))
    pixels = run.grid(images.pixels, len(words))
    fresh = made.made == len(jobs)
    return {"states": states, "emb": emb, "pixels": pixels,
            "term_seconds": images.seconds * len(o.terms) / len(words) if fresh else math.nan}


def _label(template: str, word: str) -> str:
    return "prompt:" + fill(template, word)


def _complete(*arrays) -> list:
    """Keep the seeds with finite rows in every array and template (failed images dropped)."""
    ok = np.all([np.isfinite(a).reshape(a.shape[0], a.shape[1], -1).all((0, 2)) for a in arrays], axis=0)
    if not ok.any():
        raise ValueError("every seed has a failed image; nothing to analyse")
    return [a[:, ok] for a in arrays]


def _conditioning(run: _Run, plain: dict) -> tuple[EffectTable, ...]:
    o = run.o
    names, jobs = list(o.variants), []
    for template in o.templates:
        base = plain["states"][(o.baseline, template)]
        for hyb in build_hybrids(run.g, template, o.terms, o.baseline, names, base_states=base):
            jobs += [CondJob(seed, hyb.states[name], label=_hybrid_label(hyb, o.baseline, name, run.layout.parts))
                     for name in names for seed in o.seeds]
    made = run.generate("conditioning", jobs).images
    # jobs are (template, term, variant, seed): reorder to (term, variant, template, seed)
    emb = run.embed(made.pixels, made.failed).reshape(run.n_t, len(o.terms), len(names), run.n_s, -1)
    emb = emb.transpose(1, 2, 0, 3, 4)
    run.pictures["conditioning_pixels"] = made.pixels.reshape(run.n_t, len(o.terms), len(names), run.n_s,
                                                              *made.pixels.shape[1:]).transpose(1, 2, 0, 3, 4, 5, 6)
    return tuple(_effects(run, term, plain["emb"][0], plain["emb"][1 + i],
                          {name: emb[i, v] for v, name in enumerate(names)}) for i, term in enumerate(o.terms))


def _hybrid_label(hyb, baseline: str, variant: str, all_parts: Sequence[str]) -> str:
    from ldmprobe.digest import canonical_json
    from ldmprobe.engine.trace_condition import variant_parts

    parts = sorted(variant_parts([variant], all_parts)[variant])
    return "hybrid-v1:" + canonical_json([hyb.template, hyb.term, baseline, parts])


def _effects(run: _Run, term: str, base, term_emb, variants: dict) -> EffectTable:
    arrays = _complete(base, term_emb, *variants.values())
    return variant_effects(term, arrays[0], arrays[1], dict(zip(variants, arrays[2:])), run.probes,
                           run.o.probes, n_boot=run.o.n_boot, seed=run.o.random_state)


def switch_grid(steps: int, ks: Sequence[int] | None = None) -> tuple[int, ...]:
    """Interior switch points: the given ones or the quarters of ``steps`` (0 and ``steps`` left out)."""
    chosen = ks if ks is not None else [round(steps * q) for q in (0.25, 0.5, 0.75)]
    return tuple(sorted({int(k) for k in chosen if 0 < int(k) < steps}))


def _steps(run: _Run, plain: dict) -> tuple[EffectTable, ...]:
    o, n_steps = run.o, run.o.settings.steps
    ks = switch_grid(n_steps, o.switch_ks)
    jobs = []
    for term in o.terms:
        for k in ks:
            for forward in (True, False):
                for template in o.templates:
                    b, t = plain["states"][(o.baseline, template)], plain["states"][(term, template)]
                    labels = (_label(template, o.baseline), _label(template, term))[:: 1 if forward else -1]
                    jobs += [CondJob(seed, b if forward else t, t if forward else b, k,
                                     label=f"switch:{labels[0]}>{labels[1]}@{k}") for seed in o.seeds]
    made = run.generate("steps", jobs).images
    emb = run.grid(run.embed(made.pixels, made.failed), len(jobs) // (run.n_t * run.n_s))
    run.pictures["steps_pixels"] = run.grid(made.pixels, len(jobs) // (run.n_t * run.n_s))  # (term, k, dir) major
    out = []
    for i, term in enumerate(o.terms):
        base, term_emb = plain["emb"][0], plain["emb"][1 + i]
        variants = {"baseline>term@0": term_emb, "term>baseline@0": base}
        for j, k in enumerate(ks):
            row = (i * len(ks) + j) * 2
            variants[f"baseline>term@{k}"], variants[f"term>baseline@{k}"] = emb[row], emb[row + 1]
        variants.update({f"baseline>term@{n_steps}": base, f"term>baseline@{n_steps}": term_emb})
        out.append(_effects(run, term, base, term_emb, variants))
    return tuple(out)


def _token_groups(run: _Run, template: str, term: str) -> dict:
    from ldmprobe.engine.trace_condition import token_groups

    return token_groups(run.layout, template, term, run.o.baseline, run.o.noun)


def _attention(run: _Run, plain: dict) -> tuple[tuple[AttentionTrace, ...], float]:
    from ldmprobe.engine.trace_attention import AttentionRecorder, group_maps, tracing, upsample

    from ldmprobe.engine.trace_generate import _denoiser

    o, pipe = run.o, run.g.pipe
    height, width = o.settings.size(run.g)
    recorder = AttentionRecorder((height // pipe.vae_scale_factor, width // pipe.vae_scale_factor))
    jobs, groups = [], []
    for term in o.terms:
        for template in o.templates:
            positions = _token_groups(run, template, term)
            jobs += [CondJob(seed, plain["states"][(term, template)], label="traced:" + _label(template, term))
                     for seed in o.seeds]
            groups += [positions] * run.n_s
    with tracing(_denoiser(pipe), recorder, family=run.layout.family, text_rows=run.layout.rows):
        result = run.generate("attention", jobs, recorder=recorder)
    if run.layout.family in ("sd3", "flux"):
        run.notes.append(f"attention: joint attention ({run.layout.family}); the maps are the text->image part, "
                         f"renormalised over the text tokens; image patches paid {recorder.text_share:.2f} of "
                         "their attention to the text")
    made = result.images
    same = np.abs(made.pixels.astype(int) - plain["pixels"][1:].reshape(made.pixels.shape).astype(int)).max()
    run.notes.append(f"attention: traced images differ from untraced ones by at most {int(same)}/255")
    regions = _regions(run, made.pixels)
    grouped, names = group_maps(result.maps, groups)
    shares = grouped.mean((2, 3))
    maps = upsample(grouped, (height, width)).reshape(len(o.terms), run.n_t, run.n_s, len(names), height, width)
    run.pictures.update(attention_maps=maps, attention_groups=names, attention_regions=regions)
    out = tuple(attention_numbers(term, maps[i, :, :, names.index("modifier")], maps[i, :, :, names.index("noun")],
                                  shares.reshape(len(o.terms), run.n_t, run.n_s, -1)[i], names,
                                  mass=o.attention_mass, regions=None if regions is None else regions[i])
                for i, term in enumerate(o.terms))
    for a in out:
        if a.spatial_signal == "no":
            test = a.noun_excess_test
            run.notes.append(
                f"attention: {a.term!r}: the noun's own attention does not land on the object (inside "
                f"{a.noun_inside_share:.2f} against an area of {a.region_area:.2f}, p {test.p_value:.2g}); the maps "
                "carry no spatial signal here, so the modifier's excess says nothing about where it looks")
    fresh = result.made == len(jobs)
    return out, made.seconds / plain["term_seconds"] - 1.0 if fresh else math.nan


def _regions(run: _Run, pixels: np.ndarray):
    """Object masks per (term, template, seed) of the traced images, or None for the noun region.

    ``region`` "object": each picture's object segmented from its plain background (images
    without one are left out of the tests); "noun": the noun map's top share; "auto": object when
    nine tenths of the pictures have a plain background, else noun (with a note)."""
    from ldmprobe.analysis.trace import object_region

    choice = run.o.region
    if choice == "noun":
        return None
    masks = [object_region(px) for px in pixels]
    usable = sum(m is not None for m in masks) / max(1, len(masks))
    if choice == "object" and usable == 0:
        raise ValueError("--region object: no traced picture has a plain background to segment its object from; "
                         "use --region noun")
    if choice == "auto" and usable < 0.9:
        run.notes.append(f"attention: measured against the noun's own region (only {usable:.0%} of the pictures "
                         "have a plain background to segment the object from)")
        return None
    run.notes.append(f"attention: measured against each picture's object, segmented from its plain background "
                     f"({usable:.0%} of the pictures)")
    n_terms = len(run.o.terms)
    return [[[masks[(i * run.n_t + t) * run.n_s + s] for s in range(run.n_s)] for t in range(run.n_t)]
            for i in range(n_terms)]


def _vae(run: _Run, plain: dict) -> tuple[tuple[VaeTrace, ...], tuple[VaeGroup, ...]]:
    import time

    from ldmprobe.engine.trace_vae import load_folder, round_trip

    o = run.o
    pixels = plain["pixels"].reshape(-1, *plain["pixels"].shape[3:])
    start = time.perf_counter()
    rt = round_trip(run.g, pixels, batch_size=o.batch_size)
    run.costs.append(("vae", len(pixels), len(pixels), time.perf_counter() - start))
    rt_emb = run.grid(run.embed(rt), 1 + len(o.terms))
    values = run.grid(psnr(pixels, rt), 1 + len(o.terms))
    emb = plain["emb"]
    out = []
    for i, term in enumerate(o.terms):
        tables = _complete(emb[1 + i], rt_emb[1 + i], emb[0], rt_emb[0], values[1 + i][..., None],
                           values[0][..., None])
        out.append(vae_effects(term, tables[4][..., 0], tables[5][..., 0], *tables[:4], run.probes, o.probes,
                               seed=o.random_state))
    groups: tuple[VaeGroup, ...] = ()
    if o.image_folder:
        folder = load_folder(o.image_folder, o.settings.size(run.g))
        folder_rt = round_trip(run.g, folder.pixels, batch_size=o.batch_size)
        groups = vae_groups(folder.groups, psnr(folder.pixels, folder_rt), run.embed(folder.pixels),
                            run.embed(folder_rt), n_boot=o.n_boot, seed=o.random_state)
    return tuple(out), groups


def run_trace(generator, measurer, options: TraceOptions, *, on_progress: Progress | None = None,
              tiny: bool | None = None) -> TraceResult:
    """Trace each term through the chosen sections (``options.sections``) on loaded models
    (``tiny`` None: known from the models' refs, for the tiny default steps and note)."""
    if tiny is None:
        tiny = any(bool(getattr(getattr(m, "ref", None), "is_tiny", False)) for m in (generator, measurer))
    unknown = set(options.sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown trace section(s) {sorted(unknown)}; choose from {SECTIONS}")
    bad = [t for t in options.templates if t.count("{}") != 1]
    if bad or not options.terms or not options.templates:
        raise ValueError(f"trace needs templates with exactly one '{{}}' (not {bad}) and at least one term")
    from ldmprobe.engine.trace_generate import check_pipeline

    check_pipeline(generator)
    options = dataclasses.replace(options, settings=options.settings.for_generator(generator, tiny=tiny))
    run = _Run(generator, measurer, options, on_progress)
    if options.variants is None:
        options = dataclasses.replace(options, variants=run.layout.parts)
        run.o = options
    plain = _plain(run)
    sections = set(options.sections)
    conditioning = _conditioning(run, plain) if "conditioning" in sections else ()
    steps = _steps(run, plain) if "steps" in sections else ()
    attention, overhead = _attention(run, plain) if "attention" in sections else ((), math.nan)
    vae, folder = _vae(run, plain) if "vae" in sections else ((), ())
    plain_images, plain_made, plain_seconds = run.costs[0][1:]
    per = plain_seconds if plain_made == plain_images and plain_seconds > 0 else math.nan  # NaN: plain was cached
    costs = tuple(TraceCost(name, n, made, s, n / plain_images, s / per) for name, n, made, s in run.costs)
    notes = list(run.notes)
    if tiny:
        notes.insert(0, "tiny models: random weights, these numbers mean nothing")
    config = {**dataclasses.asdict(options), "settings": dataclasses.asdict(options.settings)}
    return TraceResult(config, conditioning, attention, steps, vae, folder, costs, overhead, tuple(notes),
                       pictures={**run.pictures, "plain_pixels": plain["pixels"]})


def trace_from_names(spec, options: TraceOptions, *, pipeline: str, measurer: str, revision: str | None = None,
                     device: str = "auto", dtype: str = "auto", offline: bool = False, reporter=None,
                     out=None, report: bool = True, replace: bool = False, runs_dir="runs") -> TraceResult:
    """Resolve and load the models, :func:`run_trace`, and write the run folder (results.json,
    and with ``report`` report.html with its figures). ``spec`` is a sweep ``Spec`` (for its name
    and provenance); ``out`` None: a new ``runs/NAME-trace-YYYYmmdd-HHMMSS[-N]``.

    The run folder is checked and reserved before any model loads (an ``out`` holding files is
    refused unless ``replace``, and then only an ldmprobe run folder is replaced, whole), and
    written beside itself and moved into place at the end, as a sweep's is."""
    from pathlib import Path

    from ldmprobe.results.run_folder import prepare_out, release_out

    out = prepare_out(Path(out) if out is not None else None, spec_name=f"{spec.name}-trace",
                      runs_dir=Path(runs_dir), replace=replace)
    try:
        return _trace_into(spec, options, out, pipeline=pipeline, measurer=measurer, revision=revision,
                           device=device, dtype=dtype, offline=offline, reporter=reporter, report=report,
                           replace=replace)
    except BaseException:
        release_out(out)  # a folder this trace reserved and never wrote is removed again
        raise


def _trace_into(spec, options: TraceOptions, out, *, pipeline, measurer, revision, device, dtype, offline,
                reporter, report, replace) -> TraceResult:
    from ldmprobe.models import sources as models
    from ldmprobe.models.loader import ModelLoader
    from ldmprobe.results.provenance import now_iso, provenance
    from ldmprobe.results.run_folder import staged_folder
    from ldmprobe.results.trace import TraceRun, write_results

    started = now_iso()
    loader = ModelLoader.from_names(pipeline=pipeline, revision=revision, measurer=measurer, device=device,
                                    dtype=dtype, offline=offline)
    from ldmprobe.engine.trace_generate import refuse_architecture

    folder = models.locate_generator(loader.generator_ref, offline=offline, configs_only=True)
    refuse_architecture(folder)
    from ldmprobe.engine.trace_condition import check_variants

    check_variants(options.variants, folder)
    if loader.tiny and reporter is not None:
        reporter.warn(models.TINY_WARNING)
    progress = (lambda section, done, total: reporter.progress(f"trace: {section}", done, total)) if reporter else None
    generator = loader.get_generator()
    result = run_trace(generator, loader.get_measurer(), options, on_progress=progress, tiny=loader.tiny)
    block = provenance(started=started, tiny=loader.tiny, reference=loader.reference, device=loader.device, dtype=loader.dtype,
                       models={"generator": loader.generator_ref.spec, "measurer": loader.measurer_ref.spec,
                               "generator_identity": getattr(generator, "identity", None),
                               "measurer_identity": models.measurer_identity(loader.measurer_ref)})
    result = result.with_run(TraceRun(out=str(out)), spec=spec.to_dict(), provenance=block)
    with staged_folder(out, replace=replace) as staging:
        if report:
            from ldmprobe.render.trace_report import REPORT_NAME, write_trace_report

            _, figures = write_trace_report(staging, result)
            result = result.with_run(TraceRun(out=str(out), report=REPORT_NAME,
                                              figures=tuple(p.relative_to(staging).as_posix() for p in figures)))
        write_results(staging, result)
    return result
