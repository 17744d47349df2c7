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
    """Rank, word, score and a bar (scaled to the list's top score); image list beside text list.
    A narrow terminal gets shorter bars, then none, never a cut word or score."""
    from rich.console import Group

    from ldmprobe.render.layout import Fitted
    from ldmprobe.render.sweep import caveat_lines

    document = as_document(document)
    builders = [lambda width=width: _table(document, width) for width in (_BAR_WIDTH, 12, 6, 0)]
    return Group(Fitted(*builders), *caveat_lines(document["provenance"]))


def _table(document: dict, bar_width: int):
    from ldmprobe.render.layout import add_columns, compact_table

    config = document["config"]
    where = "; ".join(config["contexts"]) if config["contexts"] else "bare words"
    vocab = config["vocabulary"]
    title = (f"neighbours of {document['term']!r} ({where}) · {config['measurer']['spec']} · "
             f"{vocab['size']} entries from {', '.join(vocab['sources'])}")
    table = compact_table(title)
    lists = [("", document["neighbours"])]
    if document.get("image_neighbours") is not None:
        lists = [("text ", document["neighbours"]), ("image ", document["image_neighbours"])]
    columns = ["rank"]
    for label, _ in lists:
        columns += [f"{label}word", f"{label}score"] + ([f"{label}bar"] if bar_width else [])
    add_columns(table, columns, words=tuple(c for c in columns if c.endswith(("word", "bar"))))
    tops = [max((abs(row["score"]) for row in rows), default=0.0) for _, rows in lists]
    for i in range(max(len(rows) for _, rows in lists)):
        cells = [str(i + 1)]
        for (_, rows), top in zip(lists, tops):
            row = rows[i] if i < len(rows) else None
            bar = [_bar(row["score"], top, bar_width) if row else ""] if bar_width else []
            cells += ([row["word"], f"{row['score']:.4f}"] if row else ["", ""]) + bar
        table.add_row(*cells)
    if document.get("overlap") is not None:
        overlap = document["overlap"]
        table.caption = (f"overlap of text and image top-{config['k']}: {overlap['count']} words, "
                         f"Jaccard {overlap['jaccard']:.3f}")
    return table
