"""The HTML report of a run folder: config, contact sheets, drift and probe plots."""

from __future__ import annotations

from html import escape

from ldmprobe.render.report_parts import _p_is, neighbours
from ldmprobe.render.sweep import _p  # the terminal table's p formatter: one rule for both


REPORT_NAME = "report.html"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
     color:#222;line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.92rem;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #ddd;padding:.25rem .55rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.banner{background:#b00020;color:#fff;padding:.8rem 1rem;font-weight:600;border-radius:4px;margin:1rem 0}
.muted{color:#666;font-size:.9rem} figure{margin:1rem 0} img.sheet{max-width:100%;border:1px solid #ccc}
.term{border:1px solid #e3e3e3;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}
.cols{display:flex;gap:2rem;flex-wrap:wrap}
td.num,.nowrap{white-space:nowrap} tr.sig td{background:#fff4c2;font-weight:600}
.summary{background:#f4f8ff;border:1px solid #c9dafc;border-radius:6px;padding:.6rem 1rem}
.scroll{overflow-x:auto;max-width:100%} svg{max-width:100%;height:auto}
.pairs img{width:56px;height:56px;image-rendering:pixelated;display:block}
.thumbs img{width:32px;height:32px;image-rendering:pixelated;vertical-align:middle;margin-left:2px}
.pairs td,.pairs th{padding:2px 3px;border:none;font-size:.8rem} .pairs th{color:#555;font-weight:normal}
"""


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _signed(value) -> str:
    return "—" if value is None else f"{value:+.4g}"


def _ci(x: dict) -> str:
    if x.get("ci_low") is None:
        return "—"
    return f"[{x['ci_low']:+.4g}, {x['ci_high']:+.4g}]"


def _pyplot():
    """pyplot on Agg with fonts for any script (DejaVu, then a CJK font where the system has one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ldmprobe.results.fonts import matplotlib_families

    plt.rcParams["font.family"] = matplotlib_families()
    plt.rcParams["svg.fonttype"] = "path"
    return plt


def _svg(fig) -> str:
    """A matplotlib figure as inline SVG markup (no external file, no network)."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def drift_plot(terms: list[dict], baseline_spread: float | None) -> str:
    """Centroid and paired drift per term, with the baseline's seed-to-seed spread as a band."""
    from ldmprobe.results.fonts import plot_label

    plt = _pyplot()
    names = [plot_label(t["term"]) for t in terms]
    centroid = [t["image_drift"]["centroid"] or 0.0 for t in terms]
    paired = [t["image_drift"]["paired"] or 0.0 for t in terms]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.4))
    ys = range(len(names))
    if baseline_spread is not None:
        ax.axvspan(0, baseline_spread, color="#cccccc", alpha=0.6, label="baseline seed-to-seed spread")
    ax.scatter(centroid, ys, label="centroid drift", color="#1f77b4", zorder=3)
    ax.scatter(paired, [y + 0.18 for y in ys], label="paired drift", facecolors="none", edgecolors="#ff7f0e",
               marker="s", zorder=3)
    ax.set_yticks(list(ys), names)
    ax.invert_yaxis()
    ax.set_xlabel("1 − cosine (measurer image space)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


def probe_plot(term: dict) -> str:
    """Image shift per probe with its bootstrap CI, beside the text shift of the prompts."""
    from ldmprobe.results.fonts import plot_label

    plt = _pyplot()
    probes = term["probes"]
    names = [plot_label(p["probe"]) for p in probes]
    shift = [p["shift"] for p in probes]
    low = [p["shift"] - p["ci_low"] if p["ci_low"] is not None else 0.0 for p in probes]
    high = [p["ci_high"] - p["shift"] if p["ci_high"] is not None else 0.0 for p in probes]
    ys = range(len(names))
    text = [(p["text_shift"], y) for p, y in zip(probes, ys) if p.get("text_shift") is not None]
    if text:
        fig, (left, right) = plt.subplots(1, 2, figsize=(8, 0.38 * len(names) + 1.4), sharey=True)
    else:  # no prompt embeddings: the image shifts alone
        fig, left = plt.subplots(1, 1, figsize=(4.5, 0.38 * len(names) + 1.4))
        right = None
    left.errorbar(shift, ys, xerr=[low, high], fmt="o", color="#1f77b4", capsize=3)
    left.axvline(0, color="#888", lw=1)
    left.set_yticks(list(ys), names)
    left.invert_yaxis()
    left.set_title("image shift (95% CI)", fontsize=9)
    axes = [left]
    if right is not None:
        right.scatter([x for x, _ in text], [y for _, y in text], color="#2ca02c", marker="D")
        right.axvline(0, color="#888", lw=1)
        right.set_title("text shift (prompts)", fontsize=9)
        axes.append(right)
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("Δ cosine to probe", fontsize=8)
    return _svg(fig)


def render_report(document: dict, items: list[dict]) -> str:
    """The whole HTML page for a sweep document (paths relative to the run folder)."""
    from ldmprobe.render.report_parts import configuration, how_to_read, image_cells, paired_images, summary

    from ldmprobe.render.rates_html import rates_html

    parts = _header(document) + summary(document) + how_to_read() + _drift(document) + rates_html(document)
    parts.append('<h2 id="terms">Terms</h2>')
    cells, thumbnails = image_cells(items), _term_thumbnails(document, items)  # once: linear in the images
    for t in document["terms"]:
        parts += _term_section(t, paired_images(document, items, t["term"], cells), thumbnails)
    parts += _contact_sheets(document) + configuration(document) + _failed_images(items)
    parts.append("</body></html>")
    return "\n".join(parts)


def _header(document: dict) -> list[str]:
    spec, prov = document["spec"], document["provenance"]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>ldmprobe report: {escape(spec['name'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>ldmprobe sweep: {escape(spec['name'])}</h1>",
        f'<p class="muted">{escape(prov.get("started", ""))} → {escape(prov.get("finished", ""))}; '
        f"ldmprobe {escape(str(prov['versions'].get('ldmprobe')))}</p>",
    ]
    if prov.get("tiny"):
        parts.append('<div class="banner" id="tiny-banner">Made with the built-in TINY models (random '
                     "weights): these numbers and images mean nothing. Use real models for any finding.</div>")
    if prov.get("reference_world"):
        parts.append('<div class="banner" id="reference-banner">Made with the shipped REFERENCE WORLD: a small '
                     "model trained on synthetic 32×32 pictures with planted associations. These numbers are "
                     "true of that world and of no real model.</div>")
    return parts


def _drift(document: dict) -> list[str]:
    parts: list[str] = []
    terms = document["terms"]
    spread = document["summary"].get("baseline_spread")
    parts.append('<h2 id="drift">Drift per term</h2>')
    controls = document["summary"].get("controls") or []
    versus = (f"rank among the {len(controls)} controls' drifts (floor 1/{len(controls) + 1})" if controls else
              "sign flips within pairs: with no controls it only means the wording changed the images")
    parts.append('<p class="muted">Drift: unbiased estimate of the squared distance between the term\'s and the '
                 "baseline's mean image embeddings, 95% CI by bootstrap over templates then pairs (centroid and "
                 f"paired drift are 1 − cosine, kept for continuity). p: {escape(versus)}; p adj: "
                 "Benjamini–Hochberg across terms.</p>")
    parts.append(f"<figure>{drift_plot(terms, spread)}</figure>")
    parts.append("<table><tr><th>term</th><th>pairs</th><th>drift</th><th>95% CI</th><th>centroid</th>"
                 "<th>paired</th><th>p</th><th>p adj</th><th>text drift (measurer)</th><th>text drift (conditioning)</th>"
                 "<th>failed</th><th>flagged</th></tr>")
    for t in terms:
        d = t["image_drift"]
        parts.append(
            f"<tr><td>{escape(t['term'])}</td><td class=num>{t['n_pairs']}</td><td class=num>{_fmt(d.get('estimate'))}</td>"
            f"<td class=num>{_ci(d)}</td><td class=num>{_fmt(d['centroid'])}</td>"
            f"<td class=num>{_fmt(d['paired'])}</td>"
            f"<td class=num>{_p(d.get('p_value'), d)}</td><td class=num>{_p(d.get('p_adjusted'))}</td>"
            f"<td class=num>{_fmt(t['text_drift']['measurer'])}</td>"
            f"<td class=num>{_fmt(t['text_drift']['conditioning'])}</td>"
            f"<td class=num>{t['failed']}</td><td class=num>{t['flagged']}</td></tr>")
    parts.append("</table>")
    corr = document["summary"].get("text_image_rank_correlation")
    if corr:
        parts.append(f"<p>Rank correlation of text drift and image drift across {corr['n_terms']} terms: "
                     f"Spearman ρ = {corr['spearman_rho']:.3f} (p = {_p(corr['p_value'], corr)}, "
                     f"{'exact' if corr.get('exact') else 'sampled'} permutation)."
                     f"{' ' + escape(corr['note']) if corr.get('note') else ''}</p>")


    return parts


def _contact_sheets(document: dict) -> list[str]:
    parts: list[str] = []
    parts.append('<h2 id="sheets">Contact sheets</h2>')
    sheets = document.get("run", {}).get("contact_sheets", [])
    if not sheets:
        parts.append('<p class="muted">None: this run has no images in its folder (it was computed from '
                     "embeddings, or written without images).</p>")
    for sheet in sheets:
        parts.append(f"<figure><figcaption>{escape(sheet['template'])} (rows: baseline first, then terms; "
                     f'columns: seeds)</figcaption><img class="sheet" src="{escape(sheet["path"])}" '
                     f'alt="contact sheet for {escape(sheet["template"])}"></figure>')
    return parts


def _term_section(t: dict, pairs: list[str], images: dict) -> list[str]:
    parts: list[str] = []
    parts.append(f'<section class="term" id="term-{escape(t["term"])}"><h3>{escape(t["term"])}</h3>')
    parts += ['<div class="cols">', *pairs, "<div>"]
    d = t["image_drift"]
    parts.append(f"<p>drift {_fmt(d.get('estimate'))} {_ci(d)}, centroid drift {_fmt(d['centroid'])} "
                 f"(baseline spread {_fmt(d['baseline_spread'])}), {_p_is(_p(d.get('p_value'), d))} "
                 f"(vs {d.get('versus') or '—'}), adjusted {_p(d.get('p_adjusted'))}; "
                 f"{t['n_pairs']} pairs, {t['failed']} failed, {t['flagged']} flagged, "
                 f"{t.get('dropped', 0)} dropped.</p>")
    if t.get("probes"):
        parts.append(f"<figure>{probe_plot(t)}</figure>")
    parts.append("</div></div>")
    if t.get("probes"):
        parts.append("<table><tr><th>probe</th><th>shift</th><th>95% CI</th><th>p</th><th>p adj</th>"
                     "<th>p fixed</th><th>text shift</th><th>image z</th><th>text z</th></tr>")
        for p in t["probes"]:
            hit = ' class="sig"' if (p["p_adjusted"] if p["p_adjusted"] is not None else 1) < 0.05 else ""
            parts.append(f"<tr{hit}><td>{escape(p['probe'])}</td><td class=num>{p['shift']:+.4g}</td>"
                         f"<td class=num>{_ci(p)}</td>"
                         f"<td class=num>{_p(p['p_value'])}</td><td class=num>{_p(p['p_adjusted'])}</td>"
                         f"<td class=num>{_p(p.get('p_fixed'), p)}</td><td class=num>{_signed(p.get('text_shift'))}</td>"
                         f"<td class=num>{_fmt(p.get('image_z'))}</td><td class=num>{_fmt(p.get('text_z'))}</td></tr>")
        parts.append("</table>")
    parts += neighbours(t, images)
    per_template = "".join(
        f"<tr><td>{escape(x['template'])}</td><td class=num>{x['n_pairs']}</td>"
        f"<td class=num>{_fmt(x['image_drift']['centroid'])}</td>"
        f"<td class=num>{_fmt(x['text_drift']['measurer'])}</td></tr>" for x in t["templates"])
    parts.append("<details><summary>per template</summary><table><tr><th>template</th><th>pairs</th>"
                 f"<th>centroid drift</th><th>text drift</th></tr>{per_template}</table></details></section>")
    return parts


def _term_thumbnails(document: dict, items: list[dict]) -> dict[str, list[str]]:
    """The first template's images of each term and control of the run (for neighbour lists)."""
    first = document["spec"]["templates"][0]
    found: dict[str, list[str]] = {}
    for item in items:
        if item["template"] == first and item.get("image") and item["term"]:
            found.setdefault(item["term"], []).append(item["image"])
    return found


def _failed_images(items: list[dict]) -> list[str]:
    parts: list[str] = []
    failed = [i for i in items if i.get("flags", {}).get("failed")]
    if failed:
        parts.append("<h2>Failed images</h2><table><tr><th>prompt</th><th>seed</th><th>reason</th></tr>")
        parts += [f"<tr><td>{escape(i['prompt'])}</td><td>{i['seed']}</td><td>{escape(i['flags']['failed'])}</td></tr>"
                  for i in failed]
        parts.append("</table>")
    return parts


def write_report(run_dir):
    """Write ``report.html`` into a sweep's run folder (from results.json and items.jsonl)."""
    from pathlib import Path

    from ldmprobe.engine.cache import atomic_write_text

    from ldmprobe.results.run_folder_place import add_to_marker

    run_dir = Path(run_dir)
    document, items = read_run(run_dir)
    target = run_dir / REPORT_NAME
    atomic_write_text(target, render_report(document, items))
    add_to_marker(run_dir, [REPORT_NAME])  # a file ldmprobe wrote: --replace may replace it
    return target


def read_run(run_dir) -> tuple[dict, list[dict]]:
    """results.json and items.jsonl of a sweep run folder, checked before any page is written:
    the document against the sweep schema, and every image and contact sheet it links to."""
    import json

    from ldmprobe.errors import BadInputError

    results = run_dir / "results.json"
    if not results.is_file():
        raise BadInputError(f"{run_dir} is not a sweep run folder (no results.json). Pass the folder a sweep wrote.")
    try:
        document = json.loads(results.read_text())
        items_path = run_dir / "items.jsonl"
        items = [json.loads(line) for line in items_path.read_text().splitlines() if line.strip()] \
            if items_path.is_file() else []
    except ValueError as exc:
        raise BadInputError(f"{results} (or items.jsonl beside it) is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("kind", "sweep") != "sweep":
        kind = document.get("kind") if isinstance(document, dict) else f"a JSON {type(document).__name__}"
        raise BadInputError(f"{results} is not a sweep result (kind={kind!r}).")
    _check_schema(document, results)
    if not all(isinstance(i, dict) for i in items):
        raise BadInputError(f"{run_dir / 'items.jsonl'}: every line must be a JSON object (one image each).")
    _check_files(run_dir, document, items)
    return document, items


def _check_schema(document: dict, results) -> None:
    import jsonschema

    from ldmprobe.errors import BadInputError
    from ldmprobe.results.provenance import load_schema

    validator = jsonschema.Draft202012Validator(load_schema("sweep"))
    errors = sorted(validator.iter_errors(document), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        said = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or 'top level'}: {e.message[:200]}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise BadInputError(f"{results} does not have the shape of a sweep result: {said}{more}. Rerun the sweep "
                            "that made it, or restore the file a sweep wrote.")


def _check_files(run_dir, document: dict, items: list[dict]) -> None:
    """Every image and contact sheet the page would link to is in the folder (no broken <img>)."""
    from ldmprobe.errors import BadInputError

    wanted = [i["image"] for i in items if isinstance(i.get("image"), str) and i["image"]]
    wanted += [s.get("path") for s in document.get("run", {}).get("contact_sheets", []) if s.get("path")]
    missing = [path for path in dict.fromkeys(wanted) if not (run_dir / path).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise BadInputError(f"{run_dir}: {len(missing)} of the {len(set(wanted))} images and contact sheets the "
                            f"report shows are missing: {shown}. Restore them, or rerun the sweep with --out "
                            f"{run_dir} --replace (cached images are copied in again).")
