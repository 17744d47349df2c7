"""Write a sweep's analysed embeddings as the .npz that ``ldmprobe sweep SPEC --embeddings`` reads.

One row per planned (template, term, seed) image, in the analysis's order, with the prompts',
probes' and vocabulary's text embeddings exactly as the analysis used them (dtypes kept), and,
for a spec with ``[attributes]``, the option texts' embeddings, the logit scale and the
calibration images' embeddings with their labels, so replaying the file gives the same
statistics, rates included. A failed image's row is zeros, flagged in
``failed``; ``nsfw`` carries the safety checker's flags. A non-finite embedding (which the
analysis excludes) is written as zeros, which it excludes the same way (zero norm), so the
file stays finite.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ldmprobe.analysis.sweep import SweepEmbeddings
from ldmprobe.errors import BadInputError


def check_export_path(path: str | Path) -> None:
    """An export path ending in .npz in a folder that exists and can be written (exit 2 before any work)."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise BadInputError(f"--export-embeddings {path}: the file must end in .npz (it is a numpy .npz archive).")
    if path.is_dir():
        raise BadInputError(f"--export-embeddings {path} is a folder; give a file name ending in .npz.")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise BadInputError(f"--export-embeddings {path}: the folder {folder} does not exist or cannot be written.")


def embedding_arrays(data: SweepEmbeddings) -> dict[str, np.ndarray]:
    """The named arrays of the export (see the module's docstring)."""
    cells = list(data.images)
    vectors = [c.embedding for c in data.images.values() if c.embedding is not None]
    if not vectors:
        raise BadInputError("no image has an embedding (every image failed): there is nothing to export.")
    zero = np.zeros_like(np.asarray(vectors[0]))
    arrays = {
        "image": np.stack([zero if cell.embedding is None or not np.isfinite(cell.embedding).all()
                           else np.asarray(cell.embedding) for cell in data.images.values()]),
        "template": np.array([data.templates[t] for t, _, _ in cells], dtype=str),
        "term": np.array([term for _, term, _ in cells], dtype=str),
        "seed": np.array([seed for _, _, seed in cells], dtype=np.int64),
        "failed": np.array([cell.embedding is None or cell.failed for cell in data.images.values()], dtype=bool),
        "nsfw": np.array([bool(cell.nsfw) for cell in data.images.values()], dtype=bool),
    }
    prompts = list(data.prompt_embeddings)
    arrays["prompt"] = np.array(prompts, dtype=str)
    arrays["prompt_embedding"] = np.stack([np.asarray(data.prompt_embeddings[p]) for p in prompts])
    if data.probes and data.probe_embeddings is not None:
        arrays["probe"] = np.array(data.probes, dtype=str)
        arrays["probe_embedding"] = np.asarray(data.probe_embeddings)
    if data.vocabulary and data.vocabulary_embeddings is not None:
        arrays["vocab"] = np.array(data.vocabulary, dtype=str)
        arrays["vocab_embedding"] = np.asarray(data.vocabulary_embeddings)
    attrs = getattr(data, "attributes", None)
    if attrs is not None and attrs.option_texts:  # what the attribute rates need (specs/own_attributes.py)
        arrays["option"] = np.array([t for texts in attrs.option_texts for t in texts], dtype=str)
        arrays["option_embedding"] = np.concatenate([np.asarray(e) for e in attrs.option_embeddings])
        arrays["logit_scale"] = np.array([attrs.logit_scale], dtype=np.float64)
        if attrs.calibration:
            vectors, labels = attrs.calibration
            arrays["calibration_embedding"] = np.asarray(vectors)
            arrays["calibration_group"] = np.array([g for g, _ in labels], dtype=str)
            arrays["calibration_option"] = np.array([o for _, o in labels], dtype=str)
    return arrays


def write_embeddings_npz(data: SweepEmbeddings, path: str | Path) -> Path:
    """Write the export atomically (a temporary file beside it, then renamed); returns the path."""
    path = Path(path)
    arrays = embedding_arrays(data)
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
