"""What report.html shows, as plain values for its templates (``templates/report*.html.j2``):
the number formats, the paired images, the thumbnails, the configuration flattened to rows."""

from __future__ import annotations

from ldmprobe.render.notes import summary_notes
from ldmprobe.render.sweep import _p, _padj  # the terminal table's p formatters: one rule for both

ALPHA = 0.05
PAIR_TEMPLATES = 2  # templates shown open in a term's paired images (the rest under "all templates")


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _g(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _signed(value) -> str:
    return "—" if value is None else f"{value:+.4g}"


def _ci(x: dict) -> str:
    if x.get("ci_low") is None:
        return "—"
    return f"[{x['ci_low']:+.4g}, {x['ci_high']:+.4g}]"


def _p_is(text: str) -> str:
    """ "p = 0.03", or "p ≤ 0.34" where the p is at its floor."""
    return f"p {text}" if text.startswith(("≤", "<")) else f"p = {text}"


# The templates' number formats, and the level a highlighted row passes.
FORMATS = {"fmt": _fmt, "g": _g, "signed": _signed, "ci": _ci, "p": _p, "padj": _padj, "p_is": _p_is, "alpha": ALPHA}


def term_sentence(document: dict, t: dict) -> str:
    """One sentence (HTML) for a term: how far the images moved, toward what, how sure."""
    from ldmprobe.render.html import macros

    return str(macros("report_parts.html.j2", **FORMATS).term_sentence(t))


def image_cells(items: list[dict]) -> dict[tuple, str]:
    """(template, term, seed) -> the image's path in the run folder, for the images it holds."""
    return {(i["template"], i["term"], i["seed"]): i["image"] for i in items if i.get("image")}


def page_values(document: dict, items: list[dict]) -> dict:
    """Everything the report's templates show besides the plots, named as the templates use it."""
    from ldmprobe.results.run_folder import sample_seeds

    spec, summary = document["spec"], document["summary"]
    cells, seeds = image_cells(items), sample_seeds(spec["seeds"])  # the first seeds (a run folder holds a sample)
    first = spec["templates"][0]
    pairs = {t["term"] for t in document["terms"] if any(cells.get((first, t["term"], s)) for s in seeds)}
    return {**FORMATS, **configuration(document), "spec": spec, "prov": document["provenance"],
            "terms": document["terms"], "notes": summary_notes(summary), "controls": summary.get("controls") or [],
            "control_records": document.get("controls") or [],
            "corr": summary.get("text_image_rank_correlation"), "cells": cells, "seeds": seeds,
            "all_seeds": spec["seeds"], "templates": spec["templates"], "baseline": spec["baseline"],
            "pair_templates": PAIR_TEMPLATES, "with_pairs": pairs, "thumbnails": _term_thumbnails(document, items),
            "sheets": document.get("run", {}).get("contact_sheets", []),
            "failed": [i for i in items if i.get("flags", {}).get("failed")]}


def _term_thumbnails(document: dict, items: list[dict]) -> dict[str, list[str]]:
    """The first template's images of each term and control of the run (for neighbour lists)."""
    first = document["spec"]["templates"][0]
    found: dict[str, list[str]] = {}
    for item in items:
        if item["template"] == first and item.get("image") and item["term"]:
            found.setdefault(item["term"], []).append(item["image"])
    return found


def _cell(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value) or "none"
    return str(value)


def _rows(mapping: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}".replace("_", " ")
        if isinstance(value, dict):
            rows += _rows(value, f"{name} · ")
        else:
            rows.append((name, _cell(value)))
    return rows


def configuration(document: dict) -> dict:
    """Config, spec and provenance as readable rows (nested values flattened, no Python reprs)."""
    spec, config = document["spec"], dict(document["config"])
    scheduler = config.pop("scheduler", {}) or {}
    return {"counts": document["counts"], "generation": _rows(config), "provenance": _rows(document["provenance"]),
            "study": [("baseline term", repr(spec["baseline"]) if spec["baseline"] else "(empty)")]
            + _rows({k: v for k, v in spec.items() if k != "baseline"}),
            "scheduler_class": str(scheduler.get("class", "")), "scheduler": _rows(scheduler.get("config") or {})}
