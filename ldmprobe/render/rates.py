"""The rates table (80 columns): per attribute group, each term's share of images per option,
and the rates that differ from the baseline or from the reference, with their intervals."""

from __future__ import annotations

from ldmprobe.render.layout import shrinking_table

ALPHA = 0.05


def _entries(document: dict) -> list[tuple[str, list[dict], dict | None]]:
    """(label, rate rows, diversity) for the baseline, the terms and the controls that have rates."""
    out = []
    base = document.get("baseline_result")
    if base:
        out.append((f"{base['term'] or '(baseline)'}", base.get("rates") or [], base.get("diversity")))
    for term in [*document.get("terms", []), *document.get("controls", [])]:
        if term.get("rates"):
            out.append((term["term"], term["rates"], term.get("diversity")))
    return out


def _f(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _star(row: dict) -> str:
    p = row.get("p_adjusted")
    return "*" if p is not None and p < ALPHA else ""


def rates_parts(document: dict) -> list:
    """Renderables for the terminal (nothing when the run has no attribute groups)."""
    from rich.text import Text

    entries = _entries(document)
    if not entries:
        return []
    groups = list(dict.fromkeys(r["group"] for _, rows, _ in entries for r in rows))
    corrected = any(r.get("corrected") for _, rows, _ in entries for r in rows)
    kind = "corrected" if corrected else "raw labels"
    parts = []
    for group in groups:
        options = list(dict.fromkeys(r["option"] for _, rows, _ in entries for r in rows if r["group"] == group))
        columns = ("term", *options, "eff.n")
        table_rows = []
        for label, rows, diversity in entries:
            by_option = {r["option"]: r for r in rows if r["group"] == group}
            eff = next((g for g in (diversity or {}).get("groups", []) if g["group"] == group), None)
            mark = {"narrows": "↓", "widens": "↑"}.get((eff or {}).get("versus_baseline") or "", "")
            table_rows.append((label, *(_f(by_option[o]["rate"]) + _star(by_option[o]) if o in by_option else "—"
                                        for o in options),
                               (_f(eff["effective_number"], 1) + mark) if eff else "—"))
        parts.append(shrinking_table(f"rates: {group} ({kind})", columns, table_rows,
                                     words=("term",)))
    parts.append(_notable(entries))
    how = ("corrected for the measurer's errors through the calibration set" if corrected else
           "raw zero-shot labels, not corrected for the measurer's errors")
    parts.append(Text(f"rates: shares of images (0-1), {how}; * = differs from the baseline (paired on template and seed, "
                      "BH q < 0.05); eff.n = exp(entropy) of the rates, the effective number of options "
                      "(↓/↑: fewer/more than the baseline's, bootstrap interval over templates and seeds)."))
    parts += _diversity_lines(entries)
    return parts


def _notable(entries):
    """Rates that differ from the baseline (BH q < 0.05) or whose interval excludes the reference."""
    rows = []
    for label, rates, _ in entries:
        for r in rates:
            differs = bool(_star(r))
            ref = r.get("reference_rate")
            off_ref = ref is not None and r.get("ci_low") is not None and not r["ci_low"] <= ref <= r["ci_high"]
            if differs or off_ref:
                amp = r.get("amplification")
                rows.append((label, f"{r['group']}:{r['option']}", _f(r["rate"]),
                             f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]", _f(r.get("baseline_rate")),
                             "—" if ref is None else f"{ref:.3g}",  # as the spec gives it (0.225, not 0.23)
                             "—" if amp is None else f"{amp:.2f}x"))
    if not rows:
        from rich.text import Text

        return Text("no rate differs from the baseline (BH q < 0.05) or from its reference rate.")
    return shrinking_table("rates that differ from the baseline or the reference (95% CI: templates and seeds "
                           "random)", ("term", "option", "rate", "95% CI", "base", "ref", "x ref"), rows,
                           drops=((), ("x ref",), ("x ref", "base")), words=("term", "option"))


def _diversity_lines(entries) -> list:
    from rich.text import Text

    lines, note = [], None
    for label, _, diversity in entries:
        if not diversity or diversity.get("vendi") is None:
            continue
        text = f"{label}: Vendi {_f(diversity['vendi'])}"
        if diversity.get("ci_low") is not None:
            text += f" [{_f(diversity['ci_low'])}, {_f(diversity['ci_high'])}]"
        if diversity.get("baseline_vendi") is not None:
            text += f" vs baseline {_f(diversity['baseline_vendi'])}"
            text += (f" ({diversity['verdict']})" if diversity.get("verdict") else
                     " (no verdict: too few cells)" if diversity.get("verdict_note") else " (no clear difference)")
            note = note or diversity.get("verdict_note")
        narrowed = [g["group"] for g in diversity.get("groups", []) if g.get("versus_reference") == "narrows"]
        if narrowed:
            text += f"; narrower than the reference in {', '.join(narrowed)}"
        lines.append(text)
    if lines:
        lines = [Text("diversity (Vendi score: effective number of distinct images):")] + \
                [Text("  " + line) for line in lines] + ([Text("  " + note)] if note else [])
    return lines


# ----------------------------------------------------------------------------- trends over guidance

#: Trend rows the terminal shows at most (every row is in the JSON).
MAX_TREND_ROWS = 20


def shown_trends(document: dict, limit: int = MAX_TREND_ROWS) -> tuple[list[dict], bool]:
    """(the trends to show, whether they are the significant ones): those whose slope differs
    from 0 (BH q < 0.05), largest |slope| first; else the largest slopes, as the largest."""
    trends = [t for t in document.get("trends") or () if t.get("slope") is not None]
    significant = [t for t in trends if _star(t)]
    chosen = significant or [t for t in trends if t["slope"] != 0]
    chosen.sort(key=lambda t: -abs(t["slope"]))
    return chosen[:limit], bool(significant)


def _label(term: str) -> str:
    return term or "(baseline)"


def trends_parts(document: dict) -> list:
    """The trend table for the terminal (nothing for a single-level sweep or without attributes)."""
    from rich.text import Text

    from ldmprobe.render.layout import number_format

    if not document.get("levels"):
        return []
    trends = [t for t in document.get("trends") or () if t.get("slope") is not None]
    if not trends:
        return [Text("trend over guidance: none (the levels differ only in steps, or the spec has no [attributes]).")]
    shown, significant = shown_trends(document)
    guidance = "/".join(f"{g:g}" for g in trends[0]["guidance"])
    if not shown:
        return [Text(f"trend over guidance {guidance}: every rate is the same at every level (slope 0).")]
    # one format for the slopes and their interval ends (2 significant digits of the largest slope)
    slope = ends = number_format([t["slope"] for t in shown], digits=2, signed=True)
    rows = [(_label(t["term"]), f"{t['group']}:{t['option']}", "→".join(_f(r) for r in t.get("rates") or ()),
             slope(t["slope"]) + _star(t), f"[{ends(t['ci_low'])}, {ends(t['ci_high'])}]",
             _f(t.get("p_adjusted"), 3)) for t in shown]
    steps = sorted({t.get("steps") for t in trends if t.get("steps") is not None})
    title = f"trend over guidance {guidance}" + ("" if significant else ": none differs from 0; the largest slopes")
    parts = [shrinking_table(title, ("term", "option", "rates", "slope", "95% CI", "p adj"), rows,
                             drops=((), ("p adj",), ("p adj", "rates")), words=("term", "option"),
                             caption=lambda dropped: f"{' and '.join(dropped)}: in the JSON" if dropped else None)]
    more = len([t for t in trends if _star(t)]) - len(shown)
    parts.append(Text(
        "trend: slope of the rate (share of images) per unit of guidance, from each template and seed's "
        f"slope over the levels (templates and seeds random; * = BH q < 0.05 across a group's options); rates at "
        f"each level{', steps ' + ', '.join(map(str, steps)) if steps else ''}; the top-level rates are the first "
        "level's."
        + (f" {more} more in the JSON (trends)." if more > 0 else "")))
    return parts
