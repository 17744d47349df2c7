"""Tables for `ldmprobe models` and `ldmprobe check`."""

from __future__ import annotations


def inventory_records(document: dict) -> list[dict]:
    """jsonl: one record per generator and measurer preset."""
    return document["generators"] + document["measurers"]


def render_inventory(document: dict):
    """Names whole (never cut); what a name resolves to on its own line under what it is, folded."""
    from rich import box
    from rich.table import Table

    table = Table(title=f"ldmprobe models (cache: {document['cache']})", title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("name", no_wrap=True)
    table.add_column("role", no_wrap=True)
    table.add_column("status", ratio=1)
    table.add_column("about → resolves to", ratio=2, overflow="fold")
    for row in document["generators"] + document["measurers"]:
        table.add_row(row["name"], row["role"], row["status"], f"{row['about']}\n→ {row['resolves_to']}",
                      end_section=True)
    return table


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
