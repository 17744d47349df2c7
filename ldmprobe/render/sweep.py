"""Tables for sweeps: the plan (--dry-run) and the per-term drift ranking."""

from __future__ import annotations

from ldmprobe.analysis.inference import format_p
from ldmprobe.render.emit import as_document
from ldmprobe.render.notes import summary_notes


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

    parts = [_drift_table(document), _Fitted(lambda: _probe_table(document),
                                              lambda: _probe_table(document, text_z=False))]
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
    for message in summary_notes(summary):
        parts.append(Text(f"note: {message}", style="yellow"))
    if document["provenance"].get("tiny"):
        parts.append(Text("TINY MODELS: random weights, these numbers mean nothing.", style="bold red"))
    if document["provenance"].get("reference_world"):
        parts.append(Text("REFERENCE WORLD: a small model trained on synthetic pictures with planted "
                          "associations; these numbers are true of that world, not of any real model.", style="bold"))
    return Group(*parts)


def _table(title: str):
    """A compact table for 80 columns: a rule under the header, one space between columns."""
    from rich import box
    from rich.table import Table

    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False,
                 collapse_padding=True,
                 show_edge=False)


def _columns(table, columns) -> None:
    """Numbers never wrap or shrink (``no_wrap``); words wrap at spaces, never cut (rich measures a
    words column's minimum as its longest word). No ``min_width`` on the words column: with one,
    rich 15 sized the columns for 80 but drew the words column narrower and cut the last number
    column (``5.99/5.55`` printed ``5.99/5.5``; tests/test_trust_render.py, the "widest" case)."""
    for name in columns:
        words = name in ("term", "probe")
        table.add_column(name, justify="left" if words else "right", no_wrap=not words, overflow="fold")


def _z(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def _drift_table(document: dict):
    baseline = document.get("baseline", "")
    controls = document["summary"].get("controls") or []
    versus = f"vs {len(controls)} controls" if controls else "vs pairs: the wording changed the images"
    title = (f"{document['spec']['name']}: image drift from baseline {baseline!r}\n"
             f"(seed-to-seed spread {_num(document['summary']['baseline_spread'])}; p {versus})")
    table = _table(title)
    failed = any(term["failed"] for term in document["terms"])
    ratio = ("×ctrl",) if controls else ()
    _columns(table, ("term", "pairs", "drift", "95% CI", *ratio, "p", "p adj", "p pairs", "text",
                     *(("failed",) if failed else ())))
    for term in document["terms"]:
        drift = term["image_drift"]
        table.add_row(term["term"], str(term["n_pairs"]), _num(drift.get("estimate"), 3), _ci(drift),
                      *((_num(drift.get("controls_ratio"), 3),) if controls else ()), _p(drift.get("p_value"), drift),
                      _p(drift.get("p_adjusted")), _p(drift.get("p_pairs")),
                      _num(term["text_drift"]["measurer"], 3), *((str(term["failed"]),) if failed else ()))
    table.caption = (("×ctrl: drift over the controls' median; " if controls else "") + "p pairs: sign flips within pairs; "
                     "text: the prompts' own drift (measurer)")
    table.caption_justify = "left"
    return table


def _needed_width(table) -> int:
    """Columns this table needs to print every number whole and every word unbroken: number
    columns at their widest cell, words columns at their longest word, one padding and one rule
    space between columns (the layout of ``_table``)."""
    from rich.cells import cell_len

    widths = []
    for column in table.columns:
        cells = [str(column.header), *(str(c) for c in column.cells)]
        if column.no_wrap:
            widths.append(max(cell_len(c) for c in cells))
        else:
            widths.append(max((cell_len(w) for c in cells for w in c.split()), default=1))
    return sum(widths) + 2 * (len(widths) - 1)


class _Fitted:
    """The first of several tables (widest first) that fits the console's width, else the last:
    a narrow terminal drops a column rather than cutting a number or a word."""

    def __init__(self, *builders):
        self.builders = builders

    def __rich_console__(self, console, options):
        for build in self.builders:  # built one at a time: the narrower ones only when needed
            table = build()
            if _needed_width(table) <= options.max_width:
                break
        yield table


def _probe_table(document: dict, text_z: bool = True):
    from rich.text import Text

    title = ("probe shifts (z: among the shifts toward the vocabulary's words; p controls in the JSON)" if text_z
             else "probe shifts (z: the image shift among the shifts toward the vocabulary's words; text z and "
                  "p controls in the JSON)")
    table = _table(title)
    _columns(table, ("probe", "shift", "95% CI", "p", "p adj", "p fixed", "z img/txt" if text_z else "z img"))
    for term in document["terms"]:
        table.add_row(Text(term["term"], style="bold underline"), end_section=False)
        probes = term.get("probes", [])
        for i, row in enumerate(probes):
            mark = "*" if (row["p_adjusted"] if row["p_adjusted"] is not None else 1) < 0.05 else ""
            z = f"{_z(row.get('image_z'))}/{_z(row.get('text_z'))}" if text_z else _z(row.get("image_z"))
            table.add_row(row["probe"], f"{row['shift']:+.3g}{mark}", _ci(row), _p(row["p_value"]),
                          _p(row["p_adjusted"]), _p(row["p_fixed"], row), z, end_section=i == len(probes) - 1)
    return table
