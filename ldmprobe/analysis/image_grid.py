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
    sweep's plan: templates, then terms (``terms`` as given: the baseline first), then seeds.

    With ``rows`` (a (templates, terms, seeds) array of ints), ``vectors`` is a row source
    instead: an object with a ``dtype`` and ``take(rows)`` that answers the rows at those
    indices as a new array (e.g. :class:`~ldmprobe.engine.row_file.RowFile`, rows held in a
    file); a cell's embedding is its row there, read when it is asked for, and a term's
    embeddings are read a template at a time (:class:`TermVectors`)."""

    def __init__(self, terms, seeds, vectors, has: np.ndarray, failed: np.ndarray, nsfw: np.ndarray,
                 rows: np.ndarray | None = None):
        self.terms, self.seeds = tuple(terms), tuple(seeds)
        self.vectors, self.has, self.failed, self.nsfw, self.rows = vectors, has, failed, nsfw, rows
        self._term = {term: k for k, term in enumerate(self.terms)}
        self._seed = {seed: j for j, seed in enumerate(self.seeds)}
        shape = (len(vectors if rows is None else rows), len(self.terms), len(self.seeds))
        held = vectors.shape[:3] if rows is None else rows.shape
        if held != shape or not all(a.shape == shape for a in (has, failed, nsfw)):
            raise ValueError(f"an image grid of {shape} cells needs arrays of that shape")
        if not np.issubdtype(vectors.dtype, np.floating):
            raise ValueError(f"image grid embeddings must be floating point, not {vectors.dtype}")
        self.n_templates = shape[0]

    def __getitem__(self, cell: Cell) -> ImageCell:
        t, term, seed = cell
        k, j = self._term.get(term), self._seed.get(seed)
        if k is None or j is None or not isinstance(t, (int, np.integer)) or not 0 <= t < self.n_templates:
            raise KeyError(cell)
        embedding = None
        if self.has[t, k, j]:
            embedding = self.vectors[t, k, j] if self.rows is None else self.vectors.take(self.rows[t, k, j])
        return ImageCell(embedding=embedding, failed=bool(self.failed[t, k, j]), nsfw=bool(self.nsfw[t, k, j]))

    def __iter__(self):
        return ((t, term, seed) for t in range(self.n_templates) for term in self.terms for seed in self.seeds)

    def __len__(self) -> int:
        return self.n_templates * len(self.terms) * len(self.seeds)

    def term_block(self, term: str, seeds) -> tuple | None:
        """(vectors (templates, seeds, d), has, failed, nsfw) of ``term`` as views of the grid
        (vectors: a :class:`TermVectors` over a row source), or None when ``seeds`` are not the
        grid's (the caller then goes cell by cell)."""
        if tuple(seeds) != self.seeds or term not in self._term:
            return None
        k = self._term[term]
        vectors = self.vectors[:, k] if self.rows is None else TermVectors(self.vectors, self.rows[:, k])
        return vectors, self.has[:, k], self.failed[:, k], self.nsfw[:, k]


class TermVectors:
    """One term's (templates, seeds, d) embeddings in a row source, read when asked for: a
    template's block (:meth:`template`) or all of them (:meth:`read`); none is kept."""

    def __init__(self, source, rows: np.ndarray):
        self.source, self.rows, self.dtype = source, rows, source.dtype

    def __len__(self) -> int:
        return len(self.rows)

    def template(self, t: int) -> np.ndarray:
        return self.source.take(self.rows[t])

    def read(self) -> np.ndarray:
        return self.source.take(self.rows)
