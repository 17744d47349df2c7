"""The rates section of report.html: per attribute group, each term's share of images per option
with its interval, the baseline's and the reference's, and each term's diversity."""

from __future__ import annotations

from html import escape

from ldmprobe.render.rates import _entries, _f, _star


def rates_html(document: dict) -> list[str]:
    """HTML parts (nothing when the run has no attribute groups)."""
    entries = _entries(document)
    if not entries:
        return []
    corrected = any(r.get("corrected") for _, rows, _ in entries for r in rows)
    parts = ['<h2 id="rates">Rates</h2>',
             '<p class="muted">Share of each term\'s images that the measurer labels with each option ('
             + ("corrected for the measurer's errors through the calibration set" if corrected else
                "raw zero-shot labels: not corrected for the measurer's errors")
             + "). 95% intervals treat templates and seeds as random factors; * marks a rate that differs from "
             "the baseline's (paired on template and seed, Benjamini-Hochberg q &lt; 0.05); x ref is the rate over "
             "the spec's reference rate.</p>"]
    groups = list(dict.fromkeys(r["group"] for _, rows, _ in entries for r in rows))
    for group in groups:
        parts.append(f"<h3>{escape(group)}</h3><table><tr><th>term</th><th>option</th><th>rate</th><th>95% CI</th>"
                     "<th>baseline</th><th>difference</th><th>p adj</th><th>reference</th><th>x ref</th></tr>")
        for label, rows, _ in entries:
            for r in (r for r in rows if r["group"] == group):
                hit = ' class="hit"' if _star(r) else ""
                amp = r.get("amplification")
                parts.append(
                    f"<tr{hit}><td>{escape(label)}</td><td>{escape(r['option'])}</td><td class=num>{_f(r['rate'])}"
                    f"{_star(r)}</td><td class=num>[{_f(r['ci_low'])}, {_f(r['ci_high'])}]</td>"
                    f"<td class=num>{_f(r.get('baseline_rate'))}</td><td class=num>{_signed(r.get('difference'))}</td>"
                    f"<td class=num>{_f(r.get('p_adjusted'), 3)}</td><td class=num>{_f(r.get('reference_rate'))}</td>"
                    f"<td class=num>{'—' if amp is None else f'{amp:.2f}'}</td></tr>")
        parts.append("</table>")
    parts.append(_diversity_table(entries))
    return parts


def _signed(value) -> str:
    return "—" if value is None else f"{value:+.2f}"


def _diversity_table(entries) -> str:
    rows = ["<h3>Diversity</h3><p class=\"muted\">Vendi score: the effective number of distinct images (exp of the "
            "entropy of the similarity matrix's eigenvalues); effective number: exp(entropy) of a group's rates "
            "(1 = one option only). Intervals resample templates and seeds; 'narrows'/'widens' only where the "
            "interval of the difference excludes 0 (or the reference's figure lies outside the interval).</p>",
            "<table><tr><th>term</th><th>Vendi</th><th>95% CI</th><th>baseline</th><th>verdict</th>"
            "<th>effective number per group (vs baseline / reference)</th></tr>"]
    for label, _, d in entries:
        if not d:
            continue
        groups = "; ".join(
            f"{escape(g['group'])} {_f(g.get('effective_number'))} [{_f(g.get('ci_low'))}, {_f(g.get('ci_high'))}]"
            + (f" vs {_f(g['baseline_effective_number'])}" if g.get("baseline_effective_number") is not None else "")
            + (f" / ref {_f(g['reference_effective_number'])}" if g.get("reference_effective_number") is not None
               else "")
            + (f" <b>{g['versus_baseline']}</b>" if g.get("versus_baseline") else "")
            + (f" <b>{g['versus_reference']} vs reference</b>" if g.get("versus_reference") else "")
            for g in d.get("groups", []))
        rows.append(f"<tr><td>{escape(label)}</td><td class=num>{_f(d.get('vendi'))}</td>"
                    f"<td class=num>[{_f(d.get('ci_low'))}, {_f(d.get('ci_high'))}]</td>"
                    f"<td class=num>{_f(d.get('baseline_vendi'))}</td><td>{d.get('verdict') or '—'}</td>"
                    f"<td>{groups}</td></tr>")
    rows.append("</table>")
    return "".join(rows)
