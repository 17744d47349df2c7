"""Every table of every command at 80 columns, on the longest content a real run prints: no label,
id, path or number is cut, broken inside a word, or given a stray minus (issue 33)."""

from __future__ import annotations

import re

import pytest

from ldmprobe.render.layout import number_format, printable, printable_tree
from tests.support import assert_whole
from tests.support import render_text as _render

LONG_ID = "hf-hub:stable-diffusion-v1-5/stable-diffusion-v1-5"
LONG_PATH = "/home/someone/projects/bias-audit/embeddings/career-words-clip-vit-l-14.npz"


def _probe(name, shift, low, high, p_adj=0.5, **extra):
    return {"probe": name, "shift": shift, "ci_low": low, "ci_high": high, "p_value": p_adj / 2, "p_adjusted": p_adj,
            "p_fixed": 3.05e-05, "min_p": 3.05e-05, "exact": True, "n_resamples": 32768, "image_z": -4.97,
            "text_z": -5.14, **extra}


def _term(name, estimate, low, high, probes, controls_ratio=213.1, p=0.10, p_adj=0.67):
    return {"term": name, "n_pairs": 160, "failed": 0, "text_drift": {"measurer": 0.143},
            "image_drift": {"estimate": estimate, "ci_low": low, "ci_high": high, "controls_ratio": controls_ratio,
                            "p_value": p, "p_adjusted": p_adj, "p_pairs": 0.0039, "min_p": 0.05, "exact": True,
                            "n_resamples": 19},
            "probes": probes}


def sweep_document(tiny=False):
    probes = [_probe("a yellow background", 0.0863, 0.0775, 0.0964, p_adj=0.0038),
              _probe("a small object", -9.76e-05, -0.0775, -0.00641),
              _probe("photorealistic", -0.0, -0.0211, 0.0209)]
    terms = [_term("fancy", 0.0312, 0.0277, 0.0351, probes, p_adj=0.01), _term("old", 2.83e-05, -1.2e-05, 3.5e-05, probes),
             _term("neighbourhood-watch", -1.95e-05, -2.63e-05, -1.3e-05, probes[1:], controls_ratio=-146.0)]
    controls = [_term(name, 0.0021, -0.0004, 0.0047, []) for name in ("nice", "plain", "next-door")]
    return {"kind": "sweep", "spec": {"name": "reference-world"}, "baseline": "", "terms": terms, "controls": controls,
            "counts": {"planned": 1280, "generated": 0, "cached": 1280, "failed": 0, "flagged": 0},
            "summary": {"baseline_spread": 0.0109, "controls": ["nice", "plain", "next-door"],
                        "design": {"min_p": {"controls": 0.25}}, "notes": []},
            "provenance": {"tiny": tiny, "reference_world": True}}


def _sweep_cells(document):
    cells = [t["term"] for t in document["terms"]] + [c["term"] for c in document["controls"]]
    cells += [p["probe"] for t in document["terms"] for p in t["probes"]]
    return cells + ["0.0863", "[0.0775,", "0.0964]", "0.0312", "0.0000"]  # tiny drifts beside 0.03: no measurable drift


def test_sweep_leads_with_the_finding_and_shows_the_controls():
    from ldmprobe.render.sweep import render_sweep

    document = sweep_document()
    text = _render(render_sweep(document))
    assert_whole(text, _sweep_cells(document))
    first = text.splitlines()[0]
    assert first.startswith("reference-world: probe shifts significant")
    assert text.index("a yellow background") < text.index("image drift from baseline")
    assert "image drift beyond the 3 controls (p adj < 0.05): fancy." in " ".join(text.split())
    assert "controls' own drift" in text and "next-door" in text
    assert "true of that world, not of any real model" in " ".join(text.split())


def test_sweep_without_a_significant_shift_says_so_first():
    from ldmprobe.render.sweep import render_sweep

    document = sweep_document()
    for term in document["terms"]:
        term["image_drift"]["p_adjusted"] = 0.67
        for probe in term["probes"]:
            probe["p_adjusted"] = 0.3
    text = " ".join(_render(render_sweep(document)).split())
    assert text.startswith("reference-world: no probe shift is significant after Benjamini-Hochberg")
    assert "with 3 controls p cannot go below 0.25; add controls" in text


def trace_document(reference=True):
    def variant(name, share):
        return {"variant": name, "drift_share": share, "projection_share": -0.0004, "projection_share_ci": [-0.31, 0.29],
                "probe_share": [0.004], "probe_share_ci": [[-1.25, 1.3]], "probe_test": [{"p_value": 3.2e-05}]}

    effect = {"term": "fancy", "term_drift": 0.0312, "term_probe_shift": [0.0863], "probes": ["a yellow background"],
              "term_probe_test": [{"p_value": 0.0004}],
              "variants": [variant("baseline>term@12", 0.83), variant("term>baseline@12", -0.001),
                           variant("modifier", 0.5)]}
    attention = {"term": "fancy", "inside_share": 0.412, "region_area": 0.163, "excess_test": {"estimate": -0.0012,
                 "p_value": 0.41}, "entropy": 5.53, "gini": 0.3, "token_shares": {"modifier": -0.0, "eot_pad": 0.61}}
    vae = {"term": "fancy", "psnr": 31.27, "psnr_baseline": 30.9, "psnr_test": {"p_value": 0.2}, "embedding_change": 0.0012,
           "embedding_change_baseline": 9.94e-05, "embedding_change_test": {"p_value": 0.03}, "probe_change": [-1.96e-05],
           "probe_test": [{"p_value": 0.5}]}
    return {"kind": "trace", "conditioning": [effect], "attention": [attention], "steps": [effect], "vae": [vae],
            "vae_folder": [{"group": "my-photos-from-the-street", "n_images": 12, "psnr": 28.1, "embedding_change": 0.02}],
            "costs": [{"section": "steps", "images": 120, "generated": 0}], "notes": [],
            "provenance": {"tiny": False, "reference_world": reference}}


def test_trace_tables_keep_labels_shares_and_changes_whole():
    from ldmprobe.render.trace import render_trace

    text = _render(render_trace(trace_document()))
    assert_whole(text, ["baseline>term@12", "term>baseline@12", "modifier", "eot/pad", "+0.83", "[-0.31,", "+0.29]",
                        "my-photos-from-the-street", "-1.96e-05", "0.0012", "0.0001"])
    assert "+0.00…" not in text and "true of that world" in " ".join(text.split())


def neighbours_document():
    rows = [{"word": w, "score": s} for w, s in (("photorealistic", 0.3124), ("extraordinarily", 0.29), ("fancy", -0.1))]
    return {"kind": "neighbours", "term": "fancy", "neighbours": rows, "image_neighbours": rows,
            "overlap": {"count": 2, "jaccard": 0.5},
            "config": {"contexts": ["a photo of a {} house"], "k": 3, "measurer": {"spec": "reference"},
                       "vocabulary": {"size": 49408, "sources": ["clip-bpe"]}},
            "provenance": {"tiny": False, "reference_world": True}}


def test_neighbours_table_keeps_words_and_scores_and_says_the_caveat():
    from ldmprobe.render.neighbours import render_neighbours

    text = _render(render_neighbours(neighbours_document()))
    assert_whole(text, ["photorealistic", "extraordinarily", "0.3124", "-0.1000"])
    assert "true of that world" in " ".join(text.split())


def test_models_and_cache_tables_keep_ids_and_paths_whole():
    from ldmprobe.render.cache import render_info, render_prune, render_verify
    from ldmprobe.render.models import render_inventory

    row = {"role": "generator", "name": "ViT-L-14-quickgelu:openai", "resolves_to": LONG_ID,
           "status": "not cached (needs network once)", "about": "Stable Diffusion 1.5 (512x512)"}
    assert_whole(_render(render_inventory({"cache": "/c", "generators": [row], "measurers": []})),
                 [LONG_ID, "ViT-L-14-quickgelu:openai"])
    info = {"cache": "/root/.cache/ldmprobe", "total_bytes": 10 ** 9,
            "by_kind": [{"kind": "trace attention maps", "entries": 16, "bytes": 10 ** 6}],
            "by_model": [{"kind": "images", "model": LONG_ID, "entries": 1280, "bytes": 10 ** 8,
                          "newest": "2026-12-06T10:00:00"}]}
    assert_whole(_render(render_info(info)), [LONG_ID, "trace attention maps", "1280"])  # the date: in the JSON
    bad = [{"kind": "image", "model": LONG_ID, "path": LONG_PATH, "reason": "digest mismatch", "repaired": False}]
    assert_whole(_render(render_verify({"cache": "/c", "checked": 3, "bad": bad, "ok": 2})), [LONG_ID, LONG_PATH])
    removed = [{"kind": "images", "model": LONG_ID, "bytes": 2048}]
    assert_whole(_render(render_prune({"dry_run": True, "removed": removed, "removed_bytes": 2048})), [LONG_ID])


@pytest.mark.slow
def test_plan_table_keeps_prompts_and_folds_a_million_seeds_into_runs():
    from ldmprobe.render.sweep import render_plan, seed_ranges

    items = [{"template": "a photo of a {} house in the evening light", "term": t, "seed": s,
              "prompt": f"a photo of a {t} house in the evening light", "cached": 0}
             for t in ("neighbourhood-watch", "") for s in (*range(50), 99)]
    text = _render(render_plan({"counts": {"planned": len(items), "unique": len(items), "cached": 0}, "items": items}))
    assert_whole(text, ["neighbourhood-watch", "(baseline)", "0-49, 99", "0/51"])
    assert seed_ranges(range(10 ** 6)) == "0-999999"


def test_number_format_is_one_per_column_and_never_minus_zero():
    fmt = number_format([0.163, 0.3])
    assert (fmt(0.163), fmt(0.3)) == ("0.163", "0.300")
    fmt = number_format([-9.94e-05, 2.1e-06])
    assert (fmt(-9.94e-05), fmt(2.1e-06)) == ("-9.94e-05", "2.10e-06")
    fmt = number_format([0.5, -0.0001, 2e-05], signed=True)  # most would print as zero: the column goes scientific
    assert (fmt(0.5), fmt(-0.0001)) == ("+5.00e-01", "-1.00e-04")
    fmt = number_format([0.5, 0.3, -0.0001], signed=True)  # one vanishing value reads as zero, never "-0"
    assert (fmt(-0.0001), fmt(-0.0), fmt(None), fmt(float("nan"))) == ("+0.000", "+0.000", "—", "—")


def test_control_characters_never_reach_the_terminal_raw():
    hostile = "fancy\x1b]8;;http://evil\x07click\x1b[2J\x00\x9b"
    shown = printable(hostile)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", shown)
    assert shown == "fancy\\x1b]8;;http://evil\\x07click\\x1b[2J\\x00\\x9b"
    assert printable_tree({"a\x1b": ["b\x1b", 1, None]}) == {"a\\x1b": ["b\\x1b", 1, None]}


@pytest.mark.parametrize("fmt", ["table"])
def test_emit_escapes_terms_in_every_table(fmt):
    import io

    from ldmprobe.render.emit import emit
    from ldmprobe.render.terminal import Terminal

    document = neighbours_document()
    document["term"] = "fancy\x1b[31m"
    out = io.StringIO()
    emit(document, fmt, Terminal(stdout=out, stderr=io.StringIO()))
    assert "\x1b" not in out.getvalue() and "\\x1b[31m" in out.getvalue()


def test_a_drift_whose_interval_holds_zero_is_no_measurable_drift_in_the_report():
    from ldmprobe.render.report_parts import term_sentence

    term = _term("poor", -1.96e-05, -6.1e-06 * 4, 5.8e-06, [])
    sentence = term_sentence(sweep_document(), term)
    assert "made no measurable drift" in sentence and "moved the images by drift -1.96e-05" not in sentence
    moved = term_sentence(sweep_document(), _term("fancy", 0.229, 0.163, 0.3, []))
    assert "moved the images by drift <span class=nowrap>0.229</span>" in moved


def test_a_what_value_table_wraps_its_values_at_spaces_and_never_cuts_a_word():
    from ldmprobe.render.layout import Fitted, Stacked, add_columns, compact_table

    source = ("source", "Caliskan, Bryson & Narayanan 2017, Science 356:183-186, supplement WEAT 1 (lists from "
                        "Greenwald, McGhee & Schwartz 1998)")

    def render(rows):
        def table():
            t = compact_table("what / value")
            t.show_header, t.wraps_words = False, True
            add_columns(t, ("what", "value"), words=("value",))
            for row in rows:
                t.add_row(*row)
            return t

        text = _render(Fitted(table, lambda: Stacked("what / value", ("what", ""), rows)))
        assert_whole(text, [cell for row in rows for cell in row])
        return text.splitlines()

    assert any(line.startswith("source  Caliskan,") for line in render([source]))  # a table, its value wrapped
    lines = render([source, ("X from", LONG_PATH + " (npy, 25 x 512)")])  # a 74-character path: one block per row
    assert "X from" in lines and any(line.strip().startswith(LONG_PATH) for line in lines)


def test_compare_table_keeps_terms_probes_and_numbers_whole():
    from ldmprobe.render.compare import render_compare

    def drift(a, b, verdict="better"):
        return {"drift_a": a, "drift_b": b, "difference": b - a, "ci_low": -0.0123, "ci_high": -0.0011,
                "p_adjusted": 0.012, "verdict": verdict}

    probe = {"probe": "a yellow background", "shift_a": 0.337, "shift_b": 0.101, "difference": -0.236,
             "ci_low": -0.3, "ci_high": -0.17, "p_adjusted": 0.004, "verdict": "better"}
    run = {"path": LONG_PATH, "pipeline": LONG_ID, "steps": 50, "guidance": 7.5, "n_usable": 1280, "n_items": 1280}
    document = {"kind": "compare", "spec": {"name": "reference-world"}, "measurer": {"spec": "ViT-L-14-quickgelu:openai"},
                "runs": {"a": run, "b": run}, "summary": {"alpha": 0.05, "notes": []},
                "terms": [{"term": "neighbourhood-watch", "n_pairs": 160, "drift": drift(0.229, 0.229 - 0.0), "probes": [probe]},
                          {"term": "old", "n_pairs": 160, "drift": drift(-0.0, 0.0, "no clear change"), "probes": []}],
                "provenance": {"tiny": True}}
    text = _render(render_compare(document))
    assert_whole(text, ["neighbourhood-watch", "a yellow background", LONG_ID, "ViT-L-14-quickgelu:openai"])
    assert "mean nothing" in text
