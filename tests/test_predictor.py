"""Rank aggregates, resampled Kendall taus and the predictor fitted on a few architectures (#33 part 3)."""

from __future__ import annotations

import numpy as np
import pytest

from spos.errors import UserError
from spos.rank.predictor import Split, choose_penalty, fitted_predictions, gene_counts, held_out_ranking, random_splits
from spos.search.surrogate import fit_surrogate, one_hot, ridge_fit
from spos.stats.aggregate import rank_aggregate
from spos.stats.ranking import kendall_tau, resampled_kendall_taus


def test_rank_aggregate_is_the_weighted_mean_of_tie_aware_ranks_by_hand():
    scores = {"a": [3.0, 1.0, 2.0], "b": [10.0, 10.0, 30.0]}  # ranks a: 3, 1, 2; b: 1.5, 1.5, 3 (tied)
    assert rank_aggregate(scores).tolist() == [2.25, 1.25, 2.5]
    assert rank_aggregate(scores, {"a": 3}).tolist() == [(9 + 1.5) / 4, (3 + 1.5) / 4, (6 + 3) / 4]
    assert rank_aggregate(scores, {"b": 0}).tolist() == [3.0, 1.0, 2.0]
    assert rank_aggregate({"failed": [-np.inf, 0.0, -np.inf]}).tolist() == [1.5, 3.0, 1.5]  # -inf ranks last


@pytest.mark.parametrize("scores, weights, message", [
    ({}, None, "at least one score"),
    ({"a": [1, 2]}, {"b": 1}, "weight for 'b'"),
    ({"a": [1, 2], "b": [1, 2, 3]}, None, "one value per item"),
    ({"a": [1, float("nan")]}, None, "NaN"),
    ({"a": [1, 2]}, {"a": -1}, "weights must be >= 0"),
])
def test_rank_aggregate_refuses_bad_input_in_one_line(scores, weights, message):
    with pytest.raises(UserError, match=message):
        rank_aggregate(scores, weights)


def test_resampled_taus_equal_kendall_tau_on_each_resampled_list():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=20), rng.normal(size=20).round(1)  # ties in y
    x[3], x[5], x[6] = x[4], -np.inf, -np.inf
    draws = rng.integers(0, 20, size=(40, 20))
    counts = np.stack([np.bincount(row, minlength=20) for row in draws])
    expected = [kendall_tau(x[row], y[row]) for row in draws]
    assert np.allclose(resampled_kendall_taus(x, y, counts), expected)
    assert np.isnan(resampled_kendall_taus(x, y, np.eye(20)[[0]]))[0]  # one item: no pair


def test_the_engine_surrogate_is_the_shared_one_hot_ridge():
    counts, genes = [2, 3], [(0, 1), (1, 2), (1, 0)]
    assert one_hot(genes, counts).tolist() == [[1, 0, 0, 1, 0], [0, 1, 0, 0, 1], [0, 1, 1, 0, 0]]
    weights, mean = ridge_fit(one_hot(genes, counts), np.array([1.0, 2.0, 3.0]), 0.5)
    predict = fit_surrogate([{"genes": g, "score": s} for g, s in zip(genes, (1.0, 2.0, 3.0))], counts, ridge=0.5)
    assert np.allclose(predict(genes), one_hot(genes, counts) @ weights + mean)


def random_genes(count: int, rng, positions: int = 10, choices: int = 3) -> np.ndarray:
    return rng.integers(0, choices, size=(count, positions))


def test_random_splits_are_disjoint_and_cover_every_item():
    for split in random_splits(12, 8, 30, seed=3):
        assert not set(split.fitted) & set(split.held_out)
        assert sorted([*split.fitted, *split.held_out]) == list(range(12)) and len(split.fitted) == 8
    with pytest.raises(UserError, match="leave at least 3"):
        random_splits(12, 10, 1)


def test_a_memorising_predictor_scores_no_better_on_its_held_out_architectures():
    """Noise for truth and a penalty so small the fit interpolates it: on its own K it is perfect, on the held-out
    networks it is chance, and chance is what it is scored at (scored on all, it would look good)."""
    rng = np.random.default_rng(0)
    genes, truth = random_genes(40, rng, positions=20, choices=4), rng.normal(size=40)  # 61 free columns > 30
    counts = gene_counts(genes)
    held, fitted_taus = [], []
    for split in random_splits(40, 30, 20, seed=1):
        result = held_out_ranking(genes, counts, {}, truth, split, penalties=(1e-8,))
        assert not set(result["held_out"]) & set(result["fitted"])
        assert result["held_out"] == split.held_out.tolist() and len(result["predictions"]) == 10
        assert result["kendall_tau"] == pytest.approx(kendall_tau(result["predictions"], truth[split.held_out]))
        held.append(result["kendall_tau"])
        on_fit = fitted_predictions(genes, counts, {}, truth, split.fitted, split.fitted, 1e-8)
        fitted_taus.append(kendall_tau(on_fit, truth[split.fitted]))
    assert min(fitted_taus) > 0.99 and abs(np.mean(held)) < 0.15


def test_the_held_out_truth_never_enters_the_fit():
    rng = np.random.default_rng(2)
    genes, truth, naswot = random_genes(30, rng), rng.normal(size=30), rng.normal(size=30)
    split = random_splits(30, 12, 1, seed=0)[0]
    changed_truth, changed_score = truth.copy(), naswot.copy()
    changed_truth[split.held_out] = rng.normal(size=len(split.held_out))
    changed_score[split.held_out] *= 100  # the scores are standardised over the fitted networks only
    first = held_out_ranking(genes, gene_counts(genes), {"naswot": naswot}, truth, split)
    second = held_out_ranking(genes, gene_counts(genes), {"naswot": changed_score}, changed_truth, split)
    assert first["penalty"] == second["penalty"]
    fitted_first = fitted_predictions(genes, gene_counts(genes), {"naswot": naswot}, truth, split.fitted,
                                      split.fitted, first["penalty"])
    fitted_second = fitted_predictions(genes, gene_counts(genes), {"naswot": changed_score}, changed_truth,
                                       split.fitted, split.fitted, first["penalty"])
    assert np.allclose(fitted_first, fitted_second)
    with pytest.raises(UserError, match="must not include"):
        held_out_ranking(genes, gene_counts(genes), {}, truth, Split(np.array([0, 1, 2]), np.array([2, 3, 4])))


def test_a_predictor_learns_genes_and_a_score_that_explain_the_truth():
    rng = np.random.default_rng(4)
    genes, score = random_genes(60, rng), rng.normal(size=60)
    truth = one_hot([tuple(g) for g in genes], gene_counts(genes)) @ rng.normal(size=30) + 2 * score
    split = random_splits(60, 30, 1, seed=0)[0]
    with_score = held_out_ranking(genes, gene_counts(genes), {"proxy": score}, truth, split)
    without = held_out_ranking(genes, gene_counts(genes), {}, truth, split)
    assert with_score["kendall_tau"] > 0.8 and with_score["kendall_tau"] > without["kendall_tau"] + 0.2


def test_leave_one_out_shrinks_for_noise_and_not_for_a_clean_signal():
    rng = np.random.default_rng(5)
    genes = random_genes(30, rng)
    counts, fitted = gene_counts(genes), np.arange(30)
    clean = one_hot([tuple(g) for g in genes], counts) @ rng.normal(size=30)
    assert choose_penalty(genes, counts, {}, clean, fitted) == 1e-3
    assert choose_penalty(genes, counts, {}, rng.normal(size=30), fitted) >= 100


def test_gene_counts_are_the_largest_choice_seen_plus_one():
    assert gene_counts([(0, 2, 1), (1, 0, 1)]) == [2, 3, 2]
