"""Checks of the command line that must refuse before any model loads or any file is written
(issue 28, issue 33): the run folder, the plan's size, the image size."""

from __future__ import annotations

from pathlib import Path

import click

#: Items (template x term x seed images) a sweep plans at most unless --max-items raises it.
MAX_ITEMS = 1_000_000
#: The largest image side --width / --height take: a 4096 x 4096 image already needs ~8 GiB in
#: the VAE decoder; beyond it generation cannot fit in any machine's memory.
MAX_SIDE = 4096

SIDE = click.IntRange(min=8, max=MAX_SIDE)  # multiples of 8 are checked with the plan (a fix is named)


def check_out(out: Path | None) -> None:
    """A run folder inside the cache is refused: ``cache verify --repair`` and ``cache prune``
    would treat the run's files as cache entries and delete them."""
    if out is None:
        return
    from ldmprobe.store.files import cache_root

    root, target = cache_root().expanduser().resolve(), Path(out).expanduser().resolve()
    if target == root or root in target.parents:
        raise click.UsageError(f"--out {out} is inside the cache ({root}); cache maintenance (cache verify --repair, "
                               "cache prune) would delete the run's files. Choose a folder outside it.")


def check_items(spec, max_items: int) -> None:
    """The plan's size (templates x (baseline + terms + controls) x seeds), refused over ``max_items``
    before anything is planned item by item; a spec's width or height over :data:`MAX_SIDE` too."""
    for key in ("width", "height"):
        value = getattr(spec, key, None)
        if value is not None and value > MAX_SIDE:
            raise click.UsageError(f"{spec.name!r}: {key} = {value} is more than the {MAX_SIDE} pixels an image may "
                                   "have here (its generation would not fit in memory); use a smaller size.")
    terms = 1 + len(spec.terms) + len(getattr(spec, "controls", ()) or ())
    count = len(spec.templates) * terms * len(spec.seeds)
    if count > max_items:
        raise click.UsageError(
            f"{spec.name!r} plans {count:,} images ({len(spec.templates)} templates x {terms} terms with baseline "
            f"and controls x {len(spec.seeds):,} seeds), more than the {max_items:,} allowed; narrow it (--seeds, "
            "--term) or raise the limit with --max-items N if you mean it.")
