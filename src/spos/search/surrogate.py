"""The search's cheap model of the score: ridge regression on one-hot genes.

`spos.search.engine` fits it to everything scored so far to pick the most promising children
(``SearchConfig.surrogate_pool``); `spos.rank.predictor` fits the same encoding and regression to a few
architectures' stand-alone accuracies. One encoding and one regression serve both, so a change to either is
measured by both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Genes = tuple[int, ...]


def one_hot(candidates: Sequence[Genes], counts: Sequence[int]) -> np.ndarray:
    """Each candidate as one row of 0/1 columns, one column per (position, choice): the encoding a linear model
    of the genes needs, as a gene's values are choices, not amounts."""
    offsets = np.cumsum([0, *counts[:-1]])
    x = np.zeros((len(candidates), int(sum(counts))))
    x[np.arange(len(candidates))[:, None], offsets + np.asarray(candidates, dtype=np.int64)] = 1.0
    return x


def ridge_fit(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, float]:
    """(weights, intercept) with ``x @ weights + intercept`` predicting ``y``: the intercept is the mean of ``y``,
    the weights minimise the squared error of ``y`` minus that mean plus ``ridge`` times their squared norm
    (so a larger ``ridge`` pulls every prediction towards the mean)."""
    mean = float(y.mean())
    weights = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ (y - mean))
    return weights, mean


def fit_surrogate(records: Sequence[dict], counts: Sequence[int], ridge: float = 1.0):
    """``predict(candidates) -> scores`` of a ridge regression on one-hot genes, fitted to ``records``.

    A cheap model that orders children before any is scored (the scores, not the model, decide which
    survive). It is a function of the records in order, so a resumed search fits the same model."""
    x = one_hot([tuple(r["genes"]) for r in records], counts)
    weights, mean = ridge_fit(x, np.array([r["score"] for r in records], dtype=np.float64), ridge)
    return lambda candidates: one_hot(candidates, counts) @ weights + mean
