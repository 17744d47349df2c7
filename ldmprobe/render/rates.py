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
                             f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]", _f(r.get("baseline_rate")), _f(ref),
                             "—" if amp is None else f"{amp:.2f}x"))
    if not rows:
        from rich.text import Text

        return Text("no rate differs from the baseline (BH q < 0.05) or from its reference rate.")
    return shrinking_table("rates that differ from the baseline or the reference (95% CI: templates and seeds "
                           "random)", ("term", "option", "rate", "95% CI", "base", "ref", "x ref"), rows,
                           drops=((), ("x ref",), ("x ref", "base")), words=("term", "option"))


def _diversity_lines(entries) -> list:
    from rich.text import Text

    lines = []
    for label, _, diversity in entries:
        if not diversity or diversity.get("vendi") is None:
            continue
        text = f"{label}: Vendi {_f(diversity['vendi'])}"
        if diversity.get("ci_low") is not None:
            text += f" [{_f(diversity['ci_low'])}, {_f(diversity['ci_high'])}]"
        if diversity.get("baseline_vendi") is not None:
            text += f" vs baseline {_f(diversity['baseline_vendi'])}"
            text += f" ({diversity['verdict']})" if diversity.get("verdict") else " (no clear difference)"
        narrowed = [g["group"] for g in diversity.get("groups", []) if g.get("versus_reference") == "narrows"]
        if narrowed:
            text += f"; narrower than the reference in {', '.join(narrowed)}"
        lines.append(text)
    if lines:
        lines = [Text("diversity (Vendi score: effective number of distinct images):")] + \
                [Text("  " + line) for line in lines]
    return lines
