"""Search pictures: every candidate as accuracy against cost with the front drawn; best per generation."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from spos.plots import save_figure  # noqa: E402

UNITS = {"flops": (1e6, "MFLOPs (multiply-adds)"), "params": (1e6, "M parameters"), "latency": (1.0, "latency (ms)")}


def plot_search_scatter(records: list[dict], x_key: str, path: str | Path, front: list[dict] | None = None,
                        best: dict | None = None, limit: float | None = None) -> Path:
    scale, label = UNITS.get(x_key, (1.0, x_key))
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    generations = [r.get("generation", 0) + 1 for r in records]  # 1-based, as in best_per_generation.png
    points = ax.scatter([r[x_key] / scale for r in records], [100 * r["score"] for r in records], c=generations,
                        cmap="viridis", s=14, alpha=0.75, label="scored candidates")
    fig.colorbar(points, ax=ax, label="generation", ticks=MaxNLocator(integer=True))
    if front:
        ordered = sorted(front, key=lambda r: r[x_key])
        ax.step([r[x_key] / scale for r in ordered], [100 * r["score"] for r in ordered], where="post",
                color="crimson", lw=1.5, label="Pareto front")
    if best:
        ax.scatter([best[x_key] / scale], [100 * best["score"]], marker="*", s=220, color="gold",
                   edgecolors="black", zorder=5, label="best")
    if limit is not None:
        ax.axvline(limit / scale, color="grey", ls="--", lw=1, label="limit")
    ax.set_xlabel(label)
    ax.set_ylabel("hold-out top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_best_per_generation(best: list[float], path: str | Path, *, chance: float | None = None,
                             supernet_top1: float | None = None) -> Path:
    """The best score after each generation, with chance (1 / classes) and the supernet's mean path
    accuracy drawn for reference, so a curve that creeps along near chance is not read as progress."""
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    ax.plot(range(1, len(best) + 1), [100 * b for b in best], marker="o", ms=3, label="best so far")
    if chance is not None:
        ax.axhline(100 * chance, color="grey", ls="--", lw=1, label=f"chance ({100 * chance:.1f}%)")
    if supernet_top1 is not None:
        ax.axhline(100 * supernet_top1, color="darkorange", ls=":", lw=1.2,
                   label=f"supernet, mean of its validation paths ({100 * supernet_top1:.1f}%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation")
    ax.set_ylabel("best hold-out top-1 (%)")
    ax.grid(alpha=0.3)
    if chance is not None or supernet_top1 is not None:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_rank_scatter(rows: list[dict], statistics: dict, path: str | Path) -> Path:
    """Supernet score against stand-alone accuracy, one point per architecture, FLOPs as colour."""
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    points = ax.scatter([100 * r["supernet_top1"] for r in rows], [100 * r["standalone_top1"] for r in rows],
                        c=[r["flops"] / 1e6 for r in rows], cmap="viridis", s=36, edgecolors="black", lw=0.4)
    fig.colorbar(points, ax=ax, label=UNITS["flops"][1])
    tau, rho = statistics["kendall_tau"], statistics["spearman_rho"]
    ax.set_title(f"n={statistics['n']}: Kendall tau {tau['value']:.2f} [{tau['low']:.2f}, {tau['high']:.2f}], "
                 f"Spearman {rho['value']:.2f}", fontsize=9)
    ax.set_xlabel("supernet path hold-out top-1 (%)")
    ax.set_ylabel("stand-alone top-1 (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
