"""The rates section of report.html (``templates/rates.html.j2``), with the trends over guidance
of a several-level sweep."""

from __future__ import annotations

from collections.abc import Callable

from ldmprobe.render.rates import _entries, _f, _star, shown_trends


def rates_html(document: dict, trend_plot: Callable[[str, list[dict]], str] | None = None) -> list[str]:
    """HTML parts (nothing when the run has no attribute groups). ``trend_plot(term, trends)``:
    a rate-against-guidance figure (SVG markup) of one term's shown trends."""
    from ldmprobe.render.html import render, safe

    entries = _entries(document)
    if not entries:
        return []
    corrected = any(r.get("corrected") for _, rows, _ in entries for r in rows)
    groups = list(dict.fromkeys(r["group"] for _, rows, _ in entries for r in rows))
    trends, significant = shown_trends(document) if document.get("levels") else ([], False)
    plots = []
    if trend_plot is not None:
        for term in dict.fromkeys(t["term"] for t in trends):
            plots.append((term or "(baseline)", safe(trend_plot(term, [t for t in trends if t["term"] == term]))))
    return [render("rates.html.j2", entries=entries, corrected=corrected, groups=groups, f=_f, star=_star,
                   levels=document.get("levels") or [], trends=trends, significant=significant, trend_plots=plots)]
