"""The rates section of report.html (``templates/rates.html.j2``)."""

from __future__ import annotations

from ldmprobe.render.rates import _entries, _f, _star


def rates_html(document: dict) -> list[str]:
    """HTML parts (nothing when the run has no attribute groups)."""
    from ldmprobe.render.html import render

    entries = _entries(document)
    if not entries:
        return []
    corrected = any(r.get("corrected") for _, rows, _ in entries for r in rows)
    groups = list(dict.fromkeys(r["group"] for _, rows, _ in entries for r in rows))
    return [render("rates.html.j2", entries=entries, corrected=corrected, groups=groups, f=_f, star=_star)]
