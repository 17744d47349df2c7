"""Token limits checked when a plan is made, before anything slow: the prompts against the
generator's text encoders (CLIP's 77, T5's), the probe and attribute option texts against the
measurer's tokenizer inside their probe templates."""

from __future__ import annotations

from ldmprobe.errors import BadInputError
from ldmprobe.models import load as model_load
from ldmprobe.specs.sweep import check_prompt_lengths


def check_texts(spec, options, models, prompts: list[str], notes: list, reporter) -> list[str]:
    """The prompts against the generator's encoders' token limits (``models``: a
    ``models.plan.PlanModels``, its ``texts`` the counts), then the probe and attribute option
    texts against the measurer's (:func:`check_measurer_texts`); the prompts that will be truncated.

    Without T5, CLIP's limit binds (over it: exit 2 unless --allow-truncation). With T5 (SD 3,
    Flux), T5's limit binds, and a prompt over CLIP's 77 tokens is a note: CLIP then reads only its
    first 77 tokens (the pooled vector, and SD 3's CLIP token rows), T5 reads it whole."""
    texts = models.texts
    t5 = texts.t5_counts is not None
    truncated = check_prompt_lengths(prompts, texts.clip_counts.__getitem__, max_tokens=texts.clip_limit,
                                     allow_truncation=options.allow_truncation or t5)
    if t5 and truncated:
        note = (f"{len(truncated)} prompt(s) are over CLIP's {texts.clip_limit} tokens: CLIP reads only their "
                f"first {texts.clip_limit} (the pooled vector and, on SD 3, the CLIP token rows); T5 reads them whole")
        notes.append(note)
        if reporter is not None:
            reporter.warn(note)
    if t5:
        truncated = check_prompt_lengths(prompts, texts.t5_counts.__getitem__, max_tokens=texts.t5_limit,
                                         allow_truncation=options.allow_truncation)
    check_measurer_texts(spec, options, models.measurer_ref, texts.measurer_context)
    return list(truncated)


def check_measurer_texts(spec, options, measurer_ref, context_length: int | None) -> None:
    """Refuse (exit 2), before anything is generated, a probe or attribute option text that the
    measurer's tokenizer would cut off inside a probe template. The tokenizer is loaded only when
    a text is long enough that it might be over the limit (``context_length``: read from a local
    measurer's config, else CLIP's 77); embedding checks again with the loaded measurer's own limit."""
    from ldmprobe.engine.encode import DEFAULT_PROBE_TEMPLATES, fill_templates
    from ldmprobe.engine.vocab_store import surely_fits

    templates = tuple(options.probe_templates) if options.probe_templates is not None else DEFAULT_PROBE_TEMPLATES
    named = [(f"probe {_short(p)}", p) for p in spec.probes]
    named += [(f"[attributes.{g.name}] option {key!r} ({_short(text)})", text)
              for g in getattr(spec, "attributes", ()) for key, text in zip(g.options, g.texts)]
    limit = context_length or 77
    long = [(what, template, filled) for what, text in named
            for template, filled in zip(templates, fill_templates([text], templates)) if not surely_fits(filled, limit)]
    if not long:
        return
    tokenizer = model_load.load_measurer_tokenizer(measurer_ref, offline=options.offline)
    limit = int(getattr(tokenizer, "context_length", limit) or limit)
    encode = getattr(tokenizer, "encode", None)
    for what, template, filled in long if callable(encode) else ():
        n = len(encode(filled)) + 2  # + start and end tokens
        if n > limit:
            raise BadInputError(
                f"The {what} is {n} tokens inside the probe template {template!r}, over the measurer's limit "
                f"of {limit} (start and end tokens counted); it would silently lose its last {n - limit}. "
                "Shorten it.")


def _short(text: str, width: int = 50) -> str:
    return repr(text if len(text) <= width else text[: width - 3] + "...")
