"""What the attribute rates need from the measurer: option text embeddings, its logit scale and
(with ``calibration = PATH``) the corrections learned from a labelled calibration set. Each cached."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldmprobe.digest import cache_key
from ldmprobe.errors import BadInputError
from ldmprobe.specs.calibration import calibration_files

def attribute_fields(setup, loaded, templates: tuple[str, ...], reporter=None) -> dict:
    """``{"attributes": AttributeInput}`` for SweepEmbeddings, or ``{}`` when the spec has none."""
    spec = setup.spec
    if not getattr(spec, "attributes", ()):
        return {}
    from ldmprobe.analysis.rates import AttributeInput
    from ldmprobe.engine.embeddings import text_embeddings

    groups = tuple((g.name, g.options) for g in spec.attributes)
    embeddings = tuple(text_embeddings(setup, loaded, list(g.texts), templates,
                                       refuse_longer=f"[attributes.{g.name}]: the option text in its probe template")
                       for g in spec.attributes)
    scale = logit_scale(setup, loaded)
    reference = {(r.term, r.group): dict(r.rates) for r in spec.reference_rates}
    corrections, calibration = {}, ()
    if spec.calibration:
        corrections, calibration = calibration_corrections(setup, loaded, groups, embeddings, scale,
                                                           reporter=reporter)
    return {"attributes": AttributeInput(groups, embeddings, scale, reference, corrections,
                                         option_texts=tuple(tuple(g.texts) for g in spec.attributes),
                                         calibration=calibration)}


def logit_scale(setup, loaded) -> float:
    """The measurer's own softmax temperature exp(logit_scale) (CLIP's 100), cached with its texts."""
    from ldmprobe.engine.embeddings import TEXT_VERSION, text_store

    store = text_store(setup)
    key = cache_key("text-embedding", TEXT_VERSION, {"logit_scale": "exp"})
    try:
        (value,) = store.get_many([key])
        if value is None:
            model = loaded.get_measurer().model
            raw = getattr(model, "logit_scale", None)
            scale = float(raw.detach().float().exp().clamp(max=100).item()) if raw is not None else 100.0
            value = np.array([scale], dtype=np.float32)
            store.put_many([key], [value])
    finally:
        store.close()
    return float(np.asarray(value).ravel()[0])


@dataclass
class _Measurer:
    loaded: object
    identity: dict

    def __getattr__(self, name):
        return getattr(self.loaded.get_measurer(), name)


def calibration_corrections(setup, loaded, groups, embeddings, scale: float, *, reporter=None) -> tuple[dict, tuple]:
    """Each group's Correction from the calibration set's images, labelled by the measurer; and
    the images' embeddings with their (group, option) labels (what --export-embeddings writes)."""
    from ldmprobe.analysis.rates import correction_from_labels, zero_shot
    from ldmprobe.engine.assoc_images import embed_image_folder
    from ldmprobe.models import sources as models
    from ldmprobe.specs.embedding_files import SetSource

    files = calibration_files(setup.spec.calibration, groups)
    measurer = _Measurer(loaded, models.measurer_identity(setup.measurer_ref))
    out, kept, labels = {}, [], []
    for (group, options), texts in zip(groups, embeddings):
        listed = files[group]
        named = tuple((str(p.resolve()), hashlib.sha256(p.read_bytes()).hexdigest()) for p, _ in listed)
        source = SetSource(group, "images", "/", "folder", "", tuple(n for n, _ in named), files=named)
        vectors = embed_image_folder(measurer, source, reporter=reporter)
        predicted = zero_shot(vectors, texts, scale).argmax(axis=1)
        try:
            out[group] = correction_from_labels([i for _, i in listed], predicted, len(options), group=group)
        except ValueError as exc:
            raise BadInputError(f"{setup.spec.calibration}: {exc}") from None
        kept.append(np.asarray(vectors))
        labels += [(group, options[i]) for _, i in listed]
    return out, ((np.concatenate(kept), tuple(labels)) if kept else ())
