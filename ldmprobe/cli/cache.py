"""``ldmprobe cache info | verify | prune``: look after the cache (``LDMPROBE_CACHE``); no torch."""

from __future__ import annotations

import click

from ldmprobe.cli.options import CliState, output_options


@click.group("cache")
def cache_group():
    """What the cache holds, a full check of it, and pruning.

    \b
    ldmprobe cache info                     size by kind and by model
    ldmprobe cache verify [--repair]        check every entry (exit 1: some bad)
    ldmprobe cache prune --model tiny --dry-run
    ldmprobe cache prune --older-than 30d

    The cache is $LDMPROBE_CACHE, else the platform's user cache folder.
    """


@cache_group.command("info")
@output_options
@click.pass_obj
def info_command(obj: CliState, fmt):
    """Size of the cache by kind (images, embeddings, models...) and by model."""
    from ldmprobe.render.emit import emit
    from ldmprobe.usecases.cache import cache_info

    emit(cache_info(), fmt, obj.terminal)


@cache_group.command("verify")
@click.option("--repair", is_flag=True, help="Remove what fails (it is remade when next needed).")
@output_options
@click.pass_obj
def verify_command(obj: CliState, repair: bool, fmt):
    """Check every cached image, embedding, count and tiny model; exit 1 if any is bad."""
    from ldmprobe.render.emit import emit
    from ldmprobe.usecases.cache import verify

    document = verify(repair=repair)
    emit(document, fmt, obj.terminal)
    if not document["ok"]:
        obj.terminal.warn(f"{len(document['bad'])} bad cache entries; `ldmprobe cache verify --repair` removes them.")
        raise click.exceptions.Exit(1)


@cache_group.command("prune")
@click.option("--model", default=None, help="Remove everything made with or by this model (e.g. tiny, a hub id).")
@click.option("--older-than", default=None, help="Remove entries last written before this age (30d, 12h, 2w).")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@output_options
@click.pass_obj
def prune_command(obj: CliState, model, older_than, dry_run: bool, fmt):
    """Remove cached entries of one model, or older than an age."""
    from ldmprobe.render.emit import emit
    from ldmprobe.usecases.cache import prune

    emit(prune(model=model, older_than=older_than, dry_run=dry_run), fmt, obj.terminal)
