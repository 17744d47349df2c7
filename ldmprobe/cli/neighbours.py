"""``ldmprobe neighbours TERM``: parse, call :mod:`ldmprobe.analysis.neighbours`, render.

Registered on the main group with ``main.add_command(neighbours)``. Nothing heavy is
imported until the command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import time

import click

from ldmprobe.cli.options import Context, model_options, output_options

_BAR_WIDTH = 24


@click.command("neighbours")
@click.argument("term")
@click.option("-k", "k", type=int, default=20, show_default=True, help="How many neighbours to list.")
@click.option("--context", "contexts", multiple=True, metavar="TEMPLATE",
              help="Embed the term and every entry inside this template (one {} where the word goes) "
                   "and average over the templates. Repeatable.")
@click.option("--vocab", "vocabs", multiple=True, metavar="NAME|PATH",
              help="Vocabulary: clip-bpe (CLIP's ~33k whole words, the default), a shipped list "
                   "(adjectives, nationalities, objects, professions) or a file with one entry per "
                   "line. Repeatable; the lists are combined.")
@click.option("--keep-self", is_flag=True,
              help="Keep the term itself and its trivial variants (case, plural) in the ranking.")
@click.option("--images", type=click.IntRange(min=1), default=None, metavar="N",
              help="Also generate N images of the term in each context (seeds 0..N-1, cached like a "
                   "sweep) with --pipeline, rank the vocabulary by cosine to their mean embedding, "
                   "and report the overlap with the text neighbours.")
@model_options
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="With --images: denoising steps (default 50; tiny: 4).")
@click.option("--guidance", type=click.FloatRange(min=0), default=None,
              help="With --images: classifier-free guidance scale (default 7.5).")
@output_options
@click.pass_obj
def neighbours(obj: Context, term, k, contexts, vocabs, keep_self, images, pipeline, revision, measurer,
               device, dtype, steps, guidance, fmt):
    """Rank a vocabulary by closeness to TERM in the measurer's CLIP space.

    \b
    ldmprobe neighbours fancy
    ldmprobe neighbours African --context "a photo of a {} house" -k 30
    ldmprobe neighbours African --context "a photo of a {} house" --images 16
    ldmprobe neighbours fancy --vocab adjectives --format json | jq '.neighbours[0]'

    --pipeline, --revision, --dtype, --steps and --guidance matter only with --images.
    """
    from ldmprobe.models import sources as models
    from ldmprobe.analysis import neighbours as nb
    from ldmprobe.results.provenance import now_iso
    from ldmprobe.specs.vocab import load_vocabulary

    started = now_iso()
    term, k, contexts = nb.check_term(term), nb.check_k(k), nb.check_contexts(contexts)
    vocabulary = load_vocabulary(vocabs)
    ref = models.resolve_measurer(measurer)
    if ref.is_tiny or (images is not None and models.resolve_generator(pipeline, revision).is_tiny):
        obj.terminal.warn(models.TINY_WARNING)
    if obj.offline:
        models.set_hub_offline()

    t0 = time.perf_counter()
    chosen_device, _ = models.pick_device(device)
    loaded = models.load_measurer(ref, device=chosen_device, offline=obj.offline)
    load_s = time.perf_counter() - t0

    term_images, images_s = None, 0.0
    if images is not None:
        from ldmprobe.usecases.sweep import SweepOptions

        options = SweepOptions(pipeline=pipeline, revision=revision, measurer=measurer, device=device,
                               dtype=dtype, steps=steps, guidance=guidance, offline=obj.offline)
        t0 = time.perf_counter()
        term_images = nb.term_images(term, contexts, images, options, terminal=obj.terminal, measurer=loaded)
        images_s = time.perf_counter() - t0
    with _EncodingProgress(obj.terminal) as progress:
        result = nb.find_neighbours(loaded, term, vocabulary, contexts=contexts, k=k, keep_self=keep_self,
                                    images=term_images, progress=progress, started=started)
    result.timings = {"load_measurer_s": load_s, **({"images_s": images_s} if images is not None else {}),
                      **result.timings}
    if term_images is not None and term_images.config["failed"]:
        obj.terminal.warn(f"{term_images.config['failed']} of the term's images came out NaN or black "
                          "and were left out of the image centroid.")
    if result.cache["status"] == "rebuilt":
        obj.terminal.warn(f"the cached vocabulary embeddings {result.cache['path']} were "
                          f"{result.cache['problem']}; rebuilt them.")
    if len(result.neighbours) < k:
        obj.terminal.warn(f"the vocabulary has only {len(result.neighbours)} entries to rank "
                          f"(after leaving out the term), fewer than -k {k}.")

    fmt = fmt or obj.terminal.default_format()
    if fmt == "json":
        obj.terminal.write_json(result)
    elif fmt == "jsonl":
        obj.terminal.write_jsonl(result.records())
    else:
        obj.terminal.write_table(render_neighbours(result.to_dict()))


class _EncodingProgress:
    """A progress bar on stderr while the vocabulary is encoded (only on a terminal)."""

    def __init__(self, terminal):
        self.terminal = terminal
        self.bar = self.task = None  # bar: None until the first report, False off a terminal

    def __enter__(self):
        return self.update

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            console = self.terminal.err_console()
            self.terminal.info(f"encoding {total} vocabulary entries (cached for the next query)")
            if not console.is_terminal:
                self.bar = False
                return
            from rich.progress import Progress

            self.bar = Progress(console=console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("encoding", total=total)
        if self.bar:
            self.bar.update(self.task, completed=done)

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()
        return False


def _bar(score: float, top: float, width: int = _BAR_WIDTH) -> str:
    """A bar of eighth-blocks, full at ``top`` (the list's highest |score|); none below 0."""
    fraction = max(0.0, score) / top if top > 0 else 0.0
    full, part = divmod(round(min(1.0, fraction) * width * 8), 8)
    return "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")


def render_neighbours(document: dict):
    """Rank, word, score and a bar (scaled to the list's top score); image list beside text list."""
    from rich.table import Table

    config = document["config"]
    where = "; ".join(config["contexts"]) if config["contexts"] else "bare words"
    vocab = config["vocabulary"]
    title = (f"neighbours of {document['term']!r} ({where}) · {config['measurer']['spec']} · "
             f"{vocab['size']} entries from {', '.join(vocab['sources'])}")
    table = Table(title=title, title_justify="left",
                  caption=document["provenance"].get("tiny_note"), caption_justify="left")
    lists = [("", document["neighbours"])]
    if document.get("image_neighbours") is not None:
        lists = [("text ", document["neighbours"]), ("image ", document["image_neighbours"])]
    table.add_column("rank", justify="right")
    for label, _ in lists:
        table.add_column(f"{label}word")
        table.add_column(f"{label}score", justify="right")
        table.add_column("")
    tops = [max((abs(row["score"]) for row in rows), default=0.0) for _, rows in lists]
    for i in range(max(len(rows) for _, rows in lists)):
        cells = [str(i + 1)]
        for (_, rows), top in zip(lists, tops):
            row = rows[i] if i < len(rows) else None
            cells += [row["word"], f"{row['score']:.4f}", _bar(row["score"], top)] if row else ["", "", ""]
        table.add_row(*cells)
    if document.get("overlap") is not None:
        overlap = document["overlap"]
        table.caption = ((table.caption + "\n") if table.caption else "") + (
            f"overlap of text and image top-{config['k']}: {overlap['count']} words, "
            f"Jaccard {overlap['jaccard']:.3f}"
        )
    return table
