"""The trace run folder's ``report.html``: one section per part of the model that ran.

Figures are PNG files under ``figures/`` next to the report (drawn from the result's
``pictures``); tables come from the JSON document, so everything shown is in results.json.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from ldmprobe.render import trace_figures as figs
from ldmprobe.render.trace import _ci, _num, _p, is_tiny

REPORT_NAME = "report.html"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;max-width:1100px;
     color:#222;line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem;font-size:1.6rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
.scroll{overflow-x:auto} table{border-collapse:collapse;margin:.6rem 0;font-size:.88rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td:first-child{min-width:8.5rem}
.banner{background:#b00020;color:#fff;padding:.8rem 1rem;font-weight:600;border-radius:4px;margin:1rem 0}
.muted{color:#666;font-size:.9rem} figure{margin:1rem 0} figure img{max-width:100%;height:auto}
figcaption{color:#555;font-size:.85rem}
"""


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" if i == 0 else f'<td class="num">{escape(c)}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def _figure(out: Path, path: Path, caption: str) -> str:
    src = escape(path.relative_to(out).as_posix())  # linked: a narrow screen opens the PNG at full size
    return (f'<figure><a href="{src}"><img src="{src}" alt="{escape(caption)}"></a>'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _effect_rows(tables: list[dict]) -> tuple[list[str], list[list[str]]]:
    probe = tables[0]["probes"][0] if tables and tables[0]["probes"] else None
    header = ["term / variant", "drift share", "projection share", "interval"]
    header += [f"'{probe}' shift", f"'{probe}' share", "interval", "p"] if probe else []
    rows = []
    for t in tables:
        row = [f"{t['term']} (term)", "1", "1", f"drift {_num(t['term_drift'])} {_ci(t['term_drift_ci'])}"]
        if probe:
            row += [_num(t["term_probe_shift"][0], 3, True), "1", "", _p(t["term_probe_test"][0]["p_value"])]
        rows.append(row)
        for v in t["variants"]:
            row = [f"  {t['term']}: {v['variant']}", _num(v["drift_share"], 2), _num(v["projection_share"], 2, True),
                   _ci(v["projection_share_ci"])]
            if probe:
                row += [_num(v["probe_shift"][0], 3, True), _num(v["probe_share"][0], 2, True),
                        _ci(v["probe_share_ci"][0]), _p(v["probe_test"][0]["p_value"])]
            rows.append(row)
    return header, rows


def _conditioning(out: Path, doc: dict, pictures: dict, made: list[Path]) -> list[str]:
    html = ["<h2 id='conditioning'>Conditioning (text encoder)</h2>",
            "<p class='muted'>Hybrid conditionings take from the term prompt only one part of the text encoder's "
            "77 output states — the modifier's own states, the later content tokens' states, or the end-of-text "
            "and padding states — and the rest from the baseline prompt. A share is the part's effect over the "
            "term's (1 = it carries all of it); intervals bootstrap templates, then seeds. Read shares only where "
            "the term's own effect is clearly non-zero.</p>"]
    made.append(figs.conditioning_shares(out / "figures" / "conditioning-shares.png", doc["conditioning"]))
    html.append(_figure(out, made[-1], "Shares of each hybrid, with intervals"))
    pixels = pictures.get("conditioning_pixels")
    plain = pictures.get("plain_pixels")
    config = doc["config"]
    if pixels is not None and plain is not None:
        for i, t in enumerate(doc["conditioning"]):
            columns = [("baseline", plain[0, 0, 0]), (t["term"], plain[1 + i, 0, 0])]
            columns += [(v, pixels[i, j, 0, 0]) for j, v in enumerate(config["variants"])]
            made.append(figs.image_strip(out / "figures" / f"conditioning-images-{i}.png",
                                         f"{config['templates'][0]!r}, seed {config['seeds'][0]}", columns))
            html.append(_figure(out, made[-1], f"'{t['term']}': the plain images and each hybrid, same noise"))
    html.append(_table(*_effect_rows(doc["conditioning"])))
    return html


def _attention(out: Path, doc: dict, pictures: dict, made: list[Path]) -> list[str]:
    html = ["<h2 id='attention'>Cross-attention (where the word lands)</h2>",
            "<p class='muted'>The attention the modifier's tokens receive, conditional half of the guidance batch, "
            "averaged over heads, layers and steps, upsampled to the image. <i>inside</i>: share of the modifier's "
            "attention inside the noun region (the fewest pixels holding half the noun's attention); <i>area</i>: "
            "the region's share of the image; excess = inside − area (0: indifferent to the object).</p>"]
    maps, plain = pictures.get("attention_maps"), pictures.get("plain_pixels")
    config = doc["config"]
    if maps is not None and plain is not None:
        for i, a in enumerate(doc["attention"]):
            made.append(figs.attention_overlays(out / "figures" / f"attention-{i}.png", a["term"], config["templates"],
                                                config["seeds"], plain[1 + i], maps[i],
                                                list(pictures["attention_groups"]), mass=config["attention_mass"]))
            html.append(_figure(out, made[-1], f"'{a['term']}': the images, the modifier's and the noun's attention"))
    rows = [[a["term"], _num(a["inside_share"]), _num(a["region_area"]), _num(a["excess_test"]["estimate"], 3, True),
             _p(a["excess_test"]["p_value"]), _num(a["enrichment"]), _num(a["entropy"]), _num(a["gini"]),
             ", ".join(f"{k} {_num(v, 2)}" for k, v in a["token_shares"].items())] for a in doc["attention"]]
    html.append(_table(["term", "inside", "area", "excess", "p", "enrichment", "entropy", "gini",
                        "share of all cross-attention"], rows))
    return html


def _steps(out: Path, doc: dict, made: list[Path]) -> list[str]:
    html = ["<h2 id='steps'>Denoising steps (structure versus detail)</h2>",
            "<p class='muted'>The prompt is switched during sampling: <code>baseline&gt;term@k</code> uses the "
            "baseline for the first k steps and the term after; <code>term&gt;baseline@k</code> the reverse. "
            "An effect fixed by the first steps acts on layout; one that survives a late switch to the term acts "
            "on detail.</p>"]
    n_steps = int(doc["config"]["settings"]["steps"])
    for i, t in enumerate(doc["steps"]):
        made.append(figs.steps_curves(out / "figures" / f"steps-{i}.png", t, n_steps))
        html.append(_figure(out, made[-1], f"'{t['term']}': share of the effect against the switch step k "
                                           "(bands: intervals, cut at the axes)"))
    html.append("<details><summary>the numbers</summary>" + _table(*_effect_rows(doc["steps"])) + "</details>")
    return html


def _vae(doc: dict) -> list[str]:
    html = ["<h2 id='vae'>Autoencoder (what the perceptual compression discards)</h2>",
            "<p class='muted'>Each image is encoded (latent mean) and decoded by the pipeline's VAE. PSNR in dB; "
            "1−cos: change in the measurer's space; probe change: cos to the probe after − before. p: paired "
            "term − baseline test per (template, seed), templates and seeds random.</p>"]
    rows = []
    for v in doc["vae"]:
        probe = ([_num(v["probe_change"][0], 4, True), _num(v["probe_change_baseline"][0], 4, True),
                  _p(v["probe_test"][0]["p_value"])] if v["probe_change"] else ["—"] * 3)
        rows.append([v["term"], _num(v["psnr"], 4), _num(v["psnr_baseline"], 4), _p(v["psnr_test"]["p_value"]),
                     _num(v["embedding_change"]), _num(v["embedding_change_baseline"]),
                     _p(v["embedding_change_test"]["p_value"]), *probe])
    probe = doc["vae"][0]["probes"][0] if doc["vae"] and doc["vae"][0]["probes"] else "probe"
    html.append(_table(["term", "PSNR term", "PSNR baseline", "p", "1−cos term", "1−cos baseline", "p",
                        f"'{probe}' change term", "baseline", "p"], rows))
    if doc["vae_folder"]:
        html.append("<p>Your images (one group per subfolder; bootstrap intervals over images):</p>")
        html.append(_table(["group", "images", "PSNR", "interval", "1−cos", "interval"],
                           [[g["group"], str(g["n_images"]), _num(g["psnr"], 4), _ci(g["psnr_ci"]),
                             _num(g["embedding_change"]), _ci(g["embedding_change_ci"])] for g in doc["vae_folder"]]))
    return html


def _header(doc: dict) -> list[str]:
    spec, config = doc.get("spec", {}), doc["config"]
    html = [f"<h1>ldmprobe trace: {escape(str(spec.get('name', 'trace')))}</h1>"]
    if is_tiny(doc):
        html.append("<div class='banner'>Made with the built-in tiny models (random weights): "
                    "these numbers and pictures mean nothing.</div>")
    if doc.get("provenance", {}).get("reference_world"):  # issue 33: the caveat on every view
        html.append("<div class='banner'>Reference world: a small model trained on synthetic pictures with planted "
                    "associations; these numbers are true of that world, not of any real model.</div>")
    models = doc.get("provenance", {}).get("models", {})
    html.append(f"<p class='muted'>templates {escape(', '.join(repr(t) for t in config['templates']))}; "
                f"baseline {config['baseline']!r}; terms {escape(', '.join(config['terms']))}; "
                f"probes {escape(', '.join(config['probes']))}; {len(config['seeds'])} seeds; "
                f"{config['settings']['steps']} steps, guidance {config['settings']['guidance']}; "
                f"generator {escape(str(models.get('generator', '?')))}, measurer "
                f"{escape(str(models.get('measurer', '?')))}.</p>")
    links = " · ".join(f"<a href='#{s}'>{s}</a>" for s in ("conditioning", "attention", "steps", "vae")
                       if doc[s] or (s == "vae" and doc["vae_folder"]))
    html.append(f"<p>{links} · <a href='#costs'>costs</a></p>")
    return html


def _costs(doc: dict) -> list[str]:
    rows = [[c["section"], str(c["images"]), str(c["generated"]), _num(c["seconds"], 3), _num(c["images_vs_plain"], 2),
             _num(c["seconds_vs_plain"], 2)] for c in doc["costs"]]
    html = ["<h2 id='costs'>Costs and notes</h2>",
            _table(["section", "images", "generated now", "seconds", "images vs plain", "time vs plain"], rows),
            f"<p class='muted'>attention tracing overhead on generation: {_num(doc['attention_overhead'], 2)} "
            "(— when the images came from the cache).</p>"]
    html += [f"<p class='muted'>{escape(n)}</p>" for n in doc["notes"]]
    return html


def write_trace_report(out: Path, result) -> tuple[Path, list[Path]]:
    """Write ``report.html`` and its figures into ``out``; return the report and the figures."""
    out = Path(out)
    doc, pictures, made = result.to_dict(), result.pictures, []
    body = _header(doc)
    if doc["conditioning"]:
        body += _conditioning(out, doc, pictures, made)
    if doc["attention"]:
        body += _attention(out, doc, pictures, made)
    if doc["steps"]:
        body += _steps(out, doc, made)
    if doc["vae"] or doc["vae_folder"]:
        body += _vae(doc)
    body += _costs(doc)
    html = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>ldmprobe trace</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>")
    path = out / REPORT_NAME
    path.write_text(html, encoding="utf-8")
    return path, made
