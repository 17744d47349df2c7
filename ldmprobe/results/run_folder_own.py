"""The run folder of a sweep on the user's own images or embeddings: results.json, items.jsonl,
and for images their copies and a contact sheet per template.

Written like a generated sweep's (:func:`ldmprobe.results.run_folder.write_run_folder`): into
a new folder beside ``out``, moved into place at the end (``--replace`` swaps the old one out
whole); images are copies, never links. report.html, when asked for, is written before publishing
(:func:`finishing`).
"""

from __future__ import annotations

import contextlib
import contextvars
from pathlib import Path

from ldmprobe.store.files import atomic_write_text, clone_file
from ldmprobe.records import jsonable, to_json
from ldmprobe.results import run_folder
from ldmprobe.results.contact_sheet import contact_sheet
from ldmprobe.results.sweep import ContactSheet, SweepResult
from ldmprobe.results.sweep_folder import shown_in_report


def write_own_run_folder(out: Path, result: SweepResult, items: list[dict], copies: dict[str, Path], *,
                         replace: bool, note: str | None = None) -> SweepResult:
    """Write ``items`` (one dict per planned cell, ``image`` a path inside the folder or None) and
    copy each ``copies[relative path] = source file``; contact sheets when there are images."""
    with run_folder.staged_folder(out, replace=replace) as staging:
        for rel, source in copies.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            clone_file(Path(source), staging / rel)
        lines = [jsonable(i) for i in items]
        atomic_write_text(staging / "items.jsonl", "".join(to_json(i, indent=None) + "\n" for i in lines))
        sheets = _contact_sheets(staging, result.spec, items, note) if copies else []
        written = result.with_contact_sheets(sheets)
        document = jsonable(written)
        atomic_write_text(staging / "results.json", to_json(document) + "\n")
        finish = _FINISH.get()
        if finish is not None:
            finish(staging, document, [i for i in lines if shown_in_report(i)])
    return written


_FINISH: contextvars.ContextVar = contextvars.ContextVar("own_run_folder_finish", default=None)


@contextlib.contextmanager
def finishing(finish):
    """Within the block, :func:`write_own_run_folder` calls ``finish(staging, document, shown_items)`` (e.g. writing
    report.html) before the folder is published, so a stop never publishes it without."""
    token = _FINISH.set(finish)
    try:
        yield
    finally:
        _FINISH.reset(token)


def _contact_sheets(folder: Path, spec: dict, items: list[dict], note: str | None) -> list[ContactSheet]:
    from PIL import Image

    top = (items[0].get("guidance"), items[0].get("steps")) if items else None  # several levels: the first's
    by_cell = {(i["template_index"], i["term"], i["seed"]): i.get("image") for i in items
               if (i.get("guidance"), i.get("steps")) == top}
    terms = [spec["baseline"], *spec["terms"], *spec.get("controls", [])]
    sheets = []
    for t, template in enumerate(spec["templates"]):
        rows = []
        for term in terms:
            row = []
            for seed in run_folder.sample_seeds(spec["seeds"]):  # bounded, as a generated sweep's
                rel = by_cell.get((t, term, seed))
                if rel is None:
                    row.append(None)
                    continue
                with Image.open(folder / rel) as image:
                    row.append(image.convert("RGB"))
            rows.append((term or "(baseline)", row))
        name = f"contact-{t:02d}.png"
        contact_sheet(template, rows, [str(s) for s in run_folder.sample_seeds(spec["seeds"])], note=note).save(folder / name, format="PNG")
        sheets.append(ContactSheet(template=template, path=name))
    return sheets
