"""`ldmprobe models` and `ldmprobe check`: what the presets resolve to, and a load test."""

from __future__ import annotations

import time

from ldmprobe import SCHEMA_VERSION
from ldmprobe.engine import cache
from ldmprobe.models import sources as models
from ldmprobe.models import tiny
from ldmprobe.results.provenance import now_iso, provenance


def _hub_cached(repo_id: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)


def model_inventory() -> dict:
    """Presets with what they resolve to and whether they are on disk (no torch import)."""
    models_dir = cache.models_dir()
    generators = []
    for name, preset in models.GENERATOR_PRESETS.items():
        if name == "tiny":
            folder = models_dir / f"tiny-generator-v{tiny.TINY_VERSION}"
            built = (folder / "model_index.json").is_file()
            generators.append({
                "role": "generator", "name": name, "resolves_to": str(folder), "about": preset["about"],
                "local": True, "status": "built" if built else "built on first use (offline)",
            })
        else:
            cached = _hub_cached(preset["hub_id"], "model_index.json")
            generators.append({
                "role": "generator", "name": name, "resolves_to": f"hf-hub:{preset['hub_id']}",
                "about": preset["about"], "local": cached,
                "status": "cached" if cached else "not cached (needs network once)",
            })
    measurers = []
    for name, preset in models.MEASURER_PRESETS.items():
        if name == "tiny":
            folder = models_dir / f"tiny-measurer-v{tiny.TINY_VERSION}"
            built = (folder / "open_clip_config.json").is_file()
            measurers.append({
                "role": "measurer", "name": name, "resolves_to": f"local-dir:{folder}",
                "about": preset["about"], "local": True,
                "status": "built" if built else "built on first use (offline)",
            })
        else:
            cached = models.measurer_cached(models.resolve_measurer(name))
            measurers.append({
                "role": "measurer", "name": name, "resolves_to": f"hf-hub:{preset['hf_hub']}",
                "about": preset["about"], "local": bool(cached),
                "status": "cached" if cached else "not cached (needs network once)",
            })
    return {
        "cache": str(cache.cache_root()),
        "default_generator": models.DEFAULT_GENERATOR,
        "default_measurer": models.DEFAULT_MEASURER,
        "generators": generators,
        "measurers": measurers,
    }


def render_inventory(document: dict):
    from rich.table import Table

    table = Table(title=f"ldmprobe models (cache: {document['cache']})", title_justify="left")
    for column in ("role", "name", "resolves to", "status", "about"):
        table.add_column(column)
    for row in document["generators"] + document["measurers"]:
        table.add_row(row["role"], row["name"], row["resolves_to"], row["status"], row["about"])
    return table


def check_models(*, pipeline: str, revision: str | None, measurer: str, device: str, dtype: str,
                 offline: bool, terminal) -> dict:
    """Load both models, make one image, embed it and a prompt; time each step."""
    started = now_iso()
    gen_ref = models.resolve_generator(pipeline, revision)
    meas_ref = models.resolve_measurer(measurer)
    if gen_ref.is_tiny or meas_ref.is_tiny:
        terminal.warn(models.TINY_WARNING)
    if offline:
        models.set_hub_offline()
    # fail fast, before the slow imports, when either model cannot be had
    models.locate_generator(gen_ref, offline=offline, configs_only=True)
    models.ensure_measurer_available(meas_ref, offline=offline)
    t0 = time.perf_counter()
    import torch

    chosen_device, chosen_dtype = models.pick_device(device)
    chosen_dtype = chosen_dtype if dtype == "auto" else dtype
    timings = {"import_s": time.perf_counter() - t0}

    t0 = time.perf_counter()
    generator = models.load_generator(gen_ref, device=chosen_device, dtype=chosen_dtype, offline=offline)
    timings["load_generator_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    measurer_model = models.load_measurer(meas_ref, device=chosen_device, offline=offline)
    timings["load_measurer_s"] = time.perf_counter() - t0

    prompt = "a photo of a house"
    t0 = time.perf_counter()
    output = generator.pipe(
        [prompt], num_inference_steps=4 if gen_ref.is_tiny else 20,
        generator=[torch.Generator("cpu").manual_seed(0)], output_type="pil",
    )
    timings["generate_one_s"] = time.perf_counter() - t0
    image = output.images[0]
    t0 = time.perf_counter()
    with torch.no_grad():
        pixels = measurer_model.preprocess(image).unsqueeze(0).to(chosen_device)
        image_emb = measurer_model.model.encode_image(pixels)
        text_emb = measurer_model.model.encode_text(measurer_model.tokenizer([prompt]).to(chosen_device))
    timings["embed_s"] = time.perf_counter() - t0
    image_emb = torch.nn.functional.normalize(image_emb.float(), dim=-1)
    text_emb = torch.nn.functional.normalize(text_emb.float(), dim=-1)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "check",
        "config": {
            "pipeline": {"spec": gen_ref.spec, "folder": str(generator.folder), "identity": generator.identity},
            "measurer": {"spec": meas_ref.spec, "identity": measurer_model.identity},
            "device": chosen_device, "dtype": chosen_dtype,
        },
        "image_size": list(image.size),
        "embed_dim": int(image_emb.shape[-1]),
        "image_text_cosine": float((image_emb * text_emb).sum()),
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "provenance": provenance(started=started, tiny=gen_ref.is_tiny or meas_ref.is_tiny,
                                 device=chosen_device, dtype=chosen_dtype),
    }


def render_check(document: dict):
    from rich.table import Table

    table = Table(title="ldmprobe check", title_justify="left")
    table.add_column("what")
    table.add_column("value")
    table.add_row("pipeline", document["config"]["pipeline"]["spec"])
    table.add_row("measurer", document["config"]["measurer"]["spec"])
    table.add_row("device / dtype", f"{document['config']['device']} / {document['config']['dtype']}")
    table.add_row("image size", "x".join(map(str, document["image_size"])))
    table.add_row("embedding dim", str(document["embed_dim"]))
    for key, value in document["timings"].items():
        table.add_row(key, f"{value:.3f}")
    return table


__all__ = ["model_inventory", "check_models", "render_inventory", "render_check"]
