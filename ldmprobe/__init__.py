"""ldmprobe: measure how words move text-to-image diffusion models, in CLIP space.

The stages of the data flow are importable from here (each a plain function over plain
data), and importing the package is cheap: torch, diffusers and open_clip load only when a
model does.

    import ldmprobe
    spec = ldmprobe.load_spec("fancy-house", seeds=2)
    result = ldmprobe.run_sweep(spec, ldmprobe.SweepOptions(pipeline="tiny", measurer="tiny"))
    result.terms[0]["image_drift"]
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ldmprobe")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

SCHEMA_VERSION = "2.0"

#: Public name -> module that defines it (imported on first access).
_EXPORTS = {
    # specs and plans
    "Spec": "specs.sweep", "load_spec": "specs.sweep", "expand": "specs.sweep",
    "Recipe": "engine.workitems", "WorkItem": "engine.workitems", "plan": "engine.workitems:work_items", "item_key": "engine.workitems",
    # models
    "resolve_generator": "models.sources", "resolve_measurer": "models.sources", "load_generator": "models.load",
    "load_measurer": "models.load", "pick_device": "models.load",
    # sweeps
    "SweepOptions": "engine.sweep_setup", "make_plan": "engine.sweep_setup", "run_sweep": "api", "SweepResult": "api",
    # embeddings and statistics
    "encode_texts": "engine.encode", "encode_images": "engine.encode", "encode_in_templates": "engine.encode",
    "weat": "analysis.association", "drift_permutation_test": "analysis.stats", "probe_shift": "analysis.stats",
    "benjamini_hochberg": "analysis.stats", "centroid_drift": "analysis.stats", "paired_drift": "analysis.stats",
    "direction_neighbours": "analysis.stats",
    # neighbours and association tests
    "load_vocabulary": "specs.vocab", "find_neighbours": "usecases.neighbours",
    "query_neighbours": "usecases.neighbours", "NeighboursOptions": "usecases.neighbours",
    "load_assoc_spec": "specs.assoc", "run_assoc": "usecases.assoc", "assoc_from_names": "usecases.assoc",
    "AssocOptions": "usecases.assoc",
    # tracing a word through the model
    "run_trace": "usecases.trace", "TraceOptions": "usecases.trace", "TraceResult": "results.trace",
    # comparing two runs of one spec
    "compare_runs": "api", "CompareOptions": "usecases.compare", "CompareSettings": "analysis.compare",
    "CompareResult": "results.compare",
    # outputs
    "write_report": "render.report", "Terminal": "render.terminal",
}

__all__ = sorted(_EXPORTS) + ["__version__", "SCHEMA_VERSION"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ldmprobe' has no attribute {name!r}")
    module, _, attribute = module.partition(":")
    value = getattr(import_module(f".{module}", __name__), attribute or name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
