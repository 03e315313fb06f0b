"""One score from several scores of the same items: the (weighted) mean of their ranks.

Scores of different kinds (a supernet's cross-entropy, NASWOT's log-determinant, SynFlow's product of weights,
a parameter count) live on scales that cannot be added, and some are heavy-tailed (SynFlow spans two orders of
magnitude inside one FLOPs window). Their ranks can be added: each score ranks the items 1..n (higher score,
higher rank; ties share the mean of their ranks, so a score that cannot tell two items apart does not order
them), and the aggregate is the weighted mean of those ranks. Two scores that each order the items well but
err on different pairs can order them better together; this is what `rank_aggregate` lets a benchmark test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from spos.errors import UserError
from spos.stats.ranking import average_ranks


def rank_aggregate(scores: Mapping[str, Sequence[float]], weights: Mapping[str, float] | None = None) -> np.ndarray:
    """The weighted mean over ``scores`` (name -> one value per item, higher better) of each score's average
    ranks (1: the lowest; ties share their mean rank). ``weights`` (name -> weight >= 0, default 1 each) name
    only scores that are given; a score they leave out weighs 1. ``-inf`` (a proxy that failed) ranks last;
    NaN is refused, as it has no place in an order."""
    if not scores:
        raise UserError("a rank aggregate needs at least one score")
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(scores))
    if unknown:
        raise UserError(f"rank aggregate: weight for {unknown[0]!r}, which is not one of the scores "
                        f"({', '.join(scores)})")
    columns = {name: np.asarray(values, dtype=np.float64) for name, values in scores.items()}
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1 or any(values.ndim != 1 for values in columns.values()):
        raise UserError(f"rank aggregate: every score needs one value per item, got lengths {sorted(lengths)}")
    if any(np.isnan(values).any() for values in columns.values()):
        raise UserError("rank aggregate: a score holds NaN; give a number (or -inf to rank an item last)")
    weight = np.array([float(weights.get(name, 1.0)) for name in columns])
    if (weight < 0).any() or weight.sum() <= 0:
        raise UserError(f"rank aggregate: weights must be >= 0 and not all 0, got {weight.tolist()}")
    ranks = np.stack([average_ranks(values) for values in columns.values()])
    return weight @ ranks / weight.sum()
