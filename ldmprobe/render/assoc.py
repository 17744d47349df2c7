"""The table of an association test."""

from __future__ import annotations

import math


def assoc_records(result) -> list[dict]:
    """jsonl: the one record of the test (named, with the tiny-model flag)."""
    return [result.record()]


def _fmt_p(p: float | None, r: dict | None = None) -> str:
    from ldmprobe.analysis.inference import format_p

    if p is None or not math.isfinite(p):
        return "n/a"
    if r is None:
        return format_p(p, min_p=0.0, exact=True, n_resamples=0)
    return format_p(p, min_p=r["min_p"], exact=bool(r["exact"]), n_resamples=r["n_resamples"])


def render_assoc_table(result):
    """Effect size, S, p (exact or sampled), set sizes, models; then the tiny / reference-world
    caveat. Values wrap at spaces; a terminal too narrow for a path gets one line per row."""
    from rich.console import Group

    from ldmprobe.render.layout import Fitted, Stacked, add_columns, compact_table, printable
    from ldmprobe.render.sweep import caveat_lines

    rows = [(what, printable(str(value))) for what, value in _rows(result)]
    title = f"ldmprobe assoc: {printable(result.spec.name)}"

    def table():
        t = compact_table(title)
        t.show_header, t.wraps_words = False, True
        add_columns(t, ("what", "value"), words=("value",))
        t.columns[0].justify = "left"
        for what, value in rows:
            t.add_row(what, value)
        return t

    return Group(Fitted(table, lambda: Stacked(title, ("what", ""), rows)), *caveat_lines(result.provenance))


def _rows(result) -> list[tuple[str, str]]:
    r = result.result_dict()
    spec = result.spec
    rows: list[tuple[str, str]] = []

    def add(what: str, value: str) -> None:
        rows.append((what, value))

    labels = r["labels"]
    add("targets", f"X = {labels['X']} ({r['n_x']})  vs  Y = {labels['Y']} ({r['n_y']})")
    add("attributes", f"A = {labels['A']} ({r['n_a']})  vs  B = {labels['B']} ({r['n_b']})")
    d = r["effect_size"]
    add("effect size d", "n/a" if d is None else f"{d:+.3f}")
    s = r["statistic"]
    add("statistic S", "n/a" if s is None else f"{s:+.4f}")
    unit = r.get("unit", "word")
    if r["exact"]:
        how = f"exact over all {r['n_partitions']:,} partitions (of {unit}s)"
    else:
        how = (f"sampled: {r['n_resamples']:,} random re-partitions of {unit}s of {r['n_partitions']:,}, "
               f"seed {r['seed']}")
    add("p (one-sided)", f"{_fmt_p(r['p_value'], r)}  ({how}; smallest possible "
                           f"{_fmt_p(r['min_p'])})")
    add("generalises to", r.get("generalises_to") or "")
    if r.get("min_p") is not None and r["min_p"] > 0.05:
        add("design", f"cannot reach p ≤ 0.05: the smallest possible p is {_fmt_p(r['min_p'])}; "
                   "add prompts (or words)")
    if r.get("n_dropped"):
        add("excluded", f"{r['n_dropped']} non-finite or zero-norm embeddings")
    add("n", f"X {r['n_x']}, Y {r['n_y']}, A {r['n_a']}, B {r['n_b']}; "
               f"sd with ddof={r['ddof']}")
    measurer = result.config.get("measurer")
    add("measurer", measurer["spec"] if measurer else "none (every set is a file of embeddings)")
    for name, source in result.sources.items():
        add(f"{name} from", _source_line(source))
    for note in result.notes:
        add("note", note)
    if result.config.get("pipeline"):
        gen = result.config.get("generation") or {}
        add("pipeline", f"{result.config['pipeline']['spec']} ({gen.get('steps')} "
                        f"steps, guidance {gen.get('guidance')}, "
                        f"{gen.get('width')}x{gen.get('height')})")
    if spec.source:
        add("source", spec.source)
    return rows


def _source_line(source) -> str:
    """Where a set read from the user's files came from, in one line."""
    shape = f"{source.n} x {source.dim}" if source.dim else f"{source.n} images"
    grouped = f", {len(dict.fromkeys(source.groups))} prompts" if source.groups is not None else ""
    return f"{source.path} ({source.format}, {shape}{grouped}; sha256 {source.sha256[:12]})"
