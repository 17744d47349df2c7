"""The records ``trace`` reports (see :mod:`ldmprobe.analysis.trace`, which computes them).

Each field's JSON shape and words are written here once: ``trace.schema.json``'s entries are
derived from these classes (:mod:`ldmprobe.results.schema_defs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ldmprobe.analysis.inference_crossed import CrossedTest, SignFlipTest
from ldmprobe.records import Record, schema

GENERALISES = "templates and seeds (bootstrap over templates, then seeds within template)"
_BOOT = schema("percentile bootstrap interval over templates, then seeds within template (the same draws for "
               "numerator and denominator); a share means something only where the term's own effect is "
               "clearly not 0")


@dataclass(frozen=True)
class VariantEffect(Record):
    """One variant's effect against the baseline, and its share of the term's effect."""

    variant: str = field(metadata=schema("the hybrid conditioning or step switch, by name"))
    drift: float = field(metadata=schema(
        "unbiased squared distance between the variant's and the baseline's mean image embeddings"))
    drift_share: float = field(metadata=schema("drift / the term's drift"))
    drift_share_ci: tuple[float, float] = field(metadata=_BOOT)
    projection_share: float = field(metadata=schema(
        "the share of the term's mean image shift this variant moves along it (unbiased; the parts' "
        "shares sum to 1 when their shifts add up to the term's, the rest is interaction)"))
    projection_share_ci: tuple[float, float] = field(metadata=_BOOT)
    probe_shift: tuple[float, ...] = field(metadata=schema(
        "per probe: mean cos(variant image, probe) - cos(baseline image, probe)"))
    probe_share: tuple[float, ...] = field(metadata=schema("per probe: probe_shift / the term's probe shift"))
    probe_share_ci: tuple[tuple[float, float], ...] = field(metadata=_BOOT)
    probe_test: tuple[CrossedTest, ...] = field(metadata=schema(
        "per probe: the crossed test of probe_shift (templates and seeds random)"))


@dataclass(frozen=True)
class EffectTable(Record):
    """A term's variants (hybrids or step switches) against its baseline and its own effect."""

    term: str
    probes: tuple[str, ...]
    term_drift: float = field(metadata=schema("the term's own drift against its baseline (the shares' denominator)"))
    term_drift_ci: tuple[float, float]
    term_probe_shift: tuple[float, ...] = field(metadata=schema("the term's own shift toward each probe"))
    term_probe_test: tuple[CrossedTest, ...]
    variants: tuple[VariantEffect, ...]
    n_templates: int
    n_seeds: int
    n_boot: int
    confidence_level: float
    random_state: int | None
    generalises_to: str = GENERALISES

    def variant(self, name: str) -> VariantEffect:
        return next(v for v in self.variants if v.variant == name)


@dataclass(frozen=True)
class AttentionTrace(Record):
    """Where a term's modifier attention lands relative to the noun's region, and how spread it is."""

    json_schema = {"required": ("term", "mass", "inside_share", "region_area", "excess_test", "enrichment",
                                "entropy", "gini", "token_shares", "n_images")}

    term: str
    mass: float = field(metadata=schema("the noun region holds this share of the noun map's attention"))
    inside_share: float = field(metadata=schema("mean share of the modifier's attention inside the noun region"))
    region_area: float = field(metadata=schema("mean share of the image the region covers"))
    excess_test: CrossedTest = field(metadata=schema("inside_share - region_area (0: attention indifferent)"))
    enrichment: float = field(metadata=schema("mean (inside_share / region_area)"))
    entropy: float = field(metadata=schema("mean normalised entropy of the modifier map (1 = uniform)"))
    gini: float = field(metadata=schema("mean Gini coefficient of the modifier map (0 = uniform)"))
    token_shares: dict[str, float] = field(metadata=schema("token group -> mean share of all cross-attention"))
    n_images: int
    region: Literal["object", "noun"] = field(default="noun", metadata=schema(
        "what the excess is measured against: each picture's object (segmented from its plain background: "
        "object_region) or the noun map's own top region (its top `mass`)"))
    noun_inside_share: float = field(default=math.nan, metadata=schema("object region: the noun's share inside it"))
    noun_excess_test: CrossedTest | None = field(default=None, metadata=schema(
        "object region: the noun's own attention inside the object minus its area (0: no spatial signal)"))
    n_regions: int = field(default=0, metadata=schema("images with a usable object region (the rest are left out)"))
    spatial_signal: Literal["yes", "no", "untested"] = field(default="untested", metadata=schema(
        "no: the noun's excess is not significant"))


@dataclass(frozen=True)
class VaeTrace(Record):
    """What a VAE round trip does to a term's images, against the baseline's (paired by seed)."""

    term: str
    probes: tuple[str, ...]
    psnr: float
    psnr_baseline: float
    psnr_test: CrossedTest = field(metadata=schema("term - baseline PSNR per (template, seed)"))
    embedding_change: float = field(metadata=schema("mean 1 - cos(e(x), e(round trip of x)) over the term's images"))
    embedding_change_baseline: float
    embedding_change_test: CrossedTest
    probe_change: tuple[float, ...] = field(metadata=schema(
        "per probe p: mean cos(e(round trip), probe p) - cos(e(x), probe p) over the term's images"))
    probe_change_baseline: tuple[float, ...]
    probe_test: tuple[CrossedTest, ...] = field(metadata=schema(
        "term - baseline probe change, templates and seeds random"))
    probe_sign_flip: tuple[SignFlipTest, ...] = field(metadata=schema(
        "the same, these templates and seeds only"))
    n_templates: int
    n_seeds: int


@dataclass(frozen=True)
class VaeGroup(Record):
    """Round trip of a folder's group of user images (no pairing: image-level means and CIs)."""

    group: str
    n_images: int
    psnr: float
    psnr_ci: tuple[float, float]
    embedding_change: float
    embedding_change_ci: tuple[float, float]
    generalises_to: str = "images like these (bootstrap over images; no pairing across groups)"
