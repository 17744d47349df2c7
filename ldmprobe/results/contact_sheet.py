"""A contact sheet: one labelled grid of a template's images, terms x seeds."""

from __future__ import annotations

from typing import Sequence

CELL = 128
LABEL_WIDTH = 180
HEADER = 36


def contact_sheet(title: str, rows: Sequence[tuple[str, Sequence]], column_labels: Sequence[str], cell: int = CELL,
                  note: str | None = None):
    """One labelled grid: a row per term (baseline first), a column per seed; failed cells crossed.

    ``note``: a caption line under the title (e.g. that tiny random-weight models made the images)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    n_cols = max((len(images) for _, images in rows), default=0)
    width = LABEL_WIDTH + n_cols * cell
    height = HEADER + 16 + len(rows) * cell
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 6), title, fill="black", font=font)
    if note:
        draw.text((6, 20), note, fill="firebrick", font=font)
    for c, label in enumerate(column_labels):
        draw.text((LABEL_WIDTH + c * cell + 4, HEADER), f"seed {label}", fill="black", font=font)
    for r, (label, images) in enumerate(rows):
        y = HEADER + 16 + r * cell
        draw.text((6, y + cell // 2 - 6), label[:28], fill="black", font=font)
        for c, image in enumerate(images):
            x = LABEL_WIDTH + c * cell
            if image is None:
                draw.rectangle([x + 2, y + 2, x + cell - 3, y + cell - 3], outline="red", width=2)
                draw.line([x + 2, y + 2, x + cell - 3, y + cell - 3], fill="red", width=2)
                draw.text((x + 8, y + 8), "failed", fill="red", font=font)
            else:
                sheet.paste(image.convert("RGB").resize((cell, cell)), (x, y))
    return sheet
