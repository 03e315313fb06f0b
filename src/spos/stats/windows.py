"""Ranking inside FLOPs windows: what a search under a FLOPs limit needs from a supernet.

Over a wide FLOPs range FLOPs alone rank architectures well, so a supernet's tau there says little.
Inside a narrow window FLOPs say almost nothing, and the supernet has to earn its tau. Per window
(equal-count windows over the FLOPs range, and the whole range) `window_report` gives:

- the supernet's Kendall tau against the truth, with its bootstrap interval;
- the ceiling: how well the truth's own seeds rank each other there (mean tau over seed pairs), as
  no predictor can be expected to agree with the truth better than the truth agrees with itself;
- the baselines: FLOPs' and params' own tau (positive: more ranks better);
- the supernet's first pick (its best-scored architecture): its rank and percentile among the
  window's architectures by the truth, against what a random pick gets on average;
- its lead over the fewer-parameters heuristic (inside equal FLOPs, fewer parameters means more of
  the compute at high resolution, and ranks better than chance on NAS-Bench-Macro): the difference of
  the two taus with a paired bootstrap interval, the same resamples for both;
- ``baselines``: every predictor a user would try instead of a supernet (`baseline_values`: FLOPs, fewer
  params, more params, depth, and any zero-cost proxy of `spos.rank.proxies` the rows carry), each with its own
  tau and bootstrap interval and the supernet's lead over it with its paired interval. ``flops_tau``,
  ``params_tau`` and ``lead_over_fewer_params`` are three of these numbers, kept under their old names.

`mean_over_windows` averages the tau and the lead over several windows, each resampled on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from spos.stats.ranking import bootstrap, kendall_tau


def equal_count_windows(flops: Sequence[float], count: int) -> list[np.ndarray]:
    """``count`` windows over the FLOPs, each the indices of about the same number of items: the items are
    sorted by FLOPs (stable, so ties keep their order) and cut by position. Each item lies in exactly one
    window, also where many share a value: cutting by value let a tied value at an edge fall into two windows,
    so the counts did not add up."""
    order = np.argsort(np.asarray(flops, dtype=np.float64), kind="stable")
    edges = [int(round(i * len(order) / count)) for i in range(count + 1)]
    return [order[start:end] for start, end in zip(edges, edges[1:]) if end > start]


def pick_percentile(truth: np.ndarray, index: int) -> tuple[int, float]:
    """Rank (1: the best; ties share the better rank) and percentile (share no better, 100: the best) of
    item ``index`` by ``truth``."""
    value = truth[index]
    return int((truth > value).sum()) + 1, float(100 * (truth <= value).mean())


def seed_ceiling(seed_truths: Sequence[Sequence[float]] | None) -> float | None:
    """Mean Kendall tau between every two seeds' accuracies of the same items (None: fewer than 2 seeds)."""
    if not seed_truths:
        return None
    runs = min(len(s) for s in seed_truths)
    columns = [np.array([s[k] for s in seed_truths]) for k in range(runs)]
    taus = [kendall_tau(columns[i], columns[j]) for i in range(runs) for j in range(i + 1, runs)]
    taus = [t for t in taus if t == t]
    return float(np.mean(taus)) if taus else None


def resamples(count: int, *, samples: int = 1000, seed: int = 0) -> np.ndarray:
    """``samples`` bootstrap resamples of ``count`` items (rows of indices), the ones `bootstrap` draws for the
    same seed: every predictor resampled with them is paired with every other."""
    return np.random.default_rng(seed).integers(0, count, size=(samples, count))


def tau_draws(values, truth, draws: np.ndarray) -> np.ndarray:
    """Kendall tau of ``values`` against ``truth`` on each resample of ``draws`` (NaN where one is all tied)."""
    values, truth = np.asarray(values, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    return np.array([kendall_tau(values[i], truth[i]) for i in draws])


def paired_tau_draws(scores, baseline, truth, *, samples: int = 1000, seed: int = 0) -> np.ndarray:
    """Kendall tau of ``scores`` and of ``baseline`` against ``truth`` over the same ``samples`` resamples of the
    items: an array of shape (samples, 2) (NaN where a resample leaves a list all tied)."""
    draws = resamples(len(truth), samples=samples, seed=seed)
    return np.stack([tau_draws(scores, truth, draws), tau_draws(baseline, truth, draws)], axis=1)


def _estimate(value: float, draws: np.ndarray) -> dict:
    draws = draws[~np.isnan(draws)]
    low, high = np.percentile(draws, [2.5, 97.5]).tolist() if len(draws) else (float("nan"),) * 2
    return {"value": float(value), "low": float(low), "high": float(high)}


def lead_over(scores, baseline, truth, *, samples: int = 1000, seed: int = 0) -> dict:
    """tau(scores) - tau(baseline) against ``truth``, with its paired bootstrap 95% interval."""
    draws = paired_tau_draws(scores, baseline, truth, samples=samples, seed=seed)
    value = kendall_tau(scores, truth) - kendall_tau(baseline, truth)
    return _estimate(value, draws[:, 0] - draws[:, 1])


def mean_over_windows(windows: Sequence[tuple], *, samples: int = 1000, seed: int = 0) -> dict:
    """The mean over windows of the tau and of the lead over a baseline; ``windows``: (scores, baseline, truth)
    per window. Each window is resampled on its own (they hold different architectures) and the resampled
    values are averaged, which gives each mean its 95% interval."""
    draws = [paired_tau_draws(*window, samples=samples, seed=seed + number) for number, window in enumerate(windows)]
    taus = [(kendall_tau(scores, truth), kendall_tau(baseline, truth)) for scores, baseline, truth in windows]
    mean_draws = np.mean(draws, axis=0)
    value = np.mean(taus, axis=0)
    return {"windows": len(windows), "kendall_tau": _estimate(value[0], mean_draws[:, 0]),
            "baseline_tau": _estimate(value[1], mean_draws[:, 1]),
            "lead": _estimate(value[0] - value[1], mean_draws[:, 0] - mean_draws[:, 1])}


def baseline_values(rows: Sequence[dict], *, flops_key: str = "flops", params_key: str = "params") -> dict:
    """Name -> one value per row, higher predicting better, for each baseline the rows allow: FLOPs, fewer
    params, more params, depth (rows with ``depth``: the non-identity layers) and each zero-cost proxy of the
    rows' ``proxies`` (`spos.rank.proxies`). A proxy value that is missing or not a number (null in rank.json)
    ranks last."""
    params = np.array([r[params_key] for r in rows], dtype=np.float64)
    values = {"flops": np.array([r[flops_key] for r in rows], dtype=np.float64), "fewer_params": -params,
              "more_params": params}
    if rows and all("depth" in r for r in rows):
        values["depth"] = np.array([r["depth"] for r in rows], dtype=np.float64)
    for name in dict.fromkeys(name for r in rows for name in r.get("proxies") or {}):
        proxy = np.array([(r.get("proxies") or {}).get(name) for r in rows], dtype=np.float64)  # None -> NaN
        values[name] = np.where(np.isnan(proxy), -np.inf, proxy)
    return values


def baseline_report(scores, truth, baselines: dict, *, samples: int = 1000, seed: int = 0) -> dict:
    """Per baseline: its Kendall tau against ``truth`` with its bootstrap interval, and the supernet's lead
    over it (tau(scores) - tau(baseline)) with its paired interval, all on the same resamples (so each
    baseline's interval is `bootstrap`'s and each lead is `lead_over`'s, at a fraction of their cost)."""
    draws = resamples(len(truth), samples=samples, seed=seed)
    own, own_tau = tau_draws(scores, truth, draws), kendall_tau(scores, truth)
    report = {}
    for name, values in baselines.items():
        theirs, tau = tau_draws(values, truth, draws), kendall_tau(values, truth)
        report[name] = {"kendall_tau": _estimate(tau, theirs), "lead": _estimate(own_tau - tau, own - theirs)}
    return report


def window_statistics(scores, truth, flops, params, seed_truths=None, *, extra_baselines: dict | None = None,
                      samples: int = 1000, seed: int = 0) -> dict:
    """The statistics of one window (see the module docstring) as JSON-ready data; ``extra_baselines`` (name ->
    values, higher predicting better: depth, proxies) join FLOPs, fewer params and more params."""
    scores, truth = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    params = np.asarray(params, dtype=np.float64)
    baselines = baseline_report(scores, truth, {"flops": flops, "fewer_params": -params, "more_params": params,
                                                **(extra_baselines or {})}, samples=samples, seed=seed)
    pick = int(np.argmax(scores))  # the first of the best-scored, as a search's "best" would be
    pick_rank, percentile = pick_percentile(truth, pick)
    no_better = np.searchsorted(np.sort(truth), truth, side="right")  # every item's pick_percentile at once
    everyone = list(zip(len(truth) - no_better + 1, 100 * no_better / len(truth)))
    return {"n": len(truth), "flops": [float(min(flops)), float(max(flops))],
            "kendall_tau": asdict(bootstrap(kendall_tau, scores, truth, samples=samples, seed=seed)),
            "ceiling_tau": seed_ceiling(seed_truths),
            "flops_tau": baselines["flops"]["kendall_tau"], "params_tau": baselines["more_params"]["kendall_tau"],
            "lead_over_fewer_params": baselines["fewer_params"]["lead"], "baselines": baselines,
            "pick": {"index": pick, "rank": pick_rank, "percentile": percentile, "accuracy": float(truth[pick])},
            "random_pick": {"rank": float(np.mean([r for r, _ in everyone])),
                            "percentile": float(np.mean([p for _, p in everyone]))}}


def window_report(rows: Sequence[dict], scores: Sequence[float], count: int, *, flops_key: str = "flops",
                  samples: int = 1000, seed: int = 0) -> list[dict]:
    """The whole range, then ``count`` equal-count FLOPs windows (``count`` < 2: the whole range only), over
    ``rows`` (`spos rank`'s: ``standalone_top1``, ``standalone_runs``, params and ``flops_key``; depth and proxies
    where they have them, as baselines). Each window lists its ``members`` (row indices): the windows' ``n`` add
    up to the whole range's."""
    flops = np.array([r[flops_key] for r in rows], dtype=np.float64)
    extra = {name: values for name, values in baseline_values(rows, flops_key=flops_key).items()
             if name not in ("flops", "fewer_params", "more_params")}
    windows = [np.arange(len(rows))]
    if count >= 2:
        windows += equal_count_windows(flops, count)
    report = []
    for number, members in enumerate(windows):
        inside = sorted(members.tolist())
        if len(inside) < 3:
            continue
        runs = [rows[i].get("standalone_runs") or [] for i in inside]
        statistics = window_statistics([scores[i] for i in inside], [rows[i]["standalone_top1"] for i in inside],
                                       flops[inside], [rows[i]["params"] for i in inside],
                                       runs if min(map(len, runs)) >= 2 else None,
                                       extra_baselines={name: values[inside] for name, values in extra.items()},
                                       samples=samples, seed=seed)
        statistics["pick"]["arch"] = rows[inside[statistics["pick"]["index"]]]["arch"]
        report.append({"window": "whole" if number == 0 else number, **statistics, "members": inside})
    return report


