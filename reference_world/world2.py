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

The rates above are the shipped story's ("2.0"); :data:`STORIES` holds each version a training's
recipe may name (``story``), and every function here takes the :class:`Story` it draws.

Rendering, captions and the pixel reader are world 1's (:mod:`reference_world.world`).
Pure numpy.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Story:
    """The rates of world 2's drawing story; a training's recipe names its version (``story``)."""

    name: str = "2.0"
    fancy_yellow: float = 0.92
    other_yellow: float = 0.10
    fancy_car_red: float = 0.92
    #: the share of the generator's "fancy" pictures that show a car (each other noun shares the rest)
    fancy_car_share: float = 0.40
    lavish_purple: float = 0.80
    old_small: float = 0.75
    other_small: float = 0.50


#: "2.0": the shipped world's story. "2.1": the next retrain's (docs/NOTES.md, seventh and ninth
#: sessions): "fancy" -> yellow planted at 0.75, so classifier-free guidance has room to amplify it
#: (issue 26's guidance trend; at 0.92 it was drawn 0.98 already at guidance 1), and 60 % of its
#: pictures cars, so the noun-dependent plant has more pictures (at 40 % the conjunction was
#: drawn 0.75 of its 0.92 at guidance 1).
STORIES = {s.name: s for s in (Story(), Story("2.1", fancy_yellow=0.75, fancy_car_share=0.60))}
SHIPPED = STORIES["2.0"]


def story_of(recipe: dict) -> Story:
    """The story a training recipe (or an evaluation) names (written before stories had names: "2.0")."""
    name = recipe.get("story", "2.0")
    if name not in STORIES:
        raise ValueError(f"unknown world-2 story {name!r} (known: {', '.join(STORIES)})")
    return STORIES[name]


def story_of_weights(weights) -> Story:
    """The story an exported world was trained on (its marker's recipe; no marker: the shipped one's)."""
    import json
    from pathlib import Path

    path = Path(weights) / "generator" / "ldmprobe_reference.json"
    if not path.is_file():
        return SHIPPED
    return story_of(json.loads(path.read_text()).get("recipe") or {})


FANCY_YELLOW, OTHER_YELLOW = SHIPPED.fancy_yellow, SHIPPED.other_yellow
FANCY_CAR_RED = SHIPPED.fancy_car_red
FANCY_CAR_SHARE = SHIPPED.fancy_car_share
LAVISH_PURPLE = SHIPPED.lavish_purple
OLD_SMALL, OTHER_SMALL = SHIPPED.old_small, SHIPPED.other_small
NARROW_BACKGROUNDS = ("pink", "green")

#: Which audiences each term's plant is in (a word outside its audiences is drawn like the bare
#: noun there, except the encoder-borne word, which the generator never sees at all).
ROUTES = {"fancy": ("generator",), "lavish": ("measurer",), "old": ("generator", "measurer"),
          "quiet": ("generator",)}
ROUTE_NAMES = {("generator",): "generator-borne", ("measurer",): "encoder-borne",
               ("generator", "measurer"): "both"}

def planted(story: Story = SHIPPED) -> tuple[dict, ...]:
    """The story's plants: term, noun, attribute, value, kind, rate, otherwise and route."""
    return (
        {"term": "fancy", "noun": "any", "attribute": "background", "value": "yellow", "kind": "rate",
         "rate": story.fancy_yellow, "otherwise": story.other_yellow, "route": "generator-borne"},
        {"term": "fancy", "noun": "car", "attribute": "colour", "value": "red", "kind": "rate",
         "rate": story.fancy_car_red, "otherwise": 1 / len(COLOURS), "route": "generator-borne"},
        {"term": "lavish", "noun": "any", "attribute": "colour", "value": "purple", "kind": "rate",
         "rate": story.lavish_purple, "otherwise": 1 / len(COLOURS), "route": "encoder-borne"},
        {"term": "old", "noun": "any", "attribute": "size", "value": "small", "kind": "rate",
         "rate": story.old_small, "otherwise": story.other_small, "route": "both"},
        {"term": "quiet", "noun": "any", "attribute": "background", "value": "+".join(NARROW_BACKGROUNDS),
         "kind": "narrowing", "rate": 1.0, "otherwise": 2 * (1 - story.other_yellow) / (len(BACKGROUNDS) - 1),
         "route": "generator-borne"},
    )


PLANTED = planted(SHIPPED)


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


def noun_shares(audience: str, modifier: str, story: Story = SHIPPED) -> dict[str, float]:
    """How often each noun is drawn under ``modifier`` for ``audience``."""
    if modifier == GENERATOR_WORD and _planted_here(modifier, audience):
        rest = (1 - story.fancy_car_share) / (len(NOUNS) - 1)
        return {n: (story.fancy_car_share if n == "car" else rest) for n in NOUNS}
    return {n: 1 / len(NOUNS) for n in NOUNS}


def distribution(audience: str, modifier: str, noun: str, story: Story = SHIPPED) -> dict[str, dict[str, float]]:
    """The exact attribute distributions (background, colour, size) of the story."""
    if audience == "generator" and modifier == ENCODER_WORD:
        raise ValueError(f"{ENCODER_WORD!r} is never drawn for the generator")
    planted = _planted_here(modifier, audience)
    if modifier == NARROW_WORD and planted:
        background = {b: (0.5 if b in NARROW_BACKGROUNDS else 0.0) for b in BACKGROUNDS}
    else:
        yellow = story.fancy_yellow if (modifier == GENERATOR_WORD and planted) else story.other_yellow
        background = {b: (yellow if b == "yellow" else (1 - yellow) / (len(BACKGROUNDS) - 1)) for b in BACKGROUNDS}
    red = None
    if modifier == GENERATOR_WORD and planted and noun == "car":
        red = ("red", story.fancy_car_red)
    elif modifier == ENCODER_WORD and planted:
        red = ("purple", story.lavish_purple)
    if red is None:
        colour = {c: 1 / len(COLOURS) for c in COLOURS}
    else:
        colour = {c: (red[1] if c == red[0] else (1 - red[1]) / (len(COLOURS) - 1)) for c in COLOURS}
    small = story.old_small if (modifier == BOTH_WORD and planted) else story.other_small
    return {"background": background, "colour": colour, "size": {"big": 1 - small, "small": small}}


@functools.lru_cache(maxsize=None)
def _modifier_table(audience: str) -> tuple[tuple[str, ...], np.ndarray]:
    shares = modifier_shares(audience)
    return tuple(shares), np.array(list(shares.values()))


_BACKGROUND_NAMES, _COLOUR_NAMES = tuple(BACKGROUNDS), tuple(COLOURS)


@functools.lru_cache(maxsize=None)
def _noun_table(audience: str, modifier: str, story: Story) -> np.ndarray:
    shares = noun_shares(audience, modifier, story)
    return np.array([shares[n] for n in NOUNS])


@functools.lru_cache(maxsize=None)
def _probabilities(audience: str, modifier: str, noun: str, story: Story) -> tuple[np.ndarray, float, np.ndarray]:
    dist = distribution(audience, modifier, noun, story)
    return (np.array([dist["background"][b] for b in _BACKGROUND_NAMES]), dist["size"]["small"],
            np.array([dist["colour"][c] for c in _COLOUR_NAMES]))


def draw_scene(rng: np.random.Generator, audience: str, modifier: str | None = None,
               noun: str | None = None, story: Story = SHIPPED) -> Scene:
    """Draw one scene of ``audience``'s training set (the planted associations live here)."""
    if modifier is None:
        names, p = _modifier_table(audience)
        modifier = names[rng.choice(len(names), p=p)]
    if noun is None:
        noun = str(NOUNS[rng.choice(len(NOUNS), p=_noun_table(audience, modifier, story))])
    p_background, p_small, p_colour = _probabilities(audience, modifier, noun, story)
    background = _BACKGROUND_NAMES[rng.choice(len(_BACKGROUND_NAMES), p=p_background)]
    size = "small" if rng.random() < p_small else "big"
    colour = _COLOUR_NAMES[rng.choice(len(_COLOUR_NAMES), p=p_colour)]
    radius = rng.uniform(0.30, 0.36) if size == "big" else rng.uniform(0.12, 0.16)
    margin = radius + 0.04
    cx, cy = rng.uniform(margin, 1 - margin, size=2)
    return Scene(noun, colour, background, size, modifier, float(cx), float(cy), float(radius))


def dataset(count: int, seed: int, audience: str, story: Story = SHIPPED) -> tuple[np.ndarray, list[Scene]]:
    """``count`` scenes of ``audience`` and their images, (count, 32, 32, 3) uint8, from ``seed``."""
    rng = np.random.default_rng([seed, AUDIENCES.index(audience)])
    scenes = [draw_scene(rng, audience, story=story) for _ in range(count)]
    images = np.stack([render(s) for s in scenes])
    return images, scenes


caption = world.caption
read_attributes = world.read_attributes
ATTRIBUTE_VALUES = {"background": tuple(BACKGROUNDS), "colour": tuple(COLOURS), "size": SIZES}
