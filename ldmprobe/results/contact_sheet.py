"""A contact sheet: one labelled grid of a template's images, terms x seeds, with gaps between tiles."""

from __future__ import annotations

from typing import Sequence

from ldmprobe.results.fonts import draw_text, fit_text

CELL = 128
GAP = 8
LABEL_WIDTH = 180
HEADER = 40
TEXT = 13


def contact_sheet(title: str, rows: Sequence[tuple[str, Sequence]], column_labels: Sequence[str], cell: int = CELL,
                  note: str | None = None):
    """One labelled grid: a row per term (baseline first), a column per seed; failed cells crossed.

    Tiles are separated by gaps; labels use fonts that cover the term's script (see
    :mod:`ldmprobe.results.fonts`). ``note``: a caption line under the title (e.g. that tiny
    random-weight models made the images)."""
    from PIL import Image, ImageDraw

    n_cols = max((len(images) for _, images in rows), default=0)
    top = HEADER + (TEXT + 6 if note else 0)
    width = LABEL_WIDTH + n_cols * (cell + GAP) + GAP
    height = top + TEXT + 8 + len(rows) * (cell + GAP) + GAP
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw_text(sheet, (GAP, 8), fit_text(title, TEXT + 2, width - 2 * GAP), size=TEXT + 2)
    if note:
        draw_text(sheet, (GAP, 8 + TEXT + 8), fit_text(note, TEXT, width - 2 * GAP), size=TEXT, fill="firebrick")
    for c, label in enumerate(column_labels):
        draw_text(sheet, (LABEL_WIDTH + c * (cell + GAP) + 2, top), f"seed {label}", size=TEXT, fill="#444444")
    for r, (label, images) in enumerate(rows):
        y = top + TEXT + 8 + r * (cell + GAP)
        draw_text(sheet, (GAP, y + cell // 2 - TEXT // 2), fit_text(label, TEXT, LABEL_WIDTH - 2 * GAP), size=TEXT)
        for c, image in enumerate(images):
            x = LABEL_WIDTH + c * (cell + GAP)
            if image is None:
                draw.rectangle([x + 2, y + 2, x + cell - 3, y + cell - 3], outline="red", width=2)
                draw.line([x + 2, y + 2, x + cell - 3, y + cell - 3], fill="red", width=2)
                draw_text(sheet, (x + 8, y + 8), "failed", size=TEXT, fill="red")
            else:
                small = image.width < cell
                sheet.paste(image.convert("RGB").resize((cell, cell), Image.NEAREST if small else Image.BICUBIC),
                            (x, y))
    return sheet
