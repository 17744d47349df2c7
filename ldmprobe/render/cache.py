"""Tables and JSON Lines records for ``ldmprobe cache info | verify | prune``."""

from __future__ import annotations

from ldmprobe.render.layout import shrinking_table, table_or_stacked


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

    kinds = table_or_stacked(f"cache {document['cache']}: {human_bytes(document['total_bytes'])}",
                             ("kind", "entries", "size"),
                             [(r["kind"], r["entries"], human_bytes(r["bytes"])) for r in document["by_kind"]],
                             words=("kind",))
    models = shrinking_table("by model", ("model", "kind", "entries", "size", "last written"),
                             [(r["model"], r["kind"], r["entries"], human_bytes(r["bytes"]), (r["newest"] or "—")[:10])
                              for r in document["by_model"]], words=("model", "kind"),
                             drops=((), ("last written",)),
                             caption=lambda dropped: "last written: in the JSON (newest)" if dropped else None)
    return Group(kinds, models)


def verify_records(document: dict) -> list[dict]:
    """jsonl: one record per bad entry (``kind``: of cached value), then one summary record."""
    summary = {"kind": "cache-verify", "checked": document["checked"], "bad": len(document["bad"]),
               "ok": document["ok"]}
    return list(document["bad"]) + [summary]


def render_verify(document: dict):
    from rich.text import Text

    bad = document["bad"]
    title = (f"cache {document['cache']}: {document['checked']} entries checked, "
             + (f"{len(bad)} bad" + (" (removed)" if bad and bad[0]["repaired"] else "") if bad else "all good"))
    if not bad:
        return Text(title)
    caption = None
    if bad and not bad[0]["repaired"]:
        caption = "ldmprobe cache verify --repair removes them (they are remade when next needed)"
    return table_or_stacked(title, ("path", "kind", "model", "why"),
                            [(r["path"], r["kind"], r["model"], r["reason"]) for r in bad], words=("kind", "why"),
                            caption=caption)


def prune_records(document: dict) -> list[dict]:
    """jsonl: one record per removed (or, with --dry-run, removable) entry."""
    return [{**row, "dry_run": document["dry_run"]} for row in document["removed"]]


def render_prune(document: dict):
    removed = document["removed"]
    verb = "would remove" if document["dry_run"] else "removed"
    totals: dict[tuple[str, str], list[int]] = {}
    for row in removed:
        total = totals.setdefault((row["kind"], row["model"]), [0, 0])
        total[0] += 1
        total[1] += row["bytes"]
    rows = [(model, kind, n, human_bytes(size)) for (kind, model), (n, size) in sorted(totals.items())]
    return table_or_stacked(f"{verb} {len(removed)} entries, {human_bytes(document['removed_bytes'])}",
                            ("model", "kind", "entries", "size"), rows, words=("kind",))
