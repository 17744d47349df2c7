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
    """What was loaded and how long each step took; paths wrap at spaces, never cut."""
    from ldmprobe.render.layout import Fitted, Stacked, add_columns, compact_table

    rows = [("pipeline", document["config"]["pipeline"]["spec"]), ("measurer", document["config"]["measurer"]["spec"]),
            ("device / dtype", f"{document['config']['device']} / {document['config']['dtype']}"),
            ("image size", "x".join(map(str, document["image_size"]))), ("embedding dim", str(document["embed_dim"]))]
    rows += [(key, f"{value:.3f}") for key, value in document["timings"].items()]

    def table():
        t = compact_table("ldmprobe check")
        t.wraps_words = True
        add_columns(t, ("what", "value"), words=("value",))
        t.columns[0].justify = "left"
        for row in rows:
            t.add_row(*row)
        return t

    return Fitted(table, lambda: Stacked("ldmprobe check", ("what", "value"), rows))
