"""Tables for sweeps: the plan (--dry-run) and the per-term drift ranking."""

from __future__ import annotations

from ldmprobe.render.emit import as_document


def _num(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _p(value) -> str:
    if value is None:
        return "—"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def sweep_records(document: dict) -> list[dict]:
    """jsonl: one record per term."""
    return list(as_document(document)["terms"])


def plan_records(document: dict) -> list[dict]:
    """jsonl of --dry-run: one record per planned item."""
    return list(document["items"])


def render_plan(document: dict):
    from rich.table import Table

    counts = document["counts"]
    table = Table(title=f"plan: {counts['planned']} items ({counts['unique']} unique), "
                        f"{counts['cached']} cached", title_justify="left")
    for column in ("template", "term", "seeds", "prompt", "cached"):
        table.add_column(column)
    rows: dict[tuple, dict] = {}
    for item in document["items"]:
        row = rows.setdefault((item["template"], item["term"]), {"seeds": [], "prompt": item["prompt"], "cached": 0})
        row["seeds"].append(str(item["seed"]))
        row["cached"] += item["cached"]
    for (template, term), row in rows.items():
        table.add_row(template, term or "(baseline)", ",".join(row["seeds"]), row["prompt"],
                      f"{row['cached']}/{len(row['seeds'])}")
    return table


def render_sweep(document: dict):
    document = as_document(document)
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    baseline = document.get("baseline", "")
    title = (f"{document['spec']['name']}: image drift from baseline "
             f"{baseline!r} (seed-to-seed spread {_num(document['summary']['baseline_spread'])})")
    table = Table(title=title, title_justify="left")
    for column, justify in (("term", "left"), ("pairs", "right"), ("centroid", "right"), ("paired", "right"),
                            ("p", "right"), ("p adj", "right"), ("text drift", "right"),
                            ("toward (shift)", "left"), ("failed", "right")):
        table.add_column(column, justify=justify)
    for term in document["terms"]:
        drift = term["image_drift"]
        top = [f"{row['probe']} {row['shift']:+.3f}{'*' if (row['p_adjusted'] or 1) < 0.05 else ''}"
               for row in term.get("probes", [])[:3]]
        table.add_row(term["term"], str(term["n_pairs"]), _num(drift["centroid"]), _num(drift["paired"]),
                      _p(drift.get("p_value")), _p(drift.get("p_adjusted")), _num(term["text_drift"]["measurer"]),
                      ", ".join(top), str(term["failed"]))
    parts = [table]
    counts = document["counts"]
    parts.append(Text(f"images: {counts['planned']} planned, {counts['generated']} generated, "
                      f"{counts['cached']} cached, {counts['failed']} failed, {counts['flagged']} flagged. "
                      "* = probe shift significant after Benjamini-Hochberg (q < 0.05)."))
    if document["provenance"].get("tiny"):
        parts.append(Text("TINY MODELS: random weights, these numbers mean nothing.", style="bold red"))
    return Group(*parts)
