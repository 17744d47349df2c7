"""What a diffusers model folder's config files say: native image size and scheduler (no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def native_image_size(folder: Path) -> tuple[int, int]:
    """The generator's native (height, width): UNet sample size times the VAE's downscale."""
    unet = json.loads((folder / "unet" / "config.json").read_text()) if (folder / "unet" / "config.json").is_file() else {}
    vae = json.loads((folder / "vae" / "config.json").read_text()) if (folder / "vae" / "config.json").is_file() else {}
    sample = unet.get("sample_size", 64)
    height, width = (sample[0], sample[1]) if isinstance(sample, (list, tuple)) else (sample, sample)
    factor = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
    return int(height) * factor, int(width) * factor


def scheduler_identity(folder: Path) -> dict[str, Any]:
    """Scheduler class and public config, read from the folder (no torch needed)."""
    index = json.loads((folder / "model_index.json").read_text())
    entry = index.get("scheduler") or [None, None]
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    public = {k: v for k, v in sorted(config.items()) if not k.startswith("_")}
    return {"class": entry[1] or config.get("_class_name", ""), "config": public}
