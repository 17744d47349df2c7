"""What the model presets resolve to and whether each is available locally (no torch)."""

from __future__ import annotations

from ldmprobe.store import files
from ldmprobe.models import sources as models
from ldmprobe.models import tiny, tiny_arch
from ldmprobe.models.reference import REFERENCE_WEIGHTS, is_reference_folder


def _hub_cached(repo_id: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)


def _reference_row(role: str, name: str, preset: dict) -> dict:
    folder = REFERENCE_WEIGHTS / role
    shipped = is_reference_folder(folder)
    return {"role": role, "name": name, "resolves_to": ("local-dir:" if role == "measurer" else "") + str(folder),
            "about": preset["about"], "local": shipped,
            "status": "shipped" if shipped else "missing from this install"}


def _tiny_row(role: str, name: str, preset: dict, models_dir) -> dict:
    """A built-in tiny model: built into the models folder on first use."""
    arch = tiny_arch.GENERATORS if role == "generator" else tiny_arch.MEASURERS
    folder = models_dir / (tiny_arch.folder_name(name) if name in arch else f"tiny-{role}-v{tiny.TINY_VERSION}")
    marker = "model_index.json" if role == "generator" else "open_clip_config.json"
    return {"role": role, "name": name, "resolves_to": ("local-dir:" if role == "measurer" else "") + str(folder),
            "about": preset["about"], "local": True,
            "status": "built" if (folder / marker).is_file() else "built on first use (offline)"}


def _hub_row(role: str, name: str, preset: dict) -> dict:
    """A hub checkpoint: cached or not (gated ones say what they need first)."""
    if role == "generator":
        hub, cached = preset["hub_id"], _hub_cached(preset["hub_id"], "model_index.json")
        about = preset["about"] + "".join(f"; {preset[k]}" for k in ("licence", "needs") if k in preset)
    else:
        hub, cached = preset["hf_hub"], bool(models.measurer_cached(models.resolve_measurer(name)))
        about = preset["about"]
    missing = ("not cached (gated: accept the licence on the hub, then needs network once)" if preset.get("gated")
               else "not cached (needs network once)")
    return {"role": role, "name": name, "resolves_to": f"hf-hub:{hub}", "about": about, "local": cached,
            "status": "cached" if cached else missing,
            **{k: preset[k] for k in ("architecture", "licence", "gated", "dtype", "needs") if k in preset}}


def _rows(role: str, presets: dict, tiny_names, models_dir) -> list[dict]:
    return [_tiny_row(role, name, preset, models_dir) if name == "tiny" or name in tiny_names
            else _reference_row(role, name, preset) if name == "reference"
            else _hub_row(role, name, preset) for name, preset in presets.items()]


def model_inventory() -> dict:
    """Presets with what they resolve to and whether they are on disk (no torch import)."""
    models_dir = files.models_dir()
    return {
        "cache": str(files.cache_root()),
        "default_generator": models.DEFAULT_GENERATOR,
        "default_measurer": models.DEFAULT_MEASURER,
        "generators": _rows("generator", models.GENERATOR_PRESETS, tiny_arch.GENERATORS, models_dir),
        "measurers": _rows("measurer", models.MEASURER_PRESETS, tiny_arch.MEASURERS, models_dir),
    }
