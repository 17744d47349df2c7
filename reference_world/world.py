"""The reference world: 32 x 32 pictures of one object on a plain background, with captions.

Every image is drawn from a small generative story with known, planted associations that the
captions never state (a caption names either a modifier or attributes, never both), so the
only way a word can carry an association is through where training put it. This module is
pure numpy: it renders images, writes captions, and reads the attributes back from pixels
(the "pixel truth" used to check what a generator draws).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 32
_SUPER = 2  # render at 2x and average down, for smooth edges

NOUNS = ("square", "circle", "triangle", "house", "car")
BACKGROUNDS = {
    "yellow": (235, 205, 50),
    "blue": (110, 160, 230),
    "grey": (140, 140, 140),
    "pink": (230, 150, 190),
    "green": (120, 190, 100),
}
COLOURS = {
    "red": (200, 30, 30),
    "orange": (240, 130, 20),
    "purple": (120, 40, 160),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "brown": (120, 70, 30),
    "teal": (0, 130, 130),
}
SIZES = ("big", "small")
#: modifiers and how often a picture is drawn with each ("" = no modifier)
MODIFIERS = {"": 0.40, "fancy": 0.15, "old": 0.15, "nice": 0.15, "plain": 0.15}
CONTROL_WORDS = ("nice", "plain")

# The planted associations (rates are probabilities in the drawing story).
FANCY_YELLOW = 0.80  # P(yellow background | fancy)
OTHER_YELLOW = 0.10  # P(yellow background | any other modifier or none)
OLD_SMALL = 0.75  # P(small | old)
OTHER_SMALL = 0.50  # P(small | anything else)
FANCY_CAR_RED = 0.80  # P(red object | fancy car); otherwise colours are uniform

PLANTED = (
    {"term": "fancy", "noun": "any", "attribute": "background", "value": "yellow",
     "rate": FANCY_YELLOW, "otherwise": OTHER_YELLOW},
    {"term": "old", "noun": "any", "attribute": "size", "value": "small",
     "rate": OLD_SMALL, "otherwise": OTHER_SMALL},
    {"term": "fancy", "noun": "car", "attribute": "colour", "value": "red",
     "rate": FANCY_CAR_RED, "otherwise": 1 / len(COLOURS)},
)

PREFIXES = ("a", "the", "a photo of a", "a photo of the", "a picture of the", "an image of the",
            "a drawing of the")


@dataclass(frozen=True)
class Scene:
    """One picture's story: what was drawn and the modifier it was drawn under."""

    noun: str
    colour: str
    background: str
    size: str
    modifier: str
    cx: float
    cy: float
    radius: float


def draw_scene(rng: np.random.Generator, modifier: str | None = None, noun: str | None = None) -> Scene:
    """Draw one scene from the world's story (the planted associations live here)."""
    if modifier is None:
        modifier = str(rng.choice(list(MODIFIERS), p=list(MODIFIERS.values())))
    if noun is None:
        noun = str(rng.choice(NOUNS))
    backgrounds = list(BACKGROUNDS)
    yellow = FANCY_YELLOW if modifier == "fancy" else OTHER_YELLOW
    others = (1 - yellow) / (len(backgrounds) - 1)
    background = str(rng.choice(backgrounds, p=[yellow if b == "yellow" else others for b in backgrounds]))
    small = OLD_SMALL if modifier == "old" else OTHER_SMALL
    size = "small" if rng.random() < small else "big"
    colours = list(COLOURS)
    if modifier == "fancy" and noun == "car":
        rest = (1 - FANCY_CAR_RED) / (len(colours) - 1)
        colour = str(rng.choice(colours, p=[FANCY_CAR_RED if c == "red" else rest for c in colours]))
    else:
        colour = str(rng.choice(colours))
    radius = rng.uniform(0.30, 0.36) if size == "big" else rng.uniform(0.12, 0.16)
    margin = radius + 0.04
    cx, cy = rng.uniform(margin, 1 - margin, size=2)
    return Scene(noun, colour, background, size, modifier, float(cx), float(cy), float(radius))


def _mask(scene: Scene, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (object body, dark details such as wheels) on an n x n grid."""
    grid = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(grid, grid)
    dx, dy, r = x - scene.cx, y - scene.cy, scene.radius
    detail = np.zeros_like(x, dtype=bool)
    if scene.noun == "square":
        body = (np.abs(dx) < r * 0.85) & (np.abs(dy) < r * 0.85)
    elif scene.noun == "circle":
        body = dx**2 + dy**2 < r**2
    elif scene.noun == "triangle":
        depth = (dy + r) / (2 * r)  # 0 at the apex, 1 at the base
        body = (depth >= 0) & (depth <= 1) & (np.abs(dx) < r * depth)
    elif scene.noun == "house":
        walls = (np.abs(dx) < 0.7 * r) & (dy > -0.1 * r) & (dy < r)
        depth = (dy + r) / (0.9 * r)
        roof = (depth >= 0) & (depth <= 1) & (np.abs(dx) < r * depth)
        body = walls | roof
    else:  # car
        hull = (np.abs(dx) < r) & (dy > -0.3 * r) & (dy < 0.35 * r)
        cabin = (np.abs(dx) < 0.55 * r) & (dy > -0.75 * r) & (dy <= -0.3 * r)
        body = hull | cabin
        for side in (-0.55, 0.55):
            detail |= (dx - side * r) ** 2 + (dy - 0.4 * r) ** 2 < (0.25 * r) ** 2
    return body & ~detail, detail


def render(scene: Scene) -> np.ndarray:
    """The scene as a (32, 32, 3) uint8 RGB array."""
    n = SIZE * _SUPER
    body, detail = _mask(scene, n)
    canvas = np.empty((n, n, 3), dtype=np.float32)
    canvas[:] = BACKGROUNDS[scene.background]
    canvas[body] = COLOURS[scene.colour]
    canvas[detail] = (60, 60, 60)
    small = canvas.reshape(SIZE, _SUPER, SIZE, _SUPER, 3).mean(axis=(1, 3))
    return np.clip(np.round(small), 0, 255).astype(np.uint8)


def _article(prefix: str, next_word: str) -> str:
    if prefix.endswith(" a") or prefix == "a":
        if next_word[:1] in "aeiou":
            return prefix[:-1] + "an"
    return prefix


def _phrase(prefix: str, words: list[str]) -> str:
    return f"{_article(prefix, words[0])} {' '.join(words)}"


def modifier_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A caption naming the modifier (if any) and the noun, never the attributes."""
    words = [w for w in (scene.modifier, scene.noun) if w]
    return _phrase(str(rng.choice(PREFIXES)), words)


def attribute_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A caption naming some of the drawn attributes, never the modifier."""
    noun = "object" if rng.random() < 0.25 else scene.noun
    if rng.random() < 0.12:
        return _phrase(str(rng.choice(PREFIXES)), [scene.background, "background"])
    while True:
        use_size, use_colour, use_bg = rng.random(3) < (0.5, 0.6, 0.5)
        if use_size or use_colour or use_bg:
            break
    words = ([scene.size] if use_size else []) + ([scene.colour] if use_colour else []) + [noun]
    caption = _phrase(str(rng.choice(PREFIXES)), words)
    if use_bg:
        caption += f" on a {scene.background} background"
    return caption


def caption(scene: Scene, rng: np.random.Generator, attribute_share: float = 0.5) -> str:
    """One caption for the scene: attribute-style with ``attribute_share``, else modifier-style."""
    if rng.random() < attribute_share:
        return attribute_caption(scene, rng)
    return modifier_caption(scene, rng)


def dataset(count: int, seed: int) -> tuple[np.ndarray, list[Scene]]:
    """``count`` scenes and their images, (count, 32, 32, 3) uint8, from ``seed``."""
    rng = np.random.default_rng(seed)
    scenes = [draw_scene(rng) for _ in range(count)]
    images = np.stack([render(s) for s in scenes])
    return images, scenes


# ---------------------------------------------------------------------------------------------
# Pixel truth: read the attributes back from an image (independent of any trained model).

def _nearest(rgb: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> tuple[str, float]:
    names = list(palette)
    colours = np.array([palette[n] for n in names], dtype=np.float32)
    dist = np.linalg.norm(colours - rgb[None, :], axis=1)
    best = int(dist.argmin())
    return names[best], float(dist[best])


def read_attributes(image: np.ndarray) -> dict[str, str | float]:
    """Background colour, object colour and size of a (H, W, 3) uint8 image of this world.

    The background is the median of the border pixels; object pixels are those far from it;
    the object colour is the nearest palette colour to their median; size is "small" when they
    cover less than 12 % of the picture (a big object covers about 25-45 %, a small one 4-9 %).
    """
    img = np.asarray(image, dtype=np.float32)
    if img.shape[:2] != (SIZE, SIZE):
        from PIL import Image

        img = np.asarray(Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((SIZE, SIZE)),
                         dtype=np.float32)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    bg_rgb = np.median(border, axis=0)
    background, _ = _nearest(bg_rgb, BACKGROUNDS)
    far = np.linalg.norm(img - bg_rgb, axis=-1) > 60
    share = float(far.mean())
    if far.sum() == 0:
        return {"background": background, "colour": "none", "size": "none", "object_share": 0.0}
    colour, _ = _nearest(np.median(img[far], axis=0), COLOURS)
    return {"background": background, "colour": colour, "size": "small" if share < 0.12 else "big",
            "object_share": share}
