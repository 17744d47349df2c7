"""Conditioning hybrids for ``trace``: which token states carry a modifier's effect.

SD-1.x conditions its UNet on all hidden states of a causal CLIP text encoder (77 x d). A
modifier changes (i) its own tokens' states, (ii) every later content token's state and
(iii) the end-of-text and padding states; the states before it are identical by causality.
A hybrid takes the chosen parts from the term prompt and everything else from the baseline.

**Where the modifier is.** Both prompts are tokenised (start and end tokens included, no
padding); the modifier is what lies between their longest common prefix and suffix (so a
modifier of several tokens, a baseline word of its own, or a modifier at the end of the
template are all handled). Term positions fall into parts:
``start`` (start token and the tokens before the modifier), ``modifier``, ``content`` (later
tokens before end-of-text) and ``eot_pad`` (end-of-text and padding).

**Alignment (a bijection of the 77 positions).** Term position p is paired with baseline
position a(p): the start part with itself; the later positions in order (the term's content,
end-of-text and padding with the baseline's, shifted by the length difference); the
modifier's positions with the baseline word's positions, and, when the modifier is longer,
with the baseline padding states that the term's extra tokens push past position 76 (when
the baseline word is longer, its extra states pair with the term's last padding positions).
A hybrid is ``term[p]`` where p's part is chosen, else ``base[a(p)]``. Because a is a
bijection, the hybrid that chooses no part holds exactly the baseline's 77 states, in
another order; SD's UNet reads the conditioning only through cross-attention, which does not
depend on the order of its keys, so that hybrid reproduces the baseline images (up to float
summation order) — the planted check. The hybrid choosing every part is the term prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: Parts a hybrid can take from the term prompt, in prompt order.
PARTS = ("modifier", "content", "eot_pad")


@dataclass(frozen=True)
class TokenSpans:
    """Where the modifier sits in the term prompt's tokens (positions, start token = 0)."""

    start: int  # first modifier position (= length of the common prefix, start token included)
    n_modifier: int  # the term's modifier tokens
    n_baseline_word: int  # the baseline term's tokens (0 for an empty baseline)
    eot: int  # the term prompt's end-of-text position
    length: int = 77

    @property
    def modifier(self) -> tuple[int, ...]:
        return tuple(range(self.start, self.start + self.n_modifier))

    @property
    def content(self) -> tuple[int, ...]:
        return tuple(range(self.start + self.n_modifier, self.eot))

    def part_of(self) -> np.ndarray:
        """The part name of every term position."""
        labels = np.array(["eot_pad"] * self.length, dtype=object)
        labels[: self.start] = "start"
        labels[list(self.modifier)] = "modifier"
        labels[list(self.content)] = "content"
        return labels


def _ids(tokenizer, prompt: str) -> list[int]:
    ids = list(tokenizer(prompt, truncation=False).input_ids)
    if len(ids) > tokenizer.model_max_length:
        raise ValueError(f"prompt {prompt!r} has {len(ids)} tokens; the text encoder reads "
                         f"{tokenizer.model_max_length}")
    return ids


def fill(template: str, word: str) -> str:
    """The template with ``word`` in its ``{}`` (extra spaces collapsed, as ``sweep`` does)."""
    return " ".join(template.replace("{}", word).split())


def locate_modifier(tokenizer, template: str, term: str, baseline: str = "") -> TokenSpans:
    """Find the term's tokens by tokenising the prompt with the term and with the baseline."""
    t_ids, b_ids = _ids(tokenizer, fill(template, term)), _ids(tokenizer, fill(template, baseline))
    prefix = 0
    while prefix < min(len(t_ids), len(b_ids)) and t_ids[prefix] == b_ids[prefix]:
        prefix += 1
    suffix = 0
    while (suffix < min(len(t_ids), len(b_ids)) - prefix
           and t_ids[len(t_ids) - 1 - suffix] == b_ids[len(b_ids) - 1 - suffix]):
        suffix += 1
    n_mod, n_base = len(t_ids) - prefix - suffix, len(b_ids) - prefix - suffix
    if n_mod <= 0:
        raise ValueError(f"term {term!r} adds no tokens to {fill(template, baseline)!r}")
    return TokenSpans(prefix, n_mod, n_base, len(t_ids) - 1, int(tokenizer.model_max_length))


def alignment(spans: TokenSpans) -> np.ndarray:
    """a[p]: the baseline position paired with term position p (a permutation of 0..L-1)."""
    length, s, nm, nb = spans.length, spans.start, spans.n_modifier, spans.n_baseline_word
    a = np.full(length, -1, dtype=int)
    a[:s] = np.arange(s)
    n_rest = length - s - max(nm, nb)  # later positions present in both layouts
    a[s + nm : s + nm + n_rest] = np.arange(s + nb, s + nb + n_rest)
    paired = min(nm, nb)
    a[s : s + paired] = np.arange(s, s + paired)  # modifier tokens <-> baseline word tokens
    if nm > nb:  # extra modifier tokens <-> baseline padding pushed off the end
        a[s + nb : s + nm] = np.arange(length - (nm - nb), length)
    elif nb > nm:  # term's last padding <-> the baseline word's extra tokens
        a[length - (nb - nm) :] = np.arange(s + nm, s + nb)
    if sorted(a.tolist()) != list(range(length)):  # pragma: no cover - a bug, not an input
        raise AssertionError(f"alignment is not a permutation: {a}")
    return a


def hybrid(term_states: np.ndarray, base_states: np.ndarray, spans: TokenSpans,
           parts: Sequence[str]) -> np.ndarray:
    """Term states at the chosen parts' positions, aligned baseline states elsewhere."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown hybrid part(s) {sorted(unknown)}; choose from {PARTS}")
    labels = spans.part_of()
    take = np.isin(labels, list(parts))
    out = np.asarray(base_states)[alignment(spans)].copy()
    out[take] = np.asarray(term_states)[take]
    return out


@dataclass(frozen=True)
class Hybrids:
    """One (template, term): its token spans and named conditionings (tokens x width)."""

    template: str
    term: str
    spans: TokenSpans
    states: dict  # variant name -> (L, d) float32


def variant_parts(variants: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Variant names to parts: a part name, 'none', 'all', or parts joined by '+'."""
    out = {}
    for name in variants:
        if name == "none":
            out[name] = ()
        elif name == "all":
            out[name] = PARTS
        else:
            out[name] = tuple(name.split("+"))
    return out


def build_hybrids(loaded, template: str, terms: Sequence[str], baseline: str = "",
                  variants: Sequence[str] = PARTS, *, base_states: np.ndarray | None = None) -> list[Hybrids]:
    """Hybrid conditionings of each term under one template (the encoder runs once per prompt)."""
    from ldmprobe.engine.trace_generate import encode_prompts

    tokenizer = loaded.pipe.tokenizer
    prompts = [fill(template, t) for t in terms]
    encoded = encode_prompts(loaded, ([] if base_states is not None else [fill(template, baseline)]) + prompts)
    base = base_states if base_states is not None else encoded[0]
    term_states = encoded[len(encoded) - len(terms):]
    chosen = variant_parts(variants)
    out = []
    for term, states in zip(terms, term_states):
        spans = locate_modifier(tokenizer, template, term, baseline)
        named = {name: hybrid(states, base, spans, parts) for name, parts in chosen.items()}
        out.append(Hybrids(template, term, spans, named))
    return out
