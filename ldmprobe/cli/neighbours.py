"""``ldmprobe neighbours TERM``: parse, call :func:`ldmprobe.usecases.neighbours.query_neighbours`, emit.

Registered on the main group with ``main.add_command(neighbours)``. Nothing heavy is
imported until the command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import click

from ldmprobe.cli.options import CliState, FiniteFloat, model_options, output_options

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
@click.option("--guidance", type=FiniteFloat(min=0), default=None,
              help="With --images: guidance scale (default: the generator's own, SD 1.x 7.5).")
@output_options
@click.pass_obj
def neighbours(obj: CliState, term, k, contexts, vocabs, keep_self, images, pipeline, revision, measurer,
               device, dtype, steps, guidance, fmt):
    """Rank a vocabulary by closeness to TERM in the measurer's CLIP space.

    \b
    ldmprobe neighbours fancy
    ldmprobe neighbours African --context "a photo of a {} house" -k 30
    ldmprobe neighbours African --context "a photo of a {} house" --images 16
    ldmprobe neighbours fancy --vocab adjectives --format json | jq .neighbours

    --pipeline, --revision, --dtype, --steps and --guidance matter only with --images.
    """
    from ldmprobe.render.emit import emit
    from ldmprobe.usecases.neighbours import NeighboursOptions, query_neighbours

    options = NeighboursOptions(k=k, contexts=tuple(contexts), vocabs=tuple(vocabs), keep_self=keep_self,
                                images=images, pipeline=pipeline, revision=revision, measurer=measurer, device=device,
                                dtype=dtype, steps=steps, guidance=guidance, offline=obj.offline)
    result = query_neighbours(term, options, reporter=obj.terminal)
    emit(result, fmt, obj.terminal)
