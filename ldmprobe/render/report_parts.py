"""Parts of report.html that lead with the finding: the summary, how to read it, paired images, config."""

from __future__ import annotations

from html import escape

from ldmprobe.render.notes import summary_notes
from ldmprobe.render.sweep import _p

ALPHA = 0.05
PAIR_TEMPLATES = 2  # templates shown open in a term's paired images (the rest under "all templates")


def _g(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _p_is(text: str) -> str:
    """ "p = 0.03", or "p ≤ 0.34" where the p is at its floor."""
    return f"p {text}" if text.startswith(("≤", "<")) else f"p = {text}"


def _sig(p) -> bool:
    return p is not None and p < ALPHA


def term_sentence(document: dict, t: dict) -> str:
    """One sentence (HTML) for a term: how far the images moved, toward what, how sure."""
    d = t["image_drift"]
    versus = "the controls" if d.get("versus") == "controls" else "sign flips within pairs"
    low, high = d.get("ci_low"), d.get("ci_high")
    still = low is not None and high is not None and low <= 0 <= high  # issue 33: not "moved by drift -1.96e-05"
    moved = (f"<b>{escape(t['term'])}</b> " + ("made no measurable drift in the images" if still else
                                                f"moved the images by drift <span class=nowrap>{_g(d.get('estimate'))}</span>")
             + f" (95% CI <span class=nowrap>[{_g(low)}, {_g(high)}]</span>")
    if d.get("controls_ratio") is not None:
        moved += f", <span class=nowrap>{_g(d['controls_ratio'])}×</span> the controls' median"
    moved += f"; {_p_is(_p(d.get('p_value'), d))} against {versus}, adjusted {_p(d.get('p_adjusted'))})"
    probes = t.get("probes") or []
    hits = [p for p in probes if _sig(p["p_adjusted"])]
    if hits:
        top = hits[0]
        moved += (f" and toward <b>{escape(top['probe'])}</b> (shift <span class=nowrap>{top['shift']:+.3f}</span>, "
                  f"p adj {_p(top['p_adjusted'])}; image z {_g(top.get('image_z'))} vs text z "
                  f"{_g(top.get('text_z'))})")
        if len(hits) > 1:
            moved += f" and {len(hits) - 1} more probe{'s' if len(hits) > 2 else ''}"
    elif probes:
        moved += f"; no probe shift is significant after Benjamini–Hochberg (q < {ALPHA})"
    return moved + "."


def summary(document: dict) -> list[str]:
    """The page's first section: a sentence per term, then the contents."""
    parts = ['<section class="summary" id="summary"><h2>Summary</h2><ul>']
    parts += [f"<li>{term_sentence(document, t)}</li>" for t in document["terms"]]
    parts.append("</ul>")
    for note in summary_notes(document["summary"]):
        parts.append(f'<p class="muted">Note: {escape(note)}</p>')
    contents = [("how", "How to read this"), ("drift", "Drift per term"), ("terms", "Terms")]
    contents += [(f"term-{t['term']}", f"— {t['term']}") for t in document["terms"]]
    contents += [("sheets", "Contact sheets"), ("config", "Configuration and provenance")]
    parts.append("<nav><b>Contents:</b> " + " · ".join(f'<a href="#{escape(a)}">{escape(b)}</a>' for a, b in contents)
                 + "</nav></section>")
    return parts


def how_to_read() -> list[str]:
    return ['<section id="how"><h2>How to read this</h2><p class="muted">Every term is generated with the '
            "same templates and seeds as the baseline, so each term image has a baseline twin that differs only "
            "by the word (shown side by side under each term). <b>Image drift</b> is how far the term moved "
            "the images' mean embedding; <b>probe shift</b> is how much closer the images came to a probe "
            "word's text embedding. <b>Text shift</b> is the same for the prompts themselves: image z and text "
            "z put both on one scale (z among the shifts toward the vocabulary's words), so image z well above "
            "text z means the generator amplified what the words already said. Highlighted rows are "
            "significant after Benjamini–Hochberg (q &lt; 0.05); p treats templates and seeds as random "
            "samples, p fixed holds for these templates and seeds only.</p></section>"]


def image_cells(items: list[dict]) -> dict[tuple, str]:
    """(template, term, seed) -> the image's path in the run folder, for the images it holds."""
    return {(i["template"], i["term"], i["seed"]): i["image"] for i in items if i.get("image")}


def paired_images(document: dict, items: list[dict], term: str, cells: dict | None = None) -> list[str]:
    """Baseline and term images for the same seeds, a pair of rows per template: the first
    seeds' (a run folder holds a bounded sample; ``ldmprobe export`` copies in the rest)."""
    from ldmprobe.results.run_folder import sample_seeds

    baseline = document["spec"]["baseline"]
    cells = image_cells(items) if cells is None else cells
    all_seeds = document["spec"]["seeds"]
    seeds = sample_seeds(all_seeds)
    templates = document["spec"]["templates"]
    if not any(cells.get((templates[0], term, s)) for s in seeds):
        return []

    def block(template: str) -> str:
        head = "".join(f"<th>seed {s}</th>" for s in seeds)
        rows = []
        for label, who in (("baseline", baseline), (term, term)):
            tds = "".join(f'<td><img src="{escape(cells[(template, who, s)])}" alt="{escape(who or "baseline")} seed {s}">'
                          if cells.get((template, who, s)) else "<td>—" for s in seeds)
            rows.append(f"<tr><th>{escape(label)}</th>{tds}</tr>")
        return (f'<table class="pairs"><caption class="muted">{escape(template)}</caption><tr><th></th>{head}</tr>'
                + "".join(rows) + "</table>")

    shown = f" (the first {len(seeds)} of {len(all_seeds)} seeds)" if len(all_seeds) > len(seeds) else ""
    parts = [f'<div class="paired"><p class="muted">Same seeds, baseline above, term below{shown}:</p>']
    parts += [block(t) for t in templates[:PAIR_TEMPLATES]]
    if len(templates) > PAIR_TEMPLATES:
        parts.append(f"<details><summary>all {len(templates)} templates</summary>"
                     + "".join(block(t) for t in templates[PAIR_TEMPLATES:]) + "</details>")
    parts.append("</div>")
    return parts


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


def _kv_table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows) + "</table>"


def configuration(document: dict) -> list[str]:
    """Config, spec and provenance as readable tables (nested values flattened, no Python reprs)."""
    spec, config, prov = document["spec"], dict(document["config"]), dict(document["provenance"])
    counts = document["counts"]
    scheduler = config.pop("scheduler", {}) or {}
    parts = ['<section id="config"><h2>Configuration and provenance</h2>',
             f"<p>{counts['planned']} images planned, {counts['generated']} generated in this run, "
             f"{counts['cached']} from cache, {counts['failed']} failed, {counts['flagged']} flagged.</p>",
             "<h3>Study</h3>", _kv_table([("baseline term", repr(spec["baseline"]) if spec["baseline"] else "(empty)")]
                                         + _rows({k: v for k, v in spec.items() if k != "baseline"})),
             "<h3>Models and generation</h3>", _kv_table(_rows(config)),
             f"<details><summary>scheduler {escape(str(scheduler.get('class', '')))}</summary>"
             + _kv_table(_rows(scheduler.get("config") or {})) + "</details>",
             "<h3>Provenance</h3>", _kv_table(_rows(prov)), "</section>"]
    return parts


def neighbours(t: dict, images: dict[str, list[str]]) -> list[str]:
    """Vocabulary words the drift points toward and away from, with the run's images of a word
    that is also a term or control of this run."""
    nb = t.get("direction_neighbours") or {}
    if not (nb.get("toward") or nb.get("away")):
        if nb and nb.get("threshold") is None:
            return ['<p class="muted">Drift direction neighbours: none, this run had no vocabulary to rank '
                    "(embeddings without <code>vocab</code> arrays).</p>"]
        if nb:
            return [f'<p class="muted">Drift direction neighbours: no vocabulary word passed the null threshold '
                    f"(|cos| &gt; {_g(nb.get('threshold'))}).</p>"]
        return []

    def item(word: str, score: float) -> str:
        thumbs = "".join(f'<img src="{escape(src)}" alt="{escape(word)}">' for src in images.get(word, [])[:4])
        strip = f'<span class="thumbs">{thumbs}</span>' if thumbs else ""
        return f"<li>{escape(word)} <span class=nowrap>({score:+.3f})</span> {strip}</li>"

    parts = [f"<p><b>Drift direction neighbours</b> (|cos| above the null threshold {_g(nb.get('threshold'))}; "
             "images where the word is also a term of this run):</p>", '<div class="cols neighbours">']
    for label in ("toward", "away"):
        if nb.get(label):
            parts.append(f"<div><b>{label}</b><ul>" + "".join(item(w, s) for w, s in nb[label]) + "</ul></div>")
    parts.append("</div>")
    return parts
