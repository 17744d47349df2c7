"""The Python API: the same use cases the command line runs, returning typed results.

Nothing here imports torch until a function that needs a model is called:
``run_sweep(..., embeddings=...)`` and ``compare_runs`` on runs made from embeddings files
load no model.
"""

from __future__ import annotations

from pathlib import Path

from ldmprobe.results.sweep import SweepResult

__all__ = ["SweepResult", "compare_runs", "run_sweep"]


def run_sweep(spec, options=None, *, terminal=None, report: bool = True, embeddings: Path | str | None = None,
              images: Path | str | None = None,
              export_embeddings: Path | str | None = None) -> SweepResult | None:
    """Plan, generate, embed and compute statistics for ``spec``; write the run folder.

    ``spec`` is a :class:`~ldmprobe.specs.sweep.Spec` or anything
    :func:`~ldmprobe.specs.sweep.load_spec` accepts; ``options`` a
    :class:`~ldmprobe.engine.sweep_setup.SweepOptions`. Progress and warnings go to
    ``terminal`` (stderr by default); nothing is printed to stdout. Under ``torchrun`` every
    rank calls this and does its share of the work; rank 0 gets the result, the other ranks
    None.

    Your own data instead of a generator (as ``sweep --embeddings`` / ``--images``):
    ``embeddings`` an .npz in the layout README describes, or ``images`` a CSV / JSONL
    manifest; nothing is generated and the conditioning drift is null. ``export_embeddings``
    (generated sweeps only) also writes the analysed embeddings as such an .npz, so the
    statistics can be replayed without the models.
    """
    from ldmprobe.engine.sweep_setup import SweepOptions
    from ldmprobe.errors import BadInputError
    from ldmprobe.render.terminal import Terminal
    from ldmprobe.specs.sweep import Spec, load_spec

    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    options = options or SweepOptions()
    terminal = terminal or Terminal()
    if embeddings is not None or images is not None:
        if export_embeddings is not None:
            raise BadInputError("export_embeddings writes a generated sweep's embeddings; "
                                "this sweep reads them from your own data.")
        from ldmprobe.usecases.sweep_own import sweep_own

        return sweep_own(spec, options, terminal, report=report,
                         embeddings=None if embeddings is None else Path(embeddings),
                         images=None if images is None else Path(images))
    from ldmprobe.usecases.sweep import sweep

    export = None if export_embeddings is None else Path(export_embeddings)
    return sweep(spec, options, terminal, report=report, export_embeddings=export)


def compare_runs(run_a: Path | str, run_b: Path | str, options=None, *, settings=None, out: Path | str | None = None,
                 offline: bool = False, device: str = "auto", terminal=None, replace: bool = False):
    """B − A for two run folders of one spec (as ``ldmprobe compare``): per term the change
    in drift and in each probe shift, with intervals and p-values; a
    :class:`~ldmprobe.results.compare.CompareResult`. ``options`` a
    :class:`~ldmprobe.usecases.compare.CompareOptions` (as the CLI builds it), or the same
    settings as keywords: ``settings`` a :class:`~ldmprobe.analysis.compare.CompareSettings`;
    with ``out`` compare.json and compare.html are written there (an empty folder, or one an
    earlier compare wrote and ``replace``)."""
    from ldmprobe.analysis.compare import CompareSettings
    from ldmprobe.render.terminal import Terminal
    from ldmprobe.usecases.compare import CompareOptions
    from ldmprobe.usecases.compare import compare_runs as run

    if options is None:
        options = CompareOptions(settings or CompareSettings(), out=None if out is None else Path(out),
                                 replace=replace, offline=offline, device=device)
    elif settings is not None or out is not None or replace or offline or device != "auto":
        raise TypeError("compare_runs: give options or the keyword settings, not both")
    return run(Path(run_a), Path(run_b), options, reporter=terminal or Terminal())
