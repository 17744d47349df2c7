"""Compare two sweep runs of one spec (a model and its fine-tune, two generators), B − A.

The image embeddings come from the cache by the keys in each run's items.jsonl, for the
measurer recorded in its results.json; no generator is loaded, and the measurer only when
the probe words' text embeddings are not cached.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldmprobe.analysis.compare import CompareEmbeddings, CompareSettings, compare_embeddings, unpaired_analysis
from ldmprobe.digest import CACHE_KINDS, cache_key
from ldmprobe.store.files import atomic_write_text, cache_root
from ldmprobe.store.packed_cache import embedding_store, identity_store
from ldmprobe.engine.encode import DEFAULT_PROBE_TEMPLATES
from ldmprobe.errors import BadInputError
from ldmprobe.records import to_json
from ldmprobe.results.compare import CompareResult, RunData, check_comparable, level_notes, read_run, run_summary
from ldmprobe.results.provenance import now_iso, provenance
from ldmprobe.results.run_folder import prepare_out, release_out, staged_folder


@dataclass(frozen=True)
class CompareOptions:
    """What ``ldmprobe compare`` takes besides the two runs: the statistics' settings (as a
    sweep's: ``--permutations``, ``--bootstrap``, ``--stats-seed``, ``--alpha``), where the
    comparison goes (``out``, ``replace``) and how the measurer is reached when a probe's text
    embedding is not cached (``offline``, ``device``)."""

    settings: CompareSettings = CompareSettings()
    out: Path | None = None
    replace: bool = False
    offline: bool = False
    device: str = "auto"


def compare_runs(run_a: Path, run_b: Path, options: CompareOptions = CompareOptions(), *,
                 reporter=None) -> CompareResult:
    """Read both run folders, check they pair up, gather their embeddings, compare; with
    ``options.out`` write compare.html and compare.json there.

    ``out`` follows the run-folder rules: a missing or empty folder, or (``replace``) a folder
    an earlier compare wrote, replaced whole; never one of the two runs. It is checked and
    reserved before any work and written through a staging folder, so a failure leaves the old
    one as it was.
    """
    started = now_iso()
    settings, out, replace = options.settings, options.out, options.replace
    a, b = read_run(Path(run_a), "RUN_A"), read_run(Path(run_b), "RUN_B")
    if out is not None:
        out = Path(out)
        for run, name in ((a, "RUN_A"), (b, "RUN_B")):
            if out.resolve() == Path(run.path).resolve():
                raise BadInputError(f"--out {out} is {name}: a run folder is its sweep's own. "
                                    "Choose another folder for the comparison.")
    paired = check_comparable(a, b)
    if out is not None:
        out = prepare_out(out, spec_name="compare", runs_dir=Path("runs"), replace=replace, markers=("compare.json",))
    try:
        return _compare(a, b, settings, out, offline=options.offline, device=options.device, reporter=reporter,
                        replace=replace, started=started, paired=paired)
    except BaseException:
        if out is not None:
            release_out(out)
        raise


def _compare(a: RunData, b: RunData, settings: CompareSettings, out: Path | None, *, offline, device, reporter,
             replace, started, paired: bool = True) -> CompareResult:
    same = (a.source.get("sha256") == b.source.get("sha256") if a.from_embeddings
            else {i.key for i in a.items} == {i.key for i in b.items})
    if reporter is not None and same:
        reporter.warn("RUN_A and RUN_B hold the same images (every item key is shared): nothing can differ.")
    loader = _MeasurerLoader(a, offline=offline, device=device)
    images = gather_images(a, b)
    if paired:
        data = gather_embeddings(a, b, offline=offline, device=device, reporter=reporter, images=images,
                                 loader=loader)
        analysis = compare_embeddings(data, settings)
    else:
        if images.dims is not None:
            _same_space(a, b, images.dims, images.probes, reporter)
        analysis = unpaired_analysis(settings)
    from ldmprobe.usecases.compare_attributes import with_attributes

    analysis = with_attributes(analysis, a, b, images, settings, paired=paired, loader=loader, reporter=reporter)
    analysis = dataclasses.replace(analysis, notes=(*analysis.notes, *level_notes(a, b)))
    spec = {k: a.spec.get(k) for k in ("name", "templates", "baseline", "terms", "seeds", "probes")}
    tiny = any(bool((r.document.get("provenance") or {}).get("tiny")) for r in (a, b))
    reference = any(bool((r.document.get("provenance") or {}).get("reference_world")) for r in (a, b))
    result = CompareResult(
        spec=spec, runs={"a": run_summary(a), "b": run_summary(b)}, measurer=a.measurer,
        config={"statistics": {"seed": settings.seed, "permutations": settings.permutations,
                               "bootstrap": settings.bootstrap, "alpha": settings.alpha},
                "probe_templates": list(DEFAULT_PROBE_TEMPLATES)},
        provenance=provenance(started=started, tiny=tiny, reference=reference),
        analysis=analysis, report=str((Path(out) / "compare.html").resolve()) if out is not None else None,
    )
    if out is not None:
        write_outputs(result, out, replace=replace)
    return result


def write_outputs(result: CompareResult, out: Path, *, replace: bool = False) -> None:
    """compare.json and compare.html in ``out``, written in a staging folder moved into place."""
    from ldmprobe.render.compare import compare_html

    with staged_folder(out, replace=replace) as staging:
        atomic_write_text(staging / "compare.json", to_json(result) + "\n")
        atomic_write_text(staging / "compare.html", compare_html(result.to_dict()))


def _image_embeddings(run: RunData, label: str) -> dict:
    """(template index, term, seed) -> the cached embedding (None for failed or dropped images)."""
    store = embedding_store(run.measurer["identity"])
    usable = [item for item in run.items if item.usable]
    try:
        vectors = store.get_many([item.key for item in usable])
    finally:
        store.close()
    missing = [item.key for item, v in zip(usable, vectors) if v is None]
    if missing:
        raise BadInputError(
            f"{len(missing)} of {len(usable)} image embeddings of {label} {run.path} are not in the cache "
            f"{cache_root()} (e.g. {missing[0]}): the sweep was run with another LDMPROBE_CACHE, or the cache was "
            "cleaned. Set LDMPROBE_CACHE to the cache that sweep used, or rerun the same sweep command to "
            "re-embed them (it remakes only what is missing).")
    images = {(i.template_index, i.term, i.seed): None for i in run.items}
    for item, vector in zip(usable, vectors):
        images[(item.template_index, item.term, item.seed)] = np.asarray(vector, dtype=np.float64)
    return images


class _MeasurerLoader:
    """The run's recorded measurer, loaded only when first asked for (a text or image not in the
    cache), and refused if it is no longer the model that embedded the images."""

    def __init__(self, run: RunData, *, offline: bool, device: str):
        self.run, self.offline, self.device, self._measurer = run, offline, device, None

    @property
    def measurer_ref(self):
        from ldmprobe.models import sources as models

        return models.resolve_measurer(self.run.measurer.get("spec"))

    def get_measurer(self):
        if self._measurer is None:
            from ldmprobe.models import load as model_load
            from ldmprobe.models import sources as models

            ref, run = self.measurer_ref, self.run
            if models.measurer_identity(ref) != run.measurer["identity"]:
                raise BadInputError(
                    f"text embeddings this comparison needs are not cached and the measurer {run.measurer.get('spec')!r} "
                    f"recorded in {run.path / 'results.json'} is no longer the model that embedded the images (its "
                    "identity changed). Set LDMPROBE_CACHE to the cache that sweep used, or rerun both sweeps with "
                    "the current measurer.")
            models.ensure_measurer_available(ref, offline=self.offline)
            chosen, _ = model_load.pick_device(self.device)
            self._measurer = model_load.load_measurer(ref, device=chosen, offline=self.offline)
        return self._measurer


def probe_embeddings(run: RunData, probes: list[str], *, offline: bool, device: str, reporter=None,
                     loader: _MeasurerLoader | None = None) -> np.ndarray:
    """The probes' template-averaged text embeddings by the run's measurer, from the sweep's text
    cache; the measurer is loaded only for those not cached (and must still be the recorded one)."""
    identity = run.measurer["identity"]
    store = identity_store("text", identity, "text embeddings")
    templates = list(DEFAULT_PROBE_TEMPLATES)
    keys = [cache_key("text-embedding", CACHE_KINDS["text-embedding"], {"text": p, "templates": templates})
            for p in probes]
    try:
        rows = store.get_many(keys)
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing:
            if reporter is not None:
                reporter.info(f"embedding {len(missing)} probe word(s) with the measurer (not cached)")
            from ldmprobe.engine.encode import encode_in_templates

            loader = loader or _MeasurerLoader(run, offline=offline, device=device)
            fresh = encode_in_templates(loader.get_measurer(), [probes[i] for i in missing], templates)
            store.put_many([keys[i] for i in missing], list(fresh))
            for i, vector in zip(missing, fresh):
                rows[i] = vector
    finally:
        store.close()
    return np.stack([np.asarray(r, dtype=np.float64) for r in rows])


def _file_embeddings(run: RunData, label: str):
    """A run from ``--embeddings FILE``: its image vectors by cell and its probe embeddings, read
    back from that file, which must still be the one the sweep read (same sha256)."""
    from ldmprobe.specs.sweep import SPEC_KEYS, spec_from_dict
    from ldmprobe.specs.sweep_sources import read_embeddings_file

    recorded = run.source
    path = Path(str(recorded.get("path")))
    spec = spec_from_dict({k: v for k, v in run.spec.items() if k in SPEC_KEYS}, source=str(run.path / "results.json"))
    try:
        top = run.items[0] if run.items and run.items[0].guidance is not None else None  # several levels: the top
        file, _ = read_embeddings_file(path, spec, None if top is None else (top.guidance, top.steps))
    except BadInputError as exc:
        raise BadInputError(f"{label} {run.path} was computed from {path}, which cannot be read back: {exc}") from None
    if file.source.sha256 != recorded.get("sha256"):
        raise BadInputError(
            f"{path} changed since {label} {run.path} was computed from it (sha256 {file.source.sha256[:12]}..., "
            f"recorded {str(recorded.get('sha256'))[:12]}...): rerun that sweep on the file as it is now.")
    images = {(i.template_index, i.term, i.seed): None for i in run.items}
    for item in run.items:
        vector = file.images.get((item.template_index, item.term, item.seed))
        if item.usable and vector is not None:
            images[(item.template_index, item.term, item.seed)] = np.asarray(vector, dtype=np.float64)
    probes = None if file.probe_embeddings is None else np.asarray(file.probe_embeddings, dtype=np.float64)
    return images, probes, int(file.source.dim)


def _same_space(a: RunData, b: RunData, dims: tuple[int, int], probes: tuple, reporter) -> None:
    """Two embeddings files in one space: the same dimension and the same probe embeddings."""
    if dims[0] != dims[1]:
        raise BadInputError(f"the embeddings files of {a.path} ({dims[0]} dimensions) and {b.path} ({dims[1]}) are "
                            "not in one space; both must come from one measurer.")
    pa, pb = probes
    if pa is not None and pb is not None and pa.size:
        unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
        worst = float(np.max(1.0 - np.sum(unit(pa) * unit(pb), axis=1)))
        if worst > 1e-3:
            raise BadInputError(
                f"the embeddings files of {a.path} and {b.path} embed the probe words differently (1 - cosine up to "
                f"{worst:.3g}), so they were not made by one measurer; drift and probe shifts are only comparable "
                "in one CLIP space.")
    elif reporter is not None:
        reporter.warn("the runs' embeddings files have no probe embeddings to check that one measurer made both; "
                      "ldmprobe trusts that they share a space.")


@dataclass(frozen=True)
class RunImages:
    """Both runs' image embeddings by (template index, term, seed), and for runs from embeddings
    files the files' probe embeddings and dimensions (None for generated or --images runs)."""

    images_a: dict
    images_b: dict
    probes: tuple | None = None
    dims: tuple | None = None


def gather_images(a: RunData, b: RunData) -> RunImages:
    """Both runs' image embeddings: from the cache by item key, or read back from the embeddings files."""
    if a.from_embeddings and b.from_embeddings:
        images_a, probes_a, dim_a = _file_embeddings(a, "RUN_A")
        images_b, probes_b, dim_b = _file_embeddings(b, "RUN_B")
        return RunImages(images_a, images_b, (probes_a, probes_b), (dim_a, dim_b))
    return RunImages(_image_embeddings(a, "RUN_A"), _image_embeddings(b, "RUN_B"))


def gather_embeddings(a: RunData, b: RunData, *, offline: bool = False, device: str = "auto",
                      reporter=None, images: RunImages | None = None,
                      loader: _MeasurerLoader | None = None) -> CompareEmbeddings:
    """Both runs' image embeddings and the probe embeddings, as the pure comparison takes them."""
    probes = list(a.spec.get("probes") or [])
    images = gather_images(a, b) if images is None else images
    images_a, images_b = images.images_a, images.images_b
    if images.dims is not None:
        _same_space(a, b, images.dims, images.probes, reporter)
        probe_emb = images.probes[0] if probes else None
    else:
        probe_emb = (probe_embeddings(a, probes, offline=offline, device=device, reporter=reporter, loader=loader)
                     if probes else None)
    return CompareEmbeddings(
        templates=tuple(a.spec["templates"]), baseline=a.spec.get("baseline", ""), terms=tuple(a.spec["terms"]),
        seeds=tuple(a.spec["seeds"]), images_a=images_a, images_b=images_b, probes=tuple(probes),
        probe_embeddings=probe_emb,
    )
