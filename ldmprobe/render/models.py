"""Tables for `ldmprobe models` and `ldmprobe check`."""

from __future__ import annotations


def inventory_records(document: dict) -> list[dict]:
    """jsonl: one record per generator and measurer preset."""
    return document["generators"] + document["measurers"]


def render_inventory(document: dict):
    """One row per preset when the columns fit, else one block per preset: names and ids whole."""
    from ldmprobe.render.layout import table_or_stacked

    rows = [(r["name"], r["role"], r["status"], r["about"], r["resolves_to"])
            for r in document["generators"] + document["measurers"]]
    return table_or_stacked(f"ldmprobe models (cache: {document['cache']})",
                            ("name", "role", "status", "about", "resolves to"), rows, words=("status", "about"))


def render_check(document: dict):
    from rich.table import Table

    table = Table(title="ldmprobe check", title_justify="left")
    table.add_column("what")
    table.add_column("value")
    table.add_row("pipeline", document["config"]["pipeline"]["spec"])
    table.add_row("measurer", document["config"]["measurer"]["spec"])
    table.add_row("device / dtype", f"{document['config']['device']} / {document['config']['dtype']}")
    table.add_row("image size", "x".join(map(str, document["image_size"])))
    table.add_row("embedding dim", str(document["embed_dim"]))
    for key, value in document["timings"].items():
        table.add_row(key, f"{value:.3f}")
    return table
