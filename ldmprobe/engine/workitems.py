"""Expand a :class:`~ldmprobe.specs.sweep.Spec` into work items, each keyed by its full recipe.

A :class:`WorkItem` is one image: (template, term, seed) plus the :class:`Recipe`, i.e.
everything else that changes the pixels. Its ``key`` is the sha256 of the canonical JSON of
the recipe, the expanded prompt and the seed (:func:`item_key`). The key never depends on
the item's position in the work list, on other terms, on a rank or on a batch index, so the same
image gets the same key in every run, in every process, whatever else is in the sweep.

Shared keys: two items can have the same key when different (template, term) pairs expand
to the same prompt — e.g. templates "a {} house" and "a house {}" with the baseline "".
They describe the same image, so :func:`work_items` keeps *both* items (each keeps its own
template, term and role in the statistics), and the generator should make the image once:
:func:`unique_items` returns the first item for each key (deterministic: work-list order).

Like ``spec``, this module imports nothing heavy (no torch, diffusers or open_clip).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ldmprobe.digest import canonical_json, digest, sha256_hex  # noqa: F401  (importable from here)
from ldmprobe.engine.recipe import (  # noqa: F401  (importable from here)
    Recipe, _is_int, call_shape, default_call_shape, recipe_call_shape,
)
from ldmprobe.specs.sweep import Spec, expand

__all__ = [
    "KEY_VERSION",
    "PlanItems",
    "Recipe",
    "call_shape",
    "default_call_shape",
    "WorkItem",
    "canonical_json",
    "item_key",
    "key_document",
    "work_items",
    "sha256_hex",
    "unique_items",
]

#: Bumped whenever the key document's layout changes (old cache entries then stop matching).
KEY_VERSION = 1

# --------------------------------------------------------------------------------------------
# Work items


@dataclass(frozen=True)
class WorkItem:
    """One image to make: (template, term, seed), its expanded prompt, recipe and key.

    ``template_index`` is the template's position in the spec (for grouping and display; it
    is *not* part of the key). ``is_baseline`` is true for the spec's baseline term.
    """

    template: str
    template_index: int
    term: str
    is_baseline: bool
    seed: int
    prompt: str
    recipe: Recipe
    key: str


def key_document(recipe: Recipe, prompt: str, seed: int) -> dict[str, Any]:
    """The mapping whose canonical JSON is hashed into the item key (also fit for a PNG
    text chunk: it is exactly what made the image)."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, not {seed!r}")
    doc = recipe.to_dict()
    doc["prompt"] = prompt
    doc["seed"] = int(seed)
    doc["key_version"] = KEY_VERSION
    return doc


def item_key(recipe: Recipe, prompt: str, seed: int) -> str:
    """Hex sha256 of the canonical JSON of recipe + prompt + seed + ``key_version``.

    The recipe's part of that text is made once per recipe (:func:`_key_text_parts`): an
    item costs the JSON of its prompt and one hash (the same text as ``digest(key_document(...))``).
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, not {seed!r}")
    parts = _key_text_parts(recipe)
    if parts is None:
        return digest(key_document(recipe, prompt, seed))
    before, between, after = parts
    return sha256_hex(f"{before}{_json_text(prompt)}{between}{int(seed)}{after}")


#: ``canonical_json`` of a str, with the encoder made once (``json.dumps`` with options makes one per call).
_json_text = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


_PROMPT_MARK = "\x00ldmprobe-prompt\x00"
_SEED_MARK = 987654321012345678901


@lru_cache(maxsize=64)
def _key_text_parts(recipe: Recipe) -> tuple[str, str, str] | None:
    """The canonical JSON of ``recipe``'s key document around its prompt and seed: (text before
    the prompt, between prompt and seed, after the seed); None when the marks are not unique."""
    text = canonical_json(key_document(recipe, _PROMPT_MARK, _SEED_MARK))
    prompt, seed = canonical_json(_PROMPT_MARK), str(_SEED_MARK)
    if text.count(prompt) != 1 or text.count(seed) != 1 or text.index(prompt) > text.index(seed):
        return None
    before, rest = text.split(prompt)
    between, after = rest.split(seed)
    return before, between, after


def work_items(spec: Spec, recipe: Recipe) -> Sequence[WorkItem]:
    """Every (template, term, seed) of the spec as a work item, in a fixed order.

    Order: templates in spec order; within a template the baseline first, then the terms in
    spec order; within a term the spec's seeds in order. Seeds are paired: every term under a
    template uses exactly the spec's seeds, so inside a (template, seed) pair only the term
    differs. Items whose prompts coincide share a key (see the module docstring).

    The recipe is used as given: merging the spec's ``steps``/``guidance``/``width``/
    ``height``/``negative_prompt`` defaults with command-line options is the caller's job.

    Returned as :class:`PlanItems` (the same items held as arrays, each made when it is asked
    for) when every seed is a valid one; else as a list (whose making raises for a bad seed).
    """
    parts = _key_text_parts(recipe)
    templates, terms, seeds = tuple(spec.templates), tuple(spec.all_terms), tuple(spec.seeds)
    if parts is not None and all(_is_int(seed) and seed >= 0 for seed in seeds):
        prompts = tuple(tuple(expand(template, term) for term in terms) for template in templates)
        if all(isinstance(p, str) for row in prompts for p in row):
            digests = np.empty((len(templates) * len(terms) * len(seeds), 32), np.uint8)
            at = 0
            tails = [f"{int(seed)}{parts[2]}".encode("utf-8") for seed in seeds]
            for row in prompts:
                for prompt in row:  # item_key's text up to the seed, hashed once per prompt
                    head = hashlib.sha256(f"{parts[0]}{_json_text(prompt)}{parts[1]}".encode("utf-8"))
                    block = bytearray(32 * len(seeds))
                    for j, tail in enumerate(tails):
                        hashed = head.copy()
                        hashed.update(tail)
                        block[32 * j: 32 * j + 32] = hashed.digest()
                    digests[at: at + len(seeds)] = np.frombuffer(bytes(block), np.uint8).reshape(-1, 32)
                    at += len(seeds)
            return PlanItems(recipe, templates, terms, seeds, prompts, digests)
    return _work_item_list(spec, recipe, parts)


def _work_item_list(spec: Spec, recipe: Recipe, parts) -> list[WorkItem]:
    items: list[WorkItem] = []
    for t_index, template in enumerate(spec.templates):
        for term_index, term in enumerate(spec.all_terms):
            is_baseline = term_index == 0
            prompt = expand(template, term)
            head = None
            if parts is not None and isinstance(prompt, str):  # item_key's text up to the seed, hashed once
                head = hashlib.sha256(f"{parts[0]}{_json_text(prompt)}{parts[1]}".encode("utf-8"))
            for seed in spec.seeds:
                if head is not None and _is_int(seed) and seed >= 0:
                    hashed = head.copy()
                    hashed.update(f"{int(seed)}{parts[2]}".encode("utf-8"))
                    key = hashed.hexdigest()
                else:
                    key = item_key(recipe, prompt, seed)
                items.append(
                    WorkItem(
                        template=template,
                        template_index=t_index,
                        term=term,
                        is_baseline=is_baseline,
                        seed=seed,
                        prompt=prompt,
                        recipe=recipe,
                        key=key,
                    )
                )
    return items


class PlanItems(Sequence):
    """A plan's work items held as arrays: each (template, term, seed) cell's key as 32 bytes,
    and the templates, terms, seeds and prompts once, so that a plan of N images costs about
    40 bytes per image instead of an object and a key string each. A :class:`WorkItem` is made
    when it is asked for (equal to the one :func:`work_items` made as a list).

    ``digests``: one row per cell of the full grid, in plan order (templates, then terms with
    the baseline first, then seeds); ``rows``: the cells this sequence holds, in its order (None:
    all of them). Keys are found by a sorted table made on the first lookup.
    """

    def __init__(self, recipe: Recipe, templates: tuple, terms: tuple, seeds: tuple, prompts: tuple,
                 digests: np.ndarray, rows: np.ndarray | None = None):
        self.recipe, self.templates, self.terms, self.seeds, self.prompts = recipe, templates, terms, seeds, prompts
        self.digests, self.rows = digests, rows
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # (digests as S32, sorted; their positions)
        self._unique: PlanItems | None = None

    def __len__(self) -> int:
        return len(self.digests) if self.rows is None else len(self.rows)

    def cell(self, i: int) -> int:
        """The grid row of this sequence's ``i``-th item."""
        return i if self.rows is None else int(self.rows[i])

    def cells(self) -> np.ndarray:
        """The grid rows of every item, in this sequence's order."""
        return np.arange(len(self.digests)) if self.rows is None else self.rows

    def key(self, i: int) -> str:
        return self.digests[self.cell(i)].tobytes().hex()

    def keys(self) -> list[str]:
        return [row.tobytes().hex() for row in self.digests[self.cells()]]

    def _item(self, g: int) -> WorkItem:
        n_terms, n_seeds = len(self.terms), len(self.seeds)
        t, k, s = g // (n_terms * n_seeds), (g // n_seeds) % n_terms, g % n_seeds
        return WorkItem(template=self.templates[t], template_index=t, term=self.terms[k], is_baseline=k == 0,
                        seed=self.seeds[s], prompt=self.prompts[t][k], recipe=self.recipe,
                        key=self.digests[g].tobytes().hex())

    def __getitem__(self, i):
        if isinstance(i, slice):
            return PlanItems(self.recipe, self.templates, self.terms, self.seeds, self.prompts, self.digests,
                             self.cells()[i])
        n = len(self)
        if not -n <= i < n:
            raise IndexError("plan item index out of range")
        return self._item(self.cell(i % n))

    def __iter__(self):
        for g in (range(len(self.digests)) if self.rows is None else self.rows.tolist()):
            yield self._item(g)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __hash__(self) -> int:
        return hash((self.recipe, self.digests[self.cells()].tobytes()))

    def __repr__(self) -> str:
        return f"PlanItems({len(self)} items)"

    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        if self._sorted is None:
            held = np.ascontiguousarray(self.digests[self.cells()]).view("S32").ravel()
            order = np.argsort(held, kind="stable")  # equal keys keep their order: the first comes first
            self._sorted = (held[order], order)
        return self._sorted

    def index_of(self, key: str) -> int:
        """The position of the first item with ``key``; KeyError when none has it."""
        try:
            raw = bytes.fromhex(key) if isinstance(key, str) and len(key) == 64 else None
        except ValueError:
            raw = None
        if raw is None:
            raise KeyError(key)
        held, order = self._table()
        at = int(np.searchsorted(held, np.array(raw, "S32")))
        if at == len(held) or held[at] != raw.rstrip(b"\0"):  # a numpy S32 item drops trailing NULs
            raise KeyError(key)
        return int(order[at])

    def positions(self, other: PlanItems) -> np.ndarray:
        """For each item of ``other`` (a plan over the same digests or not), the position of the
        first item of this sequence with its key; -1 where none has it."""
        held, order = self._table()
        wanted = np.ascontiguousarray(other.digests[other.cells()]).view("S32").ravel()
        at = np.minimum(np.searchsorted(held, wanted), len(held) - 1) if len(held) else np.zeros(len(wanted), int)
        found = held[at] == wanted if len(held) else np.zeros(len(wanted), bool)
        return np.where(found, order[at] if len(held) else -1, -1)

    def unique(self) -> PlanItems:
        """The first item for each key, in this sequence's order (itself when every key differs)."""
        if self._unique is None:
            held, order = self._table()
            first = np.ones(len(held), bool)
            first[1:] = held[1:] != held[:-1]
            if first.all():
                self._unique = self
            else:
                self._unique = PlanItems(self.recipe, self.templates, self.terms, self.seeds, self.prompts,
                                         self.digests, self.cells()[np.sort(order[first])])
                self._unique._unique = self._unique
        return self._unique


def unique_items(items: Iterable[WorkItem]) -> Sequence[WorkItem]:
    """The first item for each key, in the given order (what a generator needs to make): a
    list, or for :class:`PlanItems` a :class:`PlanItems` of those items."""
    if isinstance(items, PlanItems):
        return items.unique()
    seen: set[str] = set()
    out: list[WorkItem] = []
    for item in items:
        if item.key not in seen:
            seen.add(item.key)
            out.append(item)
    return out
