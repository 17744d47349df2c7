"""The rates section of report.html (``templates/rates.html.j2``), with the trends over guidance
of a several-level sweep."""

from __future__ import annotations

from collections.abc import Callable

from ldmprobe.render.rates import _entries, _f, _star, shown_trends


STRIP_IMAGES = 8


def diversity_strip(document: dict, items: list[dict]) -> list[tuple[str, float, list[str]]]:
    """The least and the most diverse of the baseline, terms and controls (by Vendi score), each
    with up to :data:`STRIP_IMAGES` of its images in the run folder, one per template and seed
    in turn, so the strip shows what "narrower" looks like."""
    scored = []
    base = document.get("baseline_result") or {}
    for entry in [base, *document.get("terms", []), *document.get("controls", [])]:
        vendi = (entry.get("diversity") or {}).get("vendi")
        if entry and vendi is not None:
            scored.append((vendi, entry.get("term", "")))
    if len(scored) < 2:
        return []
    scored.sort()
    out = []
    for vendi, term in (scored[0], scored[-1]):
        by_template: dict[str, list[str]] = {}
        for item in items:
            if item.get("term", "") == term and item.get("image"):
                by_template.setdefault(item["template"], []).append(item["image"])
        rows = list(by_template.values())
        images = [row[k] for k in range(max(map(len, rows), default=0)) for row in rows if k < len(row)]
        out.append((term or "(baseline)", vendi, images[:STRIP_IMAGES]))
    return out


def rates_html(document: dict, trend_plot: Callable[[str, list[dict]], str] | None = None,
               items: list[dict] | None = None) -> list[str]:
    """HTML parts (nothing when the run has no attribute groups). ``trend_plot(term, trends)``:
    a rate-against-guidance figure (SVG markup) of one term's shown trends; ``items``: the run's
    items.jsonl lines (for the diversity strip)."""
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
                   levels=document.get("levels") or [], trends=trends, significant=significant, trend_plots=plots,
                   strip=diversity_strip(document, items or []))]
