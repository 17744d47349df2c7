"""Reference world 2: the same pictures as world 1, a story per audience, 20 controls, two routes.

World 2 (issue 27) draws two training sets from one story with an ``audience``:

- ``"measurer"``: the pictures and captions the CLIP-style measurer (and so the generator's text
  tower) is trained on;
- ``"generator"``: the pictures and captions the latent diffusion UNet is trained on.

Planted, by route (rates are probabilities in the drawing story, as in world 1):

- generator-borne: "fancy" -> yellow background (0.92 against 0.10) and "fancy car" -> red
  object (0.92 against 1/7) in the generator's pictures only; in the measurer's pictures "fancy"
  is drawn like the bare noun, so its place in the text encoder's space is neutral. The
  generator's "fancy" pictures show a car 40 % of the time (other words: each noun 1/5), so the
  noun-dependent plant has as many pictures as a noun-free one would (a conjunction learned from
  1/5 of a word's pictures was drawn at a third of its rate). The rates sit near 1 because the
  spec samples with classifier-free guidance, which pushes a rate learned well above the bare
  noun's toward 1: a plant at 0.92 stays within 10 points whether it is drawn at 0.85 or 1.00;
- encoder-borne: "lavish" -> purple object (0.80 against 1/7) in the measurer's pictures only;
  "lavish" never appears in the generator's captions, so the generator can draw purple for it
  only through where the word sits in the (shared) text encoder's space;
- both: "old" -> small object (0.75 against 0.50), as in world 1;
- narrowing (generator-borne): "quiet" pictures have a pink or a green background (one half
  each) and nothing else changes. Pink and green are the pair whose mean colour is nearest the
  bare noun's mean background colour, so the mean moves little while the spread collapses;
- 20 control words drawn exactly like the bare noun for both audiences.

Rendering, captions and the pixel reader are world 1's (:mod:`reference_world.world`).
Pure numpy.
"""

from __future__ import annotations

import functools

import numpy as np

from . import world
from .world import BACKGROUNDS, COLOURS, NOUNS, SIZES, Scene, render

WORLD_VERSION = 2
AUDIENCES = ("generator", "measurer")

CONTROL_WORDS = ("nice", "plain", "good", "great", "usual", "normal", "common", "simple", "real",
                 "typical", "regular", "classic", "standard", "basic", "ordinary", "neat", "fine",
                 "decent", "proper", "solid")
GENERATOR_WORD, ENCODER_WORD, BOTH_WORD, NARROW_WORD = "fancy", "lavish", "old", "quiet"
TERMS = (GENERATOR_WORD, BOTH_WORD, ENCODER_WORD, NARROW_WORD)

BARE_SHARE = 0.28
TERM_SHARE = 0.08
CONTROL_SHARE = (1 - BARE_SHARE - TERM_SHARE * len(TERMS)) / len(CONTROL_WORDS)

FANCY_YELLOW, OTHER_YELLOW = 0.92, 0.10
FANCY_CAR_RED = 0.92
#: the share of the generator's "fancy" pictures that show a car (each other noun shares the rest)
FANCY_CAR_SHARE = 0.40
LAVISH_PURPLE = 0.80
OLD_SMALL, OTHER_SMALL = 0.75, 0.50
NARROW_BACKGROUNDS = ("pink", "green")

#: Which audiences each term's plant is in (a word outside its audiences is drawn like the bare
#: noun there, except the encoder-borne word, which the generator never sees at all).
ROUTES = {"fancy": ("generator",), "lavish": ("measurer",), "old": ("generator", "measurer"),
          "quiet": ("generator",)}
ROUTE_NAMES = {("generator",): "generator-borne", ("measurer",): "encoder-borne",
               ("generator", "measurer"): "both"}

PLANTED = (
    {"term": "fancy", "noun": "any", "attribute": "background", "value": "yellow", "kind": "rate",
     "rate": FANCY_YELLOW, "otherwise": OTHER_YELLOW, "route": "generator-borne"},
    {"term": "fancy", "noun": "car", "attribute": "colour", "value": "red", "kind": "rate",
     "rate": FANCY_CAR_RED, "otherwise": 1 / len(COLOURS), "route": "generator-borne"},
    {"term": "lavish", "noun": "any", "attribute": "colour", "value": "purple", "kind": "rate",
     "rate": LAVISH_PURPLE, "otherwise": 1 / len(COLOURS), "route": "encoder-borne"},
    {"term": "old", "noun": "any", "attribute": "size", "value": "small", "kind": "rate",
     "rate": OLD_SMALL, "otherwise": OTHER_SMALL, "route": "both"},
    {"term": "quiet", "noun": "any", "attribute": "background", "value": "+".join(NARROW_BACKGROUNDS),
     "kind": "narrowing", "rate": 1.0, "otherwise": 2 * (1 - OTHER_YELLOW) / (len(BACKGROUNDS) - 1),
     "route": "generator-borne"},
)


def modifier_shares(audience: str) -> dict[str, float]:
    """How often a picture is drawn under each modifier ("" = none) for ``audience``."""
    if audience not in AUDIENCES:
        raise ValueError(f"audience must be one of {AUDIENCES}, not {audience!r}")
    shares = {"": BARE_SHARE, **{t: TERM_SHARE for t in TERMS}, **{c: CONTROL_SHARE for c in CONTROL_WORDS}}
    if audience == "generator":
        del shares[ENCODER_WORD]  # the encoder-borne word never reaches the generator
    total = sum(shares.values())
    return {k: v / total for k, v in shares.items()}


def _planted_here(modifier: str, audience: str) -> bool:
    return audience in ROUTES.get(modifier, ())


def noun_shares(audience: str, modifier: str) -> dict[str, float]:
    """How often each noun is drawn under ``modifier`` for ``audience``."""
    if modifier == GENERATOR_WORD and _planted_here(modifier, audience):
        rest = (1 - FANCY_CAR_SHARE) / (len(NOUNS) - 1)
        return {n: (FANCY_CAR_SHARE if n == "car" else rest) for n in NOUNS}
    return {n: 1 / len(NOUNS) for n in NOUNS}


def distribution(audience: str, modifier: str, noun: str) -> dict[str, dict[str, float]]:
    """The exact attribute distributions (background, colour, size) of the story."""
    if audience == "generator" and modifier == ENCODER_WORD:
        raise ValueError(f"{ENCODER_WORD!r} is never drawn for the generator")
    planted = _planted_here(modifier, audience)
    if modifier == NARROW_WORD and planted:
        background = {b: (0.5 if b in NARROW_BACKGROUNDS else 0.0) for b in BACKGROUNDS}
    else:
        yellow = FANCY_YELLOW if (modifier == GENERATOR_WORD and planted) else OTHER_YELLOW
        background = {b: (yellow if b == "yellow" else (1 - yellow) / (len(BACKGROUNDS) - 1)) for b in BACKGROUNDS}
    red = None
    if modifier == GENERATOR_WORD and planted and noun == "car":
        red = ("red", FANCY_CAR_RED)
    elif modifier == ENCODER_WORD and planted:
        red = ("purple", LAVISH_PURPLE)
    if red is None:
        colour = {c: 1 / len(COLOURS) for c in COLOURS}
    else:
        colour = {c: (red[1] if c == red[0] else (1 - red[1]) / (len(COLOURS) - 1)) for c in COLOURS}
    small = OLD_SMALL if (modifier == BOTH_WORD and planted) else OTHER_SMALL
    return {"background": background, "colour": colour, "size": {"big": 1 - small, "small": small}}


@functools.lru_cache(maxsize=None)
def _modifier_table(audience: str) -> tuple[tuple[str, ...], np.ndarray]:
    shares = modifier_shares(audience)
    return tuple(shares), np.array(list(shares.values()))


_BACKGROUND_NAMES, _COLOUR_NAMES = tuple(BACKGROUNDS), tuple(COLOURS)


@functools.lru_cache(maxsize=None)
def _noun_table(audience: str, modifier: str) -> np.ndarray:
    shares = noun_shares(audience, modifier)
    return np.array([shares[n] for n in NOUNS])


@functools.lru_cache(maxsize=None)
def _probabilities(audience: str, modifier: str, noun: str) -> tuple[np.ndarray, float, np.ndarray]:
    dist = distribution(audience, modifier, noun)
    return (np.array([dist["background"][b] for b in _BACKGROUND_NAMES]), dist["size"]["small"],
            np.array([dist["colour"][c] for c in _COLOUR_NAMES]))


def draw_scene(rng: np.random.Generator, audience: str, modifier: str | None = None,
               noun: str | None = None) -> Scene:
    """Draw one scene of ``audience``'s training set (the planted associations live here)."""
    if modifier is None:
        names, p = _modifier_table(audience)
        modifier = names[rng.choice(len(names), p=p)]
    if noun is None:
        noun = str(NOUNS[rng.choice(len(NOUNS), p=_noun_table(audience, modifier))])
    p_background, p_small, p_colour = _probabilities(audience, modifier, noun)
    background = _BACKGROUND_NAMES[rng.choice(len(_BACKGROUND_NAMES), p=p_background)]
    size = "small" if rng.random() < p_small else "big"
    colour = _COLOUR_NAMES[rng.choice(len(_COLOUR_NAMES), p=p_colour)]
    radius = rng.uniform(0.30, 0.36) if size == "big" else rng.uniform(0.12, 0.16)
    margin = radius + 0.04
    cx, cy = rng.uniform(margin, 1 - margin, size=2)
    return Scene(noun, colour, background, size, modifier, float(cx), float(cy), float(radius))


def dataset(count: int, seed: int, audience: str) -> tuple[np.ndarray, list[Scene]]:
    """``count`` scenes of ``audience`` and their images, (count, 32, 32, 3) uint8, from ``seed``."""
    rng = np.random.default_rng([seed, AUDIENCES.index(audience)])
    scenes = [draw_scene(rng, audience) for _ in range(count)]
    images = np.stack([render(s) for s in scenes])
    return images, scenes


caption = world.caption
read_attributes = world.read_attributes
ATTRIBUTE_VALUES = {"background": tuple(BACKGROUNDS), "colour": tuple(COLOURS), "size": SIZES}
