"""Statistics of ``trace`` (pure numpy): which part of the model carries a term's effect.

Arrays in, frozen :class:`~ldmprobe.records.Record` results out. Image embeddings are unit
rows laid out (templates T, seeds S, d); image i of a variant is paired with the baseline
and term images of the same template and seed.

Effects of a variant v (a hybrid conditioning, a step switch) against the baseline b, with
D = e(v) − e(b) per pair:

- ``drift``: unbiased ‖μ_v − μ_b‖² (mean over templates of Σ_{i≠j} D_i·D_j / n(n−1), no
  same-image products); ``drift_share`` = drift(v) / drift(term).
- ``projection_share``: the unbiased ⟨δ_v, δ_t⟩ / ‖δ_t‖², the share of the term's mean image
  shift that v moves along it. It is additive: if the parts' shifts add up to the term's,
  their projection shares sum to 1 (drift shares do not); the remainder is interaction.
- ``probe_shift`` Δ_p = mean (cos(e_v, τ_p) − cos(e_b, τ_p)) and ``probe_share`` = Δ_p(v) /
  Δ_p(term), with the crossed random-effects test of Δ_p(v) (``inference.crossed_test``).

Intervals: percentile bootstrap over templates, then seeds within each drawn template (the
same draw for numerator and denominator), so they generalise to templates and seeds like
these. A share is only meaningful where the term's own effect is clearly non-zero.
"""

from __future__ import annotations

import math
import numpy as np

from ldmprobe.analysis.inference import crossed_test, sign_flip_test
from ldmprobe.analysis.trace_results import AttentionTrace, EffectTable, VaeGroup, VaeTrace, VariantEffect

#: PSNR of two identical images is infinite; it is reported as this many dB.
PSNR_CAP = 99.0


def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


def _boot_draws(n_t: int, n_s: int, n_boot: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Templates drawn with replacement (n_boot, T) and multinomial seed counts (n_boot, T, S)."""
    picks = rng.integers(0, n_t, size=(n_boot, n_t))
    weights = rng.multinomial(n_s, np.full(n_s, 1.0 / n_s), size=(n_boot, n_t)).astype(np.float64)
    return picks, weights


def _u(gram: np.ndarray) -> float:
    n = gram.shape[-1]
    return float((gram.sum() - np.trace(gram)) / (n * (n - 1))) if n > 1 else math.nan


def _grams(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-template cross Gram matrices G[t, i, j] = a[t, i] · b[t, j]."""
    return np.einsum("tid,tjd->tij", a, b)


def _boot_u(grams: np.ndarray, picks, weights) -> np.ndarray:
    """Weighted U (no products of a seed with its own copies) per drawn template, averaged."""
    g = grams[picks]  # (B, T, S, S)
    diag = np.diagonal(g, axis1=-2, axis2=-1)
    num = np.einsum("bki,bkij,bkj->bk", weights, g, weights) - np.einsum("bki,bki->bk", weights**2, diag)
    den = weights.sum(-1) ** 2 - (weights**2).sum(-1)
    observed = np.array([_u(x) for x in grams])[picks]
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.where(den > 0, num / np.where(den > 0, den, 1.0), observed)
    return u.mean(1)


def _boot_mean(y: np.ndarray, picks, weights) -> np.ndarray:
    """Mean of a (T, S[, P]) table per bootstrap draw: (B[, P])."""
    drawn = y[picks]  # (B, T, S[, P])
    w = weights.reshape(weights.shape + (1,) * (y.ndim - 2))
    return (w * drawn).sum(2).mean(1) / y.shape[1]


def _ci(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return (math.nan, math.nan)
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return (float(low), float(high))


def _ratio(num, den):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)


def _check(name: str, x: np.ndarray, shape) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (templates, seeds, dim); got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has non-finite values; drop failed images before the analysis")
    return x


def variant_effects(term: str, base, term_emb, variants: dict, probes, probe_names, *, n_boot: int = 2000,
                    confidence_level: float = 0.95, seed: int | None = 0) -> EffectTable:
    """Effects and shares of each named variant (T, S, d) against ``base``, relative to ``term_emb``."""
    base = np.asarray(base, np.float64)
    shape = base.shape
    term_emb = _check("term embeddings", term_emb, shape)
    probes = np.asarray(probes, np.float64).reshape(-1, shape[-1])
    picks, weights = _boot_draws(shape[0], shape[1], n_boot, _rng(seed))
    d_t = term_emb - base
    g_tt = _grams(d_t, d_t)
    u_tt, boot_tt = float(np.mean([_u(g) for g in g_tt])), _boot_u(g_tt, picks, weights)
    y_t = d_t @ probes.T  # (T, S, P)
    shift_t, boot_shift_t = y_t.mean((0, 1)), _boot_mean(y_t, picks, weights)
    effects = []
    for name, emb in variants.items():
        d_v = _check(f"variant {name!r}", emb, shape) - base
        g_vv, g_vt = _grams(d_v, d_v), _grams(d_v, d_t)
        u_vv, u_vt = float(np.mean([_u(g) for g in g_vv])), float(np.mean([_u(g) for g in g_vt]))
        y_v = d_v @ probes.T
        shift_v = y_v.mean((0, 1))
        boot_probe = _ratio(_boot_mean(y_v, picks, weights), boot_shift_t)
        effects.append(VariantEffect(
            name, u_vv, float(_ratio(u_vv, u_tt)), _ci(_ratio(_boot_u(g_vv, picks, weights), boot_tt),
                                                       confidence_level),
            float(_ratio(u_vt, u_tt)), _ci(_ratio(_boot_u(g_vt, picks, weights), boot_tt), confidence_level),
            tuple(float(x) for x in shift_v), tuple(float(x) for x in _ratio(shift_v, shift_t)),
            tuple(_ci(boot_probe[:, p], confidence_level) for p in range(len(probes))),
            tuple(crossed_test(y_v[..., p], confidence_level=confidence_level) for p in range(len(probes))),
        ))
    return EffectTable(
        term, tuple(probe_names), u_tt, _ci(boot_tt, confidence_level), tuple(float(x) for x in shift_t),
        tuple(crossed_test(y_t[..., p], confidence_level=confidence_level) for p in range(len(probes))),
        tuple(effects), shape[0], shape[1], int(n_boot), confidence_level, seed,
    )


# ----------------------------------------------------------------------------- attention


def noun_region(noun_map: np.ndarray, mass: float = 0.5) -> np.ndarray:
    """Boolean mask of the fewest pixels holding ``mass`` of the map's total (largest first)."""
    flat = np.asarray(noun_map, np.float64).ravel()
    order = np.argsort(-flat, kind="stable")
    cum = np.cumsum(flat[order])
    count = int(np.searchsorted(cum, mass * cum[-1], side="left")) + 1
    mask = np.zeros(flat.size, bool)
    mask[order[: min(count, flat.size)]] = True
    return mask.reshape(np.shape(noun_map))


def concentration(attention_map: np.ndarray) -> tuple[float, float]:
    """(normalised entropy in [0, 1], Gini in [0, 1)) of a non-negative map."""
    p = np.asarray(attention_map, np.float64).ravel()
    p = p / p.sum()
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum() / math.log(p.size)) if p.size > 1 else 0.0
    s = np.sort(p)
    n = s.size
    gini = float((2 * np.arange(1, n + 1) - n - 1) @ s / (n * s.sum()))
    return entropy, gini


def object_region(image, *, threshold: float = 48.0, border: int = 2) -> np.ndarray | None:
    """The object mask of a picture on a plain background, or None when it has none.

    Background: the median colour of the outer ``border`` pixels; object: every pixel whose RGB
    distance (0..255) from it exceeds ``threshold``. None when the border is not plain (its 90th
    percentile distance exceeds ``threshold / 2``: a photograph, a gradient, an object touching
    the frame) or the mask is empty or covers nine tenths of the picture or more.
    """
    img = np.asarray(image, np.float64)
    if img.ndim != 3 or img.shape[0] <= 2 * border or img.shape[1] <= 2 * border:
        raise ValueError(f"an (H, W, 3) picture larger than twice the border is needed; got {img.shape}")
    frame = np.ones(img.shape[:2], bool)
    frame[border:-border, border:-border] = False
    background = np.median(img[frame], axis=0)
    distance = np.sqrt(((img - background) ** 2).sum(-1))
    if np.quantile(distance[frame], 0.9) > threshold / 2:
        return None
    mask = distance > threshold
    return mask if 0 < mask.mean() < 0.9 else None


def _excess(maps, regions):
    """(inside share, area) per image of maps (T, S, H, W) in regions (T, S, H, W); NaN without a region."""
    n_t, n_s = maps.shape[:2]
    inside, area = np.full((n_t, n_s), np.nan), np.full((n_t, n_s), np.nan)
    for t in range(n_t):
        for s in range(n_s):
            region = regions[t][s]
            if region is None:
                continue
            region = np.asarray(region, bool)
            if region.shape != maps.shape[2:]:
                raise ValueError(f"region {region.shape} does not match the maps {maps.shape[2:]}")
            inside[t, s] = maps[t, s][region].sum() / maps[t, s].sum()
            area[t, s] = region.mean()
    return inside, area


def attention_numbers(term: str, modifier_maps, noun_maps, group_shares, group_names, *,
                      mass: float = 0.5, confidence_level: float = 0.95, regions=None,
                      alpha: float = 0.05) -> AttentionTrace:
    """Numbers of a term's attention maps laid out (templates, seeds, H, W).

    ``regions`` None: the excess is measured against the noun map's own top-``mass`` region.
    Otherwise ``regions[t][s]`` is image (t, s)'s object mask (H, W) or None (left out); the
    modifier's excess is measured against the object, and the noun's own excess there says
    whether the maps carry a spatial signal at all (``spatial_signal`` "no" when its test is not
    significant at ``alpha``; then the modifier's excess cannot be read as "where it looks").
    """
    mod, noun = np.asarray(modifier_maps, np.float64), np.asarray(noun_maps, np.float64)
    if mod.shape != noun.shape or mod.ndim != 4:
        raise ValueError(f"modifier and noun maps must both be (templates, seeds, H, W); got {mod.shape}, "
                         f"{noun.shape}")
    if (mod < 0).any() or (noun < 0).any():
        raise ValueError("attention maps must be non-negative")
    n_t, n_s = mod.shape[:2]
    ent, gini = np.zeros((n_t, n_s)), np.zeros((n_t, n_s))
    for t in range(n_t):
        for s in range(n_s):
            ent[t, s], gini[t, s] = concentration(mod[t, s])
    shares = np.asarray(group_shares, np.float64).reshape(n_t * n_s, -1).mean(0)
    extra: dict = {}
    if regions is None:
        own = [[noun_region(noun[t, s], mass) for s in range(n_s)] for t in range(n_t)]
        inside, area = _excess(mod, own)
    else:
        inside, area = _excess(mod, regions)
        usable = int(np.isfinite(inside).sum())
        if usable == 0:
            raise ValueError("no image has an object region")
        noun_inside, _ = _excess(noun, regions)
        noun_test = crossed_test(noun_inside - area, confidence_level=confidence_level)
        flat = (noun_inside - area)[np.isfinite(noun_inside)]
        if np.isfinite(noun_test.p_value):
            signal = "yes" if noun_test.p_value < alpha and noun_test.estimate > 0 else "no"
        else:  # no test: every image exactly indifferent (uniform maps) is "no"; one image is untested
            signal = "no" if len(flat) > 1 and np.abs(flat).max() < 1e-9 else "untested"
        extra = {"region": "object", "noun_inside_share": float(np.nanmean(noun_inside)),
                 "noun_excess_test": noun_test, "n_regions": usable, "spatial_signal": signal}
    return AttentionTrace(
        term, mass, float(np.nanmean(inside)), float(np.nanmean(area)),
        crossed_test(inside - area, confidence_level=confidence_level), float(np.nanmean(inside / area)),
        float(ent.mean()), float(gini.mean()), {n: float(v) for n, v in zip(group_names, shares)}, n_t * n_s,
        **extra,
    )


# ----------------------------------------------------------------------------- autoencoder


def psnr(a, b) -> np.ndarray:
    """Per-image PSNR in dB of uint8 images (n, H, W, C) on a 0..255 scale (capped at PSNR_CAP)."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    mse = (diff**2).reshape(len(diff), -1).mean(1)
    with np.errstate(divide="ignore"):
        value = 10 * np.log10(255.0**2 / mse)
    return np.minimum(value, PSNR_CAP)


def _rt_numbers(orig, rt, probes):
    """Per image: 1 − cos(orig, rt) and the probe score change (T, S, P)."""
    return 1.0 - (orig * rt).sum(-1), (rt - orig) @ probes.T


def vae_effects(term: str, psnr_term, psnr_base, term_orig, term_rt, base_orig, base_rt, probes, probe_names, *,
                n_resamples: int = 9999, seed: int | None = 0,
                confidence_level: float = 0.95) -> VaeTrace:
    """Round-trip numbers of one term; arrays (T, S) for PSNR and (T, S, d) for unit embeddings."""
    probes = np.asarray(probes, np.float64)
    arrays = [np.asarray(x, np.float64) for x in (term_orig, term_rt, base_orig, base_rt)]
    change_t, probe_t = _rt_numbers(arrays[0], arrays[1], probes)
    change_b, probe_b = _rt_numbers(arrays[2], arrays[3], probes)
    p_t, p_b = np.asarray(psnr_term, np.float64), np.asarray(psnr_base, np.float64)
    diff = probe_t - probe_b
    return VaeTrace(
        term, tuple(probe_names), float(p_t.mean()), float(p_b.mean()),
        crossed_test(p_t - p_b, confidence_level=confidence_level), float(change_t.mean()),
        float(change_b.mean()), crossed_test(change_t - change_b, confidence_level=confidence_level),
        tuple(float(x) for x in probe_t.mean((0, 1))), tuple(float(x) for x in probe_b.mean((0, 1))),
        tuple(crossed_test(diff[..., p], confidence_level=confidence_level) for p in range(len(probes))),
        tuple(sign_flip_test(diff[..., p], n_resamples=n_resamples, seed=seed)
              for p in range(len(probes))),
        p_t.shape[0], p_t.shape[1],
    )


def vae_groups(groups, psnr_values, orig, rt, *, n_boot: int = 2000, confidence_level: float = 0.95,
               seed: int | None = 0) -> tuple[VaeGroup, ...]:
    """Per-group PSNR and measurer-space change of user images, with bootstrap intervals."""
    groups = np.asarray(groups)
    change = 1.0 - (np.asarray(orig, np.float64) * np.asarray(rt, np.float64)).sum(-1)
    psnr_values = np.asarray(psnr_values, np.float64)
    rng = _rng(seed)
    out = []
    for name in sorted(set(groups.tolist())):
        idx = np.flatnonzero(groups == name)
        draws = rng.integers(0, len(idx), size=(n_boot, len(idx)))
        out.append(VaeGroup(
            str(name), len(idx), float(psnr_values[idx].mean()),
            _ci(psnr_values[idx][draws].mean(1), confidence_level), float(change[idx].mean()),
            _ci(change[idx][draws].mean(1), confidence_level),
        ))
    return tuple(out)
