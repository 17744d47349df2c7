"""Export the trained reference world as float16 model folders (diffusers and open_clip)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .nets import (MEASURER_CONFIG, OPENAI_MEAN, OPENAI_STD, build_tokenizer, convert_text_tower,
                   load_measurer, load_vae, log, make_unet)


def make_scheduler(name: str = "ddim", zero_snr: bool = False):
    """The exported pipeline's sampler: DDIM (world 1) or DPM-Solver++ (2nd order, multistep; its
    stochastic form ``sde-dpmsolver++`` adds fresh noise each step, drawn from each image's generator);
    ``zero_snr``: for a UNet trained by ``make_train_scheduler(zero_snr=True)`` (trailing steps)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    common = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1}
    if zero_snr:
        common.update(rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="trailing")
    if name == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False)
    if name in ("dpmsolver++", "sde-dpmsolver++"):  # the second draws fresh noise each step (from the image's seed)
        return DPMSolverMultistepScheduler(**common, algorithm_type=name, solver_order=2)
    raise ValueError(f"unknown scheduler {name!r} (ddim, dpmsolver++ or sde-dpmsolver++)")


def stage_export(work: Path, out: Path, lat: dict, *, seed: int, step_offset: int = 0,
                 extra: dict | None = None, scheduler: str = "ddim", zero_snr: bool = False) -> None:
    """Write ``out/generator`` (diffusers) and ``out/measurer`` (open_clip) in float16.

    ``step_offset`` is the UNet steps a continued training started from (``extra`` records it).
    """
    import shutil

    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    clip_model = load_measurer(work)
    state = torch.load(work / "unet.pt", weights_only=True, map_location="cpu")
    unet = make_unet()
    unet.load_state_dict(state["ema"])
    vae = load_vae(work)
    vae.register_to_config(scaling_factor=lat["scale"])
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=convert_text_tower(clip_model), tokenizer=build_tokenizer(), unet=unet,
        scheduler=make_scheduler(scheduler, zero_snr), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    pipe.to(torch.float16).save_pretrained(str(staging / "generator"), safe_serialization=True)
    measurer_dir = staging / "measurer"
    measurer_dir.mkdir(parents=True)
    weights = {k: v.detach().to(torch.float16).contiguous() for k, v in clip_model.state_dict().items()}
    save_file(weights, str(measurer_dir / "open_clip_model.safetensors"))
    config = {"model_cfg": MEASURER_CONFIG,
              "preprocess_cfg": {"mean": list(OPENAI_MEAN), "std": list(OPENAI_STD),
                                 "interpolation": "bicubic", "resize_mode": "shortest"}}
    (measurer_dir / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    marker = {"ldmprobe_reference": 1, "unet_steps": step_offset + int(state["step"]), "seed": seed,
              "vae_psnr_db": round(lat["psnr"], 2),
              "note": "trained on the synthetic reference world: its numbers are true of that world only",
              **(extra or {})}
    from ldmprobe.models.reference import write_digests

    for role in ("generator", "measurer"):
        (staging / role / "ldmprobe_reference.json").write_text(
            json.dumps(dict(marker, role=role), indent=2) + "\n")
        write_digests(staging / role)  # loading refuses a shipped folder whose files differ
    for role in ("generator", "measurer"):
        shutil.rmtree(out / role, ignore_errors=True)
        (out / role).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / role, out / role)
    shutil.rmtree(staging, ignore_errors=True)
    log(f"exported UNet step {step_offset + state['step']} to {out}")
