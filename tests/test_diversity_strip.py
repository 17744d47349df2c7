"""report.html's diversity strip: the least and the most diverse image sets by Vendi score, with their
images taken one per template in turn."""

from __future__ import annotations

from ldmprobe.render.rates_html import STRIP_IMAGES, diversity_strip


def _doc():
    def entry(term, vendi):
        return {"term": term, "rates": [{"group": "g", "option": "a", "rate": 0.5}], "diversity": {"vendi": vendi}}

    return {"baseline_result": entry("", 5.0), "terms": [entry("fancy", 2.0), entry("old", 7.5)],
            "controls": [entry("nice", 4.0)]}


def test_strip_shows_the_least_and_most_diverse_sets_alternating_templates():
    items = [{"term": term, "template": t, "seed": s, "image": f"images/{term or 'base'}-{t}-{s}.png"}
             for term in ("", "fancy", "old", "nice") for t in ("A {}", "B {}") for s in range(6)]
    strip = diversity_strip(_doc(), items)
    assert [(label, vendi) for label, vendi, _ in strip] == [("fancy", 2.0), ("old", 7.5)]
    images = strip[0][2]
    assert len(images) == STRIP_IMAGES
    assert images[:4] == ["images/fancy-A {}-0.png", "images/fancy-B {}-0.png", "images/fancy-A {}-1.png",
                          "images/fancy-B {}-1.png"]


def test_baseline_can_be_an_end_and_items_without_images_are_skipped():
    doc = _doc()
    doc["baseline_result"]["diversity"]["vendi"] = 1.0
    items = [{"term": "", "template": "A {}", "seed": 0, "image": None},
             {"term": "", "template": "A {}", "seed": 1, "image": "images/b1.png"}]
    strip = diversity_strip(doc, items)
    assert strip[0] == ("(baseline)", 1.0, ["images/b1.png"])


def test_no_strip_without_two_diversity_figures():
    assert diversity_strip({"terms": [{"term": "x", "diversity": {"vendi": 3.0}}]}, []) == []
    assert diversity_strip({}, []) == []
