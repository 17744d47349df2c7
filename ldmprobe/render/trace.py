"""Tables and JSON Lines records of ``ldmprobe trace``: one table per section that ran."""

from __future__ import annotations

import math

from ldmprobe.render.emit import as_document
from ldmprobe.render.layout import number_format, shrinking_table

TINY_LINE = "TINY MODELS: random weights, these numbers mean nothing."


def _num(value, digits: int = 3, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return number_format([value], digits=digits, signed=signed)(value)


def _p(value) -> str:
    if value is None:
        return "—"
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def _ci(pair, fmt=None) -> str:
    """"[low, high]" in ``fmt`` (the column's format; default: two decimals, signed)."""
    if not pair or pair[0] is None or pair[1] is None:
        return "[—]" if fmt is None else "—"
    fmt = fmt or number_format([1.0], digits=3, signed=True)
    return f"[{fmt(pair[0])}, {fmt(pair[1])}]"


def is_tiny(document: dict) -> bool:
    return bool(document.get("provenance", {}).get("tiny")) or any("tiny models" in n for n in document["notes"])


def trace_records(result) -> list[dict]:
    """jsonl: one record per (section, term), and one per user-image group of the VAE section."""
    document = as_document(result)
    tiny = is_tiny(document)
    records = []
    for section in ("conditioning", "attention", "steps", "vae"):
        for entry in document[section]:
            records.append({"kind": "trace", "section": section, "tiny": tiny, **entry})
    for entry in document["vae_folder"]:
        records.append({"kind": "trace", "section": "vae_folder", "tiny": tiny, **entry})
    return records


def _effect_table(title: str, tables: list[dict]):
    """Per term: its own drift (and shift toward the first probe) on a line, then each variant's
    shares of it. Shares print with two decimals and a sign in every row; CIs beside them."""
    from rich.console import Group
    from rich.text import Text

    probe = tables[0]["probes"][0] if tables and tables[0]["probes"] else None
    title += ("; the variant's share of the term's drift, of its projection on the drift direction"
              + (f" and of its shift toward {probe!r} (p: that shift's test)" if probe else ""))
    columns = ("variant", "drift", "proj", "95% CI", *(("probe", "95% CI ", "p") if probe else ()))
    share = number_format([1.0], digits=3, signed=True)  # shares are fractions of 1: +0.12 everywhere
    parts: list = [Text(title)]
    for t in tables:
        p0 = t["term_probe_test"][0]["p_value"] if t["term_probe_test"] else None
        own = f"{t['term']}: drift {_num(t['term_drift'])}"
        if probe:
            own += f", shift toward {probe!r} {_num(t['term_probe_shift'][0], signed=True)}, p {_p(p0)}"
        rows = []
        for v in t["variants"]:
            cells = [v["variant"], share(v["drift_share"]), share(v["projection_share"]),
                     _ci(v["projection_share_ci"], share)]
            if probe:
                cells += [share(v["probe_share"][0]), _ci(v["probe_share_ci"][0], share),
                          _p(v["probe_test"][0]["p_value"])]
            rows.append(cells)
        parts += [Text(own, style="bold"), shrinking_table(None, columns, rows, drops=((), ("95% CI",)), words=("variant",))]
    return Group(*parts)


def _attention_table(entries: list[dict]):
    fmt = {key: number_format([get(a) for a in entries], signed=key == "excess") for key, get in (
        ("inside", lambda a: a["inside_share"]), ("area", lambda a: a["region_area"]),
        ("excess", lambda a: a["excess_test"]["estimate"]), ("entropy", lambda a: a["entropy"]),
        ("gini", lambda a: a["gini"]), ("modifier", lambda a: a["token_shares"].get("modifier")),
        ("eot_pad", lambda a: a["token_shares"].get("eot_pad")))}
    rows = [(a["term"], fmt["inside"](a["inside_share"]), fmt["area"](a["region_area"]),
             fmt["excess"](a["excess_test"]["estimate"]), _p(a["excess_test"]["p_value"]), _signal(a),
             fmt["entropy"](a["entropy"]), fmt["gini"](a["gini"]), fmt["modifier"](a["token_shares"].get("modifier")),
             fmt["eot_pad"](a["token_shares"].get("eot_pad"))) for a in entries]
    objects = any(a.get("region") == "object" for a in entries)
    where = ("each picture's object (segmented from its plain background)" if objects else
             f"the noun region (holds {entries[0].get('mass', 0.5):.0%} of the noun's map)" if entries else "the noun region")
    return shrinking_table(f"cross-attention: where the modifier lands, against {where}",
                           ("term", "inside", "area", "excess", "p", "noun on it", "entropy", "gini", "modifier",
                            "eot/pad"), rows,
                           words=("term",), drops=((), ("gini",), ("gini", "entropy")),
                           caption="noun on it: does the noun's own attention land on the object (its excess, p); "
                                   "'no' means the maps carry no spatial signal there. modifier, eot/pad: share of "
                                   "the attention on the modifier's tokens and on end/padding tokens")


def _signal(a: dict) -> str:
    test = a.get("noun_excess_test")
    if a.get("region") != "object" or not test:
        return "—"
    return f"{a.get('spatial_signal', 'untested')} ({_p(test['p_value'])})"


def _vae_table(entries: list[dict], groups: list[dict]):
    from rich.console import Group

    psnr = number_format([v for e in entries for v in (e["psnr"], e["psnr_baseline"])] + [g["psnr"] for g in groups])
    cos = number_format([v for e in entries for v in (e["embedding_change"], e["embedding_change_baseline"])]
                        + [g["embedding_change"] for g in groups])
    change = number_format([e["probe_change"][0] for e in entries if e["probe_change"]], signed=True)
    rows = []
    for v in entries:
        probe = [change(v["probe_change"][0]), _p(v["probe_test"][0]["p_value"])] if v["probe_change"] else ["—", "—"]
        rows.append((v["term"], psnr(v["psnr"]), psnr(v["psnr_baseline"]), _p(v["psnr_test"]["p_value"]),
                     cos(v["embedding_change"]), cos(v["embedding_change_baseline"]),
                     _p(v["embedding_change_test"]["p_value"]), *probe))
    parts = []
    if rows:
        parts.append(shrinking_table(
            "autoencoder round trip: term images vs baseline images",
            ("term", "PSNR term", "base", "p", "1−cos term", "base ", "p ", "probe", "p  "), rows, words=("term",),
            caption="1−cos: the measurer's embedding change; probe: change of the projection on the first probe"))
    if groups:
        parts.append(shrinking_table("autoencoder round trip: your images, by folder",
                                     ("folder", "images", "PSNR", "1−cos"),
                                     [(g["group"], str(g["n_images"]), psnr(g["psnr"]), cos(g["embedding_change"]))
                                      for g in groups], words=("folder",)))
    return Group(*parts)


def render_trace(result):
    """The rich tables of a trace result (or its document)."""
    from rich.console import Group
    from rich.text import Text

    from ldmprobe.render.sweep import REFERENCE_LINE

    d = as_document(result)
    parts = []
    if d["conditioning"]:
        parts.append(_effect_table("conditioning: share of the term's effect carried by each part of the "
                                   "text encoder's output", d["conditioning"]))
    if d["attention"]:
        parts.append(_attention_table(d["attention"]))
    if d["steps"]:
        parts.append(_effect_table("denoising steps: 'baseline>term@k' = baseline prompt for the first k steps",
                                   d["steps"]))
    if d["vae"] or d["vae_folder"]:
        parts.append(_vae_table(d["vae"], d["vae_folder"]))
    costs = ", ".join(f"{c['section']} {c['images']} ({c['generated']} new)" for c in d["costs"])
    parts.append(Text(f"images: {costs}."))
    parts += [Text(note, style="dim") for note in d["notes"] if "tiny models" not in note]
    if is_tiny(d):
        parts.append(Text(TINY_LINE, style="bold red"))
    if d.get("provenance", {}).get("reference_world"):
        parts.append(Text(REFERENCE_LINE, style="bold"))
    return Group(*parts)
