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


#: Texts and images per model call. Every call has exactly this many rows (a short call is
#: padded by repeating its last row, whose output is dropped), so an embedding depends only on
#: its own input, never on what else was embedded with it (issue 28: a value remade on a resume
#: equals the clean run's). Fixed, not the callers' batch sizes: a larger call sums in another order.
TEXT_ROWS = 64
IMAGE_ROWS = 16


def _padded(batch, rows: int):
    """``batch`` (a tensor, first axis the rows) padded to ``rows`` by repeating its last row."""
    import torch

    if len(batch) >= rows:
        return batch
    return torch.cat([batch, batch[-1:].expand(rows - len(batch), *batch.shape[1:])])


def encode_texts(measurer, texts: Sequence[str], *, batch_size: int = TEXT_ROWS) -> np.ndarray:
    """Unit text embeddings, one row per text, encoded in calls of :data:`TEXT_ROWS` rows.

    Texts are grouped by token length and each call holds texts of one length only, so short
    texts are not padded to 77 positions and a text's embedding never depends on its neighbours
    (``batch_size`` is accepted for compatibility; the call shape is fixed).
    """
    import torch

    if len(texts) == 0:
        return np.zeros((0, measurer.embed_dim), dtype=np.float32)
    model = measurer.model
    tokens = measurer.tokenizer(list(texts))
    trim = _trimmable(model)
    lengths = tokens.argmax(dim=-1) if trim else torch.zeros(len(texts), dtype=torch.long)
    rows = np.zeros((len(texts), measurer.embed_dim), dtype=np.float32)
    with torch.inference_mode():
        for length in torch.unique(lengths).tolist():
            group = torch.nonzero(lengths == length).flatten()
            for start in range(0, len(group), TEXT_ROWS):
                index = group[start : start + TEXT_ROWS]
                batch = _padded(tokens[index], TEXT_ROWS).to(measurer.device)
                out = _encode_text_trimmed(model, batch) if trim else model.encode_text(batch)
                rows[index.numpy()] = out[: len(index)].float().cpu().numpy()
    return _unit(rows)


def encode_images(measurer, images: Sequence, *, batch_size: int = IMAGE_ROWS) -> np.ndarray:
    """Unit image embeddings (PIL images in), using the measurer's own preprocess transform,
    in calls of :data:`IMAGE_ROWS` images (``batch_size`` accepted for compatibility)."""
    import torch

    if len(images) == 0:
        return np.zeros((0, measurer.embed_dim), dtype=np.float32)
    rows = []
    with torch.inference_mode():
        for start in range(0, len(images), IMAGE_ROWS):
            chunk = images[start : start + IMAGE_ROWS]
            pixels = _padded(torch.stack([measurer.preprocess(im) for im in chunk]), IMAGE_ROWS)
            out = measurer.model.encode_image(pixels.to(measurer.device))
            rows.append(out[: len(chunk)].float().cpu().numpy())
    return _unit(np.concatenate(rows))


def fill_templates(words: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every word inside every template, word-major: [w0 t0, w0 t1, ..., w1 t0, ...]."""
    for template in templates:
        if template.count("{}") != 1:
            raise ValueError(f"template {template!r} must contain exactly one '{{}}'")
    return [" ".join(t.replace("{}", w).split()) for w in words for t in templates]


def encode_in_templates(measurer, words: Sequence[str], templates: Sequence[str] = DEFAULT_PROBE_TEMPLATES,
                        *, batch_size: int = TEXT_ROWS) -> np.ndarray:
    """Each word embedded in every template, averaged over templates, renormalised."""
    if not templates:
        return encode_texts(measurer, words, batch_size=batch_size)
    flat = encode_texts(measurer, fill_templates(words, templates), batch_size=batch_size)
    return _unit(flat.reshape(len(words), len(templates), -1).mean(axis=1))
