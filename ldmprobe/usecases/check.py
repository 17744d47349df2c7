"""Check models: list the presets (`ldmprobe models`) and load both models once (`ldmprobe check`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ldmprobe import SCHEMA_VERSION
from ldmprobe.models import inventory
from ldmprobe.models import load as model_load
from ldmprobe.models import sources as models
from ldmprobe.models.libraries import quiet_libraries
from ldmprobe.models.loader import ModelLoader
from ldmprobe.reporting import Reporter, or_silent
from ldmprobe.results.provenance import now_iso, provenance


def list_models() -> dict:
    """The presets, what each resolves to and whether it is available locally."""
    return {"schema_version": SCHEMA_VERSION, "kind": "models", **inventory.model_inventory()}


class _Phases:
    """Back-to-back timings: each phase starts where the last ended, so they add up to the total."""

    def __init__(self):
        self.timings: dict[str, float] = {}
        age = _process_age()
        if age is not None:  # the interpreter and the command line's own imports, before the check began
            self.timings["startup_s"] = age
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self._last
        self._last = now

    def rounded(self) -> dict[str, float]:
        self.lap("report_s")
        out = {k: round(v, 4) for k, v in self.timings.items()}
        out["total_s"] = round(sum(self.timings.values()), 4)
        return out


def _process_age() -> float | None:
    """Seconds since this process started (Linux /proc), or None where that cannot be read."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time after boot, in ticks
        return max(time.clock_gettime(time.CLOCK_BOOTTIME) - started, 0.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _import_libraries() -> None:
    """The heavy libraries every check needs, imported in one timed phase (not inside a model build)."""
    quiet_libraries()
    import diffusers  # noqa: F401
    import open_clip  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401


def _embed_one(measurer_model, image, prompt: str, device: str) -> tuple[int, float]:
    """The image's embedding size and its cosine with the prompt's."""
    import torch

    with torch.no_grad():
        pixels = measurer_model.preprocess(image).unsqueeze(0).to(device)
        image_emb = measurer_model.model.encode_image(pixels)
        text_emb = measurer_model.model.encode_text(measurer_model.tokenizer([prompt]).to(device))
    image_emb = torch.nn.functional.normalize(image_emb.float(), dim=-1)
    text_emb = torch.nn.functional.normalize(text_emb.float(), dim=-1)
    return int(image_emb.shape[-1]), float((image_emb * text_emb).sum())


def check_models(*, pipeline: str, revision: str | None, measurer: str, device: str, dtype: str,
                 offline: bool, reporter: Reporter | None = None) -> dict:
    """Load both models, make one image, embed it and a prompt; time each step.

    The timings are back to back (startup, resolve, import, device, load_generator,
    load_measurer, generate_one, embed, report) and ``total_s`` is their sum: the command's time
    from process start to its output."""
    phases = _Phases()
    started = now_iso()
    gen_ref = models.resolve_generator(pipeline, revision)
    meas_ref = models.resolve_measurer(measurer)
    if gen_ref.is_tiny or meas_ref.is_tiny:
        or_silent(reporter).warn(models.TINY_WARNING)
    if offline:
        models.set_hub_offline()
    # fail fast, before the slow imports, when either model cannot be had (built-in ones always can)
    if gen_ref.source == "hub":
        models.locate_generator(gen_ref, offline=offline, configs_only=True)
    models.ensure_measurer_available(meas_ref, offline=offline)
    phases.lap("resolve_s")
    _import_libraries()
    import torch

    phases.lap("import_s")
    chosen_device, chosen_dtype = model_load.pick_device(device)
    chosen_dtype = chosen_dtype if dtype == "auto" else dtype
    loader = ModelLoader(gen_ref, meas_ref, device=chosen_device, dtype=chosen_dtype, offline=offline)
    phases.lap("device_s")
    generator = loader.get_generator()
    phases.lap("load_generator_s")
    measurer_model = loader.get_measurer()
    phases.lap("load_measurer_s")

    prompt = "a photo of a house"
    output = generator.pipe(
        [prompt], num_inference_steps=4 if gen_ref.is_tiny else 20,
        generator=[torch.Generator("cpu").manual_seed(0)], output_type="pil",
    )
    phases.lap("generate_one_s")
    image = output.images[0]
    embed_dim, cosine = _embed_one(measurer_model, image, prompt, chosen_device)
    phases.lap("embed_s")
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "check",
        "config": {
            "pipeline": {"spec": gen_ref.spec, "folder": str(generator.folder), "identity": generator.identity},
            "measurer": {"spec": meas_ref.spec, "identity": measurer_model.identity},
            "device": chosen_device, "dtype": chosen_dtype,
        },
        "image_size": list(image.size),
        "embed_dim": embed_dim,
        "image_text_cosine": cosine,
        "timings": phases.rounded(),
        "provenance": provenance(started=started, tiny=gen_ref.is_tiny or meas_ref.is_tiny,
                                 reference=gen_ref.is_reference or meas_ref.is_reference,
                                 device=chosen_device, dtype=chosen_dtype),
    }
