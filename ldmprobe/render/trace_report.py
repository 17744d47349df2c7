"""The trace run folder's ``report.html``: one section per part of the model that ran.

Figures are PNG files under ``figures/`` next to the report (drawn from the result's
``pictures``); tables come from the JSON document, so everything shown is in results.json.
The page is ``templates/trace_report.html.j2``; this module draws the figures and makes the rows.
"""

from __future__ import annotations

from pathlib import Path

from ldmprobe.render import trace_figures as figs
from ldmprobe.render.trace import _ci, _num, _p, is_tiny

REPORT_NAME = "report.html"


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


def _conditioning(doc: dict, pictures: dict, figure) -> dict:
    shown = [figure(figs.conditioning_shares, "conditioning-shares.png", "Shares of each hybrid, with intervals",
                    doc["conditioning"])]
    pixels, plain, config = pictures.get("conditioning_pixels"), pictures.get("plain_pixels"), doc["config"]
    if pixels is not None and plain is not None:
        for i, t in enumerate(doc["conditioning"]):
            columns = [("baseline", plain[0, 0, 0]), (t["term"], plain[1 + i, 0, 0])]
            columns += [(v, pixels[i, j, 0, 0]) for j, v in enumerate(config["variants"])]
            shown.append(figure(figs.image_strip, f"conditioning-images-{i}.png",
                                f"'{t['term']}': the plain images and each hybrid, same noise",
                                f"{config['templates'][0]!r}, seed {config['seeds'][0]}", columns))
    return {"figures": shown, "table": _effect_rows(doc["conditioning"])}


def _regions_of(pictures: dict, i: int, attention: dict):
    """Term i's object masks as the numbers used them, or None (measured against the noun region)."""
    regions = pictures.get("attention_regions")
    return regions[i] if regions is not None and attention.get("region") == "object" else None


def _attention(doc: dict, pictures: dict, figure) -> dict:
    maps, plain, config, shown = pictures.get("attention_maps"), pictures.get("plain_pixels"), doc["config"], []
    if maps is not None and plain is not None:
        for i, a in enumerate(doc["attention"]):
            shown.append(figure(figs.attention_overlays, f"attention-{i}.png",
                                f"'{a['term']}': the images, the modifier's and the noun's attention", a["term"],
                                config["templates"], config["seeds"], plain[1 + i], maps[i],
                                list(pictures["attention_groups"]), mass=config["attention_mass"],
                                regions=_regions_of(pictures, i, a)))
    objects = any(a.get("region") == "object" for a in doc["attention"])

    def signal(a):
        test = a.get("noun_excess_test")
        return f"{a.get('spatial_signal')} (p {_p(test['p_value'])})" if test else "—"

    rows = [[a["term"], _num(a["inside_share"]), _num(a["region_area"]), _num(a["excess_test"]["estimate"], 3, True),
             _p(a["excess_test"]["p_value"])] + ([signal(a)] if objects else [])
            + [_num(a["enrichment"]), _num(a["entropy"]), _num(a["gini"]),
               ", ".join(f"{k} {_num(v, 2)}" for k, v in a["token_shares"].items())] for a in doc["attention"]]
    header = ["term", "inside", "area", "excess", "p"] + (["noun on the object"] if objects else []) \
        + ["enrichment", "entropy", "gini", "share of all attention on the text"]
    return {"figures": shown, "objects": objects, "table": (header, rows)}


def _steps(doc: dict, figure) -> dict:
    n_steps = int(doc["config"]["settings"]["steps"])
    shown = [figure(figs.steps_curves, f"steps-{i}.png", f"'{t['term']}': share of the effect against the switch "
                    "step k (bands: intervals, cut at the axes)", t, n_steps) for i, t in enumerate(doc["steps"])]
    return {"figures": shown, "table": _effect_rows(doc["steps"])}


def _vae(doc: dict) -> dict:
    rows = []
    for v in doc["vae"]:
        probe = ([_num(v["probe_change"][0], 4, True), _num(v["probe_change_baseline"][0], 4, True),
                  _p(v["probe_test"][0]["p_value"])] if v["probe_change"] else ["—"] * 3)
        rows.append([v["term"], _num(v["psnr"], 4), _num(v["psnr_baseline"], 4), _p(v["psnr_test"]["p_value"]),
                     _num(v["embedding_change"]), _num(v["embedding_change_baseline"]),
                     _p(v["embedding_change_test"]["p_value"]), *probe])
    probe = doc["vae"][0]["probes"][0] if doc["vae"] and doc["vae"][0]["probes"] else "probe"
    folder = (["group", "images", "PSNR", "interval", "1−cos", "interval"],
              [[g["group"], str(g["n_images"]), _num(g["psnr"], 4), _ci(g["psnr_ci"]), _num(g["embedding_change"]),
                _ci(g["embedding_change_ci"])] for g in doc["vae_folder"]]) if doc["vae_folder"] else None
    return {"table": (["term", "PSNR term", "PSNR baseline", "p", "1−cos term", "1−cos baseline", "p",
                       f"'{probe}' change term", "baseline", "p"], rows), "folder": folder}


def draw_figures(out: Path, result) -> tuple[dict, list[Path]]:
    """Draw the report's figures into ``out/figures`` and lay out the page's rows; (what
    :func:`write_page` renders, the figures' paths)."""
    out = Path(out)
    doc, pictures, made = result.to_dict(), result.pictures, []

    def figure(draw, name: str, caption: str, *args, **kwargs) -> tuple[str, str]:
        made.append(draw(out / "figures" / name, *args, **kwargs))
        return made[-1].relative_to(out).as_posix(), caption  # linked: a narrow screen opens the PNG full size

    parts = {"conditioning": doc["conditioning"] and _conditioning(doc, pictures, figure),
             "attention": doc["attention"] and _attention(doc, pictures, figure),
             "steps": doc["steps"] and _steps(doc, figure), "vae": (doc["vae"] or doc["vae_folder"]) and _vae(doc)}
    config, prov = doc["config"], doc.get("provenance", {})
    page = dict(
        name=str(doc.get("spec", {}).get("name", "trace")), tiny=is_tiny(doc),
        reference_world=prov.get("reference_world"), models=prov.get("models", {}), config=config,
        templates=", ".join(repr(t) for t in config["templates"]), baseline=repr(config["baseline"]),
        sections=[name for name, shown in parts.items() if shown], **parts, notes=doc["notes"],
        costs=(["section", "images", "generated now", "seconds", "images vs plain", "time vs plain"],
               [[c["section"], str(c["images"]), str(c["generated"]), _num(c["seconds"], 3),
                 _num(c["images_vs_plain"], 2), _num(c["seconds_vs_plain"], 2)] for c in doc["costs"]]),
        overhead=_num(doc["attention_overhead"], 2))
    return page, made


def write_page(out: Path, page: dict) -> Path:
    """Write ``report.html`` into ``out`` from what :func:`draw_figures` laid out."""
    from ldmprobe.render.html import render

    path = Path(out) / REPORT_NAME
    path.write_text(render("trace_report.html.j2", **page), encoding="utf-8")
    return path
