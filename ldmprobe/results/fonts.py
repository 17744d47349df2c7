"""Fonts for any script: DejaVu (shipped with matplotlib) first, then system CJK and emoji fonts.

Found at run time through matplotlib's font manager (which scans the system's font folders);
nothing is shipped. A character no font covers is drawn as a visible "□", never as a silent
missing glyph (and never as a matplotlib "Glyph missing" warning).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

MISSING = "□"  # U+25A1, in DejaVu Sans: what a character no font covers becomes

#: Families tried after DejaVu Sans, in order (the first found of each kind is used).
_CJK = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK KR", "Source Han Sans",
        "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Droid Sans Fallback", "IPAGothic", "IPAexGothic",
        "Unifont")
_EMOJI = ("Noto Color Emoji", "Noto Emoji", "Twemoji", "Symbola")
#: A colour-bitmap (CBDT) emoji font has one strike; Pillow loads it at this size only.
_BITMAP_EMOJI_SIZE = 109


@dataclass(frozen=True)
class FontFile:
    family: str
    path: str
    chars: frozenset
    bitmap: bool = False  # colour bitmap emoji (Pillow only, at its one size; matplotlib cannot draw it)


def _charmap(path: str) -> frozenset:
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except Exception:  # noqa: BLE001 - an unreadable system font is skipped, not fatal
        return frozenset()


@lru_cache(maxsize=1)
def fonts() -> tuple[FontFile, ...]:
    """DejaVu Sans, then the first CJK and the first emoji font this machine has."""
    from matplotlib import font_manager

    entries = _fc_list()
    for entry in font_manager.fontManager.ttflist:
        if entry.style == "normal" and entry.weight in (400, "normal", "regular"):
            entries.setdefault(entry.name, entry.fname)
    dejavu = str(font_manager.findfont("DejaVu Sans", fallback_to_default=True))
    found = [FontFile("DejaVu Sans", dejavu, _charmap(dejavu))]
    for kind in (_CJK, _EMOJI):
        for family in kind:
            chars = _charmap(entries[family]) if family in entries else frozenset()
            if chars:
                bitmap = family == "Noto Color Emoji"
                if not bitmap and family not in {e.name for e in font_manager.fontManager.ttflist}:
                    font_manager.fontManager.addfont(entries[family])  # installed after matplotlib's font cache
                found.append(FontFile(family, entries[family], chars, bitmap=bitmap))
                break
    return tuple(found)


def _fc_list() -> dict[str, str]:
    """Family -> file of the regular faces fontconfig knows (empty where there is no fc-list)."""
    import shutil
    import subprocess

    if shutil.which("fc-list") is None:
        return {}
    try:
        listing = subprocess.run(["fc-list", ":style=Regular", "--format", "%{family[0]}\t%{file}\n"],
                                 capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    entries: dict[str, str] = {}
    for line in listing.splitlines():
        family, _, path = line.partition("\t")
        if path and not path.endswith((".pcf.gz", ".pfb")):
            entries.setdefault(family, path)
    return entries


def font_for(char: str, *, bitmap_ok: bool = True) -> FontFile | None:
    """The first font that has ``char`` (None: no font on this machine has it)."""
    for font in fonts():
        if ord(char) in font.chars and (bitmap_ok or not font.bitmap):
            return font
    return None


def matplotlib_families() -> list[str]:
    """The font.family fallback list for matplotlib: DejaVu Sans, then a CJK font if there is one."""
    return [f.family for f in fonts() if not f.bitmap]


def plot_label(text: str) -> str:
    """``text`` with every character matplotlib's fonts here cannot draw replaced by a visible □."""
    return "".join(c if c.isspace() or font_for(c, bitmap_ok=False) else MISSING for c in text)


def _runs(text: str):
    """Split ``text`` into (font, run) pieces; characters no font has become □ in DejaVu."""
    runs: list[tuple[FontFile, str]] = []
    for char in text:
        font = fonts()[0] if char.isspace() else font_for(char)
        if font is None:
            font, char = fonts()[0], MISSING
        if runs and runs[-1][0] == font:
            runs[-1] = (font, runs[-1][1] + char)
        else:
            runs.append((font, char))
    return runs


@lru_cache(maxsize=32)
def _pil_font(path: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def text_width(text: str, size: int) -> int:
    """Width in pixels of ``text`` drawn by :func:`draw_text` at ``size``."""
    total = 0
    for font, run in _runs(text):
        if font.bitmap:
            total += size * len(run)
        else:
            total += int(_pil_font(font.path, size).getlength(run))
    return total


def draw_text(image, xy: tuple[int, int], text: str, size: int = 12, fill="black") -> None:
    """Draw ``text`` on a PIL ``image`` at ``xy`` (top left), each character in a font that has it."""
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(image)
    x, y = xy
    for font, run in _runs(text):
        if font.bitmap:
            for char in run:
                glyph = Image.new("RGBA", (_BITMAP_EMOJI_SIZE * 5 // 4, _BITMAP_EMOJI_SIZE * 5 // 4), (0, 0, 0, 0))
                ImageDraw.Draw(glyph).text((0, 0), char, font=_pil_font(font.path, _BITMAP_EMOJI_SIZE),
                                           embedded_color=True)
                box = glyph.getbbox()
                if box:
                    glyph = glyph.crop(box).resize((size, size))
                    image.paste(glyph, (int(x), int(y)), glyph)
                x += size
        else:
            pil = _pil_font(font.path, size)
            draw.text((x, y), run, fill=fill, font=pil)
            x += pil.getlength(run)


def fit_text(text: str, size: int, width: int) -> str:
    """``text`` shortened with "…" to fit ``width`` pixels (whole when it fits)."""
    if text_width(text, size) <= width:
        return text
    while text and text_width(text + "…", size) > width:
        text = text[:-1]
    return text + "…"
