"""Ranking: the statistics against scipy, and `spos rank` end to end (ground truth, stand-alone runs, resume)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from spos import rank
from spos.errors import UserError

# Fixed inputs: no ties, ties in one list, ties in both, a reversed order.
CASES = [
    ([0.1, 0.4, 0.35, 0.8, 0.6, 0.2, 0.9, 0.55], [0.91, 0.95, 0.93, 0.97, 0.94, 0.90, 0.96, 0.98]),
    ([1, 2, 2, 3, 4, 4, 4, 5, 6], [3, 1, 2, 5, 4, 6, 7, 9, 8]),
    ([0.5, 0.5, 0.7, 0.1, 0.1, 0.9, 0.3], [0.2, 0.2, 0.9, 0.3, 0.1, 0.9, 0.4]),
    (list(range(10)), list(range(10, 0, -1))),
]


@pytest.mark.parametrize("x, y", CASES)
def test_kendall_and_spearman_match_scipy(x, y):
    assert rank.kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert rank.spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


@pytest.mark.parametrize("x, _", CASES)
def test_average_ranks_match_scipy(x, _):
    np.testing.assert_allclose(rank.average_ranks(x), stats.rankdata(x, method="average"))


def test_undefined_statistics_are_nan():
    assert math.isnan(rank.kendall_tau([1, 1, 1], [1, 2, 3]))
    assert math.isnan(rank.spearman_rho([1, 2, 3], [4, 4, 4]))


def test_top_k_overlap_counts_shared_best_items():
    truth = [0.9, 0.8, 0.7, 0.6, 0.5]
    assert rank.top_k_overlap([5, 4, 3, 2, 1], truth, 3) == 1.0
    assert rank.top_k_overlap([1, 2, 3, 4, 5], truth, 3) == pytest.approx(1 / 3)  # only item 2 is shared
    assert rank.top_k_overlap([1, 2, 3, 4, 5], truth, 1) == 0.0
    with pytest.raises(UserError):
        rank.top_k_overlap([1, 2], [1, 2], 3)


def test_bootstrap_interval_is_seeded_and_brackets_a_perfect_ranking():
    x, y = CASES[0]
    first = rank.bootstrap(rank.kendall_tau, x, y, samples=200, seed=3)
    again = rank.bootstrap(rank.kendall_tau, x, y, samples=200, seed=3)
    other = rank.bootstrap(rank.kendall_tau, x, y, samples=200, seed=4)
    assert first == again and first != other
    assert first.low <= first.value <= first.high
    perfect = rank.bootstrap(rank.spearman_rho, list(range(8)), list(range(8)), samples=100)
    assert (perfect.value, perfect.low, perfect.high) == (1.0, 1.0, 1.0)


def test_rank_statistics_reports_every_statistic_with_an_interval():
    x, y = CASES[0]
    result = rank.rank_statistics(x, y, samples=100, seed=0)
    assert result["n"] == 8
    assert result["kendall_tau"]["value"] == pytest.approx(stats.kendalltau(x, y).statistic)
    assert result["spearman_rho"]["value"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert set(result["top_k"]) == {"1", "3"}  # k = 3 and N/5
    for estimate in (result["kendall_tau"], result["spearman_rho"], *result["top_k"].values()):
        assert estimate["low"] <= estimate["value"] <= estimate["high"]
    assert rank.top_k_sizes(12) == [2, 3] and rank.top_k_sizes(15) == [3]
    with pytest.raises(UserError):
        rank.rank_statistics([1, 2], [1, 2])
    with pytest.raises(UserError):
        rank.rank_statistics([1, 2, 3], [1, 2])
