"""Embedding texts and images with a loaded measurer (open_clip), as unit float32 rows."""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Templates a probe word is embedded in, averaged and renormalised (CLIP zero-shot style).
DEFAULT_PROBE_TEMPLATES = (
    "a photo of {}.",
    "a picture of {}.",
    "an image of {}.",
    "a photo of something {}.",
)


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return (rows / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def encode_texts(measurer, texts: Sequence[str], *, batch_size: int = 256) -> np.ndarray:
    """Unit text embeddings, one row per text, encoded in batches without gradients."""
    import torch

    if len(texts) == 0:
        return np.zeros((0, measurer.embed_dim), dtype=np.float32)
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            tokens = measurer.tokenizer(list(texts[start : start + batch_size])).to(measurer.device)
            rows.append(measurer.model.encode_text(tokens).float().cpu().numpy())
    return _unit(np.concatenate(rows))


def encode_images(measurer, images: Sequence, *, batch_size: int = 64) -> np.ndarray:
    """Unit image embeddings (PIL images in), using the measurer's own preprocess transform."""
    import torch

    if len(images) == 0:
        return np.zeros((0, measurer.embed_dim), dtype=np.float32)
    rows = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            pixels = torch.stack([measurer.preprocess(im) for im in images[start : start + batch_size]])
            rows.append(measurer.model.encode_image(pixels.to(measurer.device)).float().cpu().numpy())
    return _unit(np.concatenate(rows))


def fill_templates(words: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every word inside every template, word-major: [w0 t0, w0 t1, ..., w1 t0, ...]."""
    for template in templates:
        if template.count("{}") != 1:
            raise ValueError(f"template {template!r} must contain exactly one '{{}}'")
    return [" ".join(t.replace("{}", w).split()) for w in words for t in templates]


def encode_in_templates(measurer, words: Sequence[str], templates: Sequence[str] = DEFAULT_PROBE_TEMPLATES,
                        *, batch_size: int = 256) -> np.ndarray:
    """Each word embedded in every template, averaged over templates, renormalised."""
    if not templates:
        return encode_texts(measurer, words, batch_size=batch_size)
    flat = encode_texts(measurer, fill_templates(words, templates), batch_size=batch_size)
    return _unit(flat.reshape(len(words), len(templates), -1).mean(axis=1))
