"""Figures of the SSN studies (paper Figures 4 and 6): loss curves, attention maps, part boxes, PCK bars.

Every function writes one PNG with matplotlib's Agg backend and returns nothing; the numbers behind
a figure are in the study's JSON next to it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ssn3d.keypoints import NUM_PARTS, PART_COLORS, PARTS, VISIBLE


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def part_color(i: int) -> tuple[float, float, float]:
    """Part i's colour (``ssn3d.keypoints.PART_COLORS``, then tab20), RGB in [0, 1]."""
    if i < len(PART_COLORS):
        return tuple(c / 255.0 for c in PART_COLORS[i])
    return pyplot().get_cmap("tab20")(i % 20)[:3]


# Matplotlib's tab20c: five hue families (blue, orange, green, purple, grey) of four shades, darkest first.
_FAMILIES = (
    ("#3182bd", "#6baed6", "#9ecae1", "#c6dbef"),
    ("#e6550d", "#fd8d3c", "#fdae6b", "#fdd0a2"),
    ("#31a354", "#74c476", "#a1d99b", "#c7e9c0"),
    ("#756bb1", "#9e9ac8", "#bcbddc", "#dadaeb"),
    ("#636363", "#969696", "#bdbdbd", "#d9d9d9"),
)


def curve_colors(keys: list[tuple[str, int | None]]) -> dict[tuple[str, int | None], str]:
    """A distinct colour per (distribution, part count): a hue family per distribution, a shade per N.

    The random-data study (Fig. 5) crosses distributions with part counts; one hue per distribution
    and darker shades for fewer parts keep both readable at a glance, where a plain colour cycle
    repeats after ten curves and says nothing about which curves belong together.
    """
    dists = list(dict.fromkeys(d for d, _ in keys))
    counts = sorted({n for _, n in keys if n is not None})
    out = {}
    for d, n in keys:
        family = _FAMILIES[dists.index(d) % len(_FAMILIES)]
        shade = counts.index(n) if n is not None else 0
        out[(d, n)] = family[shade % len(family)]
    return out


def loss_curves(curves: dict[str, list[float]], chance: float, path: Path, title: str) -> None:
    """L_SSN against iteration (raw and a running mean), with log N (chance) dotted."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for j, (name, loss) in enumerate(curves.items()):
        color = plt.get_cmap("tab10")(j)
        k = max(1, len(loss) // 25)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(loss, lw=0.6, alpha=0.35, color=color, zorder=2)
        ax.plot(
            np.arange(len(smooth)) + k - 1,
            smooth,
            lw=1.5,
            color=color,
            label=f"{name} (mean of {k})",
            zorder=3,
        )
    # under the curves: a loss that sits at chance (constant input) must stay visible on its guide
    ax.axhline(chance, ls=":", color="k", label="log N (chance)", zorder=1)
    ax.set(xlabel="iteration", ylabel="L_SSN", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def amber_attention(images: torch.Tensor, maps: torch.Tensor, titles: list[str], path: Path) -> None:
    """Each painting and its N attention maps, one row per painting."""
    plt = pyplot()
    p, n = maps.shape[:2]
    fig, axes = plt.subplots(p, n + 1, figsize=(1.6 * (n + 1), 1.3 * p + 0.3), squeeze=False)
    for r in range(p):
        axes[r, 0].imshow(images[r].permute(1, 2, 0).numpy())
        axes[r, 0].set_title(titles[r], fontsize=7)
        for i in range(n):
            axes[r, i + 1].imshow(maps[r, i].numpy(), cmap="inferno")
            axes[r, i + 1].set_title(f"part {i}", fontsize=7, color=part_color(i))
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# Long on purpose: one matplotlib figure built row by row (a motif per row); its calls read best in order.
def amber_part_boxes(
    images: torch.Tensor, peaks: np.ndarray, names: list[str], meta: dict, hits: dict, window: int, path: Path
) -> None:
    """Paper Fig. 6: for each motif, the part that finds it most often and its boxes across paintings.

    One row per motif: the paintings carrying it (the first six), with that part's selected window
    drawn in the part's colour and the planted motif's box dashed.
    """
    from matplotlib.patches import Rectangle

    plt = pyplot()
    h, w = images.shape[-2:]
    ph, pw = meta["size"]
    rows = list(hits["best"].items())
    cols = 6
    fig, axes = plt.subplots(
        max(1, len(rows)), cols, figsize=(2.0 * cols, 1.7 * max(1, len(rows)) + 0.2), squeeze=False
    )
    for r, (motif, best) in enumerate(rows):
        part = best["part"]
        carriers = [i for i, n in enumerate(names) if any(o["motif"] == motif for o in meta["paintings"][n])][
            :cols
        ]
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(carriers):
                continue
            i = carriers[c]
            ax.imshow(images[i].permute(1, 2, 0).numpy())
            for o in meta["paintings"][names[i]]:
                if o["motif"] == motif:
                    x0, y0, x1, y1 = o["box"]
                    ax.add_patch(
                        Rectangle(
                            (x0 * w / pw, y0 * h / ph),
                            (x1 - x0) * w / pw,
                            (y1 - y0) * h / ph,
                            fill=False,
                            ls="--",
                            lw=0.8,
                            color="white",
                        )
                    )
            col, row = peaks[i, part]
            ax.add_patch(
                Rectangle(
                    (col + 0.5 - window / 2, row + 0.5 - window / 2),
                    window,
                    window,
                    fill=False,
                    lw=1.8,
                    color=part_color(part),
                )
            )
        axes[r, 0].set_title(
            f"{motif}: part {part}, hits {best['rate']:.0%} (random {best['chance']:.0%})",
            fontsize=8,
            loc="left",
        )
    fig.suptitle("Parts found by unsupervised SSN across paintings (paper Fig. 6)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pedestrian_pck(record: dict, path: Path) -> None:
    """PCK per part: each strategy, the mean-position prior, and a random peak."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.4))
    series = {s: r["per_part"] for s, r in record["results"].items()}
    series["mean position"] = record["baselines"]["mean_position"]["per_part"]
    width = 0.8 / len(series)
    for j, (name, per_part) in enumerate(series.items()):
        ax.bar(np.arange(NUM_PARTS) + j * width, [per_part.get(p, 0.0) for p in PARTS], width, label=name)
    ax.axhline(record["baselines"]["chance"], ls=":", color="k", label="random peak")
    ax.set_xticks(np.arange(NUM_PARTS) + 0.4 - width / 2, PARTS, rotation=30, fontsize=8)
    alpha = record["tolerance_px"] / record["height"]
    ax.set(ylabel=f"PCK@{alpha:g}h", ylim=(0, 1), title="PCK on the unlabeled crops")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pedestrian_attention(
    images: torch.Tensor,
    maps: torch.Tensor,
    peaks: np.ndarray,
    kps: np.ndarray,
    assignment: list[int],
    strategy: str,
    path: Path,
) -> None:
    """Paper Fig. 4: each crop, then part i's attention over it with its peak (x) and keypoint (o).

    Args:
        images: (P, 3, H, W) crops in [0, 1]; the first is labeled, the rest are not.
        maps: (P, N, h, w) attention.
        peaks: (P, N, 2) attention peaks in image pixels.
        kps: (P, 9, 3) true keypoints.
        assignment: the keypoint each part is compared with.
    """
    plt = pyplot()
    p, n = maps.shape[:2]
    h, w = images.shape[-2:]
    up = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False)
    fig, axes = plt.subplots(p, n + 1, figsize=(0.95 * (n + 1), 1.75 * p + 0.4), squeeze=False)
    for r in range(p):
        img = images[r].permute(1, 2, 0).numpy()
        axes[r, 0].imshow(img)
        axes[r, 0].set_title("labeled" if r == 0 else "unlabeled", fontsize=7)
        for i in range(n):
            ax = axes[r, i + 1]
            k = assignment[i]
            ax.imshow(img * 0.45)
            ax.imshow(up[r, i].numpy(), cmap="inferno", alpha=0.6)
            color = tuple(c / 255 for c in PART_COLORS[k])
            if kps[r, k, 2] >= VISIBLE:
                ax.plot(*kps[r, k, :2], "o", ms=4, mfc="none", mec="white")
            ax.plot(*peaks[r, i], "x", ms=5, color=color)
            if r == 0:
                ax.set_title(PARTS[k].replace("_", "\n"), fontsize=6, color=color)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"{strategy}: attention per part (x peak, o true keypoint); paper Fig. 4", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
