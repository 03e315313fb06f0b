"""The pictures of a rank job: the supernet's score against the truth inside one FLOPs window."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def plot_window(rows: Sequence[dict], scores: Sequence[float], window: dict, path, *, score: str = "top1"):
    """Supernet score (``score``: top1, or loss drawn as the cross-entropy on an inverted axis) against the
    truth inside one window, its first pick marked; through `plots.save_figure`."""
    from spos.plots import save_figure
    from spos.search.plots import plt, score_axis

    shown, label = score_axis(score)
    low, high = window["flops"]
    inside = window["members"]
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    ax.scatter([shown(scores[i]) for i in inside], [100 * rows[i]["standalone_top1"] for i in inside], s=10,
               alpha=0.6)
    pick = inside[int(np.argmax([scores[i] for i in inside]))]
    ax.scatter([shown(scores[pick])], [100 * rows[pick]["standalone_top1"]], marker="*", s=200, color="gold",
               edgecolors="black", zorder=5, label=f"first pick: percentile {window['pick']['percentile']:.0f}")
    tau, flops_tau = window["kendall_tau"], window["flops_tau"]
    ceiling = window["ceiling_tau"]
    ax.set_title(f"FLOPs {low / 1e6:.1f}M-{high / 1e6:.1f}M, n={window['n']}: tau {tau['value']:.2f} "
                 f"[{tau['low']:.2f}, {tau['high']:.2f}], FLOPs {flops_tau['value']:.2f}"
                 + (f", seeds {ceiling:.2f}" if ceiling is not None else ""), fontsize=8)
    if score == "loss":
        ax.invert_xaxis()  # lower loss ranks higher: better to the right, as for top-1
    ax.set_xlabel(f"supernet path {label}")
    ax.set_ylabel("accuracy trained alone (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)
