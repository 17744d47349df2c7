"""Check models: list the presets (`ldmprobe models`) and load both models once (`ldmprobe check`)."""

from __future__ import annotations

import time

from ldmprobe import SCHEMA_VERSION
from ldmprobe.models import inventory
from ldmprobe.models import load as model_load
from ldmprobe.models import sources as models
from ldmprobe.models.loader import ModelLoader
from ldmprobe.reporting import Reporter, or_silent
from ldmprobe.results.provenance import now_iso, provenance


def list_models() -> dict:
    """The presets, what each resolves to and whether it is available locally."""
    return {"schema_version": SCHEMA_VERSION, "kind": "models", **inventory.model_inventory()}


def check_models(*, pipeline: str, revision: str | None, measurer: str, device: str, dtype: str,
                 offline: bool, reporter: Reporter | None = None) -> dict:
    """Load both models, make one image, embed it and a prompt; time each step."""
    started = now_iso()
    gen_ref = models.resolve_generator(pipeline, revision)
    meas_ref = models.resolve_measurer(measurer)
    if gen_ref.is_tiny or meas_ref.is_tiny:
        or_silent(reporter).warn(models.TINY_WARNING)
    if offline:
        models.set_hub_offline()
    # fail fast, before the slow imports, when either model cannot be had
    models.locate_generator(gen_ref, offline=offline, configs_only=True)
    models.ensure_measurer_available(meas_ref, offline=offline)
    t0 = time.perf_counter()
    import torch

    chosen_device, chosen_dtype = model_load.pick_device(device)
    chosen_dtype = chosen_dtype if dtype == "auto" else dtype
    timings = {"import_s": time.perf_counter() - t0}
    loader = ModelLoader(gen_ref, meas_ref, device=chosen_device, dtype=chosen_dtype, offline=offline)

    t0 = time.perf_counter()
    generator = loader.get_generator()
    timings["load_generator_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    measurer_model = loader.get_measurer()
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
                                 reference=gen_ref.is_reference or meas_ref.is_reference,
                                 device=chosen_device, dtype=chosen_dtype),
    }
