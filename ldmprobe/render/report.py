"""A sweep run folder's report.html: the run read and checked, its drift and probe plots, the page
rendered from ``templates/report.html.j2`` (values from report_parts)."""

from __future__ import annotations

REPORT_NAME = "report.html"


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


def trend_points(trend: dict) -> list[tuple[float, float]]:
    """(guidance, rate) of a trend row's levels in increasing guidance (a spec may list its levels
    in any order; a line joins neighbours on the axis), levels without a rate left out."""
    return sorted((g, r) for g, r in zip(trend["guidance"], trend.get("rates") or ()) if r is not None)


def trend_plot(term: str, trends: list[dict]) -> str:
    """One term's rate of each shown option against guidance (one line per option), the slope
    and its interval in the legend."""
    from ldmprobe.results.fonts import plot_label

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for t in trends:
        points = trend_points(t)
        if not points:
            continue
        label = (f"{t['group']}: {t['option']} ({t['slope']:+.3f}/unit"
                 + (f", [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}])" if t.get("ci_low") is not None else ")"))
        ax.plot([g for g, _ in points], [r for _, r in points], marker="o", label=plot_label(label))
    ax.set_xlabel("guidance scale")
    ax.set_ylabel("rate (share of images)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(plot_label(term or "(baseline)"), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)  # below: no line hidden
    return _svg(fig)


def _or_note(draw):
    """``draw`` whose failure (a plotting backend, fonts) becomes a line in the page, not a lost
    run folder: the numbers it would show are in the tables and results.json."""
    def drawn(*args):
        try:
            return draw(*args)
        except Exception as exc:  # noqa: BLE001 - any plotting failure; a stop (KeyboardInterrupt) passes
            from html import escape

            return (f'<p class="note">This plot could not be drawn ({escape(type(exc).__name__)}: '
                    f"{escape(str(exc))}); its numbers are in the tables and in results.json.</p>")
    return drawn


def render_report(document: dict, items: list[dict]) -> str:
    """The whole HTML page for a sweep document (paths relative to the run folder)."""
    from ldmprobe.render.html import render, safe
    from ldmprobe.render.rates_html import rates_html
    from ldmprobe.render.report_parts import page_values

    trend, drift, probe = _or_note(trend_plot), _or_note(drift_plot), _or_note(probe_plot)
    return render("report.html.j2", **page_values(document, items), rates=safe("\n".join(rates_html(document, trend, items))),
                  drift_plot=safe(drift(document["terms"], document["summary"].get("baseline_spread"))),
                  probe_plot=lambda term: safe(probe(term)))


def write_report(run_dir):
    """Write ``report.html`` into a sweep's run folder, from its results.json and items.jsonl
    (checked first: ``ldmprobe report RUN``)."""
    from pathlib import Path

    run_dir = Path(run_dir)
    return write_report_of(run_dir, *read_run(run_dir))


def write_report_of(run_dir, document: dict, items: list[dict]):
    """Write ``report.html`` into ``run_dir`` from a sweep's JSON document and the items.jsonl lines
    it shows, as the run folder's writer holds them (nothing read back from disk)."""
    from pathlib import Path

    from ldmprobe.store.files import atomic_write_text

    from ldmprobe.results.run_folder_place import add_to_marker

    run_dir = Path(run_dir)
    target = run_dir / REPORT_NAME
    atomic_write_text(target, render_report(document, items))
    add_to_marker(run_dir, [REPORT_NAME])  # a file ldmprobe wrote: --replace may replace it
    return target


def read_run(run_dir) -> tuple[dict, list[dict]]:
    """results.json and items.jsonl of a sweep run folder, checked before any page is written:
    the document against the sweep schema, and every image and contact sheet it links to. Only
    the items the page shows are kept (an image in the run folder, or a failed image), so memory
    stays flat in the number of images."""
    from ldmprobe.results.sweep_folder import read_document

    document = read_document(run_dir)
    _check_schema(document, run_dir / "results.json")
    items = _shown_items(run_dir)
    _check_files(run_dir, document, items)
    return document, items


def _shown_items(run_dir) -> list[dict]:
    """The items.jsonl lines the page shows: an image in the run folder, or a failed image."""
    from ldmprobe.errors import BadInputError
    from ldmprobe.results.sweep_folder import item_lines, shown_in_report

    shown = []
    for number, item in item_lines(run_dir, required=False):
        if not isinstance(item, dict):
            raise BadInputError(f"{run_dir / 'items.jsonl'} line {number}: every line must be a JSON object "
                                "(one image each).")
        if shown_in_report(item):
            shown.append(item)
    return shown


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
