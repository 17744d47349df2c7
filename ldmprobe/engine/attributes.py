"""What the attribute rates need from the measurer: option text embeddings, its logit scale and
(with ``calibration = PATH``) the corrections learned from a labelled calibration set. Each cached."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldmprobe.digest import cache_key
from ldmprobe.errors import BadInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def attribute_fields(setup, loaded, templates: tuple[str, ...], reporter=None) -> dict:
    """``{"attributes": AttributeInput}`` for SweepEmbeddings, or ``{}`` when the spec has none."""
    spec = setup.spec
    if not getattr(spec, "attributes", ()):
        return {}
    from ldmprobe.analysis.rates import AttributeInput
    from ldmprobe.engine.embeddings import text_embeddings

    groups = tuple((g.name, g.options) for g in spec.attributes)
    embeddings = tuple(text_embeddings(setup, loaded, list(g.texts), templates) for g in spec.attributes)
    scale = logit_scale(setup, loaded)
    reference = {(r.term, r.group): dict(r.rates) for r in spec.reference_rates}
    corrections = {}
    if spec.calibration:
        corrections = calibration_corrections(setup, loaded, groups, embeddings, scale, reporter=reporter)
    return {"attributes": AttributeInput(groups, embeddings, scale, reference, corrections)}


def logit_scale(setup, loaded) -> float:
    """The measurer's own softmax temperature exp(logit_scale) (CLIP's 100), cached with its texts."""
    from ldmprobe.engine.embeddings import TEXT_VERSION, measurer_namespace
    from ldmprobe.engine.packed_cache import VerifiedStore

    store = VerifiedStore(f"text/{measurer_namespace(setup)}", "text embeddings")
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


def calibration_files(path: str | Path, groups) -> dict[str, list[tuple[Path, int]]]:
    """group -> [(image, true option index)] from GROUP/OPTION/* folders or a path,group,option CSV.

    A folder or row naming an option the spec does not have is an error (exit 2), as is a
    group of the spec with no calibration image of some option."""
    import csv

    path = Path(path)
    options = {name: opts for name, opts in groups}
    found: dict[str, list[tuple[Path, int]]] = {}

    def add(group: str, option: str, image: Path, where: str):
        if group not in options:
            return  # a calibration set may cover groups the spec does not use
        if option not in options[group]:
            raise BadInputError(f"{where}: option {option!r} is not an option of attribute group {group} "
                                f"({', '.join(options[group])}); rename it or add it to [attributes.{group}].")
        found.setdefault(group, []).append((image, options[group].index(option)))

    if path.is_dir():
        for group_dir in sorted(p for p in path.iterdir() if p.is_dir()):
            for option_dir in sorted(p for p in group_dir.iterdir() if p.is_dir()):
                if group_dir.name in options and option_dir.name not in options[group_dir.name]:
                    add(group_dir.name, option_dir.name, option_dir, str(option_dir))  # raises: not an option
                for image in sorted(option_dir.iterdir()):
                    if image.suffix.lower() in IMAGE_SUFFIXES:
                        add(group_dir.name, option_dir.name, image, str(option_dir))
    else:
        with open(path, newline="", encoding="utf-8") as handle:
            for n, row in enumerate(csv.DictReader(handle), start=2):
                if not {"path", "group", "option"} <= set(row):
                    raise BadInputError(f"{path}: a calibration manifest needs path, group and option columns.")
                image = Path(row["path"]) if Path(row["path"]).is_absolute() else path.parent / row["path"]
                add(row["group"].strip(), row["option"].strip(), image, f"{path} line {n}")
    for group, opts in options.items():
        have = {i for _, i in found.get(group, [])}
        lacking = [o for i, o in enumerate(opts) if i not in have]
        if lacking:
            raise BadInputError(f"calibration set {path}: no image of {', '.join(lacking)} in group {group}; every "
                                f"option needs labelled images for the measurer's errors to be estimated.")
    return found


@dataclass
class _Measurer:
    loaded: object
    identity: dict

    def __getattr__(self, name):
        return getattr(self.loaded.get_measurer(), name)


def calibration_corrections(setup, loaded, groups, embeddings, scale: float, *, reporter=None) -> dict:
    """Each group's Correction from the calibration set's images, labelled by the measurer."""
    from ldmprobe.analysis.rates import correction_from_labels, zero_shot
    from ldmprobe.engine.assoc_images import embed_image_folder
    from ldmprobe.models import sources as models
    from ldmprobe.specs.embedding_files import SetSource

    files = calibration_files(setup.spec.calibration, groups)
    measurer = _Measurer(loaded, models.measurer_identity(setup.measurer_ref))
    out = {}
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
    return out
