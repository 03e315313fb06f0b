"""Search pictures: every candidate as accuracy against cost with the front drawn; best per generation."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from spos.plots import save_figure  # noqa: E402

UNITS = {"flops": (1e6, "MFLOPs (multiply-adds)"), "params": (1e6, "M parameters"), "latency": (1.0, "latency (ms)")}


def score_axis(score: str):
    """How a search score is drawn: (value -> y, axis label). Loss scores are minus the cross-entropy:
    drawn as the cross-entropy on an inverted axis, so better is up for both."""
    if score == "loss":
        return (lambda value: -value), "hold-out cross-entropy (lower is better)"
    return (lambda value: 100 * value), "hold-out top-1 (%)"


def plot_search_scatter(records: list[dict], x_key: str, path: str | Path, front: list[dict] | None = None,
                        best: dict | None = None, limit: float | None = None, score: str = "top1") -> Path:
    scale, label = UNITS.get(x_key, (1.0, x_key))
    y, y_label = score_axis(score)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    generations = [r.get("generation", 0) + 1 for r in records]  # 1-based, as in best_per_generation.png
    points = ax.scatter([r[x_key] / scale for r in records], [y(r["score"]) for r in records], c=generations,
                        cmap="viridis", s=14, alpha=0.75, label="scored candidates")
    fig.colorbar(points, ax=ax, label="generation", ticks=MaxNLocator(integer=True))
    if front:
        ordered = sorted(front, key=lambda r: r[x_key])
        ax.step([r[x_key] / scale for r in ordered], [y(r["score"]) for r in ordered], where="post",
                color="crimson", lw=1.5, label="Pareto front")
    if best:
        ax.scatter([best[x_key] / scale], [y(best["score"])], marker="*", s=220, color="gold",
                   edgecolors="black", zorder=5, label="best")
    if limit is not None:
        ax.axvline(limit / scale, color="grey", ls="--", lw=1, label="limit")
    if score == "loss":
        ax.invert_yaxis()
    ax.set_xlabel(label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_best_per_generation(best: list[float], path: str | Path, *, chance: float | None = None,
                             supernet_top1: float | None = None, score: str = "top1") -> Path:
    """The best score after each generation, with chance (top-1 1 / classes, or the cross-entropy of a
    uniform guess, ln classes) and the supernet's mean path accuracy drawn for reference, so a curve
    that creeps along near chance is not read as progress."""
    y, y_label = score_axis(score)
    by_loss = score == "loss"
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    ax.plot(range(1, len(best) + 1), [y(b) for b in best], marker="o", ms=3, label="best so far")
    if chance is not None:
        level = -math.log(chance) if by_loss else 100 * chance
        ax.axhline(level, color="grey", ls="--", lw=1,
                   label=f"chance ({level:.2f})" if by_loss else f"chance ({level:.1f}%)")
    if by_loss:
        ax.invert_yaxis()
        supernet_top1 = None  # a top-1 level has no place on a loss axis
    if supernet_top1 is not None:
        ax.axhline(100 * supernet_top1, color="darkorange", ls=":", lw=1.2,
                   label=f"supernet, mean of its validation paths ({100 * supernet_top1:.1f}%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation")
    ax.set_ylabel("best hold-out cross-entropy" if by_loss else f"best {y_label}")  # fits the small figure
    ax.grid(alpha=0.3)
    if chance is not None or supernet_top1 is not None:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_rank_scatter(rows: list[dict], statistics: dict, path: str | Path, score: str = "top1") -> Path:
    """Supernet score against stand-alone accuracy, one point per architecture, FLOPs as colour."""
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    by_loss = score == "loss"
    x_label = score_axis(score)[1]
    xs = [r["supernet_loss"] if by_loss else 100 * r["supernet_top1"] for r in rows]
    points = ax.scatter(xs, [100 * r["standalone_top1"] for r in rows],
                        c=[r["flops"] / 1e6 for r in rows], cmap="viridis", s=36, edgecolors="black", lw=0.4)
    fig.colorbar(points, ax=ax, label=UNITS["flops"][1])
    tau, rho = statistics["kendall_tau"], statistics["spearman_rho"]
    ax.set_title(f"n={statistics['n']}: Kendall tau {tau['value']:.2f} [{tau['low']:.2f}, {tau['high']:.2f}], "
                 f"Spearman {rho['value']:.2f}", fontsize=9)
    if by_loss:  # lower loss ranks higher: the axis runs from high to low, so the trend reads as for top-1
        ax.invert_xaxis()
    ax.set_xlabel(f"supernet path {x_label}")
    ax.set_ylabel("stand-alone top-1 (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
