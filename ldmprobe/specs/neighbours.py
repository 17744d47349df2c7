"""Checks of a neighbours query's input: the term, -k and the --context templates."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ldmprobe.errors import BadInputError


def check_term(term: str) -> str:
    text = " ".join((term or "").split())
    if not text:
        raise BadInputError("The term is empty. Give the word or phrase to find neighbours of, e.g. "
                            "`ldmprobe neighbours fancy`.")
    return text


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise BadInputError(f"-k must be a positive whole number of neighbours to list (got {k!r}).")
    return int(k)


def check_contexts(contexts: Sequence[str]) -> tuple[str, ...]:
    """Each context must hold exactly one ``{}`` (where the term goes); no duplicates."""
    out: list[str] = []
    for context in contexts:
        text = " ".join(context.split())
        n = text.count("{}")
        if n != 1:
            problem = "has no {} placeholder" if n == 0 else f"has {n} {{}} placeholders"
            raise BadInputError(
                f"--context {context!r} {problem}; a context takes exactly one {{}} where the term "
                "(and each vocabulary entry) goes, e.g. --context \"a photo of a {} house\"."
            )
        if text in out:
            raise BadInputError(f"--context {context!r} is given twice; remove the repeat (it would "
                                "weigh that context double in the average).")
        out.append(text)
    return tuple(out)
