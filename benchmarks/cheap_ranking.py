"""Ranking with what is cheap to know: single scores, rank aggregates and predictors fitted on K trained networks.

Usage:
    python benchmarks/cheap_ranking.py --rank-json q25/rank.json q50/rank.json q75/rank.json \
        [--fit-sizes 10 20 30] [--splits 20] [--bootstrap 1000] [--seed 0] [--output summary.json]

Each ``--rank-json`` is one window: a finished `spos rank` output (with ``--proxies all`` for the proxies), its
rows' ``standalone_top1`` the truth. Reported per window and as the mean over the windows, each window resampled
on its own (`spos.stats.windows.mean_over_windows`), leads paired on the same resamples:

1. over every network of the window: each single score (the supernet's, by the score its rank.json ranked with;
   FLOPs, fewer params, depth, each proxy) and each rank aggregate of `AGGREGATES` (`spos.stats.aggregate`), with
   the lead of each over the best single score (the one with the highest mean tau);
2. per fit size K: ``--splits`` random splits of each window into K fitted and the rest held out (seeded; the
   K=10 fit sets lie inside the K=20 ones, as one permutation is cut at each K), each predictor of `PREDICTORS`
   (`spos.rank.predictor`) fitted on the K and every method, single scores and aggregates too, scored by its
   Kendall tau on the held-out networks only, so every comparison is paired. Per window: the mean held-out tau
   over the splits and its spread (standard deviation over the splits); for the mean over windows an interval
   from resampling each window's networks (one resample shared by every split and method, each split ranking the
   resampled networks it holds out; the fits are held fixed) and the lead over the best single score.

Scores that every row lacks (a rank.json made without ``--proxies``) are left out, and so is every aggregate or
predictor that needs one. SynFlow enters the predictors as its logarithm (it spans orders of magnitude; ranks,
hence single scores and aggregates, do not change). Written to ``--output`` when given.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from spos.errors import UserError
from spos.io.files import write_text_atomic
from spos.rank.predictor import PENALTIES, gene_counts, held_out_ranking, random_splits
from spos.search.scoring import HoldoutMeasure, score_of
from spos.space.architecture import Architecture
from spos.stats.aggregate import rank_aggregate
from spos.stats.ranking import kendall_tau, resampled_kendall_taus
from spos.stats.windows import baseline_values, mean_over_windows, resamples, seed_ceiling

#: The aggregates tried, each the equal-weight mean of its scores' ranks; chosen before any was measured.
AGGREGATES = {"supernet + NASWOT": ("supernet", "naswot"), "NASWOT + SynFlow": ("naswot", "synflow"),
              "NASWOT + fewer params": ("naswot", "fewer_params"), "NASWOT + depth": ("naswot", "depth"),
              "all proxies": ("grad_norm", "synflow", "naswot"),
              "every score": ("supernet", "grad_norm", "synflow", "naswot", "fewer_params", "depth")}
#: The predictors tried: the one-hot genes plus these scores (standardised over the fitted networks).
PREDICTORS = {"encoding": (), "encoding + NASWOT": ("naswot",), "encoding + supernet": ("supernet",),
              "encoding + all scores": ("supernet", "naswot", "synflow", "fewer_params", "depth")}
LABELS = {"supernet": "supernet", "flops": "FLOPs", "fewer_params": "fewer params", "depth": "depth",
          "grad_norm": "grad-norm", "synflow": "SynFlow", "naswot": "NASWOT"}


def load_window(path: str) -> dict:
    """One rank.json as what the methods need: truth, genes, and every single score (higher predicting better)."""
    try:
        result = json.loads(Path(path).read_text())
        rows = result["rows"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"--rank-json {path}: not a finished spos rank output ({error})") from None
    keys = ("benchmark_flops", "benchmark_params") if "benchmark_flops" in rows[0] else ("flops", "params")
    singles = {"supernet": np.array([score_of(HoldoutMeasure(r["supernet_top1"], r["supernet_loss"]),
                                              result.get("score", "top1")) for r in rows])}
    singles.update((name, values) for name, values in baseline_values(rows, flops_key=keys[0],
                                                                      params_key=keys[1]).items()
                   if name != "more_params")
    runs = [r.get("standalone_runs") or [] for r in rows]
    return {"path": str(path), "n": len(rows), "score": result.get("score", "top1"),
            "flops": [float(min(r[keys[0]] for r in rows)), float(max(r[keys[0]] for r in rows))],
            "truth": np.array([r["standalone_top1"] for r in rows], dtype=np.float64),
            "genes": [Architecture.parse(r["arch"]).genes for r in rows], "singles": singles,
            "ceiling": seed_ceiling(runs) if min(map(len, runs)) >= 2 else None}


def available(names, windows: list[dict]) -> bool:
    return all(name in w["singles"] for name in names for w in windows)


def methods_over(windows: list[dict]) -> dict:
    """Method name -> per window its values over all the window's networks (single scores and aggregates)."""
    singles = [name for name in windows[0]["singles"] if available([name], windows)]
    methods = {name: [w["singles"][name] for w in windows] for name in singles}
    for label, names in AGGREGATES.items():
        if available(names, windows):
            methods[label] = [rank_aggregate({n: w["singles"][n] for n in names}) for w in windows]
    return methods


def estimate(value: float, draws: np.ndarray) -> dict:
    draws = draws[~np.isnan(draws)]
    low, high = np.percentile(draws, [2.5, 97.5]).tolist() if len(draws) else (math.nan, math.nan)
    return {"value": float(value), "low": float(low), "high": float(high)}


def item_counts(count: int, samples: int, seed: int) -> np.ndarray:
    """How often each network is in each of `resamples`' resamples (the rows `bootstrap` and `lead_over` draw)."""
    return np.stack([np.bincount(row, minlength=count) for row in resamples(count, samples=samples, seed=seed)])


def whole_windows(windows: list[dict], samples: int, seed: int, reference: str | None = None) -> dict:
    """Section 1: every single score and aggregate over all networks of each window, and its lead over
    ``reference`` (default: the best single score); per window on the resamples `lead_over` draws there (seed +
    window number), the mean over the windows by `mean_over_windows`."""
    methods = methods_over(windows)
    singles = [name for name in methods if name in LABELS]
    mean_tau = {name: np.mean([kendall_tau(v, w["truth"]) for v, w in zip(methods[name], windows)]) for name in singles}
    best_single = max(singles, key=lambda name: mean_tau[name] if mean_tau[name] == mean_tau[name] else -math.inf)
    best = reference or best_single
    if best not in methods:
        raise UserError(f"--lead-over {best!r}: not one of the single scores or aggregates ({', '.join(methods)})")
    counts = [item_counts(w["n"], samples, seed + number) for number, w in enumerate(windows)]
    report = {}
    for name, per_window in methods.items():
        cells = []
        for values, best_values, window, count in zip(per_window, methods[best], windows, counts):
            own, theirs = (resampled_kendall_taus(v, window["truth"], count) for v in (values, best_values))
            tau, best_tau = kendall_tau(values, window["truth"]), kendall_tau(best_values, window["truth"])
            cells.append({"kendall_tau": estimate(tau, own), "lead": estimate(tau - best_tau, own - theirs)})
        mean = mean_over_windows([(v, b, w["truth"]) for v, b, w in zip(per_window, methods[best], windows)],
                                 samples=samples, seed=seed)
        report[name] = {"windows": cells, "mean": {"kendall_tau": mean["kendall_tau"], "lead": mean["lead"]}}
    return {"best_single": best_single, "reference": best, "methods": report}


def held_out_values(window: dict, split, methods: dict, number: int, penalties=PENALTIES) -> dict:
    """Method name -> its values on the split's held-out networks: predictors fitted on its fitted ones, single
    scores as they are, aggregates of the held-out networks' ranks."""
    held = np.asarray(split.held_out)
    values = {name: per_window[number][held] for name, per_window in methods.items() if name in LABELS}
    for label, names in AGGREGATES.items():
        if label in methods:
            values[label] = rank_aggregate({n: window["singles"][n][held] for n in names})
    for label, names in PREDICTORS.items():
        if all(n in window["singles"] for n in names):
            scores = {n: predictor_input(n, window["singles"][n]) for n in names}
            fit = held_out_ranking(window["genes"], gene_counts(window["genes"]), scores, window["truth"], split,
                                   penalties)
            values[label] = np.asarray(fit["predictions"])
            values[f"{label} penalty"] = fit["penalty"]
    return values


def _nanmean(values, axis=None):
    """The mean of the defined values (NaN: a split whose held-out networks a method ties all, e.g. two opposite
    orders averaged) along ``axis``; NaN where none is (without numpy's warning)."""
    values = np.asarray(values, dtype=np.float64)
    defined = ~np.isnan(values)
    total, count = np.where(defined, values, 0.0).sum(axis=axis), defined.sum(axis=axis)
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return float(mean) if axis is None else mean


def predictor_input(name: str, values: np.ndarray) -> np.ndarray:
    """A score as a predictor's feature: SynFlow as its logarithm (-inf where it is 0), the rest as they are."""
    if name != "synflow":
        return values
    with np.errstate(divide="ignore"):
        return np.log(np.where(values > 0, values, 0.0))


def split_study(windows: list[dict], fit_size: int, splits: int, samples: int, seed: int, best: str,
                penalties=PENALTIES) -> dict:
    """Section 2 for one K: per method the held-out tau per window (mean and spread over splits) and the mean over
    windows with its interval and its paired lead over ``best``."""
    methods = methods_over(windows)
    taus: dict[str, list[list[float]]] = {}
    draws: dict[str, list[np.ndarray]] = {}
    chosen: list[float] = []
    for number, window in enumerate(windows):
        counts = item_counts(window["n"], samples, seed + number)
        window_draws: dict[str, list[np.ndarray]] = {}
        for split in random_splits(window["n"], fit_size, splits, seed + number):
            held = np.asarray(split.held_out)
            values = held_out_values(window, split, methods, number, penalties)
            chosen += [v for k, v in values.items() if k.endswith(" penalty")]
            for name, held_values in values.items():
                if name.endswith(" penalty"):
                    continue
                taus.setdefault(name, [[] for _ in windows])[number].append(kendall_tau(held_values,
                                                                                       window["truth"][held]))
                window_draws.setdefault(name, []).append(resampled_kendall_taus(held_values, window["truth"][held],
                                                                                counts[:, held]))
        for name, rows in window_draws.items():
            draws.setdefault(name, []).append(_nanmean(np.stack(rows), axis=0))
    edges = np.isin(chosen, [min(penalties), max(penalties)]).mean() if chosen else math.nan
    return {"fit_size": fit_size, "splits": splits, "methods": summarise_splits(taus, draws, best),
            "penalty_at_grid_edge": float(edges)}


def summarise_splits(taus: dict, draws: dict, best: str) -> dict:
    """Per method: per window the mean and spread of its held-out taus over the splits (and how many splits left
    it all tied), and the mean over windows with its interval and its lead over ``best`` (paired draws)."""
    report = {}
    for name, per_window in taus.items():
        mean_draws, best_draws = np.mean(draws[name], axis=0), np.mean(draws[best], axis=0)
        value, best_value = np.mean([_nanmean(t) for t in per_window]), np.mean([_nanmean(t) for t in taus[best]])
        cells = [{"mean": _nanmean(t), "spread": float(np.std(np.asarray(t)[~np.isnan(t)])) if _nanmean(t) == _nanmean(t)
                  else math.nan, "undefined": int(np.isnan(t).sum())} for t in per_window]
        report[name] = {"windows": cells, "mean": {"kendall_tau": estimate(value, mean_draws),
                                                   "lead": estimate(value - best_value, mean_draws - best_draws)}}
    return report


def label(name: str) -> str:
    return LABELS.get(name, name)


def cell(estimate_: dict) -> str:
    return "undefined (tied)" if estimate_["value"] != estimate_["value"] else \
        f"{estimate_['value']:.2f} [{estimate_['low']:.2f}, {estimate_['high']:.2f}]"


def window_heads(windows: list[dict]) -> list[str]:
    return [f"{Path(w['path']).parent.name or w['path']} (n={w['n']})" for w in windows]


def whole_table(windows: list[dict], whole: dict) -> list[str]:
    best = label(whole["reference"])
    lines = [f"| Kendall tau [95% CI], all networks | {' | '.join(window_heads(windows))} | mean of {len(windows)} | "
             f"lead over {best} |", "|" + "---|" * (len(windows) + 3)]
    for name, row in whole["methods"].items():
        cells = [cell(c["kendall_tau"]) for c in row["windows"]]
        lines.append(f"| {label(name)} | {' | '.join(cells)} | {cell(row['mean']['kendall_tau'])} | "
                     f"{cell(row['mean']['lead'])} |")
    return lines


def split_cell(window: dict, splits: int) -> str:
    """Mean ± spread of the held-out taus over the splits, saying in how many the method tied every network."""
    if window["undefined"] == splits:
        return f"undefined (tied in all {splits})"
    return f"{window['mean']:.2f} ± {window['spread']:.2f}" + (f" ({window['undefined']} tied)"
                                                              if window["undefined"] else "")


def split_table(windows: list[dict], study: dict, best: str) -> list[str]:
    lines = [f"| held-out tau, K={study['fit_size']} ({study['splits']} splits; mean ± sd) | "
             f"{' | '.join(window_heads(windows))} | mean of {len(windows)} [95% CI] | lead over {label(best)} |",
             "|" + "---|" * (len(windows) + 3)]
    for name, row in study["methods"].items():
        cells = [split_cell(c, study["splits"]) for c in row["windows"]]
        lines.append(f"| {label(name)} | {' | '.join(cells)} | {cell(row['mean']['kendall_tau'])} | "
                     f"{cell(row['mean']['lead'])} |")
    return lines + [f"(ridge penalty at an edge of its grid in {100 * study['penalty_at_grid_edge']:.0f}% of fits)"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rank-json", nargs="+", required=True, metavar="FILE", help="one rank.json per window")
    parser.add_argument("--fit-sizes", type=int, nargs="*", default=[10, 20, 30], metavar="K")
    parser.add_argument("--splits", type=int, default=20, help="random fit/held-out splits per window and K")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lead-over", metavar="METHOD",
                        help="report every lead over this single score or aggregate (default: the best single score)")
    parser.add_argument("--penalties", type=float, nargs="+", default=list(PENALTIES),
                        help="the ridge penalties leave-one-out chooses from (default 1e-3..1e3 in half decades)")
    parser.add_argument("--output", help="write everything as JSON here")
    args = parser.parse_args(argv)
    windows = [load_window(path) for path in args.rank_json]
    whole = whole_windows(windows, args.bootstrap, args.seed, args.lead_over)
    studies = [split_study(windows, k, args.splits, args.bootstrap, args.seed, whole["reference"], args.penalties)
               for k in args.fit_sizes]
    ceilings = ", ".join("-" if w["ceiling"] is None else f"{w['ceiling']:.2f}" for w in windows)
    print(f"{len(windows)} windows; the supernet ranks by {windows[0]['score']}; the truth's seed-to-seed tau: "
          f"{ceilings}\n")
    print("\n".join(whole_table(windows, whole)))
    for study in studies:
        print("\n" + "\n".join(split_table(windows, study, whole["reference"])))
    summary = {"windows": [{k: w[k] for k in ("path", "n", "score", "flops", "ceiling")} for w in windows],
               "whole": whole, "held_out": studies, "penalties": args.penalties, "seed": args.seed,
               "bootstrap": args.bootstrap}
    if args.output:
        write_text_atomic(json.dumps(summary, indent=2) + "\n", Path(args.output))
    return summary


if __name__ == "__main__":
    main()
