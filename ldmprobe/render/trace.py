"""Tables and JSON Lines records of ``ldmprobe trace``: one table per section that ran."""

from __future__ import annotations

import math

from ldmprobe.render.emit import as_document

TINY_LINE = "TINY MODELS: random weights, these numbers mean nothing."


def _num(value, digits: int = 3, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if signed:
        return f"{value:+.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:+.{digits}g}"
    return f"{value:.{digits}g}"


def _p(value) -> str:
    if value is None:
        return "—"
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def _ci(pair) -> str:
    if not pair or pair[0] is None or pair[1] is None:
        return "[—]"
    return f"[{_num(pair[0], 2, True)}, {_num(pair[1], 2, True)}]"


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
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    probe = tables[0]["probes"][0] if tables and tables[0]["probes"] else None
    columns = ["term", "variant", "drift share", "projection share [CI]"]
    columns += [f"'{probe}' share [CI]", "p (shift)"] if probe else []
    for column in columns:
        table.add_column(column, justify="left" if column in ("term", "variant") else "right")
    for t in tables:
        p0 = t["term_probe_test"][0]["p_value"] if t["term_probe_test"] else None
        table.add_row(t["term"], "(term itself)", "1", f"drift {_num(t['term_drift'])}",
                      *([f"shift {_num(t['term_probe_shift'][0], signed=True)}", _p(p0)] if probe else []),
                      style="bold")
        for v in t["variants"]:
            cells = [t["term"], v["variant"], _num(v["drift_share"], 2),
                     f"{_num(v['projection_share'], 2, True)} {_ci(v['projection_share_ci'])}"]
            if probe:
                cells += [f"{_num(v['probe_share'][0], 2, True)} {_ci(v['probe_share_ci'][0])}",
                          _p(v["probe_test"][0]["p_value"])]
            table.add_row(*cells)
    return table


def _attention_table(entries: list[dict]):
    from rich.table import Table

    table = Table(title="cross-attention: where the modifier lands (noun region holds 50 % of the noun's map)",
                  title_justify="left")
    for column in ("term", "inside", "area", "excess", "p", "entropy", "gini", "modifier share", "eot/pad share"):
        table.add_column(column, justify="left" if column == "term" else "right")
    for a in entries:
        test = a["excess_test"]
        table.add_row(a["term"], _num(a["inside_share"]), _num(a["region_area"]), _num(test["estimate"], 3, True),
                      _p(test["p_value"]), _num(a["entropy"]), _num(a["gini"]),
                      _num(a["token_shares"].get("modifier")), _num(a["token_shares"].get("eot_pad")))
    return table


def _vae_table(entries: list[dict], groups: list[dict]):
    from rich.table import Table

    table = Table(title="autoencoder round trip: term images vs baseline images", title_justify="left")
    for column in ("term", "PSNR term", "PSNR base", "p", "1−cos term", "1−cos base", "p", "probe change", "p"):
        table.add_column(column, justify="left" if column == "term" else "right")
    for v in entries:
        probe = [_num(v["probe_change"][0], 3, True), _p(v["probe_test"][0]["p_value"])] if v["probe_change"] else ["—", "—"]
        table.add_row(v["term"], _num(v["psnr"], 4), _num(v["psnr_baseline"], 4), _p(v["psnr_test"]["p_value"]),
                      _num(v["embedding_change"]), _num(v["embedding_change_baseline"]),
                      _p(v["embedding_change_test"]["p_value"]), *probe)
    for g in groups:
        table.add_row(f"folder: {g['group']} ({g['n_images']})", _num(g["psnr"], 4), "", "",
                      _num(g["embedding_change"]), "", "", "", "")
    return table


def render_trace(result):
    """The rich tables of a trace result (or its document)."""
    from rich.console import Group
    from rich.text import Text

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
    return Group(*parts)
