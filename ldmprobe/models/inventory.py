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


def model_inventory() -> dict:
    """Presets with what they resolve to and whether they are on disk (no torch import)."""
    models_dir = files.models_dir()
    generators = []
    for name, preset in models.GENERATOR_PRESETS.items():
        if name == "tiny" or name in tiny_arch.GENERATORS:
            folder = models_dir / (tiny_arch.folder_name(name) if name in tiny_arch.GENERATORS
                                   else f"tiny-generator-v{tiny.TINY_VERSION}")
            built = (folder / "model_index.json").is_file()
            generators.append({
                "role": "generator", "name": name, "resolves_to": str(folder), "about": preset["about"],
                "local": True, "status": "built" if built else "built on first use (offline)",
            })
        elif name == "reference":
            generators.append(_reference_row("generator", name, preset))
        else:
            cached = _hub_cached(preset["hub_id"], "model_index.json")
            generators.append({
                "role": "generator", "name": name, "resolves_to": f"hf-hub:{preset['hub_id']}",
                "about": preset["about"] + "".join(f"; {preset[k]}" for k in ("licence", "needs") if k in preset),
                "local": cached,
                "status": "cached" if cached else ("not cached (gated: accept the licence on the hub, then needs "
                                                   "network once)" if preset.get("gated") else
                                                   "not cached (needs network once)"),
                **{k: preset[k] for k in ("architecture", "licence", "gated", "dtype", "needs") if k in preset},
            })
    measurers = []
    for name, preset in models.MEASURER_PRESETS.items():
        if name == "tiny" or name in tiny_arch.MEASURERS:
            folder = models_dir / (tiny_arch.folder_name(name) if name in tiny_arch.MEASURERS
                                   else f"tiny-measurer-v{tiny.TINY_VERSION}")
            built = (folder / "open_clip_config.json").is_file()
            measurers.append({
                "role": "measurer", "name": name, "resolves_to": f"local-dir:{folder}",
                "about": preset["about"], "local": True,
                "status": "built" if built else "built on first use (offline)",
            })
        elif name == "reference":
            measurers.append(_reference_row("measurer", name, preset))
        else:
            cached = models.measurer_cached(models.resolve_measurer(name))
            measurers.append({
                "role": "measurer", "name": name, "resolves_to": f"hf-hub:{preset['hf_hub']}",
                "about": preset["about"], "local": bool(cached),
                "status": "cached" if cached else "not cached (needs network once)",
            })
    return {
        "cache": str(files.cache_root()),
        "default_generator": models.DEFAULT_GENERATOR,
        "default_measurer": models.DEFAULT_MEASURER,
        "generators": generators,
        "measurers": measurers,
    }
