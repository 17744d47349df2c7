"""Presets for the current public text-to-image checkpoints and the tiny builds of each
architecture, with licence notes (gated repos say so) and what each needs (no torch).

Merged into :data:`ldmprobe.models.sources.GENERATOR_PRESETS` / ``MEASURER_PRESETS``.
"""

from __future__ import annotations

#: Real checkpoints. ``gated``: the hub asks you to accept the licence (logged in, HF_TOKEN)
#: before it serves the weights. ``dtype``: what the model is meant to run in on a GPU.
REAL_GENERATORS: dict[str, dict] = {
    "sdxl": {
        "hub_id": "stabilityai/stable-diffusion-xl-base-1.0", "architecture": "sdxl",
        "about": "Stable Diffusion XL base 1.0 (1024x1024; CLIP-L + OpenCLIP bigG, pooled micro-conditioning)",
        "licence": "CreativeML Open RAIL++-M (not gated)", "gated": False, "dtype": "float16",
        "needs": "~7 GB of fp16 weights; fits a 24 GB card (its VAE is upcast to float32 to avoid fp16 overflow)",
    },
    "sd35-medium": {
        "hub_id": "stabilityai/stable-diffusion-3.5-medium", "architecture": "sd3",
        "about": "Stable Diffusion 3.5 medium (1024x1024; MMDiT-X, CLIP-L + CLIP-G + T5-XXL)",
        "licence": "Stability AI Community License; GATED: accept it on the hub and log in (HF_TOKEN)",
        "gated": True, "dtype": "bfloat16",
        "needs": "~16 GB of bf16 weights (T5-XXL is most of it); on a 24 GB card set LDMPROBE_MEMORY=cpu-offload",
    },
    "sd35-large": {
        "hub_id": "stabilityai/stable-diffusion-3.5-large", "architecture": "sd3",
        "about": "Stable Diffusion 3.5 large (1024x1024; 8B MMDiT, CLIP-L + CLIP-G + T5-XXL)",
        "licence": "Stability AI Community License; GATED: accept it on the hub and log in (HF_TOKEN)",
        "gated": True, "dtype": "bfloat16",
        "needs": "~28 GB of bf16 weights; on a 24 GB card set LDMPROBE_MEMORY=cpu-offload,vae-tiling",
    },
    "flux-schnell": {
        "hub_id": "black-forest-labs/FLUX.1-schnell", "architecture": "flux",
        "about": "FLUX.1 schnell (1024x1024; 12B transformer, CLIP-L pooled + T5-XXL tokens; timestep-distilled, "
                 "1-4 steps, guidance has no effect)",
        "licence": "Apache-2.0 (not gated)", "gated": False, "dtype": "bfloat16",
        "needs": "~33 GB of bf16 weights; on a 24 GB card set LDMPROBE_MEMORY=cpu-offload",
    },
    "flux-dev": {
        "hub_id": "black-forest-labs/FLUX.1-dev", "architecture": "flux",
        "about": "FLUX.1 dev (1024x1024; 12B transformer, CLIP-L pooled + T5-XXL tokens; guidance-distilled: "
                 "--guidance is an input of the model (3.5 typical), not classifier-free guidance)",
        "licence": "FLUX.1 [dev] Non-Commercial License; GATED: accept it on the hub and log in (HF_TOKEN)",
        "gated": True, "dtype": "bfloat16",
        "needs": "~33 GB of bf16 weights; on a 24 GB card set LDMPROBE_MEMORY=cpu-offload",
    },
}

TINY_GENERATORS: dict[str, dict] = {
    "tiny-sdxl": {"hub_id": "", "architecture": "sdxl",
                  "about": "built-in random-weight SDXL pipeline (two CLIP encoders, pooled text_time) for tests"},
    "tiny-sd3": {"hub_id": "", "architecture": "sd3",
                 "about": "built-in random-weight SD 3 pipeline (MMDiT, CLIP-L + CLIP-G + T5) for tests"},
    "tiny-flux": {"hub_id": "", "architecture": "flux",
                  "about": "built-in random-weight Flux.1 dev pipeline (CLIP pooled + T5, distilled guidance) "
                           "for tests"},
}

TINY_MEASURERS: dict[str, dict] = {
    "tiny-siglip": {"hf_hub": "", "about": "built-in random-weight open_clip SigLIP (sigmoid loss, logit bias) "
                                           "for tests"},
}

REAL_MEASURERS: dict[str, dict] = {
    "ViT-B-16-SigLIP:webli": {
        "hf_hub": "timm/ViT-B-16-SigLIP",
        "about": "SigLIP ViT-B/16 (sigmoid loss; Apache-2.0, not gated)",
    },
}
