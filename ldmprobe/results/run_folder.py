"""The run folder: results.json, items.jsonl, images/ and a contact sheet per template."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ldmprobe.engine import cache
from ldmprobe.engine.sweep_images import ItemRecord
from ldmprobe.engine.sweep_setup import SweepSetup
from ldmprobe.errors import BadInputError
from ldmprobe.records import to_json
from ldmprobe.results.contact_sheet import contact_sheet
from ldmprobe.results.sweep import ContactSheet, SweepResult
from ldmprobe.specs.sweep import Spec


def default_out(spec: Spec, runs_dir: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return runs_dir / f"{spec.name}-{stamp}"


def check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file, not a folder. Choose another path for the run folder.")
    if out.exists() and not os.access(out, os.W_OK):
        raise BadInputError(f"--out {out} is not writable.")


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def write_run_folder(out: Path, result: SweepResult, records: dict[str, ItemRecord], setup: SweepSetup,
                     store: cache.ImageStore) -> SweepResult:
    """results.json, items.jsonl, images/ and one contact sheet per template.

    Returns the result with its contact sheets listed; ``result`` itself is left as it was.
    """
    out.mkdir(parents=True, exist_ok=True)
    _write_items(out, records, setup, store)
    sheets = [_write_contact_sheet(out, t, records, setup, store) for t in range(len(setup.spec.templates))]
    written = result.with_contact_sheets(sheets)
    cache.atomic_write_text(out / "results.json", to_json(written) + "\n")
    return written


def _write_items(out: Path, records: dict[str, ItemRecord], setup: SweepSetup, store: cache.ImageStore) -> None:
    """items.jsonl (one line per planned image) and the images beside it."""
    lines = []
    for item in setup.items:
        record = records[item.key]
        image_rel = None
        if record.failed is None and setup.options.write_images:
            image_rel = f"images/{item.key}.png"
            _link_or_copy(store.path(item.key), out / image_rel)
        lines.append(to_json({
            "template": item.template, "template_index": item.template_index, "term": item.term,
            "is_baseline": item.is_baseline, "seed": item.seed, "prompt": item.prompt, "key": item.key,
            "image": image_rel, "cached": record.cached,
            "flags": {"failed": record.failed, "nsfw": record.nsfw,
                      "dropped": setup.options.nsfw == "drop" and bool(record.nsfw)},
        }, indent=None))
    cache.atomic_write_text(out / "items.jsonl", "\n".join(lines) + "\n")


def _write_contact_sheet(out: Path, t: int, records: dict[str, ItemRecord], setup: SweepSetup,
                         store: cache.ImageStore) -> ContactSheet:
    spec = setup.spec
    by_cell = {(i.template_index, i.term, i.seed): i for i in setup.items}
    rows = []
    for term in spec.all_terms:
        row = []
        for seed in spec.seeds:
            item = by_cell[(t, term, seed)]
            loaded = store.load(item.key) if records[item.key].failed is None else None
            row.append(loaded[0] if loaded else None)
        rows.append((term or "(baseline)", row))
    name = f"contact-{t:02d}.png"
    contact_sheet(spec.templates[t], rows, [str(s) for s in spec.seeds]).save(out / f".{name}.tmp", format="PNG")
    os.replace(out / f".{name}.tmp", out / name)
    return ContactSheet(template=spec.templates[t], path=name)
