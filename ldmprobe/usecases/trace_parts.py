"""The parts of one ``trace`` run: the plain images (the sweep's own) and each traced part of the model.

:class:`Run` holds what the parts share (models, the sweep's plan and slots, plain images and
embeddings); each part builds its jobs, each at the slot of the sweep image it stands in for,
has them made through the trace store, and turns the images into the analysis's records.
"""

from __future__ import annotations

import math
import time
from types import SimpleNamespace
from typing import Callable, Sequence

import numpy as np

from ldmprobe.analysis.trace import attention_numbers, psnr, vae_effects, vae_groups, variant_effects
from ldmprobe.analysis.trace_results import AttentionTrace, EffectTable, VaeGroup, VaeTrace
from ldmprobe.engine.sweep_setup import SweepSetup
from ldmprobe.engine.trace_condition import build_hybrids, fill
from ldmprobe.engine.trace_generate import CondJob, encode_prompts

Progress = Callable[[str, int, int], None]


class Run:
    """State shared by the sections of one run (models, plan, grid, plain images and embeddings)."""

    def __init__(self, spec, setup: SweepSetup, loader, options, on_progress: Progress | None):
        from ldmprobe.store.images import ImageStore
        from ldmprobe.engine.encode import encode_in_templates
        from ldmprobe.engine.trace_text import layout
        from ldmprobe.engine.workitems import call_shape, unique_items

        self.spec, self.setup, self.loader, self.o = spec, setup, loader, options
        self.store = ImageStore()  # one per run, as a sweep's: its manifest is read once
        self.g, self.m = loader.get_generator(), loader.get_measurer()
        self.recipe, self.shape = setup.recipe, call_shape(setup.recipe, setup.device)
        self.items = {(i.template, i.term, i.seed): i for i in setup.items}
        self.slots = {item.key: n for n, item in enumerate(unique_items(setup.items))}  # the sweep's slots
        self.layout = layout(self.g)
        self.progress = on_progress or (lambda section, done, total: None)
        self.n_t, self.n_s = len(spec.templates), len(spec.seeds)
        self.probes = encode_in_templates(self.m, list(spec.probes))
        self.costs: list[tuple[str, int, int, float]] = []
        self.notes: list[str] = []
        self.pictures: dict = {}

    def slot(self, template: str, word: str, seed: int) -> int:
        """The sweep's slot of the image of (template, word, seed)."""
        return self.slots[self.items[(template, word, seed)].key]

    def generate(self, section: str, jobs: Sequence[CondJob], recorder=None):
        """Images (and attention maps with a recorder) of the jobs, cached ones read back."""
        from ldmprobe.engine.trace_cache import cached_generate

        done = [0]

        def tick(n):
            done[0] += n
            self.progress(section, done[0], len(jobs))

        images, made = cached_generate(self.g, jobs, self.recipe, self.store, shape=self.shape, recorder=recorder,
                                       on_batch=tick)
        bad = sum(f is not None for f in images.failed)
        if bad:
            self.notes.append(f"{section}: {bad} image(s) failed (NaN or black) and are left out")
        self.costs.append((section, len(jobs), made, images.seconds))
        return images, made

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


def plain_images(run: Run) -> dict:
    """Baseline and term images: the sweep's own, made where missing by its engine (its recipe,
    keys, call shape and slots) and read from its store; embedded here."""
    from ldmprobe.engine.generate import missing_items
    from ldmprobe.engine.sweep_images import generate_missing
    from ldmprobe.engine.workitems import unique_items

    spec, store = run.spec, run.store
    words = (spec.baseline,) + tuple(spec.terms)
    items = [run.items[(t, w, s)] for w in words for t in spec.templates for s in spec.seeds]
    needed = unique_items(items)
    done = [len(needed) - len(missing_items(needed, store))]

    def advance(n):
        done[0] += n
        run.progress("plain", done[0], len(needed))

    progress = SimpleNamespace(advance=advance, close=lambda: None)  # the sweep's progress, as trace reports it
    advance(0)  # first report: what the cache already holds
    start = time.perf_counter()
    made, _ = generate_missing(run.setup, run.loader, None, store, items=needed, progress=progress)
    seconds = time.perf_counter() - start
    failed = [(store.failure(i.key) or {}).get("failed") for i in items]
    loaded = [None if f else store.load(i.key) for i, f in zip(items, failed)]
    failed = [f or (None if x is not None else "missing") for f, x in zip(failed, loaded)]
    if any(failed):
        run.notes.append(f"plain: {sum(map(bool, failed))} image(s) failed (NaN or black) and are left out")
    run.costs.append(("plain", len(items), sum(i.key in made for i in items), seconds))
    size = next((np.asarray(x[0]).shape for x in loaded if x is not None), (run.recipe.height, run.recipe.width, 3))
    pixels = np.stack([np.zeros(size, np.uint8) if x is None else np.asarray(x[0], np.uint8) for x in loaded])
    states = {(w, t): c for t in spec.templates for w, c in
              zip(words, encode_prompts(run.g, [fill(t, w) for w in words]))}
    return {"states": states, "emb": run.grid(run.embed(pixels, failed), len(words)),
            "pixels": run.grid(pixels, len(words)),
            "term_seconds": seconds * len(spec.terms) / len(words) if len(made) == len(needed) else math.nan}


def _label(template: str, word: str) -> str:
    return "prompt:" + fill(template, word)


def _complete(*arrays) -> list:
    """Keep the seeds with finite rows in every array and template (failed images dropped)."""
    ok = np.all([np.isfinite(a).reshape(a.shape[0], a.shape[1], -1).all((0, 2)) for a in arrays], axis=0)
    if not ok.any():
        raise ValueError("every seed has a failed image; nothing to analyse")
    return [a[:, ok] for a in arrays]


def conditioning(run: Run, plain: dict) -> tuple[EffectTable, ...]:
    o = run.spec
    names, jobs = list(run.o.variants), []
    for template in o.templates:
        base = plain["states"][(o.baseline, template)]
        terms = [plain["states"][(term, template)] for term in o.terms]
        for hyb in build_hybrids(run.g, template, o.terms, o.baseline, names, base_states=base, term_states=terms):
            jobs += [CondJob(seed, hyb.states[name], label=_hybrid_label(hyb, o.baseline, name, run.layout.parts),
                             slot=run.slot(template, hyb.term, seed)) for name in names for seed in o.seeds]
    made, _ = run.generate("conditioning", jobs)
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


def _effects(run: Run, term: str, base, term_emb, variants: dict) -> EffectTable:
    arrays = _complete(base, term_emb, *variants.values())
    return variant_effects(term, arrays[0], arrays[1], dict(zip(variants, arrays[2:])), run.probes,
                           run.spec.probes, n_boot=run.o.n_boot, seed=run.o.stats_seed)


def switch_grid(steps: int, ks: Sequence[int] | None = None) -> tuple[int, ...]:
    """Interior switch points: the given ones or the quarters of ``steps`` (0 and ``steps`` left out)."""
    chosen = ks if ks is not None else [round(steps * q) for q in (0.25, 0.5, 0.75)]
    return tuple(sorted({int(k) for k in chosen if 0 < int(k) < steps}))


def steps(run: Run, plain: dict) -> tuple[EffectTable, ...]:
    o, n_steps = run.spec, run.recipe.steps
    ks = switch_grid(n_steps, run.o.switch_ks)
    jobs = []
    for term in o.terms:
        for k in ks:
            for forward in (True, False):
                for template in o.templates:
                    b, t = plain["states"][(o.baseline, template)], plain["states"][(term, template)]
                    labels = (_label(template, o.baseline), _label(template, term))[:: 1 if forward else -1]
                    jobs += [CondJob(seed, b if forward else t, t if forward else b, k,
                                     label=f"switch:{labels[0]}>{labels[1]}@{k}", slot=run.slot(template, term, seed))
                             for seed in o.seeds]
    made, _ = run.generate("steps", jobs)
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


def _token_groups(run: Run, template: str, term: str) -> dict:
    from ldmprobe.engine.trace_condition import token_groups

    return token_groups(run.layout, template, term, run.spec.baseline, run.o.noun)


def attention(run: Run, plain: dict) -> tuple[tuple[AttentionTrace, ...], float]:
    from ldmprobe.engine.trace_attention import AttentionRecorder, group_maps, tracing, upsample

    from ldmprobe.engine.trace_generate import _denoiser

    o, pipe = run.spec, run.g.pipe
    height, width = run.recipe.height, run.recipe.width
    recorder = AttentionRecorder((height // pipe.vae_scale_factor, width // pipe.vae_scale_factor))
    jobs, groups = [], []
    for term in o.terms:
        for template in o.templates:
            positions = _token_groups(run, template, term)
            jobs += [CondJob(seed, plain["states"][(term, template)], label="traced:" + _label(template, term),
                             slot=run.slot(template, term, seed)) for seed in o.seeds]
            groups += [positions] * run.n_s
    with tracing(_denoiser(pipe), recorder, family=run.layout.family, text_rows=run.layout.rows):
        made, n_made = run.generate("attention", jobs, recorder=recorder)
    if run.layout.family in ("sd3", "flux"):
        run.notes.append(f"attention: joint attention ({run.layout.family}); the maps are the text->image part, "
                         f"renormalised over the text tokens; image patches paid {recorder.text_share:.2f} of "
                         "their attention to the text")
    same = np.abs(made.pixels.astype(int) - plain["pixels"][1:].reshape(made.pixels.shape).astype(int)).max()
    run.notes.append(f"attention: traced images differ from untraced ones by at most {int(same)}/255")
    regions = _regions(run, made.pixels)
    grouped, names = group_maps(made.maps, groups)
    shares = grouped.mean((2, 3))
    maps = upsample(grouped, (height, width)).reshape(len(o.terms), run.n_t, run.n_s, len(names), height, width)
    run.pictures.update(attention_maps=maps, attention_groups=names, attention_regions=regions)
    out = tuple(attention_numbers(term, maps[i, :, :, names.index("modifier")], maps[i, :, :, names.index("noun")],
                                  shares.reshape(len(o.terms), run.n_t, run.n_s, -1)[i], names,
                                  mass=run.o.attention_mass, regions=None if regions is None else regions[i])
                for i, term in enumerate(o.terms))
    for a in out:
        if a.spatial_signal == "no":
            test = a.noun_excess_test
            run.notes.append(
                f"attention: {a.term!r}: the noun's own attention does not land on the object (inside "
                f"{a.noun_inside_share:.2f} against an area of {a.region_area:.2f}, p {test.p_value:.2g}); the maps "
                "carry no spatial signal here, so the modifier's excess says nothing about where it looks")
    return out, made.seconds / plain["term_seconds"] - 1.0 if n_made == len(jobs) else math.nan


def _regions(run: Run, pixels: np.ndarray):
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
    n_terms = len(run.spec.terms)
    return [[[masks[(i * run.n_t + t) * run.n_s + s] for s in range(run.n_s)] for t in range(run.n_t)]
            for i in range(n_terms)]


def vae(run: Run, plain: dict) -> tuple[tuple[VaeTrace, ...], tuple[VaeGroup, ...]]:
    from ldmprobe.engine.trace_vae import load_folder, round_trip

    o = run.spec
    pixels = plain["pixels"].reshape(-1, *plain["pixels"].shape[3:])
    start = time.perf_counter()
    rt = round_trip(run.g, pixels, batch_size=run.shape)
    run.costs.append(("vae", len(pixels), 0, time.perf_counter() - start))  # round trips of the plain images: none made
    rt_emb = run.grid(run.embed(rt), 1 + len(o.terms))
    values = run.grid(psnr(pixels, rt), 1 + len(o.terms))
    emb = plain["emb"]
    out = []
    for i, term in enumerate(o.terms):
        tables = _complete(emb[1 + i], rt_emb[1 + i], emb[0], rt_emb[0], values[1 + i][..., None],
                           values[0][..., None])
        out.append(vae_effects(term, tables[4][..., 0], tables[5][..., 0], *tables[:4], run.probes, o.probes,
                               seed=run.o.stats_seed))
    groups: tuple[VaeGroup, ...] = ()
    if run.o.image_folder:
        folder = load_folder(run.o.image_folder, (run.recipe.height, run.recipe.width))
        folder_rt = round_trip(run.g, folder.pixels, batch_size=run.shape)
        groups = vae_groups(folder.groups, psnr(folder.pixels, folder_rt), run.embed(folder.pixels),
                            run.embed(folder_rt), n_boot=run.o.n_boot, seed=run.o.stats_seed)
    return tuple(out), groups
