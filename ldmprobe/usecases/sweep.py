"""Run a sweep: set up, generate and embed (every rank), analyse and write the run folder (rank 0)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ldmprobe.analysis.sweep import ImageCell, ImageGrid, StatisticsSettings, SweepEmbeddings, analyse_sweep
from ldmprobe.engine import distributed
from ldmprobe.store.images import ImageStore
from ldmprobe.store.packed_cache import embedding_store
from ldmprobe.engine.embeddings import conditioning_embeddings, direction_vocabulary, text_embeddings
from ldmprobe.usecases.sweep_attributes import attribute_fields
from ldmprobe.usecases.sweep_levels import generate_levels, level_setups, levels_and_trends
from ldmprobe.engine.conditioning_arch import conditioning_by_encoder
from ldmprobe.engine.encode import DEFAULT_PROBE_TEMPLATES
from ldmprobe.engine.progress import GenerationProgress
from ldmprobe.engine.sweep_images import (Interrupted, ItemRecord, ItemRecords, cached_work, embed_items,
                                          model_loader)
from ldmprobe.engine.sweep_setup import (SweepOptions, SweepSetup, call_groups, config_block, dry_run_document,
                                         make_plan)
from ldmprobe.digest import digest
from ldmprobe.engine.workitems import PlanItems, unique_items
from ldmprobe.errors import BadInputError, ExitCode, LdmprobeError
from ldmprobe.models import sources as models
from ldmprobe.models.loader import ModelLoader
from ldmprobe.results.provenance import now_iso, provenance
from ldmprobe.results.run_folder import prepare_out, release_out, write_run_folder
from ldmprobe.results.sweep_embeddings import check_export_path, write_embeddings_npz
from ldmprobe.results.sweep import RunFolder, SweepResult
from ldmprobe.specs.sweep import Spec, expand

_INTERRUPTED_EMBEDDING = "Interrupted while embedding; all images are cached. Rerun the same command to finish."
_INTERRUPTED_STATISTICS = ("Interrupted while computing the statistics; every image and embedding is cached. "
                           "Rerun the same command to finish (no image is made again).")


@dataclass
class _RankWork:
    """What one rank did: images made now, the batch size it ended with, and timings."""

    made: set[str] = field(default_factory=set)
    batch_size: int | None = None
    timings: dict[str, float] = field(default_factory=dict)


def sweep(spec: Spec, options: SweepOptions, reporter, *, report: bool = True,
          export_embeddings: Path | None = None) -> SweepResult | None:
    """Run the sweep and, with ``report``, write report.html into its run folder (rank 0);
    None on a distributed run's other ranks. ``export_embeddings``: also write the analysed
    embeddings to that .npz (the file ``sweep --embeddings`` reads)."""
    return run_sweep(spec, options, reporter, export_embeddings=export_embeddings, report=report)


def preview_sweep(spec: Spec, options: SweepOptions, reporter=None, *, report: bool = False) -> dict | None:  # noqa: ARG001
    """What ``--dry-run`` prints: the plan, with no model loaded (None on ranks other than 0).

    A generator or measurer that cannot be had offline does not fail the plan: it lists the
    prompts and seeds and says (through ``reporter`` and in ``notes``) what it cannot know."""
    if not distributed.is_main_process():  # under torchrun / accelerate launch, rank 0 prints the plan
        return None
    return dry_run_document(make_plan(spec, options, dry_run=True, reporter=reporter))


def run_sweep(spec: Spec, options: SweepOptions, reporter, *,
              export_embeddings: Path | None = None, report: bool = False) -> SweepResult | None:
    """Plan, generate, embed, compute statistics, write the run folder; return the result.

    Under ``torchrun`` / ``accelerate launch`` every rank makes and embeds its share of the
    work into the shared cache; rank 0 then merges, writes the run folder and returns the
    result, and the other ranks return None (they print nothing). GenerationProgress and warnings go
    to ``reporter`` (a :class:`~ldmprobe.reporting.Reporter`; on a
    :class:`~ldmprobe.render.terminal.Terminal` generation draws a progress bar).
    """
    started = now_iso()
    if export_embeddings is not None:
        check_export_path(export_embeddings)
    out = prepare_out(options.out, spec_name=spec.name, runs_dir=options.runs_dir, replace=options.replace,
                      kind="sweep")
    try:
        result = _run_in(spec, options, reporter, started, out, export_embeddings, report)
    except BaseException:
        release_out(out)  # a folder this sweep reserved and never wrote is removed again
        raise
    if result is None:  # another rank than 0: rank 0 writes the run folder
        release_out(out)
    return result


def _run_in(spec: Spec, options: SweepOptions, reporter, started: str, out,
            export: Path | None = None, report: bool = False) -> SweepResult | None:
    setup = make_plan(spec, options, reporter=reporter)  # warns what guidance means on Flux-style models
    ctx = distributed.setup()
    try:
        setup = replace(setup, device=ctx.device(setup.device))
        if setup.tiny and ctx.is_main:
            reporter.warn(models.TINY_WARNING)
        if setup.truncated and ctx.is_main:
            reporter.warn(f"{len(setup.truncated)} prompt(s) exceed the tokenizer limit and will be truncated.")
        loaded = model_loader(setup)
        store = ImageStore()  # one per run: its manifest is read once
        work = _make_and_embed(ctx, setup, loaded, reporter, out, store)
    finally:
        ctx.close()
    if not ctx.is_main:
        return None
    result = _analyse_and_write(spec, setup, loaded, work, ctx, started, out, export, report, store)
    tidy_cache(store, reporter)
    return result


def _work_list(ctx, setup: SweepSetup, store: ImageStore, out=None, reporter=None) -> tuple[list, int]:
    """The global work list, read from the shared cache by rank 0 alone so that every rank
    agrees on it: items whose image or image embedding is missing, sorted by key. Rank 0 also
    checks that the images to make and the run folder fit on their disks (before any model
    loads)."""
    unique = unique_items(setup.items)
    plan_digest = digest(_keys(setup.items))
    view = None
    if ctx.is_main:
        emb_store = embedding_store(models.measurer_identity(setup.measurer_ref))
        to_make, to_embed = cached_work(store, emb_store, _keys(unique))
        view = (plan_digest, sorted(to_make | to_embed), len(to_make), None)
        try:
            _check_disk_space(setup, store, unique, to_make, out, reporter)
        except BadInputError as exc:
            view = (plan_digest, [], 0, str(exc))
    rank0_digest, work_keys, n_to_make, refused = ctx.broadcast(view)
    if refused is not None:
        raise BadInputError(refused if ctx.is_main else f"{ctx}: rank 0 refused the sweep: {refused}")
    if rank0_digest != plan_digest:
        ctx.report("failed", error="planned other images than rank 0")
        raise BadInputError(
            f"{ctx} planned other images than rank 0: every rank must run the same command "
            "(same spec, options, models and LDMPROBE_CACHE).")
    if isinstance(unique, PlanItems):
        return [unique[unique.index_of(key)] for key in work_keys], n_to_make
    by_key = {item.key: item for item in unique}
    return [by_key[key] for key in work_keys], n_to_make


def _keys(items) -> list[str]:
    return items.keys() if isinstance(items, PlanItems) else [item.key for item in items]


def _check_disk_space(setup: SweepSetup, store: ImageStore, unique, to_make: set, out, reporter) -> None:
    from ldmprobe.store import diskspace
    from ldmprobe.results.contact_sheet import CELL
    from ldmprobe.store.files import cache_root

    cached = []
    for item in unique:  # a sample of the cached images: paths made for the sample only
        if len(cached) >= diskspace.SAMPLE:
            break
        if item.key not in to_make:
            cached.append(store.path(item.key))
    image = diskspace.image_size_range(setup.recipe.width, setup.recipe.height, cached)
    n_run = len(unique) if setup.options.write_images and out is not None else 0
    diskspace.check_space(diskspace.needs(n_new=len(to_make), n_run_images=n_run, image=image,
                                          cache_root=cache_root(), out=out, sheet_cell=CELL), reporter)


def _make_and_embed(ctx, setup: SweepSetup, loaded: ModelLoader, reporter, out=None,
                    store: ImageStore | None = None) -> _RankWork:
    """This rank's share: generate the missing images, embed them, meet the other ranks."""
    store = ImageStore() if store is None else store
    work_items, n_to_make = _work_list(ctx, setup, store, out, reporter if ctx.is_main else None)
    mine = ctx.shard(work_items, call_groups(setup) if ctx.distributed else None)  # whole calls per rank (issue 28)
    n_unique = len(unique_items(setup.items))
    progress = GenerationProgress(reporter, n_unique, n_unique - n_to_make, "generating",
                        shared=ctx.counter("done"), show=ctx.is_main)
    work = _RankWork()
    try:
        t0 = time.perf_counter()
        work.made, work.batch_size = generate_levels(setup, loaded, reporter, store, mine, progress)
        work.timings["generate_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            embed_items(setup, loaded, store, work.made, items=mine)
        except KeyboardInterrupt:
            raise Interrupted(_INTERRUPTED_EMBEDDING) from None
        work.timings["embed_s"] = time.perf_counter() - t0
        ctx.report("finished")
        if ctx.distributed:
            _meet_ranks(ctx, work, progress)
    except Exception as exc:
        if not ctx.distributed or isinstance(exc, distributed.RankFailure):  # (another rank's failure)
            raise
        raise _rank_failure(ctx, exc) from exc
    finally:
        progress.close()
    return work


def _meet_ranks(ctx, work: _RankWork, progress: GenerationProgress) -> None:
    """Ranks meet once: wait for every share, then a barrier; merge what they made."""
    t0 = time.perf_counter()
    ctx.wait_for_ranks(poll=progress.refresh)
    ctx.barrier()
    shares = ctx.all_gather((work.made, work.batch_size))
    work.made = set().union(*(keys for keys, _ in shares))
    work.batch_size = min(size for _, size in shares)
    work.timings["wait_s"] = time.perf_counter() - t0


def _rank_failure(ctx, exc: Exception) -> distributed.RankFailure:
    ctx.report("failed", error=" ".join(str(exc).split())[:500] or type(exc).__name__)
    failure = distributed.RankFailure(
        f"{ctx}: {exc}" if isinstance(exc, LdmprobeError) else
        f"{ctx} failed: {type(exc).__name__}: {exc}. What it finished stays cached and the other ranks "
        "stop too; fix the cause and rerun the same command, at any world size, to make only the rest.")
    failure.exit_code = getattr(exc, "exit_code", ExitCode.RUNTIME)
    return failure


def _analyse_and_write(spec: Spec, setup: SweepSetup, loaded: ModelLoader, work: _RankWork, ctx,
                       started: str, out, export: Path | None = None, report: bool = False,
                       store: ImageStore | None = None) -> SweepResult:
    """Rank 0: merge every image embedding, analyse, write the run folder."""
    store = ImageStore() if store is None else store
    t0 = time.perf_counter()
    try:
        records = embed_items(setup, loaded, store, work.made, merge=ctx.distributed)
        store.index.release()  # every image is checked: the manifest's table is not needed again
        shared = _shared_embeddings(setup, loaded)
        datas = [sweep_embeddings(level, loaded, records, shared=shared) for level in level_setups(setup)]
    except KeyboardInterrupt:
        raise Interrupted(_INTERRUPTED_EMBEDDING) from None
    try:
        settings = statistics_settings(setup)
        analyses = [analyse_sweep(data, settings) for data in datas]  # the single-level analysis, per level
        levels, trends = levels_and_trends(setup, datas, analyses, settings)
    except KeyboardInterrupt:
        raise Interrupted(_INTERRUPTED_STATISTICS) from None
    data, analysis = datas[0], analyses[0]  # the top level: the first level listed
    release_free_memory()  # the statistics' working arrays, before the run folder and report
    work.timings["embed_and_stats_s"] = time.perf_counter() - t0
    if export is not None:
        write_embeddings_npz(data, export)
    unique = unique_items(setup.items)
    counts = {
        "planned": len(setup.items),
        "unique": len(unique),
        "generated": len(work.made),
        "cached": len(unique) - len(work.made),
        "failed": len(records.failed),  # the records hold the unique items
        "flagged": int(records.flagged().sum()),
    }
    extra = {"distributed": {"world_size": ctx.world_size, "backend": "gloo"}} if ctx.distributed else {}
    result = SweepResult(
        spec=spec.to_dict(),
        config=config_block(setup, work.batch_size),
        provenance=provenance(started=started, tiny=setup.tiny, reference=setup.reference, device=setup.device,
                              dtype=setup.dtype, timings={k: round(v, 3) for k, v in work.timings.items()},
                              **extra),
        counts=counts, baseline=spec.baseline, analysis=analysis, run=RunFolder(out=str(out.resolve())),
        levels=levels, trends=trends,
    )
    write_report = None
    if report:  # report.html is written into the folder before it is published
        from ldmprobe.render.report import write_report_of as write_report

    # items.jsonl lists every level's images; contact sheets and copied images are the top level's
    return write_run_folder(out, result, records, setup, store, finish=write_report)


def tidy_cache(store: ImageStore, reporter) -> None:
    """After the run folder is written: fold crowded embedding shards and image manifests, so
    warm reruns keep opening few files. Optional upkeep: a failure is a warning, never an error."""
    from ldmprobe.store.packed_maint import compact_crowded
    from ldmprobe.store.files import cache_root

    try:
        folded = compact_crowded(cache_root())
        store.index.compact()
    except OSError as exc:
        reporter.warn(f"the cache could not be compacted ({exc.strerror or exc}); nothing is lost, "
                      "the cache just stays in more files. `ldmprobe cache verify --repair` compacts it later.")
        return
    for packed, report in folded:
        reporter.info(f"compacted {report.files_merged} shard files of {packed.parent.name[:12]}… into one "
                      f"({report.values_kept} values)")


def statistics_settings(setup: SweepSetup) -> StatisticsSettings:
    return options_statistics(setup.options)


def options_statistics(opts: SweepOptions) -> StatisticsSettings:
    """The statistics settings of ``--permutations``, ``--bootstrap`` and ``--stats-seed``."""
    return StatisticsSettings(permutations=opts.permutations, bootstrap=opts.bootstrap, seed=opts.stats_seed)


def probe_templates_of(opts: SweepOptions) -> tuple[str, ...]:
    return tuple(opts.probe_templates if opts.probe_templates is not None else DEFAULT_PROBE_TEMPLATES)


def text_side(setup, loaded: ModelLoader, prompt_list: list[str]) -> dict:
    """The measurer's text embeddings a sweep analyses, as SweepEmbeddings fields: the prompts',
    the probes' and the direction vocabulary's (each cached). ``setup`` needs ``spec``,
    ``options`` and ``measurer_ref`` only (a sweep on the user's own images has no generator)."""
    spec = setup.spec
    probe_templates = probe_templates_of(setup.options)
    probes = tuple(spec.probes)
    vocab_words, vocab_emb = direction_vocabulary(setup, loaded, probe_templates)
    return dict(
        prompt_embeddings=dict(zip(prompt_list, text_embeddings(setup, loaded, prompt_list))),
        probes=probes,
        probe_embeddings=text_embeddings(setup, loaded, list(probes), probe_templates) if probes else None,
        vocabulary=tuple(vocab_words), vocabulary_embeddings=vocab_emb,
        **attribute_fields(setup, loaded, probe_templates),  # spec [attributes]: option texts, logit scale
    )


def _shared_embeddings(setup: SweepSetup, loaded: ModelLoader) -> dict:
    """The SweepEmbeddings fields every level shares (the same prompts): text side and conditioning."""
    prompt_list = sorted({item.prompt for item in setup.items})
    conditioning = conditioning_embeddings(setup, loaded, prompt_list)
    return dict(**text_side(setup, loaded, prompt_list),
                conditioning=dict(zip(prompt_list, conditioning)) if conditioning is not None else None,
                conditioning_by_encoder=conditioning_by_encoder(setup, loaded, prompt_list))


def sweep_embeddings(setup: SweepSetup, loaded: ModelLoader, records: dict[str, ItemRecord], *,
                     shared: dict | None = None) -> SweepEmbeddings:
    """Gather what the analysis needs from the cache (embedding what is missing); ``shared``:
    the text side and conditioning, when already gathered (:func:`_shared_embeddings`)."""
    spec, opts = setup.spec, setup.options
    shared = _shared_embeddings(setup, loaded) if shared is None else shared
    images = image_grid(setup, records) if isinstance(records, ItemRecords) else None
    if images is None:
        images = {}
        for item in setup.items:
            record = records[item.key]
            images[(item.template_index, item.term, item.seed)] = ImageCell(
                embedding=record.embedding, failed=record.failed is not None, nsfw=bool(record.nsfw))
    return SweepEmbeddings(
        templates=tuple(spec.templates), baseline=spec.baseline, terms=tuple(spec.terms), seeds=tuple(spec.seeds),
        images=images,
        prompts={(t, term): expand(template, term) for t, template in enumerate(spec.templates)
                 for term in spec.all_terms},
        **shared, drop_nsfw=opts.nsfw == "drop", controls=tuple(spec.controls),
    )


def image_grid(setup: SweepSetup, records: ItemRecords) -> ImageGrid | None:
    """The plan's images as an :class:`ImageGrid` over the records' rows (the embeddings stay
    where the records hold them; the grid reads a term's when the analysis asks). None where a
    grid cannot hold them (embeddings of several shapes or dtypes, or other than float32 /
    float64: the analysis then gets a dict of cells)."""
    spec = setup.spec
    terms, seeds = tuple(spec.all_terms), tuple(spec.seeds)
    shape = (len(spec.templates), len(terms), len(seeds))
    source = records.rows
    if source is None or not records.uniform or source.dtype not in (np.float32, np.float64) \
            or len(setup.items) != shape[0] * shape[1] * shape[2]:
        return None
    rows, order = _grid_rows(setup, records, shape)
    if rows is None or not (np.unique(order) == np.arange(len(order))).all():
        return None  # a cell planned twice or not at all
    rows[order] = rows.copy()  # rows in grid order
    failed = np.zeros(len(records), bool)
    failed[list(records.failed)] = True
    flagged = records.flagged()
    return ImageGrid(terms, seeds, source, records.has[rows].reshape(shape), failed[rows].reshape(shape),
                     flagged[rows].reshape(shape), rows=rows.reshape(shape))


def _grid_rows(setup: SweepSetup, records: ItemRecords, shape) -> tuple[np.ndarray | None, np.ndarray]:
    """(each planned item's row in the records, its cell's position in the grid)."""
    items = setup.items
    if isinstance(items, PlanItems) and isinstance(records.items, PlanItems) \
            and (items.templates, items.terms, items.seeds) == (tuple(setup.spec.templates), tuple(setup.spec.all_terms),
                                                                tuple(setup.spec.seeds)):
        rows = records.items.positions(items)
        return (None if (rows < 0).any() else rows.astype(np.int64)), items.cells()  # a plan's cells are grid cells
    term_index = {term: k for k, term in enumerate(setup.spec.all_terms)}
    seed_index = {seed: j for j, seed in enumerate(setup.spec.seeds)}
    rows = np.fromiter((records.row(item.key) for item in items), np.int64, len(items))
    order = np.fromiter(((item.template_index * shape[1] + term_index[item.term]) * shape[2] + seed_index[item.seed]
                         for item in items), np.int64, len(items))
    return rows, order


def release_free_memory() -> None:
    """Give the memory the C heap holds free back to the system (glibc's ``malloc_trim``; nothing
    elsewhere): freed blocks between live ones otherwise stay in the process's resident memory."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
