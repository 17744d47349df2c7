"""Tables for sweeps: the plan (--dry-run) and the per-term drift ranking."""

from __future__ import annotations

from ldmprobe.analysis.inference import format_p
from ldmprobe.render.emit import as_document


def _num(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _p(value, row: dict | None = None) -> str:
    """A p printed to the precision it has ("≤ floor" at its floor); adjusted p's plainly."""
    if value is None:
        return "—"
    if row is None or row.get("min_p") is None:
        return format_p(value, min_p=0.0, exact=True, n_resamples=0)
    return format_p(value, min_p=row["min_p"], exact=bool(row.get("exact")), n_resamples=row.get("n_resamples") or 0)


def _ci(drift: dict) -> str:
    if drift.get("ci_low") is None:
        return "—"
    return f"[{_num(drift['ci_low'], 3)}, {_num(drift['ci_high'], 3)}]"


def sweep_records(document: dict) -> list[dict]:
    """jsonl: one record per term, with the tiny-model flag (like the other commands' records)."""
    document = as_document(document)
    tiny = bool(document["provenance"].get("tiny"))
    return [{**term, "tiny": tiny} for term in document["terms"]]


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
    from rich.text import Text

    parts = [_drift_table(document), _probe_table(document)]
    counts = document["counts"]
    parts.append(Text(f"images: {counts['planned']} planned, {counts['generated']} generated, "
                      f"{counts['cached']} cached, {counts['failed']} failed, {counts['flagged']} flagged. "
                      "p: templates and seeds as random factors; p fixed: these templates and seeds only. "
                      "* = probe shift significant after Benjamini-Hochberg (q < 0.05)."))
    summary = document["summary"]
    excluded = {k or "(baseline)": v for k, v in (summary.get("excluded") or {}).items() if v}
    if excluded:
        parts.append(Text("excluded (non-finite or zero-norm embeddings): "
                          + ", ".join(f"{k} {v}" for k, v in excluded.items()), style="yellow"))
    for message in [*summary.get("notes", ()), *((summary.get("design") or {}).get("messages", ()))]:
        parts.append(Text(f"note: {message}", style="yellow"))
    if document["provenance"].get("tiny"):
        parts.append(Text("TINY MODELS: random weights, these numbers mean nothing.", style="bold red"))
    if document["provenance"].get("reference_world"):
        parts.append(Text("REFERENCE WORLD: a small model trained on synthetic pictures with planted "
                          "associations; these numbers are true of that world, not of any real model.", style="bold"))
    return Group(*parts)


def _drift_table(document: dict):
    from rich.table import Table

    baseline = document.get("baseline", "")
    controls = document["summary"].get("controls") or []
    versus = f"vs {len(controls)} controls" if controls else "vs pairs: the wording changed the images"
    title = (f"{document['spec']['name']}: image drift from baseline {baseline!r} "
             f"(seed-to-seed spread {_num(document['summary']['baseline_spread'])}; p {versus})")
    table = Table(title=title, title_justify="left")
    for column, justify in (("term", "left"), ("pairs", "right"), ("drift", "right"), ("95% CI", "right"),
                            ("× controls", "right"), ("p", "right"), ("p adj", "right"), ("p pairs", "right"),
                            ("text drift", "right"), ("toward (shift)", "left"), ("failed", "right")):
        table.add_column(column, justify=justify)
    for term in document["terms"]:
        drift = term["image_drift"]
        top = [f"{row['probe']} {row['shift']:+.3f}{'*' if (row['p_adjusted'] or 1) < 0.05 else ''}"
               for row in term.get("probes", [])[:3]]
        table.add_row(term["term"], str(term["n_pairs"]), _num(drift.get("estimate")), _ci(drift),
                      _num(drift.get("controls_ratio"), 3), _p(drift.get("p_value"), drift),
                      _p(drift.get("p_adjusted")), _p(drift.get("p_pairs")), _num(term["text_drift"]["measurer"]),
                      ", ".join(top), str(term["failed"]))
    return table


def _probe_table(document: dict):
    from rich.table import Table

    table = Table(title="probe shifts (z: among the shifts toward the vocabulary's words)", title_justify="left")
    for column in ("term", "probe", "shift", "95% CI", "p", "p adj", "p fixed", "p controls", "image z", "text z"):
        table.add_column(column, justify="left" if column in ("term", "probe") else "right")
    for term in document["terms"]:
        for row in term.get("probes", []):
            table.add_row(term["term"], row["probe"], f"{row['shift']:+.4f}", _ci(row), _p(row["p_value"]),
                          _p(row["p_adjusted"]), _p(row["p_fixed"], row), _p(row.get("p_controls")),
                          _num(row.get("image_z"), 3), _num(row.get("text_z"), 3))
    return table
