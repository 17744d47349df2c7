"""The Python API: the same use cases the command line runs, returning typed results."""

from __future__ import annotations

from ldmprobe.results.sweep import SweepResult

__all__ = ["SweepResult", "run_sweep"]


def run_sweep(spec, options=None, *, terminal=None, report: bool = True) -> SweepResult | None:
    """Plan, generate, embed and compute statistics for ``spec``; write the run folder.

    ``spec`` is a :class:`~ldmprobe.specs.sweep.Spec` or anything
    :func:`~ldmprobe.specs.sweep.load_spec` accepts; ``options`` a
    :class:`~ldmprobe.engine.sweep_setup.SweepOptions`. Progress and warnings go to
    ``terminal`` (stderr by default); nothing is printed to stdout. Under ``torchrun`` every
    rank calls this and does its share of the work; rank 0 gets the result, the other ranks
    None.
    """
    from ldmprobe.engine.sweep_setup import SweepOptions
    from ldmprobe.render.terminal import Terminal
    from ldmprobe.specs.sweep import Spec, load_spec
    from ldmprobe.usecases.sweep import sweep

    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    return sweep(spec, options or SweepOptions(), terminal or Terminal(), report=report)
