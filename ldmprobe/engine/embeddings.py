"""Text, conditioning and vocabulary embeddings of a sweep, each cached."""

from __future__ import annotations

import numpy as np

from ldmprobe.store.packed_cache import VerifiedStore, identity_store
from ldmprobe.models.loader import ModelLoader
from ldmprobe.engine.sweep_setup import SweepSetup
from ldmprobe.digest import CACHE_KINDS, cache_key
from ldmprobe.models import sources as models

TEXT_VERSION = CACHE_KINDS["text-embedding"]
CONDITIONING_VERSION = CACHE_KINDS["conditioning"]


def text_store(setup: SweepSetup) -> VerifiedStore:
    """The measurer's text embeddings (and its logit scale), cached."""
    return identity_store("text", models.measurer_identity(setup.measurer_ref), "text embeddings")


def text_embeddings(setup: SweepSetup, loaded: ModelLoader, texts: list[str], templates: tuple[str, ...] = (),
                    *, refuse_longer: str | None = None) -> np.ndarray:
    """Measurer text embeddings (optionally template-averaged), cached per text.

    ``refuse_longer``: what the texts are ("The probe"), to refuse (exit 2) a text that the
    measurer's tokenizer would cut off inside a template, before it is embedded: two option
    texts that differ only after the limit would otherwise measure the same thing."""
    from ldmprobe.engine.encode import encode_in_templates, fill_templates

    store = text_store(setup)
    keys = [cache_key("text-embedding", TEXT_VERSION, {"text": t, "templates": list(templates)}) for t in texts]
    rows = store.get_many(keys)
    missing = [i for i, row in enumerate(rows) if row is None]
    if missing:
        measurer = loaded.get_measurer()
        if refuse_longer:
            from ldmprobe.engine.vocab_store import check_lengths

            wanted = [texts[i] for i in missing]
            check_lengths(measurer, fill_templates(wanted, templates) if templates else wanted, refuse_longer)
        fresh = encode_in_templates(measurer, [texts[i] for i in missing], templates)
        store.put_many([keys[i] for i in missing], list(fresh))
        for i, vector in zip(missing, fresh):
            rows[i] = vector
    store.close()
    return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def conditioning_embeddings(setup: SweepSetup, loaded: ModelLoader, prompts: list[str]) -> np.ndarray | None:
    """The generator's (77, d) conditioning per prompt, cached per pipeline + prompt (None if it has none)."""
    from ldmprobe.engine.conditioning_arch import encode_conditioning  # every architecture (SD 1.x unchanged)

    store = identity_store("conditioning", setup.recipe.pipeline_dict, "conditionings")
    keys = [cache_key("conditioning", CONDITIONING_VERSION, {"prompt": p}) for p in prompts]
    rows = store.get_many(keys)
    missing = [i for i, row in enumerate(rows) if row is None]
    if missing:
        fresh = encode_conditioning(loaded.get_generator(), [prompts[i] for i in missing])
        if fresh is None:
            store.close()
            return None
        # Use what is stored (float16) on the first run too, so a rerun gives the same numbers.
        stored = [np.asarray(array).astype(np.float16) for array in fresh]
        store.put_many([keys[i] for i in missing], stored)
        for i, array in zip(missing, stored):
            rows[i] = array
    store.close()
    return np.stack([np.asarray(r, dtype=np.float32) for r in rows])


def direction_vocabulary(setup: SweepSetup, loaded: ModelLoader, templates: tuple[str, ...]):
    """Words (the --vocab lists plus the probes) and their template-averaged embeddings.

    Embeddings come from the vocabulary cache shared with ``ldmprobe neighbours``, so a
    rerun loads no model for them.
    """
    from ldmprobe.engine.vocab_store import cached_vocabulary, embed_vocabulary
    from ldmprobe.specs.vocab import Vocabulary, load_vocabulary

    if not setup.options.vocab:
        words = list(dict.fromkeys(setup.spec.probes))
        if len(words) < 2:
            return [], None
        return words, text_embeddings(setup, loaded, words, templates)
    listed = load_vocabulary(setup.options.vocab)
    seen = {w.casefold() for w in listed.words}
    extra = tuple(p for p in setup.spec.probes if p.casefold() not in seen)
    vocabulary = Vocabulary(words=listed.words + extra, sources=listed.sources + (("probes",) if extra else ()))
    identity = models.measurer_identity(setup.measurer_ref)
    vectors = cached_vocabulary(identity, vocabulary, templates)
    if vectors is None:
        vectors = embed_vocabulary(loaded.get_measurer(), vocabulary, templates).vectors
    return list(vocabulary.words), vectors
