"""What the model presets resolve to and whether each is available locally (no torch)."""

from __future__ import annotations

from ldmprobe.store import files
from ldmprobe.models import sources as models
from ldmprobe.models import tiny, tiny_arch
from ldmprobe.models.reference import REFERENCE_WEIGHTS, is_reference_folder


def _hub_cached(repo_id: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)


def _row(role: str, name: str, preset: dict, models_dir, tiny_names) -> dict:
    """One preset: where it resolves to and whether it is here (tiny: built on first use; the
    reference world: shipped; a hub checkpoint: cached or not, gated ones saying what they need)."""
    local_dir = "local-dir:" if role == "measurer" else ""
    about, extra = preset["about"], {}
    if name == "tiny" or name in tiny_names:
        folder = models_dir / (tiny_arch.folder_name(name) if name in tiny_names
                               else f"tiny-{role}-v{tiny.TINY_VERSION}")
        marker = "model_index.json" if role == "generator" else "open_clip_config.json"
        where, local = local_dir + str(folder), True
        status = "built" if (folder / marker).is_file() else "built on first use (offline)"
    elif name == "reference":
        folder = REFERENCE_WEIGHTS / role
        where, local = local_dir + str(folder), is_reference_folder(folder)
        status = "shipped" if local else "missing from this install"
    else:
        if role == "generator":
            hub, local = preset["hub_id"], _hub_cached(preset["hub_id"], "model_index.json")
            about += "".join(f"; {preset[k]}" for k in ("licence", "needs") if k in preset)
        else:
            hub, local = preset["hf_hub"], bool(models.measurer_cached(models.resolve_measurer(name)))
        where = f"hf-hub:{hub}"
        status = "cached" if local else ("not cached (gated: accept the licence on the hub, then needs network once)"
                                         if preset.get("gated") else "not cached (needs network once)")
        extra = {k: preset[k] for k in ("architecture", "licence", "gated", "dtype", "needs") if k in preset}
    return {"role": role, "name": name, "resolves_to": where, "about": about, "local": local, "status": status, **extra}


def _rows(role: str, presets: dict, tiny_names, models_dir) -> list[dict]:
    return [_row(role, name, preset, models_dir, tiny_names) for name, preset in presets.items()]


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
