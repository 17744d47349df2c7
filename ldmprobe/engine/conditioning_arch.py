"""The generator's text conditioning on every architecture, per encoder and as the denoiser reads it.

SD 1.x reads one CLIP's last hidden states. SDXL reads the penultimate hidden states of CLIP-L
and OpenCLIP-bigG side by side (feature axis) and bigG's projected pooled output (through its
``text_time`` embedding). SD 3 reads CLIP-L's and CLIP-G's penultimate states (side by side,
padded to T5's width) followed by T5's token states (token axis), and both CLIPs' pooled
outputs. Flux reads CLIP-L's pooled output only, and T5's token states. T5 has no
end-of-text pooling: its only part is the tokens.

Every output is computed as the pipeline computes it (same tokenizer padding, same hidden
layer). T5 runs at the pipeline's own ``max_sequence_length`` and its first
:data:`T5_TOKENS_KEPT` positions are kept (a prompt's tokens, ``</s>`` and the first pads;
the rest are pads the drift would only dilute, and they would cost megabytes per prompt).
Calls have a fixed number of rows (padded by repeating the last prompt), so a prompt's value
never depends on which other prompts were encoded with it.
"""

from __future__ import annotations

import inspect
from typing import Sequence

import numpy as np

from ldmprobe.models import configs

T5_TOKENS_KEPT = 77
ROWS = 8

#: Architecture -> component -> (label, hidden layer of the token states the denoiser reads).
_LAYOUT = {
    "sd1": {"text_encoder": ("CLIP", "last")},
    "sdxl": {"text_encoder": ("CLIP-L", "penultimate"), "text_encoder_2": ("OpenCLIP-bigG", "penultimate")},
    "sd3": {"text_encoder": ("CLIP-L", "penultimate"), "text_encoder_2": ("CLIP-G", "penultimate"),
            "text_encoder_3": ("T5", "last")},
    "flux": {"text_encoder": ("CLIP-L", "last"), "text_encoder_2": ("T5", "last")},
}
_TOKENIZER = {"text_encoder": "tokenizer", "text_encoder_2": "tokenizer_2", "text_encoder_3": "tokenizer_3"}


def encoder_parts(folder) -> list[tuple[str, str, str]]:
    """(component, part, label) for every encoder output the denoiser reads, pipeline order."""
    family = configs.architecture(folder)
    rows = []
    for entry in configs.text_encoders(folder):
        label = _LAYOUT.get(family, {}).get(entry["component"], (entry["class"], "last"))[0]
        rows += [(entry["component"], part, label) for part in entry["parts"]]
    return rows


def _t5_length(pipe) -> int:
    default = inspect.signature(type(pipe).__call__).parameters.get("max_sequence_length")
    return int(default.default) if default is not None and isinstance(default.default, int) else 256


def _is_t5(encoder) -> bool:
    return "T5" in type(encoder).__name__


def _encode_component(pipe, family: str, component: str, prompts: Sequence[str]) -> dict[str, np.ndarray]:
    """{"tokens": (n, L, d), "pooled": (n, d)} of one text encoder, as the pipeline computes them."""
    import torch

    encoder, tokenizer = getattr(pipe, component), getattr(pipe, _TOKENIZER[component])
    t5 = _is_t5(encoder)
    length = _t5_length(pipe) if t5 else tokenizer.model_max_length
    ids = tokenizer(list(prompts), padding="max_length", max_length=length, truncation=True,
                    return_tensors="pt").input_ids
    layer = _LAYOUT.get(family, {}).get(component, ("", "last"))[1]
    tokens, pooled = [], []
    with torch.inference_mode():
        for start in range(0, len(ids), ROWS):
            chunk = ids[start: start + ROWS]
            padded = torch.cat([chunk, chunk[-1:].repeat(ROWS - len(chunk), 1)]) if len(chunk) < ROWS else chunk
            out = encoder(padded.to(encoder.device), output_hidden_states=not t5 and layer == "penultimate")
            if t5:
                states = out.last_hidden_state[:, :T5_TOKENS_KEPT]
            else:
                states = out.hidden_states[-2] if layer == "penultimate" else out.last_hidden_state
                pool = getattr(out, "text_embeds", None)
                pool = out.pooler_output if pool is None else pool
                pooled.append(pool[: len(chunk)].float().cpu().numpy())
            tokens.append(states[: len(chunk)].float().cpu().numpy())
    result = {"tokens": np.concatenate(tokens)}
    if pooled:
        result["pooled"] = np.concatenate(pooled)
    return result


def encode_by_encoder(loaded, prompts: Sequence[str]) -> dict[tuple[str, str], np.ndarray]:
    """{(component, part): array over prompts} for every encoder output the denoiser reads."""
    family = configs.architecture(loaded.folder)
    outputs: dict[str, dict[str, np.ndarray]] = {}
    result = {}
    for component, part, _ in encoder_parts(loaded.folder):
        if component not in outputs:
            outputs[component] = _encode_component(loaded.pipe, family, component, prompts)
        result[(component, part)] = outputs[component][part]
    return result


def denoiser_conditioning(parts: dict[tuple[str, str], np.ndarray], family: str) -> np.ndarray | None:
    """The token sequence the denoiser attends to, assembled from the per-encoder states as the
    pipeline assembles it (T5 cut to its first :data:`T5_TOKENS_KEPT` positions)."""
    if family == "sdxl":
        return np.concatenate([parts[("text_encoder", "tokens")], parts[("text_encoder_2", "tokens")]], axis=-1)
    if family == "sd3":
        clip = np.concatenate([parts[("text_encoder", "tokens")], parts[("text_encoder_2", "tokens")]], axis=-1)
        t5 = parts[("text_encoder_3", "tokens")]
        clip = np.pad(clip, [(0, 0), (0, 0), (0, max(0, t5.shape[-1] - clip.shape[-1]))])[..., : t5.shape[-1]]
        return np.concatenate([clip, t5], axis=1)
    if family == "flux":
        return parts[("text_encoder_2", "tokens")]
    tokens = [array for (component, part), array in parts.items() if part == "tokens"]
    return tokens[0] if tokens else None


def encode_conditioning(loaded, prompts: Sequence[str]) -> np.ndarray | None:
    """The denoiser's conditioning sequence per prompt on any architecture (SD 1.x: unchanged)."""
    family = configs.architecture(loaded.folder)
    if family == "sd1":
        from ldmprobe.engine.generate import encode_conditioning as sd1_conditioning

        return sd1_conditioning(loaded, prompts)
    return denoiser_conditioning(encode_by_encoder(loaded, prompts), family)


def conditioning_by_encoder(setup, loaded, prompts: list[str]) -> dict | None:
    """{(component, part, label): {prompt: array}} per encoder output, cached per pipeline +
    prompt + output (as the conditioning is); None without a generator folder."""
    from ldmprobe.digest import CACHE_KINDS, cache_key
    from ldmprobe.store.packed_cache import identity_store

    folder = getattr(setup, "generator_folder", None)
    if folder is None or setup.recipe is None:
        return None
    parts = encoder_parts(folder)
    if not parts:
        return None
    store = identity_store("conditioning", setup.recipe.pipeline_dict, "conditionings")
    keys = {(c, p): [cache_key("conditioning", CACHE_KINDS["conditioning"], {"prompt": q, "encoder": c, "part": p})
                     for q in prompts] for c, p, _ in parts}
    rows = {cp: store.get_many(k) for cp, k in keys.items()}
    missing = sorted({i for cp in rows for i, row in enumerate(rows[cp]) if row is None})
    if missing:
        fresh = encode_by_encoder(loaded.get_generator(), [prompts[i] for i in missing])
        for cp, arrays in fresh.items():
            stored = [np.asarray(a).astype(np.float16) for a in arrays]  # as stored, so reruns agree
            store.put_many([keys[cp][i] for i in missing], stored)
            for i, array in zip(missing, stored):
                rows[cp][i] = array
    store.close()
    return {(c, p, label): {q: np.asarray(r, dtype=np.float32) for q, r in zip(prompts, rows[(c, p)])}
            for c, p, label in parts}
