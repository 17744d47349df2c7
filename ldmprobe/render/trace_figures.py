"""The PNG figures of a trace report, drawn with matplotlib from the result and its pictures.

Each function writes one PNG and returns its path; none needs torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_COLUMNS = 4  # (template, seed) pairs shown per term in the picture grids


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def _pairs(n_t: int, n_s: int) -> list[tuple[int, int]]:
    """(template, seed) indices to show: every template's first seed first, then more seeds."""
    pairs = [(t, s) for s in range(n_s) for t in range(n_t)]
    return pairs[:MAX_COLUMNS]


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def attention_overlays(path: Path, term: str, templates, seeds, images, maps, groups, *, mass: float = 0.5,
                       alpha: float = 0.6, regions=None) -> Path:
    """Rows: the term's image, the modifier's attention over it, the noun's; columns: (template, seed).

    ``images`` (T, S, H, W, 3) uint8; ``maps`` (T, S, G, H, W) upsampled group maps. ``regions``:
    the object masks the numbers were measured against (``regions[t][s]``, None where a picture
    had none), outlined instead of the noun region.
    """
    from ldmprobe.analysis.trace import noun_region

    plt = _plt()
    pairs = _pairs(images.shape[0], images.shape[1])
    noun = maps[:, :, groups.index("noun")]
    objects = regions is not None

    def outline(t, s):
        if not objects:
            return noun_region(noun[t, s], mass)
        found = regions[t][s]
        return np.zeros(noun.shape[2:], bool) if found is None else np.asarray(found, bool)

    region = np.array([[outline(t, s) for s in range(noun.shape[1])] for t in range(noun.shape[0])])
    rows = [("image", None), (f"'{term}' attention", groups.index("modifier")), ("noun attention", groups.index("noun"))]
    fig, axes = plt.subplots(len(rows), len(pairs), figsize=(2.3 * len(pairs), 2.3 * len(rows)), squeeze=False)
    for c, (t, s) in enumerate(pairs):
        for r, (label, g) in enumerate(rows):
            ax = axes[r][c]
            ax.imshow(images[t, s])
            if g is not None:
                _overlay(ax, maps[t, s, g], region[t, s], alpha)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{_short(templates[t].replace('{}', term))}\nseed {seeds[s]}", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    what = ("each picture's object (segmented from its plain background)" if objects else
            f"the noun region (the fewest pixels holding {mass:.0%} of the noun's attention)")
    fig.suptitle(f"where '{term}' lands. Each map stretched from its minimum (dark) to its maximum (bright); "
                 f"peak = max / mean\n(1 = flat). Cyan: {what}", fontsize=8)
    return _save(fig, path)


def _overlay(ax, m: np.ndarray, region: np.ndarray, alpha: float) -> None:
    """A map over an image, stretched min..max, the noun region's outline, and the map's peak / mean."""
    span = float(m.max() - m.min())
    ax.imshow((m - m.min()) / span if span > 0 else np.zeros_like(m), cmap="inferno", alpha=alpha, vmin=0, vmax=1)
    if region.any() and not region.all():
        ax.contour(region.astype(float), levels=[0.5], colors="cyan", linewidths=0.9)
    mean = float(m.mean())
    ax.text(0.03, 0.04, f"peak {m.max() / mean:.2f}" if mean > 0 else "", transform=ax.transAxes, fontsize=7,
            color="white", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0})


def image_strip(path: Path, title: str, columns: list[tuple[str, np.ndarray]]) -> Path:
    """One row of images (H, W, 3) with labels: e.g. baseline, term and each hybrid of one (template, seed)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(columns), figsize=(1.9 * len(columns), 2.3), squeeze=False)
    for ax, (label, image) in zip(axes[0], columns):
        ax.imshow(image)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def _limits(values, low: float = -0.25, high: float = 1.25, clamp: tuple[float, float] = (-1.5, 2.5)):
    """Axis limits around the shares 0..1 and the points, intervals cut at ``clamp`` (they can be huge)."""
    v = np.asarray([x for x in values if x is not None], float)
    v = v[np.isfinite(v)]
    lo, hi = min(low, float(v.min()) - 0.1) if v.size else low, max(high, float(v.max()) + 0.1) if v.size else high
    return max(lo, clamp[0]), min(hi, clamp[1])


def _variant_k(name: str) -> tuple[str, int]:
    direction, _, k = name.rpartition("@")
    return direction, int(k)


def _curve(ax, table: dict, key: str, ci_key: str, probe: int | None, ylabel: str) -> None:
    for direction, colour, label in (("baseline>term", "tab:blue", "baseline first k steps, then term"),
                                     ("term>baseline", "tab:orange", "term first k steps, then baseline")):
        rows = sorted((_variant_k(v["variant"])[1], v) for v in table["variants"]
                      if _variant_k(v["variant"])[0] == direction)
        ks = np.array([k for k, _ in rows], float)
        pick = (lambda v, name: v[name]) if probe is None else (lambda v, name: v[name][probe])
        y = np.array([np.nan if pick(v, key) is None else pick(v, key) for _, v in rows], float)
        lo = np.array([np.nan if pick(v, ci_key)[0] is None else pick(v, ci_key)[0] for _, v in rows], float)
        hi = np.array([np.nan if pick(v, ci_key)[1] is None else pick(v, ci_key)[1] for _, v in rows], float)
        ax.plot(ks, y, "o-", color=colour, label=label, ms=4)
        ax.fill_between(ks, lo, hi, color=colour, alpha=0.15, linewidth=0)
    ax.axhline(0, color="#999", lw=0.8)
    ax.axhline(1, color="#999", lw=0.8, ls="--")
    ax.set_ylim(*_limits([v for line in ax.get_lines() for v in line.get_ydata()]))
    ax.set_xlabel("switch step k")
    ax.set_ylabel(ylabel)


def steps_curves(path: Path, table: dict, n_steps: int) -> Path:
    """Drift (projection share) and the first probe's share against the switch step k, both directions."""
    plt = _plt()
    probes = table["probes"]
    fig, axes = plt.subplots(1, 2 if probes else 1, figsize=(9 if probes else 4.8, 3.4), squeeze=False)
    _curve(axes[0][0], table, "projection_share", "projection_share_ci", None, "share of the term's drift")
    axes[0][0].set_title(f"'{table['term']}': image drift", fontsize=9)
    if probes:
        _curve(axes[0][1], table, "probe_share", "probe_share_ci", 0, f"share of the '{probes[0]}' shift")
        axes[0][1].set_title(f"'{table['term']}': probe '{probes[0]}'", fontsize=9)
    for ax in axes[0]:
        ax.set_xlim(-0.5, n_steps + 0.5)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig, path)


def conditioning_shares(path: Path, tables: list[dict]) -> Path:
    """Per term and variant: projection share and first-probe share with their intervals."""
    plt = _plt()
    probes = tables[0]["probes"] if tables else ()
    keys = [("projection_share", "projection_share_ci", None, "share of drift")]
    if probes:
        keys.append(("probe_share", "probe_share_ci", 0, f"share of '{probes[0]}' shift"))
    n_rows = sum(len(t["variants"]) for t in tables)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.4 * len(keys), 0.9 + 0.32 * n_rows), squeeze=False)
    labels = [f"{t['term']}: {v['variant']}" for t in tables for v in t["variants"]]
    for ax, (key, ci_key, probe, xlabel) in zip(axes[0], keys):
        ys = np.arange(n_rows)[::-1]
        values = [(v[key] if probe is None else v[key][probe], v[ci_key] if probe is None else v[ci_key][probe])
                  for t in tables for v in t["variants"]]
        for y, (value, ci) in zip(ys, values):
            if value is None:
                continue
            ax.plot([value], [y], "o", color="tab:blue", ms=5)
            if ci and ci[0] is not None and ci[1] is not None:
                ax.plot(ci, [y, y], "-", color="tab:blue", lw=2, alpha=0.5)
        ax.axvline(0, color="#999", lw=0.8)
        ax.axvline(1, color="#999", lw=0.8, ls="--")
        ax.set_yticks(ys)
        ax.set_yticklabels(labels if ax is axes[0][0] else [""] * n_rows, fontsize=8)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylim(-0.7, n_rows - 0.3)
        ax.set_xlim(*_limits([v for v, _ in values]))
    fig.suptitle("conditioning: which part of the text encoder's output carries the term (1 = all of it; "
                 "intervals cut at the axes)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
