"""The table of an association test."""

from __future__ import annotations

import math


def assoc_records(result) -> list[dict]:
    """jsonl: the one record of the test (named, with the tiny-model flag)."""
    return [result.record()]


def _fmt_p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


def render_assoc_table(result):
    """A rich table: effect size, S, p (exact or sampled), set sizes, models."""
    from rich.table import Table

    r = result.result_dict()
    spec = result.spec
    title = f"ldmprobe assoc: {spec.name}"
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    labels = r["labels"]
    table.add_row("targets", f"X = {labels['X']} ({r['n_x']})  vs  Y = {labels['Y']} ({r['n_y']})")
    table.add_row("attributes",
                  f"A = {labels['A']} ({r['n_a']})  vs  B = {labels['B']} ({r['n_b']})")
    d = r["effect_size"]
    table.add_row("effect size d", "n/a" if d is None else f"{d:+.3f}")
    s = r["statistic"]
    table.add_row("statistic S", "n/a" if s is None else f"{s:+.4f}")
    if r["exact"]:
        how = f"exact over all {r['n_partitions']:,} partitions"
    else:
        how = (f"sampled: {r['n_resamples']:,} random partitions of {r['n_partitions']:,}, "
               f"seed {r['seed']}")
    table.add_row("p (one-sided)", f"{_fmt_p(r['p_value'])}  ({how}; smallest possible "
                                   f"{_fmt_p(r['min_p'])})")
    table.add_row("n", f"X {r['n_x']}, Y {r['n_y']}, A {r['n_a']}, B {r['n_b']}; "
                       f"sd with ddof={r['ddof']}")
    table.add_row("measurer", result.config.get("measurer", {}).get("spec", ""))
    if result.config.get("pipeline"):
        gen = result.config.get("generation") or {}
        table.add_row("pipeline", f"{result.config['pipeline']['spec']} ({gen.get('steps')} "
                                  f"steps, guidance {gen.get('guidance')}, "
                                  f"{gen.get('width')}x{gen.get('height')})")
    if spec.source:
        table.add_row("source", spec.source)
    if result.tiny:
        table.caption = "tiny models have random weights: these numbers mean nothing"
    return table
