"""A sweep: spec → work items → cached images and embeddings → statistics → run folder.

Each stage is a plain function over plain data, so a notebook can stop at any of them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ldmprobe import SCHEMA_VERSION
from ldmprobe.engine import cache
from ldmprobe.models import sources as models
from ldmprobe.errors import BadInputError, ExitCode, LdmprobeError
from ldmprobe.engine.workitems import Recipe, WorkItem, plan, sha256_hex, canonical_json, unique_items
from ldmprobe.results.provenance import now_iso, provenance
from ldmprobe.specs.sweep import Spec, check_prompt_lengths

DEFAULT_STEPS = 50
DEFAULT_TINY_STEPS = 4
DEFAULT_GUIDANCE = 7.5


class Interrupted(LdmprobeError):
    exit_code = ExitCode.INTERRUPTED


@dataclass
class SweepOptions:
    """Everything a sweep needs besides the spec (CLI flags map one to one)."""

    pipeline: str = models.DEFAULT_GENERATOR
    revision: str | None = None
    measurer: str = models.DEFAULT_MEASURER
    device: str = "auto"
    dtype: str = "auto"
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    negative_prompt: str | None = None
    batch_size: int | None = None
    allow_truncation: bool = False
    nsfw: str = "keep"  # keep | drop
    offline: bool = False
    out: Path | None = None
    runs_dir: Path = Path("runs")
    stats_seed: int = 0
    permutations: int = 9999
    bootstrap: int = 2000
    probe_templates: tuple[str, ...] | None = None
    vocab: tuple[str, ...] = ("adjectives", "nationalities", "objects", "professions")
    write_images: bool = True


@dataclass
class SweepPlan:
    spec: Spec
    options: SweepOptions
    generator_ref: models.GeneratorRef
    measurer_ref: models.MeasurerRef
    generator_folder: Path
    device: str
    dtype: str
    recipe: Recipe
    items: list[WorkItem]
    truncated: list[str] = field(default_factory=list)

    @property
    def tiny(self) -> bool:
        return self.generator_ref.is_tiny or self.measurer_ref.is_tiny


# --------------------------------------------------------------------------- planning


def native_size(folder: Path) -> int:
    """The generator's native image side: UNet sample size times the VAE's downscale."""
    unet = json.loads((folder / "unet" / "config.json").read_text()) if (folder / "unet" / "config.json").is_file() else {}
    vae = json.loads((folder / "vae" / "config.json").read_text()) if (folder / "vae" / "config.json").is_file() else {}
    sample = unet.get("sample_size", 64)
    sample = sample[0] if isinstance(sample, (list, tuple)) else sample
    factor = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
    return int(sample) * factor


def make_plan(spec: Spec, options: SweepOptions) -> SweepPlan:
    """Resolve models (configs only), build the recipe and the keyed work items."""
    generator_ref = models.resolve_generator(options.pipeline, options.revision)
    measurer_ref = models.resolve_measurer(options.measurer)
    if options.nsfw not in ("keep", "drop"):
        raise BadInputError(f"--nsfw must be keep or drop, not {options.nsfw!r}")
    folder = models.locate_generator(generator_ref, offline=options.offline, configs_only=True)
    models.ensure_measurer_available(measurer_ref, offline=options.offline)
    device, dtype = models.pick_device(options.device)
    if options.dtype != "auto":
        dtype = options.dtype
    size = native_size(folder)
    negative = options.negative_prompt if options.negative_prompt is not None else spec.negative_prompt
    recipe = Recipe(
        pipeline=models.generator_identity(generator_ref, folder),
        scheduler=models.scheduler_identity(folder),
        steps=options.steps or spec.steps or (DEFAULT_TINY_STEPS if generator_ref.is_tiny else DEFAULT_STEPS),
        guidance=options.guidance if options.guidance is not None else (
            spec.guidance if spec.guidance is not None else DEFAULT_GUIDANCE),
        width=options.width or spec.width or size,
        height=options.height or spec.height or size,
        dtype=dtype,
        negative_prompt=negative,
    )
    for side in ("width", "height"):
        if getattr(recipe, side) % 8:
            raise BadInputError(f"--{side} {getattr(recipe, side)} must be a multiple of 8.")
    counter = models.TokenCounter(generator_ref, folder, offline=options.offline)
    prompts = spec.prompts() + ([recipe.negative_prompt] if recipe.negative_prompt else [])
    try:
        truncated = check_prompt_lengths(prompts, counter, max_tokens=counter.max_length,
                                         allow_truncation=options.allow_truncation)
    finally:
        counter.save()
    return SweepPlan(
        spec=spec, options=options, generator_ref=generator_ref, measurer_ref=measurer_ref,
        generator_folder=folder, device=device, dtype=dtype, recipe=recipe,
        items=plan(spec, recipe), truncated=list(truncated),
    )


def dry_run_document(sweep_plan: SweepPlan) -> dict:
    """The plan, printed by --dry-run without loading any model."""
    store = cache.ImageStore()
    unique = unique_items(sweep_plan.items)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "sweep-plan",
        "spec": sweep_plan.spec.to_dict(),
        "config": config_block(sweep_plan, batch_size=None),
        "counts": {
            "planned": len(sweep_plan.items),
            "unique": len(unique),
            "cached": sum(store.has(item.key) for item in unique),
        },
        "items": [
            {"template": i.template, "term": i.term, "seed": i.seed, "prompt": i.prompt, "key": i.key,
             "cached": store.has(i.key)}
            for i in sweep_plan.items
        ],
    }


def config_block(sweep_plan: SweepPlan, batch_size: int | None) -> dict:
    recipe = sweep_plan.recipe
    return {
        "pipeline": {"spec": sweep_plan.generator_ref.spec, "source": sweep_plan.generator_ref.source,
                     "identity": recipe.pipeline_dict},
        "measurer": {"spec": sweep_plan.measurer_ref.spec, "source": sweep_plan.measurer_ref.source,
                     "identity": models.measurer_identity(sweep_plan.measurer_ref)},
        "scheduler": recipe.scheduler_dict,
        "steps": recipe.steps,
        "guidance": recipe.guidance,
        "width": recipe.width,
        "height": recipe.height,
        "dtype": recipe.dtype,
        "negative_prompt": recipe.negative_prompt,
        "device": sweep_plan.device,
        "batch_size": batch_size,
        "nsfw": sweep_plan.options.nsfw,
        "statistics": {"seed": sweep_plan.options.stats_seed, "permutations": sweep_plan.options.permutations,
                       "bootstrap": sweep_plan.options.bootstrap},
    }


# --------------------------------------------------------------------------- execution


class Progress:
    """Whole-job progress on stderr: done/total, cached vs generated, images/s, ETA.

    In a distributed run every rank adds its images to ``shared`` (a counter summed across
    ranks) and only the rank with ``show`` (rank 0) draws, so one display covers the job.
    """

    def __init__(self, terminal, total: int, cached: int, label: str, shared=None, show: bool = True):
        self.terminal, self.total, self.cached, self.label = terminal, total, cached, label
        self.shared, self.show = shared, show
        self.generated = 0  # across all ranks when ``shared``
        self.started = time.perf_counter()
        self._bar = None
        stderr_tty = bool(getattr(terminal.stderr, "isatty", lambda: False)())
        if show and stderr_tty and total > cached:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress
            from rich.progress import TextColumn, TimeRemainingColumn

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"), TimeRemainingColumn(),
                console=terminal.err_console(), transient=False,
            )
            self._task = self._bar.add_task(label, total=total, completed=cached, detail="")
            self._bar.start()

    def advance(self, n: int) -> None:
        if self.shared is not None:
            self.shared.add(n)
            self.refresh()
        else:
            self._draw(self.generated + n)

    def refresh(self) -> None:
        """Redraw with the count summed across ranks (a distributed run's rank 0, while it waits)."""
        if self.shared is not None:
            generated = self.shared.value()
            if generated != self.generated:
                self._draw(generated)

    def _draw(self, generated: int) -> None:
        n, self.generated = generated - self.generated, generated
        if not self.show:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.generated / elapsed
        remaining = self.total - self.cached - self.generated
        detail = f"cached {self.cached}, new {self.generated}, {rate:.2f} img/s"
        if self._bar is not None:
            self._bar.update(self._task, advance=n, detail=detail)
        else:
            eta = remaining / rate if rate > 0 else float("nan")
            self.terminal.info(f"{self.label}: {self.cached + self.generated}/{self.total} ({detail}, ETA {eta:.0f}s)")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@dataclass
class Loaded:
    """Models loaded lazily: a fully cached rerun loads none."""

    sweep_plan: SweepPlan
    generator: Any = None
    measurer: Any = None

    def get_generator(self):
        if self.generator is None:
            p = self.sweep_plan
            self.generator = models.load_generator(p.generator_ref, device=p.device, dtype=p.dtype,
                                                   offline=p.options.offline)
        return self.generator

    def get_measurer(self):
        if self.measurer is None:
            p = self.sweep_plan
            self.measurer = models.load_measurer(p.measurer_ref, device=p.device, offline=p.options.offline)
        return self.measurer


@dataclass
class ItemRecord:
    item: WorkItem
    cached: bool
    failed: str | None = None
    nsfw: bool | None = None
    embedding: np.ndarray | None = None


def generate_missing(sweep_plan: SweepPlan, loaded: Loaded, terminal, store: cache.ImageStore,
                     items: list[WorkItem] | None = None, progress: Progress | None = None) -> tuple[set[str], int]:
    """Make every image not yet cached; return (keys generated now, batch size used).

    ``items`` limits the work to those items (a rank's share); a given ``progress`` is
    advanced but left open (the caller closes it).
    """
    from ldmprobe.engine.generate import default_batch_size, generate_into_store, missing_items

    unique = unique_items(sweep_plan.items)
    missing = missing_items(unique if items is None else items, store)
    batch_size = sweep_plan.options.batch_size or default_batch_size(sweep_plan.device)
    if not missing:
        return set(), batch_size
    own_progress = progress is None
    if own_progress:
        progress = Progress(terminal, len(unique), len(unique) - len(missing), "generating")
    try:
        made, batch_size, halvings = generate_into_store(
            loaded.get_generator(), sweep_plan.recipe, missing, store, batch_size=batch_size,
            on_batch=progress.advance,
        )
    except KeyboardInterrupt:
        progress.close()
        done = sum(store.has(item.key) for item in unique)
        raise Interrupted(
            f"Interrupted: {done} of {len(unique)} images are cached (nothing half-written). "
            "Run the same command again to resume; only the missing images will be made."
        ) from None
    if own_progress:
        progress.close()
    if halvings:
        terminal.warn(f"CUDA ran out of memory; batch size reduced to {batch_size}.")
    return made, batch_size


def measurer_namespace(sweep_plan: SweepPlan) -> str:
    return cache.identity_namespace(models.measurer_identity(sweep_plan.measurer_ref))


def embed_items(sweep_plan: SweepPlan, loaded: Loaded, store: cache.ImageStore, made: set[str],
                items: list[WorkItem] | None = None, merge: bool = False) -> dict[str, ItemRecord]:
    """Image embeddings of every item (or of ``items``) by the measurer (cached per image key + measurer).

    ``merge`` (rank 0 of a distributed run, after every rank embedded its share) embeds
    nothing: every item must have a cached embedding or failure record, else it is an error.
    """
    from ldmprobe.engine.encode import encode_images

    emb_store = cache.embedding_store(models.measurer_identity(sweep_plan.measurer_ref))
    records: dict[str, ItemRecord] = {}
    to_embed: list[tuple[str, Any]] = []
    absent: list[str] = []
    for item in unique_items(sweep_plan.items) if items is None else items:
        record = ItemRecord(item=item, cached=item.key not in made)
        failure = store.failure(item.key)
        if failure is not None:
            record.failed = failure.get("failed", "failed")
        else:
            # Images were validated (fully decoded) when the work list was made; decode again
            # only those still to embed, and read just the metadata of the rest.
            vector = emb_store.load(item.key)
            loaded_image = store.load(item.key) if vector is None else None
            metadata = loaded_image[1] if loaded_image is not None else (
                store.metadata(item.key) if vector is not None else None)
            if merge and (metadata is None or vector is None):
                absent.append(item.key)
                continue
            if metadata is None:
                raise LdmprobeError(f"image {item.key} vanished from the cache during the run; rerun to regenerate it.")
            record.nsfw = metadata.get("nsfw")
            if vector is None:
                to_embed.append((item.key, loaded_image[0]))
            else:
                record.embedding = vector
        records[item.key] = record
    if absent:
        raise LdmprobeError(
            f"merging the ranks' work: {len(records)} of {len(records) + len(absent)} planned images have a cached "
            f"image and embedding (or failure record); {len(absent)} do not (e.g. {', '.join(absent[:3])}). No rank "
            "wrote them, or they were removed from the cache meanwhile. Rerun the same command to make them."
        )
    for start in range(0, len(to_embed), 64):
        chunk = to_embed[start : start + 64]
        vectors = encode_images(loaded.get_measurer(), [image for _, image in chunk])
        for (key, _), vector in zip(chunk, vectors):
            emb_store.save(key, vector)
            records[key].embedding = vector
    return records


def text_embeddings(sweep_plan: SweepPlan, loaded: Loaded, texts: list[str], templates: tuple[str, ...] = ()) -> np.ndarray:
    """Measurer text embeddings (optionally template-averaged), cached per text."""
    from ldmprobe.engine.encode import encode_in_templates

    store = cache.ArrayStore(f"text/{measurer_namespace(sweep_plan)}")
    keys = [sha256_hex(canonical_json({"text": t, "templates": list(templates)})) for t in texts]
    rows: list[np.ndarray | None] = [store.load(k) for k in keys]
    missing = [i for i, row in enumerate(rows) if row is None]
    if missing:
        fresh = encode_in_templates(loaded.get_measurer(), [texts[i] for i in missing], templates)
        for i, vector in zip(missing, fresh):
            store.save(keys[i], vector)
            rows[i] = vector
    return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def conditioning_embeddings(sweep_plan: SweepPlan, loaded: Loaded, prompts: list[str]) -> np.ndarray | None:
    """The generator's (77, d) conditioning per prompt, cached per pipeline + prompt (None if it has none)."""
    from ldmprobe.engine.generate import encode_conditioning

    namespace = cache.identity_namespace(sweep_plan.recipe.pipeline_dict)
    store = cache.ArrayStore(f"conditioning/{namespace}")
    keys = [sha256_hex(p) for p in prompts]
    rows = [store.load(k) for k in keys]
    missing = [i for i, row in enumerate(rows) if row is None]
    if missing:
        fresh = encode_conditioning(loaded.get_generator(), [prompts[i] for i in missing])
        if fresh is None:
            return None
        for i, array in zip(missing, fresh):
            store.save(keys[i], array.astype(np.float16))
            rows[i] = array
    return np.stack([np.asarray(r, dtype=np.float32) for r in rows])


# --------------------------------------------------------------------------- statistics

DIRECTION_K = 10


def term_seed(stats_seed: int, term: str) -> int:
    """The statistics seed of one term: fixed by --stats-seed and the term alone, so adding,
    removing or reordering other terms leaves its p-values and intervals unchanged."""
    return int(sha256_hex(canonical_json({"stats_seed": stats_seed, "term": term}))[:8], 16)


def direction_vocabulary(sweep_plan: SweepPlan, loaded: Loaded, templates: tuple[str, ...]):
    """Words (the --vocab lists plus the probes) and their template-averaged embeddings.

    Embeddings come from the vocabulary cache shared with ``ldmprobe neighbours``, so a
    rerun loads no model for them.
    """
    from ldmprobe.analysis.neighbours import cached_vocabulary, embed_vocabulary
    from ldmprobe.specs.vocab import Vocabulary, load_vocabulary

    if not sweep_plan.options.vocab:
        words = list(dict.fromkeys(sweep_plan.spec.probes))
        if len(words) < 2:
            return [], None
        return words, text_embeddings(sweep_plan, loaded, words, templates)
    listed = load_vocabulary(sweep_plan.options.vocab)
    seen = {w.casefold() for w in listed.words}
    extra = tuple(p for p in sweep_plan.spec.probes if p.casefold() not in seen)
    vocabulary = Vocabulary(words=listed.words + extra, sources=listed.sources + (("probes",) if extra else ()))
    identity = models.measurer_identity(sweep_plan.measurer_ref)
    vectors = cached_vocabulary(identity, vocabulary, templates)
    if vectors is None:
        vectors = embed_vocabulary(loaded.get_measurer(), vocabulary, templates).vectors
    return list(vocabulary.words), vectors



def sweep_statistics(sweep_plan: SweepPlan, loaded: Loaded, records: dict[str, ItemRecord]) -> dict:
    """Per-term drift, significance, probe shifts and text drift (see DESIGN.md Statistics)."""
    from ldmprobe.analysis import stats
    from ldmprobe.engine.encode import DEFAULT_PROBE_TEMPLATES

    spec, opts = sweep_plan.spec, sweep_plan.options
    by_cell: dict[tuple[int, str, int], ItemRecord] = {}
    for item in sweep_plan.items:
        by_cell[(item.template_index, item.term, item.seed)] = records[item.key]

    def usable(record: ItemRecord) -> bool:
        return record.failed is None and not (opts.nsfw == "drop" and record.nsfw)

    templates = list(spec.templates)
    probe_templates = opts.probe_templates if opts.probe_templates is not None else DEFAULT_PROBE_TEMPLATES
    probes = list(spec.probes)
    probe_emb = text_embeddings(sweep_plan, loaded, probes, tuple(probe_templates)) if probes else None
    vocab_words, vocab_emb = direction_vocabulary(sweep_plan, loaded, tuple(probe_templates))
    prompt_list = sorted({item.prompt for item in sweep_plan.items})
    prompt_emb = dict(zip(prompt_list, text_embeddings(sweep_plan, loaded, prompt_list)))
    conditioning = conditioning_embeddings(sweep_plan, loaded, prompt_list)
    cond = dict(zip(prompt_list, conditioning)) if conditioning is not None else None

    def cond_drift(m_prompts: list[str], b_prompts: list[str]) -> float | None:
        if cond is None:
            return None
        return stats.sequence_drift(np.stack([cond[p] for p in m_prompts]), np.stack([cond[p] for p in b_prompts]))
    from ldmprobe.specs.sweep import expand

    base_rows, base_groups = [], []
    for t in range(len(templates)):
        for s in spec.seeds:
            record = by_cell[(t, spec.baseline, s)]
            if usable(record):
                base_rows.append(record.embedding)
                base_groups.append(t)
    base_all = np.stack(base_rows) if base_rows else np.zeros((0, 1))
    spread_all = stats.baseline_spread(base_all, base_groups) if len(base_rows) else float("nan")

    terms_out = []
    for term in spec.terms:
        m_rows, b_rows, groups = [], [], []
        per_template = []
        failed = flagged = dropped = 0
        for t, template in enumerate(templates):
            tm, tb = [], []
            for s in spec.seeds:
                rm, rb = by_cell[(t, term, s)], by_cell[(t, spec.baseline, s)]
                failed += rm.failed is not None
                flagged += bool(rm.nsfw)
                dropped += opts.nsfw == "drop" and bool(rm.nsfw)
                if usable(rm) and usable(rb):
                    tm.append(rm.embedding)
                    tb.append(rb.embedding)
            m_prompt, b_prompt = expand(template, term), expand(template, spec.baseline)
            entry = {
                "template": template,
                "n_pairs": len(tm),
                "prompt": m_prompt,
                "text_drift": {
                    "measurer": stats.text_drift(prompt_emb[m_prompt][None], prompt_emb[b_prompt][None]),
                    "conditioning": cond_drift([m_prompt], [b_prompt]),
                },
            }
            if tm:
                entry["image_drift"] = {
                    "centroid": stats.centroid_drift(np.stack(tm), np.stack(tb)),
                    "paired": stats.paired_drift(np.stack(tm), np.stack(tb)),
                    "baseline_spread": stats.baseline_spread(np.stack(tb), [0] * len(tb)),
                }
            else:
                entry["image_drift"] = {"centroid": None, "paired": None, "baseline_spread": None}
            per_template.append(entry)
            m_rows += tm
            b_rows += tb
            groups += [t] * len(tm)
        m_prompts = [expand(t, term) for t in templates]
        b_prompts = [expand(t, spec.baseline) for t in templates]
        text_drift = {
            "measurer": stats.text_drift(np.stack([prompt_emb[p] for p in m_prompts]),
                                         np.stack([prompt_emb[p] for p in b_prompts])),
            "conditioning": cond_drift(m_prompts, b_prompts),
        }
        result: dict[str, Any] = {
            "term": term, "n_pairs": len(m_rows), "failed": failed, "flagged": flagged, "dropped": dropped,
            "text_drift": text_drift, "templates": per_template,
        }
        if len(m_rows) >= 1:
            m_arr, b_arr = np.stack(m_rows), np.stack(b_rows)
            seed = term_seed(opts.stats_seed, term)
            test = stats.drift_permutation_test(m_arr, b_arr, groups, n_resamples=opts.permutations, seed=seed)
            result["image_drift"] = {
                "centroid": stats.centroid_drift(m_arr, b_arr),
                "paired": stats.paired_drift(m_arr, b_arr),
                "baseline_spread": spread_all,
                "statistic": test.statistic,
                "p_value": test.p_value,
                "p_adjusted": None,
                "exact": test.exact,
                "n_resamples": test.n_resamples,
                "min_p": test.min_p,
                "seed": test.seed,
            }
            probe_rows = []
            if probe_emb is not None:
                shifts = stats.probe_shift(m_arr, b_arr, probe_emb, groups, n_resamples=opts.permutations,
                                           n_boot=opts.bootstrap, seed=seed)
                tshift = stats.text_shift(np.stack([prompt_emb[p] for p in m_prompts]),
                                          np.stack([prompt_emb[p] for p in b_prompts]), probe_emb)
                for shift, text_value in zip(shifts, tshift):
                    probe_rows.append({
                        "probe": probes[shift.probe_index], "shift": shift.shift, "ci_low": shift.ci_low,
                        "ci_high": shift.ci_high, "p_value": shift.p_value, "p_adjusted": None,
                        "exact": shift.exact, "text_shift": float(text_value),
                    })
                probe_rows.sort(key=lambda row: row["shift"], reverse=True)
            result["probes"] = probe_rows
            if vocab_emb is not None and len(vocab_words) >= 2:
                nb = stats.direction_neighbours(m_arr.mean(0), b_arr.mean(0), vocab_emb, vocab_words,
                                                k=min(DIRECTION_K, len(vocab_words)))
                result["direction_neighbours"] = nb.to_dict()
            else:
                result["direction_neighbours"] = {"toward": [], "away": []}
        else:
            result["image_drift"] = {"centroid": None, "paired": None, "baseline_spread": spread_all,
                                     "statistic": None, "p_value": None, "p_adjusted": None, "exact": None,
                                     "n_resamples": None, "min_p": None, "seed": None}
            result["probes"] = []
            result["direction_neighbours"] = {"toward": [], "away": []}
        terms_out.append(result)

    # Benjamini–Hochberg across the run: drift tests together, (term, probe) tests together.
    drift_p = [t["image_drift"]["p_value"] for t in terms_out]
    adjusted = stats.benjamini_hochberg([np.nan if p is None else p for p in drift_p])
    for term_result, adj in zip(terms_out, adjusted):
        term_result["image_drift"]["p_adjusted"] = None if np.isnan(adj) else float(adj)
    probe_refs = [row for t in terms_out for row in t["probes"]]
    if probe_refs:
        for row, adj in zip(probe_refs, stats.benjamini_hochberg([row["p_value"] for row in probe_refs])):
            row["p_adjusted"] = float(adj)

    summary = {"baseline_spread": spread_all, "text_image_rank_correlation": None}
    pairs = [(t["text_drift"]["measurer"], t["image_drift"]["centroid"]) for t in terms_out
             if t["image_drift"]["centroid"] is not None]
    if len(pairs) >= 3:
        from scipy.stats import spearmanr

        rho = spearmanr([a for a, _ in pairs], [b for _, b in pairs])
        summary["text_image_rank_correlation"] = {
            "spearman_rho": float(rho.statistic), "p_value": float(rho.pvalue), "n_terms": len(pairs),
            "text": "measurer", "image": "centroid",
        }
    terms_out.sort(key=lambda t: -(t["image_drift"]["centroid"] if t["image_drift"]["centroid"] is not None else -1))
    return {"terms": terms_out, "summary": summary}


# --------------------------------------------------------------------------- run folder


def default_out(spec: Spec, runs_dir: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return runs_dir / f"{spec.name}-{stamp}"


def check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file, not a folder. Choose another path for the run folder.")
    if out.exists() and not os.access(out, os.W_OK):
        raise BadInputError(f"--out {out} is not writable.")


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def write_run_folder(out: Path, document: dict, records: dict[str, ItemRecord], sweep_plan: SweepPlan,
                     store: cache.ImageStore) -> None:
    """results.json, items.jsonl, images/ and one contact sheet per template."""
    from ldmprobe.render.terminal import to_json
    from ldmprobe.render.report import contact_sheet

    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for item in sweep_plan.items:
        record = records[item.key]
        image_rel = None
        if record.failed is None and sweep_plan.options.write_images:
            image_rel = f"images/{item.key}.png"
            _link_or_copy(store.path(item.key), out / image_rel)
        lines.append(to_json({
            "template": item.template, "template_index": item.template_index, "term": item.term,
            "is_baseline": item.is_baseline, "seed": item.seed, "prompt": item.prompt, "key": item.key,
            "image": image_rel, "cached": record.cached,
            "flags": {"failed": record.failed, "nsfw": record.nsfw,
                      "dropped": sweep_plan.options.nsfw == "drop" and bool(record.nsfw)},
        }, indent=None))
    cache.atomic_write_text(out / "items.jsonl", "\n".join(lines) + "\n")
    sheets = []
    spec = sweep_plan.spec
    for t, template in enumerate(spec.templates):
        rows = []
        for term in spec.all_terms:
            row = []
            for seed in spec.seeds:
                item = next(i for i in sweep_plan.items if i.template_index == t and i.term == term and i.seed == seed)
                loaded = store.load(item.key) if records[item.key].failed is None else None
                row.append(loaded[0] if loaded else None)
            rows.append((term or "(baseline)", row))
        name = f"contact-{t:02d}.png"
        contact_sheet(template, rows, [str(s) for s in spec.seeds]).save(out / f".{name}.tmp", format="PNG")
        os.replace(out / f".{name}.tmp", out / name)
        sheets.append({"template": template, "path": name})
    document["run"]["contact_sheets"] = sheets
    cache.atomic_write_text(out / "results.json", to_json(document) + "\n")


# --------------------------------------------------------------------------- the whole sweep


def run_sweep(spec: Spec, options: SweepOptions, terminal) -> dict | None:
    """Plan, generate, embed, compute statistics, write the run folder; return the document.

    Under ``torchrun`` / ``accelerate launch`` every rank makes and embeds its share of the
    work into the shared cache; rank 0 then merges, writes the run folder and returns the
    document, and the other ranks return None (they print nothing).
    """
    from ldmprobe.engine import distributed

    started = now_iso()
    out = options.out or default_out(spec, options.runs_dir)
    check_out_dir(out)
    sweep_plan = make_plan(spec, options)
    ctx = distributed.setup()
    try:
        sweep_plan = replace(sweep_plan, device=ctx.device(sweep_plan.device))
        if sweep_plan.tiny and ctx.is_main:
            terminal.warn(models.TINY_WARNING)
        if sweep_plan.truncated and ctx.is_main:
            terminal.warn(f"{len(sweep_plan.truncated)} prompt(s) exceed the tokenizer limit and will be truncated.")
        store = cache.ImageStore()
        loaded = Loaded(sweep_plan)
        unique = unique_items(sweep_plan.items)
        timings = {}
        # The global work list, read from the shared cache by rank 0 alone so that every rank
        # agrees on it: items whose image or image embedding is missing, sorted by key.
        plan_digest = sha256_hex(canonical_json([item.key for item in sweep_plan.items]))
        view = None
        if ctx.is_main:
            emb_store = cache.embedding_store(models.measurer_identity(sweep_plan.measurer_ref))
            to_make = {item.key for item in unique if not store.valid(item.key)}
            to_embed = {item.key for item in unique if item.key not in to_make
                        and store.failure(item.key) is None and not emb_store.has(item.key)}
            view = (plan_digest, sorted(to_make | to_embed), len(to_make))
        digest, work_keys, n_to_make = ctx.broadcast(view)
        if digest != plan_digest:
            ctx.report("failed", error="planned other images than rank 0")
            raise BadInputError(
                f"{ctx} planned other images than rank 0: every rank must run the same command "
                "(same spec, options, models and LDMPROBE_CACHE).")
        by_key = {item.key: item for item in unique}
        mine = ctx.shard([by_key[key] for key in work_keys])
        progress = Progress(terminal, len(unique), len(unique) - n_to_make, "generating",
                            shared=ctx.counter("done"), show=ctx.is_main)
        try:
            t0 = time.perf_counter()
            made, batch_size = generate_missing(sweep_plan, loaded, terminal, store, items=mine, progress=progress)
            timings["generate_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            try:
                embed_items(sweep_plan, loaded, store, made, items=mine)
            except KeyboardInterrupt:
                raise Interrupted("Interrupted while embedding; all images are cached. "
                                  "Rerun the same command to finish.") from None
            timings["embed_s"] = time.perf_counter() - t0
            ctx.report("finished")
            if ctx.distributed:  # ranks meet once: wait for every share, then a barrier
                t0 = time.perf_counter()
                ctx.wait_for_ranks(poll=progress.refresh)
                ctx.barrier()
                shares = ctx.all_gather((made, batch_size))
                made = set().union(*(keys for keys, _ in shares))
                batch_size = min(size for _, size in shares)
                timings["wait_s"] = time.perf_counter() - t0
        except Exception as exc:
            if not ctx.distributed or isinstance(exc, distributed.RankFailure):  # (another rank's failure)
                raise
            ctx.report("failed", error=" ".join(str(exc).split())[:500] or type(exc).__name__)
            failure = distributed.RankFailure(
                f"{ctx}: {exc}" if isinstance(exc, LdmprobeError) else
                f"{ctx} failed: {type(exc).__name__}: {exc}. What it finished stays cached and the other ranks "
                "stop too; fix the cause and rerun the same command, at any world size, to make only the rest.")
            failure.exit_code = getattr(exc, "exit_code", ExitCode.RUNTIME)
            raise failure from exc
        finally:
            progress.close()
    finally:
        ctx.close()
    if not ctx.is_main:
        return None
    t0 = time.perf_counter()
    try:
        records = embed_items(sweep_plan, loaded, store, made, merge=ctx.distributed)
        statistics = sweep_statistics(sweep_plan, loaded, records)
    except KeyboardInterrupt:
        raise Interrupted("Interrupted while embedding; all images are cached. Rerun the same command to finish.") from None
    timings["embed_and_stats_s"] = time.perf_counter() - t0
    counts = {
        "planned": len(sweep_plan.items),
        "unique": len(unique),
        "generated": len(made),
        "cached": len(unique) - len(made),
        "failed": sum(records[i.key].failed is not None for i in unique),
        "flagged": sum(bool(records[i.key].nsfw) for i in unique),
    }
    extra = {"distributed": {"world_size": ctx.world_size, "backend": "gloo"}} if ctx.distributed else {}
    document = {
        "schema_version": SCHEMA_VERSION,
        "kind": "sweep",
        "spec": spec.to_dict(),
        "config": config_block(sweep_plan, batch_size),
        "provenance": provenance(started=started, tiny=sweep_plan.tiny, device=sweep_plan.device,
                                 dtype=sweep_plan.dtype, timings={k: round(v, 3) for k, v in timings.items()},
                                 **extra),
        "counts": counts,
        "baseline": spec.baseline,
        **statistics,
        "run": {"out": str(out.resolve()), "results": "results.json", "items": "items.jsonl"},
    }
    write_run_folder(out, document, records, sweep_plan, store)
    return document
