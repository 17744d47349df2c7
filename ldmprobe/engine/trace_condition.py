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

**Other architectures** (:mod:`ldmprobe.engine.trace_text`). The conditioning is a
``TextCond``: token rows made of blocks (one per tokenizer: CLIP, T5) and, on SDXL, SD 3 and
Flux, a pooled vector. Each block is located and aligned on its own tokenizer's positions as
above; part ``pooled`` takes the term's pooled vector. T5 is bidirectional, so its states
before the word differ too: there those positions are part ``before`` (a causal CLIP block's
are ``start``, identical in both prompts). SDXL's UNet, SD 3's MMDiT and Flux read the token
rows through attention without position codes on the text side (Flux's text position ids are
all zero), so the aligned "none" hybrid reproduces the baseline there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ldmprobe.engine.trace_text import ALL_PARTS, parts_of

#: Parts a hybrid can take from the term prompt on SD 1.x, in prompt order (other
#: architectures: ``trace_text.parts_of``).
PARTS = parts_of("sd1")
#: Parts located on token positions (the rest of ``trace_text.ALL_PARTS`` is ``pooled``).
TOKEN_PARTS = tuple(p for p in ALL_PARTS if p != "pooled")


@dataclass(frozen=True)
class TokenSpans:
    """Where the modifier sits in the term prompt's tokens (positions, start token = 0)."""

    start: int  # first modifier position (= length of the common prefix, start token included)
    n_modifier: int  # the term's modifier tokens
    n_baseline_word: int  # the baseline term's tokens (0 for an empty baseline)
    eot: int  # the term prompt's end-of-text position
    length: int = 77
    bidirectional: bool = False  # positions before the modifier are part "before" (T5), else "start"

    @property
    def modifier(self) -> tuple[int, ...]:
        return tuple(range(self.start, self.start + self.n_modifier))

    @property
    def content(self) -> tuple[int, ...]:
        return tuple(range(self.start + self.n_modifier, self.eot))

    def part_of(self) -> np.ndarray:
        """The part name of every term position."""
        labels = np.array(["eot_pad"] * self.length, dtype=object)
        labels[: self.start] = "before" if self.bidirectional else "start"
        labels[list(self.modifier)] = "modifier"
        labels[list(self.content)] = "content"
        return labels


def _ids(tokenizer, prompt: str, length: int | None = None) -> list[int]:
    limit = int(length or tokenizer.model_max_length)
    ids = list(tokenizer(prompt, truncation=False).input_ids)
    if len(ids) > limit:
        raise ValueError(f"prompt {prompt!r} has {len(ids)} tokens; the text encoder reads {limit}")
    return ids


def fill(template: str, word: str) -> str:
    """The template with ``word`` in its ``{}`` (extra spaces collapsed, as ``sweep`` does)."""
    return " ".join(template.replace("{}", word).split())


def locate_modifier(tokenizer, template: str, term: str, baseline: str = "", *, length: int | None = None,
                    bidirectional: bool = False) -> TokenSpans:
    """Find the term's tokens by tokenising the prompt with the term and with the baseline.

    ``length``: the rows the block holds (default: the tokenizer's ``model_max_length``)."""
    t_ids, b_ids = _ids(tokenizer, fill(template, term), length), _ids(tokenizer, fill(template, baseline), length)
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
    return TokenSpans(prefix, n_mod, n_base, len(t_ids) - 1, int(length or tokenizer.model_max_length), bidirectional)


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
    unknown = set(parts) - set(ALL_PARTS)
    if unknown:
        raise ValueError(f"unknown hybrid part(s) {sorted(unknown)}; choose from {ALL_PARTS}")
    labels = spans.part_of()
    take = np.isin(labels, list(parts))
    out = np.asarray(base_states)[alignment(spans)].copy()
    out[take] = np.asarray(term_states)[take]
    return out


def cond_hybrid(term, base, spans: Sequence[tuple], parts: Sequence[str]):
    """A ``TextCond`` hybrid: each block's rows as :func:`hybrid`, the pooled vector by ``pooled``.

    ``spans``: (block, TokenSpans) per block of the layout, in row order."""
    from ldmprobe.engine.trace_text import TextCond

    blocks = []
    for block, block_spans in spans:
        cut = slice(block.start, block.start + block.length)
        blocks.append(hybrid(np.asarray(term.tokens)[cut], np.asarray(base.tokens)[cut], block_spans, parts))
    pooled = None
    if base.pooled is not None:
        pooled = np.asarray(term.pooled if "pooled" in parts else base.pooled).copy()
    return TextCond(np.concatenate(blocks) if len(blocks) > 1 else blocks[0], pooled)


def block_spans(text_layout, template: str, term: str, baseline: str = "") -> tuple[tuple, ...]:
    """(block, TokenSpans) of every block of ``text_layout`` for one (template, term)."""
    return tuple((block, locate_modifier(block.tokenizer, template, term, baseline, length=block.length,
                                         bidirectional=block.bidirectional)) for block in text_layout.blocks)


@dataclass(frozen=True)
class Hybrids:
    """One (template, term): its token spans and named conditionings (tokens x width)."""

    template: str
    term: str
    spans: tuple  # (block, TokenSpans) per block of the layout
    states: dict  # variant name -> TextCond


def variant_parts(variants: Sequence[str], parts: Sequence[str] = PARTS) -> dict[str, tuple[str, ...]]:
    """Variant names to parts: a part name, 'none', 'all' (every one of ``parts``), or parts joined by '+'."""
    out = {}
    for name in variants:
        if name == "none":
            out[name] = ()
        elif name == "all":
            out[name] = tuple(parts)
        else:
            out[name] = tuple(name.split("+"))
    return out


def build_hybrids(loaded, template: str, terms: Sequence[str], baseline: str = "",
                  variants: Sequence[str] | None = None, *, base_states=None, term_states=None) -> list[Hybrids]:
    """Hybrid conditionings of each term under one template (the encoder runs once per prompt;
    not at all for ``base_states`` / ``term_states`` given, e.g. the plain images' own).

    ``variants`` None: each of the architecture's parts."""
    from ldmprobe.engine.trace_text import as_cond, encode, layout

    text_layout = layout(loaded)
    allowed = text_layout.parts
    variants = allowed if variants is None else variants
    absent_parts(variants, text_layout.family, ValueError)
    chosen = variant_parts(variants, allowed)
    prompts = [] if term_states is not None else [fill(template, t) for t in terms]
    todo = ([] if base_states is not None else [fill(template, baseline)]) + prompts
    encoded = encode(loaded, todo) if todo else []
    base = as_cond(base_states) if base_states is not None else encoded[0]
    term_states = [as_cond(c) for c in term_states] if term_states is not None else encoded[len(encoded) - len(terms):]
    out = []
    for term, states in zip(terms, term_states):
        spans = block_spans(text_layout, template, term, baseline)
        named = {name: cond_hybrid(states, base, spans, parts) for name, parts in chosen.items()}
        out.append(Hybrids(template, term, spans, named))
    return out


def noun_positions(tokenizer, prompt: str, modifier: Sequence[int], noun: str | None) -> tuple[int, ...]:
    """The noun's token positions in ``prompt``: the last occurrence of ``noun``'s tokens, or (None)
    the last content token that is not the modifier's (start, end and padding tokens are not content)."""
    ids = list(tokenizer(prompt).input_ids)
    special = set(tokenizer.all_special_ids)
    if noun:
        word = list(tokenizer(noun, add_special_tokens=False).input_ids)
        for start in range(len(ids) - len(word), -1, -1):
            if word and ids[start : start + len(word)] == word:
                return tuple(range(start, start + len(word)))
        raise ValueError(f"noun {noun!r} is not in prompt {prompt!r}")
    content = [p for p in range(len(ids)) if ids[p] not in special and p not in modifier]
    if not content:
        raise ValueError(f"prompt {prompt!r} has no content token besides the modifier")
    return (content[-1],)


def token_groups(text_layout, template: str, term: str, baseline: str = "", noun: str | None = None) -> dict:
    """Conditioning rows by role, over every block of the layout (CLIP, T5): the start token, the
    modifier, the noun, other content (and, in a T5 block, the words before the modifier), and
    end-of-text with padding."""
    groups: dict[str, list[int]] = {"start": [], "modifier": [], "noun": [], "other": [], "eot_pad": []}
    for block, spans in block_spans(text_layout, template, term, baseline):
        found = noun_positions(block.tokenizer, fill(template, term), spans.modifier, noun)
        found = tuple(p for p in found if p not in spans.modifier)
        if not found:
            raise ValueError(f"the noun overlaps the modifier in {fill(template, term)!r}")
        start = () if block.bidirectional else (0,)
        used = {*start, *spans.modifier, *found}
        end = set(range(spans.eot, spans.length))
        other = [p for p in range(spans.length) if p not in used and p not in end]
        for name, positions in (("start", start), ("modifier", spans.modifier), ("noun", found),
                                ("other", other), ("eot_pad", sorted(end))):
            groups[name] += [block.start + p for p in positions]
    return {name: tuple(positions) for name, positions in groups.items()}


def absent_parts(variants: Sequence[str], family: str, error: type[Exception]) -> None:
    """Raise ``error`` naming the hybrid parts in ``variants`` that a ``family`` generator lacks."""
    allowed = parts_of(family)
    bad = sorted({p for parts in variant_parts(variants, allowed).values() for p in parts} - set(allowed))
    if bad:
        raise error(f"hybrid part(s) {', '.join(bad)} (--variants) are not part of a {family} generator's "
                    f"conditioning; its parts are {', '.join(allowed)}")


def check_variants(variants: Sequence[str] | None, folder) -> None:
    """Refuse (exit 2, before any model loads) hybrid parts the generator's architecture does not have."""
    from ldmprobe.errors import BadInputError
    from ldmprobe.models import configs

    if variants is not None:
        absent_parts(variants, configs.architecture(folder), BadInputError)
