"""``ldmprobe compare``: JSON Lines records, the 80-column table and compare.html."""

from __future__ import annotations

from ldmprobe.analysis.inference import format_p
from ldmprobe.render.emit import as_document
from ldmprobe.render.notes import summary_notes

#: How a verdict is shown in the table.
#: The table's width: it fits an 80-column terminal.
WIDTH = 80
VERDICT = {"better": "better", "worse": "WORSE", "no clear change": "-", "untested": "n/a"}


def _num(value, digits: int = 3, sign: str = "") -> str:
    """``digits`` significant digits, fixed-point between 1e-3 and 1e5 (no exponent there)."""
    import math

    if value is None:
        return "-"
    value = value or 0.0  # -0.0 prints "0", never "-0"
    if value == 0 or not 1e-3 <= abs(value) < 1e5:
        return f"{value:{sign}.{digits}g}"
    decimals = max(digits - 1 - math.floor(math.log10(abs(value))), 0)
    return f"{value:{sign}.{decimals}f}"


def _signed(value, digits: int = 3) -> str:
    return _num(value, digits, "+")


def _ci(row: dict, scale: float = 1.0) -> str:
    """The interval rounded at 2 significant digits of its half-width (both ends alike)."""
    import math

    if row.get("ci_low") is None or row.get("ci_high") is None:
        return "-"
    low, high = row["ci_low"] * scale, row["ci_high"] * scale
    half = (high - low) / 2
    decimals = max(1 - math.floor(math.log10(half)), 0) if half > 0 else 3
    return f"[{low:+.{decimals}f}, {high:+.{decimals}f}]"


def _scale(values) -> tuple[float, str]:
    """A power of 1000 that brings the largest |value| into [1, 1000), and its label."""
    import math

    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not finite:
        return 1.0, ""
    power = 3 * math.floor(math.log10(max(finite)) / 3)
    return 10.0 ** -power, ("" if power == 0 else f" (× 1e{power})")


def _scaled(value, scale: float, signed: bool = False) -> str:
    if value is None:
        return "-"
    return _signed(value * scale) if signed else _num(value * scale)


def _p(value, row: dict | None = None) -> str:
    """A p to the precision it has: a permutation p (``row`` given) at its Monte Carlo error."""
    if value is None:
        return "-"
    if row is None:
        return format_p(value, min_p=0.0, exact=True, n_resamples=0)
    return format_p(value, min_p=row["min_p"] or 0.0, exact=bool(row["exact"]), n_resamples=row["n_resamples"])


def compare_records(document) -> list[dict]:
    """jsonl: one flat record per (term, measure): the image drift, then each probe."""
    document = as_document(document)
    records = []
    for term in document["terms"]:
        records.append({"kind": "compare-row", "term": term["term"], "measure": "image_drift", "probe": None,
                        "n_pairs": term["n_pairs"], **term["drift"]})
        for row in term["probes"]:
            records.append({"kind": "compare-row", "term": term["term"], "measure": "probe_shift",
                            "n_pairs": term["n_pairs"], **row})
    from ldmprobe.render.compare_rates import rate_records

    return records + rate_records(document)


def _table(title: str, columns: tuple[str, ...]):
    """The compact 80-column layout: numbers never cut, terms and probes wrapped at spaces only."""
    from ldmprobe.render.layout import add_columns, compact_table

    table = compact_table(title)
    add_columns(table, columns, words=("term", "probe", "verdict"))
    return table


def _drift_table(document: dict):
    drifts = [t["drift"] for t in document["terms"]]
    scale, label = _scale([v for d in drifts for v in (d["drift_a"], d["drift_b"], d["difference"])])
    table = _table(f"image drift from the baseline{label}: run A, run B, B - A",
                   ("term", "pairs", "A", "B", "B - A", "95% CI", "p adj", "verdict"))
    for term, d in zip(document["terms"], drifts):
        table.add_row(term["term"], str(term["n_pairs"]), _scaled(d["drift_a"], scale), _scaled(d["drift_b"], scale),
                      _scaled(d["difference"], scale, True), _ci(d, scale), _p(d["p_adjusted"]),
                      VERDICT[d["verdict"]])
    return table


def _probe_table(document: dict):
    rows = [(t["term"], r) for t in document["terms"] for r in t["probes"] if r["verdict"] in ("better", "worse")]
    scale, label = _scale([v for _, r in rows for v in (r["shift_a"], r["shift_b"], r["difference"])])
    table = _table(f"probe shifts that changed{label}: run A, run B, B - A",
                   ("term", "probe", "A", "B", "B - A", "95% CI", "p adj", "verdict"))
    for term, r in rows:
        table.add_row(term, r["probe"], _scaled(r["shift_a"], scale, True), _scaled(r["shift_b"], scale, True),
                      _scaled(r["difference"], scale, True), _ci(r, scale), _p(r["p_adjusted"]),
                      VERDICT[r["verdict"]])
    return table


def _made(run: dict) -> str:
    """How a run was made: its pipeline and settings, or the embeddings file / image manifest it
    was computed from (no generator), with the file's own guidance / steps when it has them."""
    source = run.get("source") or {}
    settings = ", ".join(f"{k} {run[k]}" for k in ("steps", "guidance") if run.get(k) is not None)
    if source.get("kind") in ("embeddings", "images"):
        what = "embeddings file" if source["kind"] == "embeddings" else "image manifest"
        return f"from the {what} {source.get('path')}" + (f", {settings}" if settings else "")
    return f"pipeline {run.get('pipeline')}" + (f", {settings}" if settings else "")


def _dash(value) -> str:
    return "–" if value is None else str(value)


def measured_by(document: dict) -> str:
    """The measurer's name, or for runs from embeddings files the model that made the files."""
    spec = (document.get("measurer") or {}).get("spec")
    if spec is not None:
        return str(spec)
    files = dict.fromkeys(str((run.get("source") or {}).get("path")) for run in document["runs"].values())
    return f"the model that made the embeddings file{'s' if len(files) > 1 else ''} {' and '.join(files)}"


def _run_line(label: str, run: dict) -> str:
    return f"{label}: {run['path']} ({_made(run)}, {run['n_usable']}/{run['n_items']} usable images)"


def render_compare(document):
    """Per-term drift change, the probe shifts that changed, and what the numbers mean."""
    from rich.console import Group
    from rich.constrain import Constrain
    from rich.text import Text

    document = as_document(document)
    alpha = document["summary"]["alpha"]
    paired = document["summary"].get("paired", True)
    parts = [Text(f"{document['spec']['name']}: run B compared with run A, "
                  f"{'image by image' if paired else 'unpaired (other seeds)'} "
                  f"(measured by {measured_by(document)})"),
             Text(_run_line("A", document["runs"]["a"])), Text(_run_line("B", document["runs"]["b"]))]
    if paired:
        parts.append(_drift_table(document))
        changed = sum(r["verdict"] in ("better", "worse") for t in document["terms"] for r in t["probes"])
        tested = sum(len(t["probes"]) for t in document["terms"])
        if changed:
            parts.append(_probe_table(document))
        parts.append(Text(f"{changed} of {tested} (term, probe) shifts changed clearly (BH-adjusted p < {alpha}); "
                          "--format json lists them all."))
        parts.append(Text("better: moved less in B (drift smaller, or |shift| smaller); WORSE: moved more."))
    from ldmprobe.render.compare_rates import rate_parts

    parts += rate_parts(document)
    for note in summary_notes(document["summary"]):
        parts.append(Text(f"note: {note}", style="yellow"))
    from ldmprobe.render.sweep import caveat_lines

    parts += caveat_lines(document["provenance"])
    return Constrain(Group(*parts), width=WIDTH)


# ----------------------------------------------------------------------------- compare.html


def compare_html(document) -> str:
    """A standalone page (``templates/compare.html.j2``): the two runs, the drift changes, every probe change."""
    from ldmprobe.render.html import render

    document = as_document(document)
    terms = document["terms"]
    ds, drift_label = _scale([v for t in terms for v in (t["drift"]["drift_a"], t["drift"]["drift_b"])])
    ps, probe_label = _scale([v for t in terms for r in t["probes"] for v in (r["shift_a"], r["shift_b"])])
    drift = [([t["term"], t["n_pairs"], _scaled(d["drift_a"], ds), _scaled(d["drift_b"], ds),
               _scaled(d["difference"], ds, True), _ci(d, ds), _p(d["p_value"]), _p(d["p_adjusted"]),
               _p(d["p_fixed"], d)], d["verdict"]) for t in terms for d in [t["drift"]]]
    probes = [([t["term"], r["probe"], _scaled(r["shift_a"], ps, True), _scaled(r["shift_b"], ps, True),
                _scaled(r["difference"], ps, True), _ci(r, ps), _p(r["p_value"]), _p(r["p_adjusted"]),
                _p(r["p_fixed"], r)], r["verdict"]) for t in terms for r in t["probes"]]
    runs = [([label, run["path"], _made(run), _dash(run["steps"]), _dash(run["guidance"]), _dash(run["dtype"]),
              f"{run['n_usable']}/{run['n_items']}"], None)
            for label, run in (("A", document["runs"]["a"]), ("B", document["runs"]["b"]))]
    from ldmprobe.render.compare_rates import rate_html_rows

    return render("compare.html.j2", doc=document, runs=runs, measured_by=measured_by(document), drift=drift,
                  probes=probes, drift_label=drift_label,
                  probe_label=probe_label, first=terms[0] if terms else None, notes=summary_notes(document["summary"]),
                  **rate_html_rows(document))
