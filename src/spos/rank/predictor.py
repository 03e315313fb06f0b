"""Predictor-assisted ranking: a few architectures trained alone teach a small model to rank the rest.

A user who can afford K stand-alone trainings (K = 10..30) has, beside those K accuracies, scores that are cheap
for every candidate: the architecture itself, a supernet's score, zero-cost proxies, params, depth. A ridge
regression (`spos.search.surrogate`'s, the one the search's children are ordered by) on the one-hot genes plus
those scores, each standardised, is fitted on the K; its ridge penalty is chosen by leave-one-out on the K alone,
so no accuracy of an architecture it ranks ever enters the fit. It is judged only on the architectures it was
not fitted on (`held_out_ranking`): a model that memorised its K would otherwise look perfect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from spos.errors import UserError
from spos.search.surrogate import one_hot, ridge_fit
from spos.stats.ranking import kendall_tau

#: The ridge penalties leave-one-out chooses from: 10^-3 .. 10^3 in half decades.
PENALTIES = tuple(float(10.0 ** exponent) for exponent in np.arange(-3.0, 3.25, 0.5))


@dataclass(frozen=True)
class Split:
    """Which items a predictor is fitted on and which it is judged on (disjoint, together every item)."""

    fitted: np.ndarray
    held_out: np.ndarray


def random_splits(count: int, fit_size: int, splits: int, seed: int = 0) -> list[Split]:
    """``splits`` random choices of ``fit_size`` of ``count`` items to fit on, the rest held out (seeded)."""
    if not 2 <= fit_size <= count - 3:
        raise UserError(f"a predictor fitted on {fit_size} of {count} architectures: fit on at least 2 and leave "
                        "at least 3 to rank")
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(count) for _ in range(splits)]
    return [Split(np.sort(order[:fit_size]), np.sort(order[fit_size:])) for order in orders]


def score_columns(scores: Mapping[str, np.ndarray], reference: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``columns(items) -> matrix``: each score standardised by its mean and spread over the ``reference`` items
    (the fitted ones: nothing of the others enters the fit). A value that is not finite (NASWOT's -inf for a
    singular kernel) counts as the lowest finite one of the reference; a score constant there gives a zero column."""
    prepared = []
    for values in scores.values():
        values = np.asarray(values, dtype=np.float64)
        finite = values[reference][np.isfinite(values[reference])]
        floor = finite.min() if len(finite) else 0.0
        values = np.where(np.isfinite(values), values, floor)
        mean, spread = values[reference].mean(), values[reference].std()
        prepared.append((values - mean) / spread if spread > 0 else np.zeros_like(values))
    return lambda items: np.stack([column[items] for column in prepared], axis=1) if prepared else \
        np.zeros((len(items), 0))


def features(genes: np.ndarray, counts: Sequence[int], scores: Mapping[str, np.ndarray],
             reference: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``matrix(items)``: the one-hot genes (`spos.search.surrogate.one_hot`, the engine's encoding) beside the
    scores standardised over ``reference`` (`score_columns`)."""
    columns = score_columns(scores, reference)
    return lambda items: np.hstack([one_hot([tuple(g) for g in genes[items]], counts), columns(items)])


def fitted_predictions(genes: np.ndarray, counts: Sequence[int], scores: Mapping[str, np.ndarray],
                       truth: np.ndarray, fitted: np.ndarray, targets: np.ndarray, penalty: float) -> np.ndarray:
    """The predicted accuracy of the ``targets`` items by a ridge fit on the ``fitted`` items only (their genes,
    scores standardised over them, and their truth)."""
    matrix = features(genes, counts, scores, fitted)
    weights, intercept = ridge_fit(matrix(fitted), truth[fitted], penalty)
    return matrix(targets) @ weights + intercept


def leave_one_out_error(genes, counts, scores, truth, fitted: np.ndarray, penalty: float) -> float:
    """Mean squared error of predicting each fitted item from a fit on the others (standardisation included)."""
    errors = [fitted_predictions(genes, counts, scores, truth, np.delete(fitted, i), fitted[i:i + 1], penalty)[0]
              - truth[fitted[i]] for i in range(len(fitted))]
    return float(np.mean(np.square(errors)))


def choose_penalty(genes, counts, scores, truth, fitted: np.ndarray,
                   penalties: Sequence[float] = PENALTIES) -> float:
    """The penalty of ``penalties`` with the smallest leave-one-out error on the fitted items (ties: the larger,
    the simpler model)."""
    errors = [leave_one_out_error(genes, counts, scores, truth, fitted, penalty) for penalty in penalties]
    best = min(errors)
    return max(penalty for penalty, error in zip(penalties, errors) if error <= best * (1 + 1e-9))


def held_out_ranking(genes: Sequence[Sequence[int]], counts: Sequence[int], scores: Mapping[str, Sequence[float]],
                     truth: Sequence[float], split: Split, penalties: Sequence[float] = PENALTIES) -> dict:
    """Fit on ``split.fitted`` (penalty by leave-one-out there) and rank ``split.held_out``: ``{"fitted",
    "held_out"`` (indices), ``"predictions"`` (of the held-out items, in that order), ``"penalty"``,
    ``"kendall_tau"`` (against the truth of the held-out items only)}. ``scores``: name -> one value per item,
    higher better or not (the fit finds the sign); empty for the encoding alone."""
    genes, truth = np.asarray(genes, dtype=np.int64), np.asarray(truth, dtype=np.float64)
    scores = {name: np.asarray(values, dtype=np.float64) for name, values in scores.items()}
    fitted, held_out = np.asarray(split.fitted), np.asarray(split.held_out)
    if np.intersect1d(fitted, held_out).size:
        raise UserError("a predictor's held-out architectures must not include any it is fitted on")
    penalty = choose_penalty(genes, counts, scores, truth, fitted, penalties)
    predictions = fitted_predictions(genes, counts, scores, truth, fitted, held_out, penalty)
    return {"fitted": fitted.tolist(), "held_out": held_out.tolist(), "predictions": predictions.tolist(),
            "penalty": penalty, "kendall_tau": kendall_tau(predictions, truth[held_out])}


def gene_counts(genes: Sequence[Sequence[int]]) -> list[int]:
    """Choices per gene position as the items show them (the largest value seen + 1): for a ridge fit the same as
    the space's counts, as a choice no item takes is a column of zeros and gets weight 0."""
    return (np.asarray(genes, dtype=np.int64).max(axis=0) + 1).tolist()
