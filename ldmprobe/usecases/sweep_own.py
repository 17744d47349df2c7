"""A sweep on the user's own embeddings (``--embeddings FILE.npz``) or images (``--images MANIFEST``).

The file is read and checked against the spec's plan first (missing cells, dimensions,
non-finite rows and unreadable images are errors before any model loads); then the data go
through the same pure step as a generated sweep (:func:`~ldmprobe.analysis.sweep.analyse_sweep`
on a :class:`~ldmprobe.analysis.sweep.SweepEmbeddings`) and into a run folder like one.
There is no generator, so conditioning drift is null; the result's ``source`` says where the
images or embeddings came from. An embeddings file loads no model and imports no torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ldmprobe.analysis.sweep import ImageCell, SweepEmbeddings, analyse_sweep
from ldmprobe.store.files import check_cache_root
from ldmprobe.engine.sweep_setup import SweepOptions, models_for
from ldmprobe.errors import BadInputError
from ldmprobe.models import sources as models
from ldmprobe.results.provenance import now_iso, provenance
from ldmprobe.results.run_folder import prepare_out, release_out
from ldmprobe.results.run_folder_own import finishing, write_own_run_folder
from ldmprobe.results.sweep import RunFolder, SweepResult
from ldmprobe.specs.own_attributes import file_attributes, levels_in
from ldmprobe.specs.sweep import Spec
from ldmprobe.specs.own_manifest import ImageManifest, read_image_manifest
from ldmprobe.specs.sweep_sources import expanded_prompts, planned_cells, read_embeddings_file, row_list
from ldmprobe.usecases.sweep import options_statistics, text_side

NO_PROMPTS_NOTE = ("the embeddings file has no 'prompt' / 'prompt_embedding' arrays: text drift and text shift "
                   "are null, and text and image are not compared")
TINY_SHEET_NOTE = "tiny measurer: random weights, numbers mean nothing"


def sweep_own(spec: Spec, options: SweepOptions, reporter, *, embeddings: Path | None = None,
              images: Path | None = None, report: bool = True) -> SweepResult:
    """Analyse ``embeddings`` (an .npz) or ``images`` (a manifest) as the sweep ``spec`` plans
    them; write the run folder (and report.html with ``report``) and return the result."""
    if (embeddings is None) == (images is None):
        raise BadInputError("give one of --embeddings FILE.npz or --images MANIFEST, not both.")
    if options.nsfw not in ("keep", "drop"):
        raise BadInputError(f"--nsfw must be keep or drop, not {options.nsfw!r}")
    started = now_iso()
    path, read = (embeddings, read_embeddings_file) if embeddings is not None else (images, read_image_manifest)
    if images is not None:
        check_cache_root()  # the images' embeddings are cached
    sources = []
    for level in levels_in(path, "embeddings" if embeddings is not None else "images") or [None]:
        source, extra = read(path, spec, level)
        if extra:
            reporter.warn(f"{extra} of {source.source.rows} rows of {source.source.path} are for cells the spec does "
                          f"not plan{_at(level)}; ignored.")
        sources.append((level, source))
    attributes = None
    if embeddings is not None:
        attributes = file_attributes(embeddings, spec, sources[0][1].source.dim)
    else:
        models.ensure_measurer_available(models.resolve_measurer(models_for(spec, options)[1]), offline=options.offline)
    out = prepare_out(options.out, spec_name=spec.name, runs_dir=options.runs_dir, replace=options.replace,
                      kind="sweep")
    finish = None
    if report:  # report.html is written into the folder before it is published
        from ldmprobe.render.report import write_report_of as finish
    try:
        with finishing(finish):
            if embeddings is not None:
                result = _from_embeddings(spec, options, reporter, sources, started, out, attributes)
            else:
                result = _from_images(spec, options, reporter, sources, started, out)
    except BaseException:
        release_out(out)
        raise
    return result


def _no_text(spec: Spec, dim: int) -> dict[str, np.ndarray]:
    """Prompt embeddings of NaN: every text statistic comes out null (JSON) instead of made up."""
    return {prompt: np.full(dim, np.nan) for prompt in spec.prompts()}


def _data(spec: Spec, options: SweepOptions, images: dict, text: dict) -> SweepEmbeddings:
    return SweepEmbeddings(
        templates=tuple(spec.templates), baseline=spec.baseline, terms=tuple(spec.terms), seeds=tuple(spec.seeds),
        images=images, prompts=expanded_prompts(spec), **text, conditioning=None,
        drop_nsfw=options.nsfw == "drop", controls=tuple(spec.controls),
    )


def _with_notes(analysis, *notes: str):
    summary = replace(analysis.summary, notes=(*notes, *analysis.summary.notes))
    if NO_PROMPTS_NOTE in notes:
        summary = replace(summary, text_image_rank_correlation=None)
    return replace(analysis, summary=summary)


def _item(spec: Spec, cell, prompts: dict, **fields) -> dict:
    t, term, seed = cell
    return {"template": spec.templates[t], "template_index": t, "term": term, "is_baseline": term == spec.baseline,
            "seed": seed, "prompt": prompts[(t, term)], **fields}


def _flags(failed: bool, nsfw: bool, options: SweepOptions) -> dict:
    return {"failed": "failed (in the embeddings file)" if failed else None, "nsfw": nsfw,
            "dropped": options.nsfw == "drop" and nsfw}


def _at(level) -> str:
    return "" if level is None else f" at guidance {level[0]}, steps {level[1]}"


def _level_fields(level) -> dict:
    """An item's ``guidance`` and ``steps`` (from the file's own fields; none without them)."""
    return {} if level is None else {"guidance": level[0], "steps": level[1]}


def _from_embeddings(spec: Spec, options: SweepOptions, reporter, sources: list, started: str, out: Path,
                     attributes=None) -> SweepResult:
    t0 = time.perf_counter()
    attrs = file_attribute_input(spec, attributes) if attributes is not None else None
    settings = options_statistics(options)
    datas, analyses, items = [], [], []
    labels = expanded_prompts(spec)
    for level, file in sources:
        images = {cell: ImageCell(embedding=file.images[cell], failed=file.images[cell] is None, nsfw=file.nsfw[cell])
                  for cell in planned_cells(spec)}
        prompts = file.prompt_embeddings if file.prompt_embeddings is not None else _no_text(spec, file.source.dim)
        text = dict(prompt_embeddings=prompts, probes=tuple(spec.probes), probe_embeddings=file.probe_embeddings,
                    vocabulary=file.vocabulary, vocabulary_embeddings=file.vocabulary_embeddings,
                    **({"attributes": attrs} if attrs is not None else {}))
        datas.append(_data(spec, options, images, text))
        analyses.append(analyse_sweep(datas[-1], settings))
        items += [_item(spec, cell, labels, key=None, image=None, row=file.rows[cell], cached=None,
                        flags=_flags(images[cell].failed, images[cell].nsfw, options), **_level_fields(level))
                  for cell in planned_cells(spec)]
    file = sources[0][1]
    notes = [f"computed from your embeddings {file.source.path}: no model was run, so conditioning drift is null"]
    zero = sorted({row for _, f in sources for cell, row in f.rows.items()
                   if f.images[cell] is not None and not np.any(f.images[cell])})
    if zero:
        notes.append(f"{len(zero)} row(s) of the embeddings file's 'image' array ({row_list(zero)}) are all zeros: "
                     "excluded from every statistic and counted in summary.excluded, as a generated sweep's zero-norm "
                     "embeddings are")
    if file.prompt_embeddings is None:
        notes.append(NO_PROMPTS_NOTE)
    if spec.attributes and attrs is None:
        notes.append("the spec's attribute groups are not measured: the embeddings file has no 'option', "
                     "'option_embedding' and 'logit_scale' arrays (the option texts embedded by the same model)")
    levels, trends = own_levels_and_trends(spec, sources, datas, analyses, settings)
    measurer = {"spec": None, "source": "embeddings file", "identity": None}
    settings_of_file, level_notes = file_settings(spec, [level for level, _ in sources], "embeddings file")
    return _finish(spec, options, _with_notes(analyses[0], *notes, *level_notes), items, {}, file.source,
                   measurer=measurer, started=started, out=out, tiny=False,
                   timings={"stats_s": time.perf_counter() - t0}, levels=levels, trends=trends,
                   file_settings=settings_of_file)


def file_attribute_input(spec: Spec, found):
    """The rates' inputs from an embeddings file's option arrays (and calibration arrays: each
    group's correction from the calibration embeddings' zero-shot labels)."""
    from ldmprobe.analysis.rates import AttributeInput, correction_from_labels, zero_shot

    groups = tuple((g.name, g.options) for g in spec.attributes)
    corrections = {}
    if found.calibration is not None:
        unit = found.calibration / np.linalg.norm(found.calibration, axis=1, keepdims=True)
        for (group, names), texts in zip(groups, found.option_embeddings):
            rows = [i for i, (g, _) in enumerate(found.calibration_labels) if g == group]
            if not rows:
                continue
            true = [names.index(found.calibration_labels[i][1]) for i in rows]
            predicted = zero_shot(unit[rows], texts, found.logit_scale).argmax(axis=1)
            try:
                corrections[group] = correction_from_labels(true, predicted, len(names), group=group)
            except ValueError as exc:
                raise BadInputError(f"the embeddings file's calibration arrays: {exc}") from None
    reference = {(r.term, r.group): dict(r.rates) for r in spec.reference_rates}
    return AttributeInput(groups, found.option_embeddings, found.logit_scale, reference, corrections)


def own_levels_and_trends(spec: Spec, sources: list, datas: list, analyses: list, settings):
    """``levels`` and ``trends`` of own data whose rows carry several guidance / steps levels."""
    if len(sources) < 2:
        return (), ()
    from ldmprobe.usecases.sweep_levels import levels_result

    return levels_result([level for level, _ in sources], spec.baseline, datas, analyses, settings)


@dataclass
class _LazyMeasurer:
    """The measurer's identity now, the model itself only when an image is not cached."""

    loaded: object
    identity: dict

    def __getattr__(self, name):
        return getattr(self.loaded.get_measurer(), name)


@dataclass(frozen=True)
class _TextSetup:
    """What :func:`~ldmprobe.usecases.sweep.text_side` reads of a sweep's setup (no generator here)."""

    spec: Spec
    options: SweepOptions
    measurer_ref: models.MeasurerRef


def _embed_manifest(manifest: ImageManifest, loaded, options: SweepOptions, reporter) -> dict:
    """cell -> unit image embedding, through the measurer's cache keyed by each file's content."""
    from ldmprobe.engine.assoc_images import embed_image_folder
    from ldmprobe.specs.embedding_files import SetSource

    unique: dict[str, str] = {}
    for listed, _, sha in manifest.files.values():
        unique.setdefault(sha, listed)
    files = tuple((listed, sha) for sha, listed in unique.items())
    source = SetSource("manifest", "images", manifest.folder, "manifest", manifest.source.sha256,
                       tuple(name for name, _ in files), files=files)
    lazy = _LazyMeasurer(loaded, models.measurer_identity(loaded.measurer_ref))
    vectors = embed_image_folder(lazy, source, batch_size=options.batch_size or 32, reporter=reporter)
    by_sha = {sha: vectors[i] for i, (_, sha) in enumerate(files)}
    return {cell: by_sha[sha] for cell, (_, _, sha) in manifest.files.items()}


def _from_images(spec: Spec, options: SweepOptions, reporter, sources: list, started: str, out: Path) -> SweepResult:
    from ldmprobe.engine.assoc_images import user_image_key
    from ldmprobe.models.loader import ModelLoader

    loaded = ModelLoader.from_names(pipeline=None, revision=None, measurer=models_for(spec, options)[1],
                                    device=options.device, dtype=options.dtype, offline=options.offline,
                                    needs_generator=False)
    if loaded.tiny:
        reporter.warn(models.TINY_WARNING)
    t0 = time.perf_counter()
    vectors = [_embed_manifest(manifest, loaded, options, reporter) for _, manifest in sources]
    timings = {"embed_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    text = text_side(_TextSetup(spec, options, loaded.measurer_ref), loaded, sorted(set(spec.prompts())))
    settings = options_statistics(options)
    datas = [_data(spec, options, {cell: ImageCell(embedding=v[cell]) for cell in planned_cells(spec)}, text)
             for v in vectors]
    analyses = [analyse_sweep(data, settings) for data in datas]
    levels, trends = own_levels_and_trends(spec, sources, datas, analyses, settings)
    timings["text_and_stats_s"] = time.perf_counter() - t0
    labels, items, copies = expanded_prompts(spec), [], {}
    for level, manifest in sources:
        for cell in planned_cells(spec):
            listed, target, sha = manifest.files[cell]
            key = user_image_key(sha)
            rel = f"images/{key}{Path(target).suffix.lower()}" if options.write_images else None
            if rel:
                copies[rel] = Path(target)
            items.append(_item(spec, cell, labels, key=key, image=rel, source_path=listed, cached=None,
                               flags=_flags(False, False, options), **_level_fields(level)))
    ref, manifest = loaded.measurer_ref, sources[0][1]
    measurer = {"spec": ref.spec, "source": ref.source, "identity": models.measurer_identity(ref)}
    note = f"computed from your images listed in {manifest.source.path}: no generator, so conditioning drift is null"
    settings_of_file, level_notes = file_settings(spec, [level for level, _ in sources], "manifest")
    return _finish(spec, options, _with_notes(analyses[0], note, *level_notes), items, copies, manifest.source,
                   measurer=measurer, started=started, out=out, tiny=loaded.tiny, timings=timings,
                   device=loaded.device, reference=loaded.reference, levels=levels, trends=trends,
                   file_settings=settings_of_file)


def _finish(spec: Spec, options: SweepOptions, analysis, items: list[dict], copies: dict, source, *, measurer: dict,
            started: str, out: Path, tiny: bool, timings: dict, device: str | None = None,
            reference: bool = False, levels=(), trends=(), file_settings=None) -> SweepResult:
    failed = sum(bool(i["flags"]["failed"]) for i in items)
    counts = {"planned": len(items), "unique": len(items), "generated": 0, "cached": 0, "supplied": len(items),
              "failed": failed, "flagged": sum(bool(i["flags"]["nsfw"]) for i in items)}
    result = SweepResult(
        spec=spec.to_dict(), config={**own_config(options, measurer, device), **(file_settings or {})}, counts=counts,
        baseline=spec.baseline,
        provenance=provenance(started=started, tiny=tiny, reference=reference, device=device, dtype=None,
                              timings={k: round(v, 3) for k, v in timings.items()}, source=source.kind),
        analysis=analysis, run=RunFolder(out=str(Path(out).resolve())), source=source.to_dict(),
        levels=levels, trends=trends,
    )
    return write_own_run_folder(out, result, items, copies, replace=options.replace,
                                note=TINY_SHEET_NOTE if tiny else None)


def file_settings(spec: Spec, levels: list, what: str) -> tuple[dict, list[str]]:
    """The config's ``guidance`` / ``steps`` where every row of the file has one value, and notes
    where the file's values differ from the spec's settings (the results are the file's)."""
    config, notes = {}, []
    for i, name in enumerate(("guidance", "steps")):
        values = sorted({lv[i] for lv in levels if lv is not None and lv[i] is not None})
        if not values:
            continue
        if len(values) == 1:
            config[name] = values[0]
        planned = list(getattr(spec, f"{name}_levels") or ()) or (
            [getattr(spec, name)] if getattr(spec, name) is not None else [])
        if planned and sorted(planned) != values:
            listed = ", ".join(f"{v:g}" for v in values)
            said = ", ".join(f"{v:g}" for v in planned)
            notes.append(f"the {what}'s rows are at {name} {listed} but the spec says {name} {said}: the results "
                         f"are for the file's {name} values (the spec's {name} is kept as written, unused)")
    return config, notes


def own_config(options: SweepOptions, measurer: dict, device: str | None) -> dict:
    """The config block of a sweep with no generator: generation settings null."""
    return {
        "pipeline": {"spec": None, "source": None, "identity": None},
        "measurer": measurer, "scheduler": None, "steps": None, "guidance": None, "width": None, "height": None,
        "dtype": None, "negative_prompt": None, "device": device, "batch_size": options.batch_size, "nsfw": options.nsfw,
        "statistics": {"seed": options.stats_seed, "permutations": options.permutations,
                       "bootstrap": options.bootstrap},
    }
