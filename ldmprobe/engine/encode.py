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


def _trimmable(model) -> bool:
    """open_clip's own CLIP text tower: causal mask and pooling at the end-of-text token."""
    return (type(model).__name__ == "CLIP" and getattr(model, "text_pool_type", None) == "argmax"
            and getattr(model, "attn_mask", None) is not None and hasattr(model, "token_embedding"))


def _encode_text_trimmed(model, tokens):
    """``model.encode_text`` on tokens cut after the batch's last end-of-text token.

    With a causal mask the end-of-text position sees only the tokens before it, so the
    padding after it changes nothing; dropping it saves most of the work for short texts
    (a vocabulary word is 3-5 of the 77 positions). Tested against ``encode_text``.
    """
    import torch

    end = tokens.argmax(dim=-1)  # the end-of-text token has the highest id
    length = int(end.max()) + 1
    cut = tokens[:, :length]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(cut).to(cast) + model.positional_embedding[:length].to(cast)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)[torch.arange(len(cut), device=cut.device), end]
    projection = model.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


def encode_texts(measurer, texts: Sequence[str], *, batch_size: int = 256) -> np.ndarray:
    """Unit text embeddings, one row per text, encoded in batches without gradients.

    Texts are batched by token length, so short texts are not padded to 77 positions.
    """
    import torch

    if len(texts) == 0:
        return np.zeros((0, measurer.embed_dim), dtype=np.float32)
    model = measurer.model
    tokens = measurer.tokenizer(list(texts))
    trim = _trimmable(model)
    order = torch.argsort(tokens.argmax(dim=-1), stable=True) if trim else torch.arange(len(texts))
    rows = np.zeros((len(texts), measurer.embed_dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            index = order[start : start + batch_size]
            batch = tokens[index].to(measurer.device)
            out = _encode_text_trimmed(model, batch) if trim else model.encode_text(batch)
            rows[index.numpy()] = out.float().cpu().numpy()
    return _unit(rows)


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
