"""The reference world's networks: configs, constructors, loaders and the text-tower conversion."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


MEASURER_CONFIG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 128, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 3},
}
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

def image_tensor(images: np.ndarray):
    import torch

    x = torch.from_numpy(images).float().permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class TokenCache:
    """open_clip tokens per caption, remembered (captions repeat)."""

    def __init__(self):
        import open_clip

        self._tokenize = open_clip.tokenize
        self._seen: dict[str, object] = {}

    def __call__(self, texts):
        import torch

        missing = [t for t in dict.fromkeys(texts) if t not in self._seen]
        if missing:
            for text, row in zip(missing, self._tokenize(missing)):
                self._seen[text] = row
        return torch.stack([self._seen[t] for t in texts])


def encode_text_trimmed(model, tokens, *, states: bool = False):
    """The projected text embedding of ``tokens`` (open_clip's ``encode_text``, cut to the longest
    caption); ``states``: also the final-layer-normed hidden states, (batch, length, width), which
    are what the generator's UNet sees (a ``CLIPTextModel``'s ``last_hidden_state``)."""
    import torch

    end = tokens.argmax(dim=-1)
    length = int(end.max()) + 1
    x = model.token_embedding(tokens[:, :length]) + model.positional_embedding[:length]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    hidden = model.ln_final(x)
    pooled = hidden[torch.arange(len(tokens), device=tokens.device), end] @ model.text_projection
    return (pooled, hidden) if states else pooled


#: Fixed logit scale of the token-identity head (cosine logits): a word is recognised from its
#: own position's state only if that state points away from every other word's, by a margin.
TOKEN_HEAD_SCALE = 10.0


class TokenIdentity:
    """An auxiliary loss that keeps every word legible in the text tower's last hidden states.

    A contrastive measurer learns that a word whose pictures look like the bare noun's carries
    nothing and silences it in its first layer; the generator, which conditions on those
    states, then cannot tell it from any other such word and cannot learn what the generator's
    own pictures tie to it. This head predicts each word token from the state at its own
    position (cosine logits at :data:`TOKEN_HEAD_SCALE` against one learned row per word of the
    world's vocabulary), so the states keep the word's identity while the pooled, projected
    embedding stays free to be neutral. It is used in training only and is not exported.
    """

    def __init__(self, vocabulary, width: int, device: str = "cpu"):
        import torch

        ids = sorted({int(i) for i in vocabulary})
        self.lookup = torch.full((MEASURER_CONFIG["text_cfg"]["vocab_size"],), -100, dtype=torch.long)
        self.lookup[torch.tensor(ids)] = torch.arange(len(ids))
        self.lookup = self.lookup.to(device)
        self.rows = torch.nn.Parameter(0.02 * torch.randn(len(ids), width, device=device))

    def loss(self, hidden, tokens):
        """Mean cross-entropy over the word positions (after the start token, before the end)."""
        import torch
        import torch.nn.functional as F

        length = hidden.shape[1]
        tokens = tokens[:, :length]
        end = tokens.argmax(dim=-1, keepdim=True)
        position = torch.arange(length, device=tokens.device).expand_as(tokens)
        target = self.lookup[tokens].masked_fill((position == 0) | (position >= end), -100)
        logits = TOKEN_HEAD_SCALE * F.normalize(hidden, dim=-1) @ F.normalize(self.rows, dim=-1).T
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)


def load_measurer(work: Path):
    """The trained open_clip measurer from a training folder."""
    import open_clip
    import torch

    model = open_clip.CLIP(**MEASURER_CONFIG)
    model.load_state_dict(torch.load(work / "measurer.done.pt", weights_only=True)["model"])
    return model.eval()


def clip_text_config(cfg: dict = MEASURER_CONFIG):
    from transformers import CLIPTextConfig

    text = cfg["text_cfg"]
    return CLIPTextConfig(
        vocab_size=text["vocab_size"], max_position_embeddings=text["context_length"],
        hidden_size=text["width"], intermediate_size=4 * text["width"],
        num_attention_heads=text["heads"], num_hidden_layers=text["layers"],
        projection_dim=cfg["embed_dim"], hidden_act="gelu", layer_norm_eps=1e-5,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    )


def convert_text_tower(clip_model):
    """The open_clip model's text tower as a transformers ``CLIPTextModel`` (same numbers)."""
    import torch
    from transformers import CLIPTextModel

    config = clip_text_config()
    hf = CLIPTextModel(config)
    sd = {
        "text_model.embeddings.token_embedding.weight": clip_model.token_embedding.weight,
        "text_model.embeddings.position_embedding.weight": clip_model.positional_embedding,
        "text_model.final_layer_norm.weight": clip_model.ln_final.weight,
        "text_model.final_layer_norm.bias": clip_model.ln_final.bias,
    }
    for i, block in enumerate(clip_model.transformer.resblocks):
        pre = f"text_model.encoder.layers.{i}."
        q, k, v = block.attn.in_proj_weight.chunk(3)
        qb, kb, vb = block.attn.in_proj_bias.chunk(3)
        sd.update({
            pre + "self_attn.q_proj.weight": q, pre + "self_attn.q_proj.bias": qb,
            pre + "self_attn.k_proj.weight": k, pre + "self_attn.k_proj.bias": kb,
            pre + "self_attn.v_proj.weight": v, pre + "self_attn.v_proj.bias": vb,
            pre + "self_attn.out_proj.weight": block.attn.out_proj.weight,
            pre + "self_attn.out_proj.bias": block.attn.out_proj.bias,
            pre + "layer_norm1.weight": block.ln_1.weight, pre + "layer_norm1.bias": block.ln_1.bias,
            pre + "layer_norm2.weight": block.ln_2.weight, pre + "layer_norm2.bias": block.ln_2.bias,
            pre + "mlp.fc1.weight": block.mlp.c_fc.weight, pre + "mlp.fc1.bias": block.mlp.c_fc.bias,
            pre + "mlp.fc2.weight": block.mlp.c_proj.weight, pre + "mlp.fc2.bias": block.mlp.c_proj.bias,
        })
    if not any(k.startswith("text_model.") for k in hf.state_dict()):  # newer transformers
        sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
    missing, unexpected = hf.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=False)
    missing = [m for m in missing if "position_ids" not in m]
    if missing or unexpected:
        raise RuntimeError(f"text tower conversion: missing {missing}, unexpected {unexpected}")
    return hf.eval().requires_grad_(False).to(torch.float32)


def build_tokenizer():
    try:
        from ldmprobe.models.tiny import build_clip_tokenizer
    except ImportError:
        from ldmprobe.tiny import build_clip_tokenizer
    return build_clip_tokenizer()


class Conditioning:
    """The generator's 77 hidden states per caption, remembered (captions repeat)."""

    def __init__(self, text_encoder, tokenizer):
        self.encoder, self.tokenizer = text_encoder, tokenizer
        self._seen: dict[str, object] = {}

    def __call__(self, texts):
        import torch

        missing = [t for t in dict.fromkeys(texts) if t not in self._seen]
        if missing:
            ids = self.tokenizer(missing, padding="max_length", max_length=77, truncation=True,
                                 return_tensors="pt").input_ids
            with torch.no_grad():
                states = self.encoder(ids).last_hidden_state.to(torch.float16)
            for text, row in zip(missing, states):
                self._seen[text] = row
        return torch.stack([self._seen[t] for t in texts]).float()


def make_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
        layers_per_block=1, norm_num_groups=8, sample_size=32,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    )


def pixels(images: np.ndarray):
    import torch

    return torch.from_numpy(images).float().permute(0, 3, 1, 2) / 127.5 - 1.0


def load_vae(work: Path):
    import torch

    vae = make_vae()
    vae.load_state_dict(torch.load(work / "vae.done.pt", weights_only=True)["model"])
    return vae.eval().requires_grad_(False)


def make_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(48, 96), norm_num_groups=16,
        cross_attention_dim=MEASURER_CONFIG["text_cfg"]["width"],
        attention_head_dim=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )


def make_train_scheduler(zero_snr: bool = False):
    """The training noise schedule; ``zero_snr``: rescaled to zero terminal SNR, v-prediction
    (Lin et al. 2023: pure noise at the last step, so sampling cannot lean on leaked signal)."""
    from diffusers import DDPMScheduler

    extra = {"rescale_betas_zero_snr": True, "prediction_type": "v_prediction"} if zero_snr else {}
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", **extra)
