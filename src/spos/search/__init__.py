"""Search: a generic engine over choice counts (evolution, random, NSGA-II) and supernet scoring."""

from spos.search.engine import (
    Constraint,
    SearchConfig,
    SearchResult,
    evolution_search,
    nsga2_search,
    pareto_front,
    random_search,
)
from spos.search.history import HistoryWriter, read_history

__all__ = ["Constraint", "HistoryWriter", "SearchConfig", "SearchResult", "evolution_search", "nsga2_search",
           "pareto_front", "random_search", "read_history"]
