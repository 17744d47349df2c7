"""The table of a neighbours query: rank, word, score and a bar; image list beside text list."""

from __future__ import annotations

from ldmprobe.render.emit import as_document

_BAR_WIDTH = 24


def neighbour_records(result) -> list[dict]:
    """jsonl: one flat record per neighbour (``space`` is "text" or "image")."""
    return result.records()


def _bar(score: float, top: float, width: int = _BAR_WIDTH) -> str:
    """A bar of eighth-blocks, full at ``top`` (the list's highest |score|); none below 0."""
    fraction = max(0.0, score) / top if top > 0 else 0.0
    full, part = divmod(round(min(1.0, fraction) * width * 8), 8)
    return "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")


def render_neighbours(document: dict):
    """Rank, word, score and a bar (scaled to the list's top score); image list beside text list."""
    from rich.table import Table

    document = as_document(document)

    config = document["config"]
    where = "; ".join(config["contexts"]) if config["contexts"] else "bare words"
    vocab = config["vocabulary"]
    title = (f"neighbours of {document['term']!r} ({where}) · {config['measurer']['spec']} · "
             f"{vocab['size']} entries from {', '.join(vocab['sources'])}")
    table = Table(title=title, title_justify="left",
                  caption=document["provenance"].get("tiny_note"), caption_justify="left")
    lists = [("", document["neighbours"])]
    if document.get("image_neighbours") is not None:
        lists = [("text ", document["neighbours"]), ("image ", document["image_neighbours"])]
    table.add_column("rank", justify="right")
    for label, _ in lists:
        table.add_column(f"{label}word")
        table.add_column(f"{label}score", justify="right")
        table.add_column("")
    tops = [max((abs(row["score"]) for row in rows), default=0.0) for _, rows in lists]
    for i in range(max(len(rows) for _, rows in lists)):
        cells = [str(i + 1)]
        for (_, rows), top in zip(lists, tops):
            row = rows[i] if i < len(rows) else None
            cells += [row["word"], f"{row['score']:.4f}", _bar(row["score"], top)] if row else ["", "", ""]
        table.add_row(*cells)
    if document.get("overlap") is not None:
        overlap = document["overlap"]
        table.caption = ((table.caption + "\n") if table.caption else "") + (
            f"overlap of text and image top-{config['k']}: {overlap['count']} words, "
            f"Jaccard {overlap['jaccard']:.3f}"
        )
    return table
