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

SCHEMA_VERSION = "1.0"

#: Public name -> module that defines it (imported on first access).
_EXPORTS = {
    # specs and plans
    "Spec": "spec", "load_spec": "spec", "expand": "spec",
    "Recipe": "plan", "WorkItem": "plan", "plan": "plan", "item_key": "plan",
    # models
    "resolve_generator": "models", "resolve_measurer": "models", "load_generator": "models",
    "load_measurer": "models", "pick_device": "models",
    # sweeps
    "SweepOptions": "sweep", "make_plan": "sweep", "run_sweep": "api", "SweepResult": "api",
    # embeddings and statistics
    "encode_texts": "embed", "encode_images": "embed", "encode_in_templates": "embed",
    "weat": "stats", "drift_permutation_test": "stats", "probe_shift": "stats",
    "benjamini_hochberg": "stats", "centroid_drift": "stats", "paired_drift": "stats",
    "direction_neighbours": "stats",
    # neighbours and association tests
    "load_vocabulary": "vocab", "find_neighbours": "neighbours",
    "load_assoc_spec": "assoc", "run_assoc": "assoc",
    # outputs
    "write_report": "report", "Terminal": "render",
}

__all__ = sorted(_EXPORTS) + ["__version__", "SCHEMA_VERSION"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ldmprobe' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
