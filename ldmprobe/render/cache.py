"""Tables and JSON Lines records for ``ldmprobe cache info | verify | prune``."""

from __future__ import annotations


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB' (binary units, as du -h)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def info_records(document: dict) -> list[dict]:
    """jsonl: one record per (kind, model); ``kind`` is the kind of cached value."""
    return list(document["by_model"])


def render_info(document: dict):
    from rich.console import Group
    from rich.table import Table

    kinds = Table(title=f"cache {document['cache']}: {human_bytes(document['total_bytes'])}", title_justify="left")
    for column, justify in (("kind", "left"), ("entries", "right"), ("size", "right")):
        kinds.add_column(column, justify=justify)
    for row in document["by_kind"]:
        kinds.add_row(row["kind"], str(row["entries"]), human_bytes(row["bytes"]))
    models = Table(title="by model", title_justify="left")
    for column, justify in (("kind", "left"), ("model", "left"), ("entries", "right"), ("size", "right"),
                            ("last written", "left")):
        models.add_column(column, justify=justify, overflow="fold")
    for row in document["by_model"]:
        models.add_row(row["kind"], row["model"], str(row["entries"]), human_bytes(row["bytes"]),
                       (row["newest"] or "—")[:10])
    return Group(kinds, models)


def verify_records(document: dict) -> list[dict]:
    """jsonl: one record per bad entry (``kind``: of cached value), then one summary record."""
    summary = {"kind": "cache-verify", "checked": document["checked"], "bad": len(document["bad"]),
               "ok": document["ok"]}
    return list(document["bad"]) + [summary]


def render_verify(document: dict):
    from rich.table import Table
    from rich.text import Text

    bad = document["bad"]
    title = (f"cache {document['cache']}: {document['checked']} entries checked, "
             + (f"{len(bad)} bad" + (" (removed)" if bad and bad[0]["repaired"] else "") if bad else "all good"))
    if not bad:
        return Text(title)
    table = Table(title=title, title_justify="left")
    for column in ("kind", "model", "path", "why"):
        table.add_column(column, overflow="fold")
    for row in bad:
        table.add_row(row["kind"], row["model"], row["path"], row["reason"])
    if bad and not bad[0]["repaired"]:
        table.caption = "ldmprobe cache verify --repair removes them (they are remade when next needed)"
    return table


def prune_records(document: dict) -> list[dict]:
    """jsonl: one record per removed (or, with --dry-run, removable) entry."""
    return [{**row, "dry_run": document["dry_run"]} for row in document["removed"]]


def render_prune(document: dict):
    from rich.table import Table

    removed = document["removed"]
    verb = "would remove" if document["dry_run"] else "removed"
    table = Table(title=f"{verb} {len(removed)} entries, {human_bytes(document['removed_bytes'])}",
                  title_justify="left")
    totals: dict[tuple[str, str], list[int]] = {}
    for row in removed:
        total = totals.setdefault((row["kind"], row["model"]), [0, 0])
        total[0] += 1
        total[1] += row["bytes"]
    for column, justify in (("kind", "left"), ("model", "left"), ("entries", "right"), ("size", "right")):
        table.add_column(column, justify=justify, overflow="fold")
    for (kind, model), (n, size) in sorted(totals.items()):
        table.add_row(kind, model, str(n), human_bytes(size))
    return table
