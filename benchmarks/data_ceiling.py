"""The data ceiling: how well networks trained alone on the CIFAR-10 subset rank NAS-Bench-Macro's windows.

Usage:
    python benchmarks/data_ceiling.py --table nas-bench-macro_cifar10.json --data-root cifar10_subset.npz \
        --output OUT [--archs 12] [--seeds 2] [--width 0.25] [--set train.epochs=10 ...]

A supernet trained on the 5,085-image subset can rank networks at most as well as the same networks trained
alone on that subset do: this script measures that ceiling inside the equal-FLOPs windows of
`equal_flops_ranking.py` (the same quantiles and half-width, the same architecture choice as `spos rank`
makes with the same ``--archs`` and ``--seed`` for a supernet at ``--choice-width``, so a supernet ranked with `equal_flops_ranking.py --archs K`
is scored on exactly these networks). Each network is trained alone with the retraining recipe
(``--standalone``, default cifar10-retrain: cosine LR with warm-up, label smoothing, mixup, no weight decay
on BN/bias) at ``--width`` for ``--seeds`` seeds, through `spos rank`'s own stand-alone runner: finished runs
are read back and a cut run resumes from its checkpoint, so the whole study resumes by running the same
command again. Runs are shared out over processes started with RANK/WORLD_SIZE set (torchrun, or by hand).

Printed per window (and written to OUT/ceiling.json): the subset's stand-alone tau against the table with
its bootstrap interval, the subset's own seed-to-seed tau, the table's seed-to-seed tau on the same
networks, and FLOPs', params' and depth's tau; then the means over the windows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from equal_flops_ranking import windows_of  # noqa: E402

from spos.bench.tables import load_benchmark  # noqa: E402
from spos.io.files import write_text_atomic  # noqa: E402
from spos.rank.choose import choose_architectures
from spos.rank.job import RankJob, standalone_accuracies  # noqa: E402
from spos.space.searchspace import get_space  # noqa: E402
from spos.stats.ranking import bootstrap, kendall_tau  # noqa: E402
from spos.stats.windows import seed_ceiling  # noqa: E402
from spos.train.distributed import launcher_rank_and_world  # noqa: E402


def window_job(args, window: tuple[str, float, float]) -> RankJob:
    """The rank job whose stand-alone runner trains this window's networks (no supernet is read)."""
    return RankJob(supernet="", output=str(Path(args.output) / window[0]), archs=args.archs, flops_min=window[1],
                   flops_max=window[2], standalone=args.standalone, seeds=args.seeds,
                   overrides=[f"space.width_mult={args.width}", *args.overrides], data="cifar10",
                   data_root=args.data_root, seed=args.seed, progress=False)


def window_networks(job: RankJob, space, benchmark) -> list:
    """The networks `spos rank --benchmark nas-bench-macro --archs K --seed S` ranks in this window for a supernet
    of ``space`` (rank spreads its choice over the supernet's own FLOPs)."""
    truth = {arch: entry.accuracy for arch, entry in benchmark.networks.items()}
    return choose_architectures(job, space, truth, lambda a: benchmark.entry(a).flops)


def depth(arch) -> int:
    """Non-identity layers (NAS-Bench-Macro's block 0 is the identity)."""
    return sum(1 for block in arch.blocks if block != 0)


def _interval(statistic, x, y, samples: int, seed: int) -> dict:
    estimate = bootstrap(statistic, x, y, samples=samples, seed=seed)
    return {"value": estimate.value, "low": estimate.low, "high": estimate.high}


def window_figures(archs: list, runs: dict[str, list[float]], benchmark, samples: int, seed: int) -> dict:
    """The ceiling figures of one window: the subset's tau against the table and the baselines' taus."""
    table = np.array([benchmark.entry(a).accuracy for a in archs])
    subset = np.array([np.mean(runs[str(a)]) for a in archs])
    seeds = [runs[str(a)] for a in archs]
    flops = [benchmark.entry(a).flops for a in archs]
    params = [benchmark.entry(a).params for a in archs]
    return {"n": len(archs), "flops": [float(min(flops)), float(max(flops))],
            "standalone_tau": _interval(kendall_tau, subset, table, samples, seed),
            "subset_seed_tau": seed_ceiling(seeds) if min(map(len, seeds)) >= 2 else None,
            "table_seed_tau": seed_ceiling([list(benchmark.entry(a).accuracies) for a in archs]),
            "flops_tau": kendall_tau(flops, table), "fewer_params_tau": kendall_tau(-np.asarray(params), table),
            "depth_tau": kendall_tau([depth(a) for a in archs], table),
            "mean_subset_top1": float(subset.mean()), "mean_table_top1": float(table.mean()),
            "rows": [{"arch": str(a), "subset_runs": runs[str(a)], "table": float(t)} for a, t in zip(archs, table)]}


def mean_tau(windows: list[dict], key: str) -> float | None:
    values = [w[key] if not isinstance(w[key], dict) else w[key]["value"] for w in windows]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def report(windows: dict[str, dict]) -> list[str]:
    lines = []
    for name, w in windows.items():
        tau = w["standalone_tau"]
        lines.append(f"{name} {w['flops'][0] / 1e6:.1f}-{w['flops'][1] / 1e6:.1f}M, n={w['n']}: stand-alone on the "
                     f"subset tau {tau['value']:.2f} [{tau['low']:.2f}, {tau['high']:.2f}], subset seeds "
                     f"{w['subset_seed_tau'] if w['subset_seed_tau'] is not None else float('nan'):.2f}, table seeds "
                     f"{w['table_seed_tau']:.2f}, FLOPs {w['flops_tau']:.2f}, fewer params {w['fewer_params_tau']:.2f}, "
                     f"depth {w['depth_tau']:.2f}; mean top-1 {100 * w['mean_subset_top1']:.1f}% (subset) "
                     f"{100 * w['mean_table_top1']:.1f}% (table)")
    listed = list(windows.values())
    lines.append("mean over windows: " + ", ".join(
        f"{label} {mean_tau(listed, key):.2f}" for label, key in (
            ("stand-alone on the subset", "standalone_tau"), ("subset seeds", "subset_seed_tau"),
            ("table seeds", "table_seed_tau"), ("FLOPs", "flops_tau"), ("fewer params", "fewer_params_tau"),
            ("depth", "depth_tau")) if mean_tau(listed, key) is not None))
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, help="NAS-Bench-Macro's JSON file")
    parser.add_argument("--data-root", required=True, help="the CIFAR-10 subset (cifar10_subset.npz or its folder)")
    parser.add_argument("--output", default="runs/data-ceiling")
    parser.add_argument("--quantiles", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--half-width", type=float, default=0.5e6, help="in the table's FLOPs (default 0.5M)")
    parser.add_argument("--archs", type=int, default=12, help="networks per window (default 12)")
    parser.add_argument("--seeds", type=int, default=2, help="stand-alone runs per network (default 2)")
    parser.add_argument("--width", type=float, default=0.25, help="width multiplier of every network (default 0.25)")
    parser.add_argument("--choice-width", type=float, default=0.5,
                        help="the width whose FLOPs spread the choice, as `spos rank` spreads by its supernet's: "
                             "0.5, the width of equal_flops_ranking.py's supernets (default)")
    parser.add_argument("--standalone", default="cifar10-retrain", help="the retraining recipe (default cifar10-retrain)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe override, e.g. train.epochs=10 (repeatable)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    benchmark = load_benchmark("nas-bench-macro", args.table)
    space = get_space("mbv2-macro-cifar", width_mult=args.width)
    choosing = get_space("mbv2-macro-cifar", width_mult=args.choice_width)
    figures = {}
    for window in windows_of(args.table, args.quantiles, args.half_width):
        job = window_job(args, window)
        archs = window_networks(job, choosing, benchmark)
        runs = standalone_accuracies(job, space, archs)
        if runs is not None:  # rank 0: every run of the window is done
            figures[window[0]] = window_figures(archs, runs, benchmark, args.bootstrap, args.seed)
    if launcher_rank_and_world()[0] != 0:
        return {}
    print("\n".join(report(figures)))
    result = {"settings": {k: v for k, v in vars(args).items()}, "windows": figures}
    write_text_atomic(json.dumps(result, indent=2) + "\n", Path(args.output) / "ceiling.json")
    return result


if __name__ == "__main__":
    main()
