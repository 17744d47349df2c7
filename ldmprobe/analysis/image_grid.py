"""A sweep's images for the analysis: one :class:`ImageCell` per (template index, term, seed).

Any mapping of cells to :class:`ImageCell` will do (a test's or a notebook's dict); a sweep
hands in an :class:`ImageGrid`, the same mapping held as arrays, so that a run's images cost
their embeddings and a few bytes each instead of an object per image, and the analysis takes
each term's images as a view of the grid instead of a copy (memory flat in the number of images).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

Cell = tuple[int, str, int]  # (template index, term, seed)


@dataclass(frozen=True)
class ImageCell:
    """One planned image: its unit embedding (None when it failed) and its flags."""

    embedding: np.ndarray | None
    failed: bool = False
    nsfw: bool = False


class ImageGrid(Mapping):
    """(template index, term, seed) -> :class:`ImageCell` over arrays: ``vectors`` (templates,
    terms, seeds, d) of one floating dtype, NaN rows where an image has no embedding, and the
    (templates, terms, seeds) masks ``has``, ``failed`` and ``nsfw``. Iterated in the order of a
    sweep's plan: templates, then terms (``terms`` as given: the baseline first), then seeds."""

    def __init__(self, terms, seeds, vectors: np.ndarray, has: np.ndarray, failed: np.ndarray, nsfw: np.ndarray):
        self.terms, self.seeds = tuple(terms), tuple(seeds)
        self.vectors, self.has, self.failed, self.nsfw = vectors, has, failed, nsfw
        self._term = {term: k for k, term in enumerate(self.terms)}
        self._seed = {seed: j for j, seed in enumerate(self.seeds)}
        shape = (len(vectors), len(self.terms), len(self.seeds))
        if vectors.shape[:3] != shape or not all(a.shape == shape for a in (has, failed, nsfw)):
            raise ValueError(f"an image grid of {shape} cells needs arrays of that shape")
        if not np.issubdtype(vectors.dtype, np.floating):
            raise ValueError(f"image grid embeddings must be floating point, not {vectors.dtype}")

    def __getitem__(self, cell: Cell) -> ImageCell:
        t, term, seed = cell
        k, j = self._term.get(term), self._seed.get(seed)
        if k is None or j is None or not isinstance(t, (int, np.integer)) or not 0 <= t < len(self.vectors):
            raise KeyError(cell)
        return ImageCell(embedding=self.vectors[t, k, j] if self.has[t, k, j] else None,
                         failed=bool(self.failed[t, k, j]), nsfw=bool(self.nsfw[t, k, j]))

    def __iter__(self):
        return ((t, term, seed) for t in range(len(self.vectors)) for term in self.terms for seed in self.seeds)

    def __len__(self) -> int:
        return len(self.vectors) * len(self.terms) * len(self.seeds)

    def term_block(self, term: str, seeds) -> tuple[np.ndarray, ...] | None:
        """(vectors (templates, seeds, d), has, failed, nsfw) of ``term`` as views of the grid,
        or None when ``seeds`` are not the grid's (the caller then goes cell by cell)."""
        if tuple(seeds) != self.seeds or term not in self._term:
            return None
        k = self._term[term]
        return self.vectors[:, k], self.has[:, k], self.failed[:, k], self.nsfw[:, k]
