"""``ldmprobe compare``: the attribute rates and diversity B − A, as table parts, records and
compare.html rows (see ``render.compare`` for the rest of the comparison)."""

from __future__ import annotations

RATE_VERDICT = {"higher": "HIGHER", "lower": "LOWER", "no clear change": "-", "untested": "n/a"}


def _share(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _signed(value) -> str:
    return "-" if value is None else f"{(value or 0.0):+.2f}"


def _interval(row: dict) -> str:
    if row.get("ci_low") is None or row.get("ci_high") is None:
        return "-"
    return f"[{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"


def _term(term: str) -> str:
    return term or "(baseline)"


def _p(value) -> str:
    from ldmprobe.analysis.inference import format_p

    return "-" if value is None else format_p(value, min_p=0.0, exact=True, n_resamples=0)


def _table(title: str, columns: tuple[str, ...]):
    """The compact 80-column layout (numbers never cut; words wrapped at spaces only)."""
    from ldmprobe.render.layout import add_columns, compact_table

    table = compact_table(title)
    add_columns(table, columns, words=("term", "option", "verdict", "options: B - A"))
    return table


def rate_records(document: dict) -> list[dict]:
    """jsonl: one record per (term, group, option) rate change and per term's diversity change."""
    out = [{"kind": "compare-rate", **row} for row in document.get("rates") or []]
    return out + [{"kind": "compare-diversity", **row} for row in document.get("diversity") or []]


def rate_parts(document: dict) -> list:
    """The rate changes that are clear (BH-adjusted), the diversity changes and a count line."""
    from rich.text import Text

    rates, diversity = document.get("rates") or [], document.get("diversity") or []
    if not rates and not diversity:
        return []
    alpha = document["summary"]["alpha"]
    parts = []
    changed = [r for r in rates if r["verdict"] in ("higher", "lower")]
    kind = "corrected " if any(r["corrected"] for r in rates) else ""
    how = "paired by cell" if document["summary"].get("paired", True) else "unpaired"
    if changed:
        table = _table(f"{kind}rates that changed (share of images, {how}): run A, run B, B - A",
                       ("term", "option", "A", "B", "B - A", "95% CI", "p adj", "verdict"))
        for r in changed:
            table.add_row(_term(r["term"]), f"{r['group']} {r['option']}", _share(r["rate_a"]), _share(r["rate_b"]),
                          _signed(r["difference"]), _interval(r), _p(r["p_adjusted"]), RATE_VERDICT[r["verdict"]])
        parts.append(table)
    parts.append(Text(f"{len(changed)} of {len(rates)} (term, option) rates changed clearly (BH-adjusted p < "
                      f"{alpha} across each group's options); --format json lists them all."))
    if diversity:
        table = _table(f"diversity (Vendi score: effective number of distinct images, {how}): run A, run B, B - A",
                       ("term", "A", "B", "B - A", "95% CI", "verdict", "options: B - A"))
        for d in diversity:
            groups = ", ".join(f"{g['group']} {_signed(g['difference'])}{' ' + g['verdict'] if g['verdict'] else ''}"
                               for g in d["groups"])
            table.add_row(_term(d["term"]), _share(d["vendi_a"]), _share(d["vendi_b"]), _signed(d["difference"]),
                          _interval(d), d["verdict"] or "-", groups)
        parts.append(table)
        parts.append(Text("options: B - A in each group's effective number of options (exp of the entropy of the "
                          "rates); narrows / widens only where the interval excludes 0."))
        note = next((d.get("verdict_note") for d in diversity if d.get("verdict_note")), None)
        if note:
            parts.append(Text(f"no verdicts: {note}."))
    return parts


def rate_html_rows(document: dict) -> dict:
    """compare.html's rate and diversity tables: rows of cells and a verdict ("-" for no clear
    change). Whether the rates are corrected is one sentence when it holds for every row, else
    a column."""
    rows = document.get("rates") or []
    kinds = {bool(r["corrected"]) for r in rows}
    mixed = len(kinds) > 1
    rates = [([_term(r["term"]), r["group"], r["option"], _share(r["rate_a"]), _share(r["rate_b"]),
               _signed(r["difference"]), _interval(r), _p(r["p_value"]), _p(r["p_adjusted"])]
              + (["corrected" if r["corrected"] else "raw"] if mixed else []),
              {"no clear change": "-"}.get(r["verdict"], r["verdict"])) for r in rows]
    diversity = []
    for d in document.get("diversity") or []:
        diversity.append(([_term(d["term"]), "Vendi score", _share(d["vendi_a"]), _share(d["vendi_b"]),
                           _signed(d["difference"]), _interval(d)], d["verdict"] or "-"))
        diversity += [([_term(d["term"]), f"{g['group']}: effective options", _share(g["effective_number_a"]),
                        _share(g["effective_number_b"]), _signed(g["difference"]), _interval(g)], g["verdict"] or "-")
                      for g in d["groups"]]
    corrected = None if mixed or not kinds else kinds.pop()
    return {"rates": rates, "diversity": diversity, "rates_corrected": corrected}
