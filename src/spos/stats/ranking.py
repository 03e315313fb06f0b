"""How well one list of scores orders items like another: Kendall tau, Spearman rho, top-k overlap.

Used by `spos rank` (supernet score vs stand-alone accuracy) and by the benchmarks. Each
statistic comes with a bootstrap 95% interval: the items are resampled with replacement (a
seeded generator, so the interval is reproducible) and the 2.5th and 97.5th percentiles of the
statistic over the resamples are reported. With the dozen architectures a ranking study can
afford, the interval is wide; it says how much a tau of 0.4 can be trusted.

Kendall tau is tau-b (scipy's O(n log n) `kendalltau`, so a whole benchmark table of thousands of
architectures is bootstrapped in seconds) and Spearman rho uses average ranks for ties, as
`scipy.stats` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from spos.errors import UserError

BOOTSTRAP_SAMPLES = 1000


@dataclass(frozen=True)
class Estimate:
    """A statistic and its bootstrap 95% interval (NaN where the statistic is undefined)."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b: (concordant - discordant) pairs over the pairs untied in x and in y (NaN when
    every value of one list is tied)."""
    from scipy.stats import kendalltau

    x, y = _pair(x, y)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    return float(kendalltau(x, y).statistic)


def resampled_kendall_taus(x: Sequence[float], y: Sequence[float], counts: np.ndarray) -> np.ndarray:
    """`kendall_tau` of ``x`` against ``y`` on each resample of the items, a row of ``counts`` (how often the
    resample holds each item; 0: not at all): the same number as on the resampled lists, where two copies of one
    item are a pair tied in both and left out of tau-b's every count. All rows at once, as a benchmark
    resampling thousands of item subsets cannot afford one scipy call each. NaN where a row leaves every pair
    tied in ``x`` or in ``y``."""
    x, y = _pair(x, y)
    counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    sign_x, sign_y = _pair_signs(x), _pair_signs(y)

    def pair_sum(matrix: np.ndarray) -> np.ndarray:
        return np.einsum("ra,ab,rb->r", counts, matrix, counts)

    untied_x, untied_y = pair_sum(np.abs(sign_x)), pair_sum(np.abs(sign_y))
    with np.errstate(invalid="ignore", divide="ignore"):
        taus = pair_sum(sign_x * sign_y) / np.sqrt(untied_x * untied_y)
    return np.where((untied_x > 0) & (untied_y > 0), taus, np.nan)


def _pair_signs(values: np.ndarray) -> np.ndarray:
    """+1, -1 or 0 for each (i, j): whether item i's value is above, below or equal to item j's (by comparison,
    so two -inf are equal rather than NaN apart)."""
    return (values[:, None] > values[None, :]).astype(np.float64) - (values[:, None] < values[None, :])


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks (scipy's ``rankdata(method='average')``)."""
    from scipy.stats import rankdata

    return rankdata(np.asarray(values, dtype=np.float64), method="average")


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks."""
    x, y = _pair(x, y)
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return math.nan if denominator == 0 else float((rx * ry).sum() / denominator)


def top_k_overlap(predicted: Sequence[float], truth: Sequence[float], k: int) -> float:
    """Share of the k best items by ``truth`` that are also among the k best by ``predicted`` (higher
    is better for both).

    Where values tie across the k-th place, which of them are "the k best" is undecided: each tied
    item is in with the probability that a random tie-break puts it in, and the result is the expected
    overlap, so it depends neither on the items' order nor on arbitrary tie-breaks.
    """
    predicted, truth = _pair(predicted, truth)
    if not 1 <= k <= len(truth):
        raise UserError(f"top-k overlap: k={k} must be between 1 and the number of items ({len(truth)})")
    return float((_share_in_top_k(predicted, k) * _share_in_top_k(truth, k)).sum() / k)


def _share_in_top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Per item, the probability of being among the k highest when ties are broken at random."""
    kth = np.sort(values)[::-1][k - 1]
    above, tied = values > kth, values == kth
    return above + tied * (k - above.sum()) / tied.sum()


def bootstrap(statistic: Callable[[np.ndarray, np.ndarray], float], x: Sequence[float], y: Sequence[float], *,
              samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> Estimate:
    """``statistic(x, y)`` with the 2.5 / 97.5 percentiles over ``samples`` paired resamples.

    Resamples where the statistic is undefined (every value tied) are left out of the interval.
    """
    x, y = _pair(x, y)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(x), size=(samples, len(x)))
    values = np.array([statistic(x[index], y[index]) for index in draws])
    values = values[~np.isnan(values)]
    low, high = (np.percentile(values, [2.5, 97.5]).tolist() if len(values) else (math.nan, math.nan))
    return Estimate(statistic(x, y), float(low), float(high))


def top_k_sizes(count: int) -> list[int]:
    """The k values a ranking study reports: 3 and a fifth of the items (each at least 1, no repeats)."""
    return sorted({k for k in (3, max(1, count // 5)) if k <= count})


def rank_statistics(predicted: Sequence[float], truth: Sequence[float], *, samples: int = BOOTSTRAP_SAMPLES,
                    seed: int = 0) -> dict:
    """Kendall tau, Spearman rho and top-k overlaps of ``predicted`` against ``truth``, with intervals.

    Returns a JSON-ready dict: ``{"n": .., "kendall_tau": {"value", "low", "high"}, "spearman_rho": ..,
    "top_k": {"3": .., "2": ..}}``.
    """
    predicted, truth = _pair(predicted, truth)
    if len(truth) < 3:
        raise UserError(f"rank statistics need at least 3 architectures, got {len(truth)}")
    result = {"n": len(truth), "bootstrap_samples": samples, "seed": seed,
              "kendall_tau": asdict(bootstrap(kendall_tau, predicted, truth, samples=samples, seed=seed)),
              "spearman_rho": asdict(bootstrap(spearman_rho, predicted, truth, samples=samples, seed=seed)),
              "top_k": {}}
    for k in top_k_sizes(len(truth)):
        overlap = bootstrap(lambda p, t: top_k_overlap(p, t, k), predicted, truth, samples=samples, seed=seed)
        result["top_k"][str(k)] = asdict(overlap)
    return result


def _pair(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise UserError(f"rank statistics need two lists of the same length, got {x.shape} and {y.shape}")
    return x, y


def pairs_in_order(predicted: Sequence[float], truth: Sequence[float]) -> tuple[int, int]:
    """(pairs ``predicted`` puts in the order of ``truth``, pairs untied in both): a ranking in words,
    "it orders 50 of 66 pairs right", where chance orders half."""
    predicted, truth = _pair(predicted, truth)
    upper = np.triu_indices(len(truth), 1)
    agreement = (np.sign(predicted[:, None] - predicted[None, :]) * np.sign(truth[:, None] - truth[None, :]))[upper]
    return int(np.count_nonzero(agreement > 0)), int(np.count_nonzero(agreement))
