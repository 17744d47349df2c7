"""Tiny random-weight builds of the current architectures: SDXL, SD 3.x, Flux.1, and SigLIP.

Like :mod:`ldmprobe.models.tiny` (SD 1.x), each is built offline from configs with a fixed
seed, saved as an ordinary model folder (safetensors) into the cache, and loaded back through
``DiffusionPipeline.from_pretrained`` / open_clip's ``local-dir:`` like a real model. Every
folder's ``ldmprobe_tiny.json`` records the architecture it stands in for and its native
size. Their numbers mean nothing; they exist so every code path runs offline in tests.

Component shapes follow the real models at toy width: SDXL's two CLIP encoders (the second
with a projection, its pooled output feeding the UNet's ``text_time`` micro-conditioning);
SD 3's two projected CLIPs plus T5 into an MMDiT with joint attention; Flux's CLIP (pooled
only) plus T5 (tokens) into a Flux transformer with distilled guidance (``guidance_embeds``,
as in Flux.1 dev); SigLIP's bidirectional text tower with last-token pooling and a learned
logit bias (sigmoid loss).
"""

from __future__ import annotations

import json
from pathlib import Path

from ldmprobe.models import tiny

#: Side of every tiny generator's images (pixels).
TINY_SIDE = 64
#: T5 pieces kept from CLIP's BPE list for the tiny T5 tokenizer (whole words first).
T5_PIECES = 8000

#: Generator preset name -> (architecture, folder name stem).
GENERATORS = {
    "tiny-sdxl": ("sdxl", "tiny-sdxl-generator"),
    "tiny-sd3": ("sd3", "tiny-sd3-generator"),
    "tiny-flux": ("flux", "tiny-flux-generator"),
}
MEASURERS = {"tiny-siglip": ("siglip", "tiny-siglip-measurer")}

#: open_clip config of the tiny SigLIP: bidirectional text tower, last-token pooling,
#: projection bias and a learned logit bias (the sigmoid loss's b, initialised at -10).
TINY_SIGLIP_CONFIG = {
    "embed_dim": 64,
    "init_logit_bias": -10,
    "custom_text": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 64, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2,
                 "no_causal_mask": True, "pool_type": "last", "proj_bias": True},
}


def _clip_text(hidden: int = 32, projection: int = 32, with_projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408, max_position_embeddings=77, hidden_size=hidden, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=2, projection_dim=projection, layer_norm_eps=1e-5,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, hidden_act="gelu",
    )
    return CLIPTextModelWithProjection(config) if with_projection else CLIPTextModel(config)


def build_t5_tokenizer():
    """A T5 (Unigram, sentencepiece-style) tokenizer made offline from CLIP's BPE pieces.

    Whole words (CLIP's ``</w>`` pieces) become ``▁word`` pieces, the rest word-inner pieces;
    earlier (more frequent) merges score higher. Not T5's real vocabulary, but the same kind
    of tokenizer: ``</s>`` appended, ``<pad>`` padding, no start token, no pooling token.
    """
    from transformers import T5Tokenizer

    vocab, _ = tiny.clip_bpe_vocab_and_merges()
    pieces: dict[str, float] = {}
    for token, rank in sorted(vocab.items(), key=lambda kv: kv[1]):
        if token.startswith("<|"):
            continue
        piece = "▁" + token[:-4] if token.endswith("</w>") else token
        if piece not in pieces and piece != "▁":
            pieces[piece] = -1.0 - rank / 1000.0
        if len(pieces) >= T5_PIECES:
            break
    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    return T5Tokenizer(vocab=specials + list(pieces.items()), extra_ids=0)


def _t5(d_model: int, vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(
        vocab_size=vocab_size, d_model=d_model, d_ff=37, d_kv=8, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, is_encoder_decoder=False, use_cache=False,
    ))


def _vae(latent_channels: int, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels, block_out_channels=[32, 64],
        norm_num_groups=32, sample_size=TINY_SIDE,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2, **extra,
    )


def _build_sdxl():
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=TINY_SIDE // 2, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=32, attention_head_dim=(2, 4), use_linear_projection=True,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        addition_embed_type="text_time", addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64,
    )
    encoder, encoder_2 = _clip_text(), _clip_text(with_projection=True)
    vae = _vae(4, force_upcast=True, scaling_factor=0.13025)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    tokenizer = tiny.build_clip_tokenizer()
    return StableDiffusionXLPipeline(vae=vae, text_encoder=encoder, text_encoder_2=encoder_2, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
                                     force_zeros_for_empty_prompt=True)


def _build_sd3():
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    t5_tokenizer = build_t5_tokenizer()
    transformer = SD3Transformer2DModel(
        sample_size=TINY_SIDE // 2, patch_size=1, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=64,
        pos_embed_max_size=TINY_SIDE // 2,
    )
    encoder, encoder_2 = _clip_text(with_projection=True), _clip_text(with_projection=True)
    encoder_3 = _t5(64, len(t5_tokenizer))
    vae = _vae(4, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    tokenizer = tiny.build_clip_tokenizer()
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
        text_encoder=encoder, tokenizer=tokenizer, text_encoder_2=encoder_2, tokenizer_2=tokenizer,
        text_encoder_3=encoder_3, tokenizer_3=t5_tokenizer,
    )


def _build_flux():
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    t5_tokenizer = build_t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    )
    vae = _vae(4, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    return FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=_clip_text(), tokenizer=tiny.build_clip_tokenizer(),
                        text_encoder_2=_t5(32, len(t5_tokenizer)), tokenizer_2=t5_tokenizer, transformer=transformer)


_BUILDERS = {"sdxl": _build_sdxl, "sd3": _build_sd3, "flux": _build_flux}
_STANDS_FOR = {
    "sdxl": "Stable Diffusion XL (UNet, CLIP-L + CLIP-G, pooled text_time micro-conditioning)",
    "sd3": "Stable Diffusion 3.x (MMDiT joint attention, CLIP-L + CLIP-G + T5)",
    "flux": "Flux.1 dev (transformer, CLIP pooled + T5 tokens, guidance-distilled)",
    "siglip": "SigLIP (sigmoid loss: logit scale and logit bias)",
}


def build_generator(architecture: str, folder: Path) -> None:
    """Write the tiny ``architecture`` ("sdxl", "sd3", "flux") pipeline into ``folder``."""
    rng = tiny._seeded()
    try:
        pipe = _BUILDERS[architecture]()
    finally:
        rng.__exit__(None, None, None)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    tiny._write_marker(folder, "generator", architecture=architecture, stands_for=_STANDS_FOR[architecture],
                       native_size=[TINY_SIDE, TINY_SIDE])


def build_siglip(folder: Path, seed: int = tiny.TINY_SEED) -> None:
    """Write a tiny open_clip SigLIP-style model (config + safetensors) into ``folder``."""
    import open_clip
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    rng = tiny._seeded(seed)
    try:
        model = open_clip.CustomTextCLIP(**{k: v for k, v in TINY_SIGLIP_CONFIG.items() if k != "custom_text"})
    finally:
        rng.__exit__(None, None, None)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    config = {"model_cfg": TINY_SIGLIP_CONFIG,
              "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic",
                                 "resize_mode": "squash"}}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    tiny._write_marker(folder, "measurer", seed, architecture="siglip", stands_for=_STANDS_FOR["siglip"])


def ensure_generator(models_dir: Path, preset: str) -> Path:
    """The folder of tiny generator ``preset`` (``tiny-sdxl``, ``tiny-sd3``, ``tiny-flux``), built on first use."""
    architecture, stem = GENERATORS[preset]
    return tiny._ensure(models_dir, stem, lambda folder: build_generator(architecture, folder), "model_index.json")


def ensure_measurer(models_dir: Path, preset: str) -> Path:
    """The folder of tiny measurer ``preset`` (``tiny-siglip``), built on first use."""
    _, stem = MEASURERS[preset]
    return tiny._ensure(models_dir, stem, build_siglip, "open_clip_config.json")


def folder_name(preset: str) -> str:
    """The cache folder name of a tiny preset (for listings without building it)."""
    stem = (GENERATORS.get(preset) or MEASURERS[preset])[1]
    return f"{stem}-v{tiny.TINY_VERSION}"
