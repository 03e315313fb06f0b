"""Pictures a person would rather look at than read: an architecture drawn as its layers, training curves.

Matplotlib with the Agg backend, written as PNG; nothing here needs a display.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from spos.io.files import write_atomic  # noqa: E402
from spos.space.architecture import Architecture  # noqa: E402
from spos.space.searchspace import SearchSpace

BLOCK_COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
                 "#9c755f", "#bab0ac")


def op_colours(space: SearchSpace) -> dict[str, str]:
    """A colour for every op name of the space, in the order the stages list them."""
    names = list(dict.fromkeys(op for spec in space.layers() for op in spec.ops))
    return {name: BLOCK_COLOURS[i % len(BLOCK_COLOURS)] for i, name in enumerate(names)}


def plot_architecture(arch: Architecture, space: SearchSpace, path: str | Path, title: str | None = None) -> Path:
    """One bar per choice layer: colour is the block, height the channel scale, stages marked."""
    arch.validate(space)
    specs = space.layers()
    fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(specs) + 2), 3.6))
    top = max(space.channel_scales)
    colours = op_colours(space)
    for spec, block, channel in zip(specs, arch.blocks, arch.channels):
        scale = space.channel_scales[channel]
        ax.add_patch(Rectangle((spec.index + 0.1, 0), 0.8, scale, color=colours[spec.ops[block]]))
        ax.text(spec.index + 0.5, scale + 0.04 * top, f"{spec.mid_widths[block][channel]}", ha="center", fontsize=7)
        if spec.first:
            ax.axvline(spec.index, color="grey", lw=0.8, ls=":")
            # 0-based like the layers and the report's layer list ("layer 4 (stage 1, ...)")
            ax.text(spec.index + 0.1, 1.12 * top, f"stage {spec.stage}\n{spec.out_channels} ch, /{spec.stride}",
                    fontsize=7, va="bottom", color="dimgrey")
    ax.set_xlim(0, len(specs))
    ax.set_ylim(0, 1.35 * top)
    ax.set_xticks([i + 0.5 for i in range(len(specs))], [str(i) for i in range(len(specs))], fontsize=7)
    ax.set_xlabel("choice layer (number above a bar: mid channels)")
    ax.set_ylabel("channel scale")
    ax.legend(handles=[Patch(color=c, label=n) for n, c in colours.items()],
              loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=4, fontsize=8, frameon=False)
    ax.set_title(title or f"{arch}", fontsize=9)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_training_curves(histories: dict[str, list[dict]], path: str | Path,
                         metrics: tuple[str, ...] = ("train_loss", "val_top1")) -> Path:
    """Per-epoch curves of several runs side by side, one panel per metric."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.4))
    axes = [axes] if len(metrics) == 1 else list(axes)
    for ax, metric in zip(axes, metrics):
        for label, rows in histories.items():
            points = [(row["epoch"], row[metric]) for row in rows if row.get(metric) is not None]
            if points:
                ax.plot(*zip(*points), marker="o", ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (making its folder) and close it; every spos plot ends here. Written by
    `spos.io.files.write_atomic`, so a planted link at ``path`` is replaced, never followed."""
    path = Path(path)
    try:
        write_atomic(path, lambda handle: fig.savefig(handle, format="png", dpi=110))
    finally:
        plt.close(fig)
    return path
