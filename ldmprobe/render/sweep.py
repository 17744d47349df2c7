"""Tables for sweeps: the plan (--dry-run) and the per-term drift ranking."""

from __future__ import annotations

from ldmprobe.analysis.inference import format_p, format_p_adjusted
from ldmprobe.render.emit import as_document
from ldmprobe.render.layout import number_format, shrinking_table, table_or_stacked
from ldmprobe.render.notes import summary_notes

ALPHA = 0.05


def _num(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _p(value, row: dict | None = None) -> str:
    """A p printed to the precision it has ("≤ floor" at its floor); adjusted p's plainly."""
    if value is None:
        return "—"
    if row is None or row.get("min_p") is None:
        return format_p(value, min_p=0.0, exact=True, n_resamples=0)
    return format_p(value, min_p=row["min_p"], exact=bool(row.get("exact")), n_resamples=row.get("n_resamples") or 0)


def _padj(value) -> str:
    """An adjusted p, never printed below the p it adjusts (rounded up)."""
    return "—" if value is None else format_p_adjusted(value)


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


def seed_ranges(seeds) -> str:
    """Seeds as runs: [0, 1, 2, 3, 7] -> "0-3, 7" (a million seeds stay one short cell)."""
    numbers = sorted({int(s) for s in seeds})
    runs: list[str] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        runs.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ", ".join(runs)


def render_plan(document: dict):
    """One row per (template, term): its seeds (as runs), how many are cached, and its prompt (the
    template filled in, so the template needs no column of its own)."""
    counts = document["counts"]
    rows: dict[tuple, dict] = {}
    for item in document["items"]:
        level = _level_label(item)
        row = rows.setdefault((level, item["template"], item["term"]),
                              {"seeds": [], "prompt": item["prompt"], "cached": 0})
        row["seeds"].append(item["seed"])
        row["cached"] += item["cached"]
    several = len(document.get("levels") or ()) > 1
    table_rows, shown = [], None
    for (level, _template, term), row in rows.items():
        if several and level != shown:  # one section per guidance / steps level
            table_rows.append(level)
            shown = level
        table_rows.append((term or "(baseline)", seed_ranges(row["seeds"]), f"{row['cached']}/{len(row['seeds'])}",
                           row["prompt"]))
    return shrinking_table(f"plan: {counts['planned']} items ({counts['unique']} unique), {counts['cached']} cached",
                           ("term", "seeds", "cached", "prompt"), table_rows, words=("prompt",), wraps_words=True,
                           left=("term", "seeds"))


def _level_label(item: dict) -> str:
    """"guidance 7.5, 15 steps" for an item or level ("guidance 3" / "15 steps" when only one is
    known, as for own data with one column; "" when neither)."""
    parts = ([f"guidance {item['guidance']:g}"] if item.get("guidance") is not None else []) + \
        ([f"{item['steps']} steps"] if item.get("steps") is not None else [])
    return ", ".join(parts)


def render_sweep(document: dict):
    """The finding first (significant probe shifts, and which terms moved the images more than the
    controls), then the drift per term, the controls' own drift, every probe shift, and notes."""
    document = as_document(document)
    from rich.console import Group
    from rich.text import Text

    parts = [*_finding(document), *_levels_line(document), _drift_table(document)]
    if document.get("controls"):
        parts.append(_controls_table(document))
    parts.append(_probe_table(document))
    from ldmprobe.render.rates import rates_parts, trends_parts

    parts += rates_parts(document)  # spec [attributes]: shares of images per option (nothing without them)
    parts += trends_parts(document)  # several guidance levels: each rate's slope over guidance
    counts = document["counts"]
    made = (f"{counts['supplied']} supplied (your own)" if counts.get("supplied") is not None else
            f"{counts['generated']} generated, {counts['cached']} cached")
    parts.append(Text(f"images: {counts['planned']} planned, {made}, {counts['failed']} failed, "
                      f"{counts['flagged']} flagged. "
                      "p: templates and seeds as random factors; p fixed: these templates and seeds only. "
                      "* = probe shift significant after Benjamini-Hochberg (q < 0.05)."))
    summary = document["summary"]
    excluded = {k or "(baseline)": v for k, v in (summary.get("excluded") or {}).items() if v}
    if excluded:
        parts.append(Text("excluded (non-finite or zero-norm embeddings): "
                          + ", ".join(f"{k} {v}" for k, v in excluded.items()), style="yellow"))
    for message in summary_notes(summary):
        parts.append(Text(f"note: {message}", style="yellow"))
    parts += caveat_lines(document["provenance"])
    return Group(*parts)


def _levels_line(document: dict) -> list:
    """Which level the tables show, for a sweep over several guidance / steps levels."""
    from rich.text import Text

    levels = document.get("levels") or []
    if len(levels) < 2:
        return []
    listed = "; ".join(_level_label(lv) for lv in levels)
    return [Text(f"levels: {listed}. The tables are the first level's; every level's are in the JSON "
                 "(levels), and the trends over guidance come last.", style="bold")]


def caveat_lines(provenance: dict) -> list:
    """The tiny-model and reference-world warnings every view of such a result carries."""
    from rich.text import Text

    lines = []
    if provenance.get("tiny"):
        lines.append(Text(TINY_LINE, style="bold red"))
    if provenance.get("reference_world"):
        lines.append(Text(REFERENCE_LINE, style="bold"))
    return lines


TINY_LINE = "TINY MODELS: random weights, these numbers mean nothing."
REFERENCE_LINE = ("REFERENCE WORLD: a small model trained on synthetic pictures with planted associations; "
                  "these numbers are true of that world, not of any real model.")


def _significant(value) -> bool:
    return value is not None and value < ALPHA


def _finding(document: dict) -> list:
    """The first lines: the probe shifts significant after Benjamini-Hochberg (a table), and the
    terms whose drift beat the controls (or the pairs), in words; the smallest p's when none did."""
    from rich.text import Text

    hits = [(t, row) for t in document["terms"] for row in t.get("probes", []) if _significant(row["p_adjusted"])]
    drifted = [t for t in document["terms"] if _significant(t["image_drift"].get("p_adjusted"))]
    name = document["spec"]["name"]
    parts = []
    if hits:
        hits.sort(key=lambda pair: (pair[1]["p_adjusted"], -abs(pair[1]["shift"])))
        parts.append(_hits_table(name, hits))
    else:
        rows = [(t, row) for t in document["terms"] for row in t.get("probes", []) if row["p_adjusted"] is not None]
        line = f"{name}: no probe shift is significant after Benjamini-Hochberg (q < {ALPHA})"
        if rows:
            t, row = min(rows, key=lambda pair: pair[1]["p_adjusted"])
            line += f"; the smallest p adj is {_padj(row['p_adjusted'])} ({t['term']} toward {row['probe']!r})"
        parts.append(Text(line + ".", style="bold"))
    controls = document["summary"].get("controls") or []
    against = f"the {len(controls)} controls" if controls else "sign flips within pairs"
    if drifted:
        names = ", ".join(t["term"] for t in drifted)
        parts.append(Text(f"image drift beyond {against} (p adj < {ALPHA}): {names}."))
    else:
        floor = (document["summary"].get("design") or {}).get("min_p", {}).get("controls") if controls else None
        line = f"no term's image drift is significant against {against}"
        if floor is not None and floor >= ALPHA:
            line += f" (with {len(controls)} controls p cannot go below {floor:.2g}; add controls)"
        parts.append(Text(line + "."))
    return parts


def _hits_table(name: str, hits: list):
    shift = number_format([row["shift"] for _, row in hits], signed=True)
    ci = number_format([v for _, row in hits for v in (row.get("ci_low"), row.get("ci_high"))],
                       basis=[row["shift"] for _, row in hits])
    rows = [(t["term"], row["probe"], shift(row["shift"]), _interval(row, ci), _padj(row["p_adjusted"]),
             f"{_z(row.get('image_z'))}/{_z(row.get('text_z'))}") for t, row in hits]
    return shrinking_table(f"{name}: probe shifts significant after Benjamini-Hochberg (q < {ALPHA})",
                           ("term", "probe", "shift", "95% CI", "p adj", "z img/txt"), rows,
                           drops=((), ("z img/txt",)), words=("term", "probe"))


def _interval(row: dict, fmt) -> str:
    if row.get("ci_low") is None:
        return "—"
    return f"[{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"


def _drift_formats(rows: list[dict]):
    values = [v for r in rows for v in (r["image_drift"].get("estimate"), r["image_drift"].get("ci_low"),
                                        r["image_drift"].get("ci_high"))]
    estimates = [r["image_drift"].get("estimate") for r in rows]
    return number_format(values, basis=estimates), number_format([r["text_drift"]["measurer"] for r in rows])


def _drift_table(document: dict):
    baseline = document.get("baseline", "")
    controls = document["summary"].get("controls") or []
    versus = f"vs {len(controls)} controls" if controls else "vs pairs: the wording changed the images"
    title = (f"image drift from baseline {baseline!r} (seed-to-seed spread "
             f"{_num(document['summary']['baseline_spread'], 3)}; p {versus})")
    failed = any(term["failed"] for term in document["terms"])
    ratio = ("×ctrl",) if controls else ()
    columns = ("term", "pairs", "drift", "95% CI", *ratio, "p", "p adj", "p pairs", "text",
               *(("failed",) if failed else ()))
    drift, text = _drift_formats([*document["terms"], *(document.get("controls") or [])])
    ratio_fmt = number_format([t["image_drift"].get("controls_ratio") for t in document["terms"]], min_decimals=1)
    rows = []
    for term in document["terms"]:
        d = term["image_drift"]
        rows.append((term["term"], str(term["n_pairs"]), drift(d.get("estimate")), _interval(d, drift),
                     *((ratio_fmt(d.get("controls_ratio")),) if controls else ()), _p(d.get("p_value"), d),
                     _padj(d.get("p_adjusted")), _p(d.get("p_pairs")), text(term["text_drift"]["measurer"]),
                     *((str(term["failed"]),) if failed else ())))

    meaning = {"p pairs": "sign flips within pairs", "text": "the prompts' own drift, by the measurer",
               "pairs": "image pairs per term"}

    def caption(dropped):
        parts = ["×ctrl: drift over the controls' median"] if controls else []
        parts += [f"{name}: {meaning[name]}" for name in ("p pairs", "text") if name not in dropped]
        if dropped:
            parts.append(", ".join(f"{name} ({meaning[name]})" for name in dropped) + " in the JSON")
        return "; ".join(parts)

    return shrinking_table(title, columns, rows, drops=((), ("text",), ("text", "p pairs"), ("text", "p pairs", "pairs")),
                           words=("term",), caption=caption)


def _controls_table(document: dict):
    """The controls' own drift: the yardstick ×ctrl and the controls p are measured against."""
    controls = document["controls"]
    drift, text = _drift_formats([*document["terms"], *controls])
    rows = [(c["term"], str(c["n_pairs"]), drift(c["image_drift"].get("estimate")), _interval(c["image_drift"], drift),
             _p(c["image_drift"].get("p_pairs")), text(c["text_drift"]["measurer"])) for c in controls]
    return shrinking_table(f"the {len(controls)} controls' own drift (what each term is compared with)",
                           ("control", "pairs", "drift", "95% CI", "p pairs", "text"), rows,
                           drops=((), ("text",), ("text", "pairs")), words=("control",))


def _probe_table(document: dict):
    all_rows = [row for term in document["terms"] for row in term.get("probes", [])]
    shift = number_format([row["shift"] for row in all_rows], signed=True)
    ci = number_format([v for row in all_rows for v in (row.get("ci_low"), row.get("ci_high"))],
                       basis=[row["shift"] for row in all_rows])
    rows: list = []
    for term in document["terms"]:
        rows.append(term["term"])
        for row in term.get("probes", []):
            mark = "*" if _significant(row["p_adjusted"]) else ""
            low = "°" if row.get("conservative") else ""  # the crossed p is conservative here
            rows.append((row["probe"], f"{shift(row['shift'])}{mark}", _interval(row, ci), _p(row["p_value"]) + low,
                         _padj(row["p_adjusted"]), _p(row["p_fixed"], row),
                         f"{_z(row.get('image_z'))}/{_z(row.get('text_z'))}", _z(row.get("image_z"))))

    levels = [row["level_05"] for row in all_rows if row.get("conservative")]
    span = sorted({f"{v:.2f}" for v in (min(levels), max(levels))}) if levels else []
    low = (f"p°: conservative here (true level about {'–'.join(span)} at 0.05 at the row's "
           "variance components; a non-significant p is weak evidence of no shift); " if levels else "")

    def caption(dropped):
        moved = [name for name in ("p fixed", "p") if name in dropped]
        text_z = "text z, " if "z img/txt" in dropped else ""
        return (f"{low}z: the image shift among the shifts toward the vocabulary's words; {text_z}"
                f"{''.join(m + ', ' for m in moved)}p controls in the JSON")

    return shrinking_table("probe shifts", ("probe", "shift", "95% CI", "p", "p adj", "p fixed", "z img/txt", "z img"),
                           rows, drops=(("z img",), ("z img/txt",), ("z img/txt", "p fixed"),
                                        ("z img/txt", "p fixed", "p")),
                           words=("probe",), caption=caption)


def _z(value) -> str:
    if value is None:
        return "—"
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text
