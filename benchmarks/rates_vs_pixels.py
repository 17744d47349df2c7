"""A reference-world run's attribute rates against the world's own pixel reader.

    ldmprobe sweep reference-world --out runs/rw && python benchmarks/rates_vs_pixels.py runs/rw

Reads every image of the run (from the run folder or the cache, by key), reads its background,
size and object colour with ``reference_world.world.read_attributes`` (pixels, no model) and
prints, per group, the largest |ldmprobe's rate − the pixels' share| over the baseline, terms
and controls (then over the baseline and terms, and over the controls, apart), then the rows
that differ by more than 0.05.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # reference_world/ lives at the repository root

from ldmprobe.store.images import ImageStore
from reference_world import world  # noqa: E402


def main(run: str) -> int:
    run_dir, store = Path(run), ImageStore()
    document = json.loads((run_dir / "results.json").read_text())
    truth: dict = defaultdict(lambda: defaultdict(list))
    for line in (run_dir / "items.jsonl").read_text().splitlines():
        item = json.loads(line)
        path = run_dir / item["image"] if item.get("image") else store.path(item["key"])
        attributes = world.read_attributes(np.asarray(Image.open(path).convert("RGB")))
        for group in ("background", "size", "colour"):  # by level: items.jsonl lines carry guidance and steps
            truth[(item.get("guidance"), item.get("steps"), item["term"])][group].append(attributes[group])
    levels = document.get("levels") or [{**document, "guidance": None, "steps": None}]
    worst: dict = defaultdict(float)
    by_kind: dict = defaultdict(float)  # ("terms": the baseline and the terms, or "controls", group)
    off = []
    for level in levels:
        base = level.get("baseline_result") or {}
        entries = [(base.get("term", ""), base.get("rates") or [], "terms")]
        entries += [(t["term"], t.get("rates") or [], "terms") for t in level["terms"]]
        entries += [(t["term"], t.get("rates") or [], "controls") for t in level.get("controls", [])]
        for term, rows, kind in entries:
            images = (truth[(level["guidance"], level["steps"], term)] if level["guidance"] is not None else
                      {g: sum((v[g] for k, v in truth.items() if k[2] == term), []) for g in ("background", "size",
                                                                                          "colour")})
            for r in rows:
                share = float(np.mean([v == r["option"] for v in images[r["group"]]]))
                gap = abs(r["rate"] - share)
                worst[r["group"]] = max(worst[r["group"]], gap)
                by_kind[kind, r["group"]] = max(by_kind[kind, r["group"]], gap)
                if gap > 0.05:
                    at = "" if level["guidance"] is None else f"g {level['guidance']:g} "
                    off.append(f"  {at}{term or '(bare)':8} {r['group']}:{r['option']:8} ldmprobe {r['rate']:.3f} "
                               f"(corrected={r['corrected']}) pixels {share:.3f}")
    print("largest |ldmprobe rate - pixel share| per group:",
          ", ".join(f"{g} {v:.3f}" for g, v in worst.items()))
    for kind in ("terms", "controls"):
        print(f"  over the {'baseline and terms' if kind == 'terms' else 'controls'}:",
              ", ".join(f"{g} {v:.3f}" for (k, g), v in by_kind.items() if k == kind) or "none")
    print("\n".join(off) if off else "every rate within 0.05 of the pixels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
