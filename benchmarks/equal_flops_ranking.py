"""Supernets ranked against NAS-Bench-Macro inside equal-FLOPs windows, the same windows and architectures for each.

Usage:
    python benchmarks/equal_flops_ranking.py --table nas-bench-macro_cifar10.json --output OUT \
        --supernet ref=runs/ref/last.pt --supernet fewshot=runs/fs/last.pt [--archs 60] [--bn-batches 5] \
        [--proxies all]

Each window is centred on a quantile of the table's FLOPs (over its 3,969 distinct networks; default the 25th,
50th and 75th percentiles), ``--half-width`` either side in the table's FLOPs (width 1.0), where FLOPs alone say
nearly nothing. ``--archs`` of the networks inside are drawn once (`spos rank`'s spread over FLOPs, ``--seed``),
so every supernet is scored on the same ones. Each (supernet, window) is one `spos rank` job in
OUT/NAME/qQQ (resumable: a finished one is read back, never scored again). Printed per supernet and score
(hold-out cross-entropy and top-1, from one scoring pass): per window the tau with its interval, the truth's
seed-to-seed tau, FLOPs' and params' own tau, the lead over preferring fewer parameters with its paired
interval and the first pick's percentile; then the means over the windows with intervals, and what the
supernet's training cost (epochs, steps, seconds of training steps). Then a table of every baseline `spos rank`
reports (FLOPs, fewer params, more params, depth and the ``--proxies`` asked: zero-cost proxies of each path, see
`spos.rank.proxies`): per window and as the mean over the windows, its tau with its interval, and the supernet's lead
over it with its paired interval. Written to OUT/summary.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from spos.bench.tables import load_benchmark
from spos.errors import UserError
from spos.io.files import write_text_atomic
from spos.rank.job import RankJob, run_rank
from spos.rank.proxies import proxy_names
from spos.search.scoring import HoldoutMeasure, score_of
from spos.stats.windows import baseline_values, mean_over_windows
from spos.store import checkpoint


def windows_of(table: str, quantiles: list[float], half_width: float) -> list[tuple[str, float, float]]:
    """(name, low, high) in the table's FLOPs around each quantile of its distinct networks' FLOPs."""
    flops = np.sort([entry.flops for entry in load_benchmark("nas-bench-macro", table).networks.values()])
    centres = [float(flops[int(q * (len(flops) - 1))]) for q in quantiles]
    return [(f"q{round(100 * q):02d}", c - half_width, c + half_width) for q, c in zip(quantiles, centres)]


def rank_window(args, name: str, supernet: str, window: tuple[str, float, float]) -> dict:
    """rank.json of one supernet in one window, scored here unless a finished job with every baseline asked is there
    (a job finished before: resumed, so only what it lacks is computed)."""
    output = Path(args.output) / name / window[0]
    if (output / "rank.json").is_file():
        result = json.loads((output / "rank.json").read_text())
        if has_baselines(result, args.proxies):
            return result
    job = RankJob(supernet=supernet, output=str(output), archs=args.archs, flops_min=window[1], flops_max=window[2],
                  benchmark="nas-bench-macro", benchmark_file=args.table, bn_batches=args.bn_batches,
                  score="loss", seed=args.seed, bootstrap=args.bootstrap, resume=(output / "settings.json").is_file(),
                  progress=False, holdout_from=args.holdout_from, allow_trained_images=args.allow_trained_images,
                  proxies=args.proxies)
    return run_rank(job)


def has_baselines(result: dict, proxies: list[str]) -> bool:
    """Whether a finished rank.json reports the baselines (written before they existed, it does not) and every
    proxy asked."""
    return "baselines" in result["windows"][0] and all(name in (row.get("proxies") or {}) for row in result["rows"]
                                                       for name in proxies)


def training_cost(supernet: str) -> dict:
    history = checkpoint.load(supernet).get("history") or []
    return {"epochs": len(history), "steps": history[-1]["step"] if history else None,
            "train_seconds": sum(row.get("train_seconds", 0.0) for row in history)}


def summarise(ranks: list[dict], score: str, bootstrap: int, seed: int) -> dict:
    """Per window (from rank.json) and the means over the windows, for one score: ``mean`` against fewer params,
    ``baselines_mean`` the mean tau of every baseline and the supernet's mean lead over it."""
    per_window, windows = [], []
    for result in ranks:
        rows = result["rows"]
        scores = [score_of(HoldoutMeasure(r["supernet_top1"], r["supernet_loss"]), score) for r in rows]
        truth = [r["standalone_top1"] for r in rows]
        windows.append((scores, baseline_values(rows, flops_key="benchmark_flops", params_key="benchmark_params"),
                        truth))
        per_window.append(result["by_score"][score]["windows"][0])
    names = [name for name in windows[0][1] if all(name in baselines for _, baselines, _ in windows)]
    means = {name: mean_over_windows([(s, baselines[name], t) for s, baselines, t in windows], samples=bootstrap,
                                     seed=seed) for name in names}
    return {"windows": per_window, "mean": means["fewer_params"],
            "baselines_mean": {name: {"kendall_tau": mean["baseline_tau"], "lead": mean["lead"]}
                               for name, mean in means.items()},
            "mean_pick_percentile": float(np.mean([w["pick"]["percentile"] for w in per_window]))}


def _interval(estimate: dict) -> str:
    if estimate["value"] is None:  # null in rank.json: every value of a predictor tied in the window
        return "undefined (tied)"
    return f"{estimate['value']:.2f} [{estimate['low']:.2f}, {estimate['high']:.2f}]"


def _proxy_list(text: str) -> list[str]:
    try:
        return proxy_names(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def report_lines(name: str, score: str, summary: dict, cost: dict) -> list[str]:
    lines = [f"{name}, by {'cross-entropy' if score == 'loss' else 'top-1'} ({cost['epochs']} epochs, "
             f"{cost['steps']} steps, {cost['train_seconds']:.0f} s of training steps):"]
    for window in summary["windows"]:
        low, high = window["flops"]
        lines.append(f"  {low / 1e6:.1f}-{high / 1e6:.1f}M, n={window['n']}: tau {_interval(window['kendall_tau'])}, "
                     f"seeds {window['ceiling_tau'] or float('nan'):.2f}, FLOPs {window['flops_tau']['value']:.2f}, params "
                     f"{window['params_tau']['value']:.2f}, lead over fewer params "
                     f"{_interval(window['lead_over_fewer_params'])}, first pick: rank {window['pick']['rank']}, "
                     f"percentile {window['pick']['percentile']:.1f}")
    mean = summary["mean"]
    lines.append(f"  mean of {mean['windows']} windows: tau {_interval(mean['kendall_tau'])}, fewer params "
                 f"{_interval(mean['baseline_tau'])}, lead {_interval(mean['lead'])}, first pick's percentile "
                 f"{summary['mean_pick_percentile']:.1f}")
    return lines + baseline_table(summary, "kendall_tau") + baseline_table(summary, "lead")


def baseline_table(summary: dict, what: str) -> list[str]:
    """A Markdown table, one row per predictor and one column per window and for the mean: the tau with its
    interval (``what`` kendall_tau, the supernet first) or the supernet's lead over each baseline (``lead``)."""
    windows, means = summary["windows"], summary["baselines_mean"]
    head = [f"{w['flops'][0] / 1e6:.1f}-{w['flops'][1] / 1e6:.1f}M (n={w['n']})" for w in windows]
    title = "Kendall tau [95% CI]" if what == "kendall_tau" else "the supernet's lead [95% CI]"
    lines = [f"  | {title} | {' | '.join(head)} | mean of {len(windows)} |", "  |" + "---|" * (len(windows) + 2)]
    if what == "kendall_tau":
        lines.append(f"  | supernet | {' | '.join(_interval(w['kendall_tau']) for w in windows)} | "
                     f"{_interval(summary['mean']['kendall_tau'])} |")
    for name, mean in means.items():
        cells = [_interval(w["baselines"][name][what]) for w in windows] + [_interval(mean[what])]
        lines.append(f"  | {BASELINE_LABELS.get(name, name)} | {' | '.join(cells)} |")
    return lines


BASELINE_LABELS = {"flops": "FLOPs", "fewer_params": "fewer params", "more_params": "more params"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, help="NAS-Bench-Macro's JSON file")
    parser.add_argument("--supernet", action="append", required=True, metavar="NAME=CKPT")
    parser.add_argument("--output", default="runs/equal-flops")
    parser.add_argument("--quantiles", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--half-width", type=float, default=0.5e6, help="in the table's FLOPs (default 0.5M)")
    parser.add_argument("--archs", type=int, default=60, help="networks per window (default 60)")
    parser.add_argument("--bn-batches", type=int, default=5)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--proxies", type=_proxy_list, default=[], metavar="NAME,NAME",
                        help="as spos rank's: zero-cost proxies reported as baselines (grad_norm, synflow, naswot "
                             "or all; default none)")
    parser.add_argument("--holdout-from", choices=("train", "val"), default="train",
                        help="as spos rank's: train scores on the supernet's recorded hold-out (default)")
    parser.add_argument("--allow-trained-images", action="store_true",
                        help="as spos rank's: score on training images where no hold-out is recorded")
    args = parser.parse_args(argv)
    windows = windows_of(args.table, args.quantiles, args.half_width)
    everything = {"windows": windows, "archs": args.archs, "bn_batches": args.bn_batches, "proxies": args.proxies,
                  "supernets": {}}
    for item in args.supernet:
        name, _, path = item.partition("=")
        ranks = [rank_window(args, name, path, window) for window in windows]
        cost = training_cost(path)
        by_score = {score: summarise(ranks, score, args.bootstrap, args.seed) for score in ("loss", "top1")}
        everything["supernets"][name] = {"supernet": path, "cost": cost, **by_score}
        for score, summary in by_score.items():
            print("\n".join(report_lines(name, score, summary, cost)))
    write_text_atomic(json.dumps(everything, indent=2) + "\n", Path(args.output) / "summary.json")
    return everything


if __name__ == "__main__":
    main()
