import random

import pytest

from spos.errors import UserError
from spos.search.engine import (
    Constraint,
    SearchConfig,
    dominates,
    evolution_search,
    non_dominated_sort,
    nsga2_search,
    random_search,
)
from spos.search.history import HistoryWriter, read_history

COUNTS = [4] * 20 + [10] * 20
TARGET = tuple(random.Random(42).randrange(n) for n in COUNTS)


def separable(genes):
    """Fraction of genes at their hidden best value: a known objective with a known optimum."""
    return sum(g == t for g, t in zip(genes, TARGET)) / len(TARGET)


def small(**changes):
    base = dict(population=20, generations=10, parents=5, mutations=8, crossovers=8, seed=0)
    return SearchConfig(**{**base, **changes})


def test_evolution_beats_random_with_the_same_budget():
    margins = []
    for seed in range(3):
        evo = evolution_search(COUNTS, separable, config=small(seed=seed), progress=False)
        rnd = random_search(COUNTS, separable, config=small(seed=seed), progress=False)
        assert rnd.num_scored >= evo.num_scored * 0.9  # the same budget, give or take duplicates
        margins.append(evo.best_score - rnd.best_score)
    assert min(margins) > 0.1


def test_evolution_reaches_the_optimum_with_a_larger_budget():
    result = evolution_search(COUNTS, separable, config=SearchConfig(population=50, generations=60, seed=1,
                                                                     mutation_prob=0.05), progress=False)
    assert result.best_score >= 0.95
    assert result.best_per_generation == sorted(result.best_per_generation)


def test_constraints_are_never_broken():
    limit = Constraint("sum", lambda g: sum(g[20:]), 60.0)
    scored = []

    def score(genes):
        scored.append(genes)
        return separable(genes)

    evolution_search(COUNTS, score, [limit], small(), progress=False)
    assert scored and all(sum(g[20:]) <= 60 for g in scored)


def test_infeasible_limits_fail_at_once():
    impossible = Constraint("flops", lambda g: 100.0 + sum(g), 10.0)
    with pytest.raises(UserError, match=r"no architecture satisfies flops <= 10 .*smallest seen"):
        evolution_search(COUNTS, separable, [impossible], small(max_tries=500), progress=False)


def test_every_candidate_is_scored_once():
    calls = []

    def score(genes):
        calls.append(genes)
        return separable(genes)

    result = evolution_search(COUNTS, score, config=small(), progress=False)
    assert len(calls) == len(set(calls)) == result.num_scored == len(result.records)


def test_same_seed_same_result_other_seed_differs():
    a = evolution_search(COUNTS, separable, config=small(seed=3), progress=False)
    b = evolution_search(COUNTS, separable, config=small(seed=3), progress=False)
    c = evolution_search(COUNTS, separable, config=small(seed=4), progress=False)
    assert a.best_genes == b.best_genes and [r["genes"] for r in a.records] == [r["genes"] for r in b.records]
    assert [r["genes"] for r in a.records] != [r["genes"] for r in c.records]


def test_score_many_equals_one_by_one():
    batches = []

    def many(candidates):
        batches.append(len(candidates))
        return [separable(g) for g in candidates]

    a = evolution_search(COUNTS, separable, config=small(), progress=False)
    b = evolution_search(COUNTS, separable, config=small(), progress=False, score_many=many)
    assert a.best_genes == b.best_genes and a.best_per_generation == b.best_per_generation
    assert len(batches) == 10 and batches[0] == 20


def test_resume_after_a_kill_scores_nothing_twice(tmp_path):
    path = tmp_path / "history.jsonl"
    full = evolution_search(COUNTS, separable, config=small(), progress=False)

    writer = HistoryWriter(path)
    evolution_search(COUNTS, separable, config=small(), progress=False, on_evaluated=writer.write)
    writer.close()
    lines = path.read_text().splitlines(keepends=True)
    kept = 57
    path.write_text("".join(lines[:kept]) + lines[kept][: len(lines[kept]) // 2])  # killed mid-write

    history = read_history(path)
    assert len(history) == kept and path.read_text().count("\n") == kept
    scored_again = []

    def score(genes):
        scored_again.append(genes)
        return separable(genes)

    resumed = evolution_search(COUNTS, score, config=small(), history=history, progress=False)
    assert not {tuple(r["genes"]) for r in history} & set(scored_again)
    assert len(scored_again) == full.num_scored - kept
    assert resumed.best_genes == full.best_genes and resumed.best_per_generation == full.best_per_generation


def test_non_dominated_sort_basics():
    points = [(0, 0), (1, 1), (0, 1), (2, 0), (3, 3)]
    fronts = non_dominated_sort(points)
    assert sorted(fronts[0]) == [0] and 4 in fronts[-1]
    assert dominates((0, 0), (1, 1)) and not dominates((0, 1), (1, 0))


def test_nsga2_front_is_non_dominated_and_dominates_the_rest():
    cost = lambda g: float(sum(g))  # noqa: E731 - accuracy rewards target genes, cost rewards zeros
    result = nsga2_search(COUNTS, separable, [("cost", cost)], config=small(generations=8), progress=False)
    front = [(-r["score"], cost(tuple(r["genes"]))) for r in result.front]
    assert len(front) >= 3
    assert not any(dominates(a, b) for a in front for b in front)
    for record in result.records:
        point = (-record["score"], cost(tuple(record["genes"])))
        assert point in front or any(dominates(f, point) for f in front)


def _hypervolume(front, cost):
    """Area dominated by a (score up, cost down) front, against the reference point (score 0, cost 1)."""
    points = sorted((cost(tuple(r["genes"])), r["score"]) for r in front)
    area, best = 0.0, 0.0
    for (c, score), (next_c, _) in zip(points, points[1:] + [(1.0, 0.0)]):
        best = max(best, score)
        area += best * (next_c - c)
    return area


def test_nsga2_front_beats_random_search_front():
    total = float(sum(n - 1 for n in COUNTS))
    cost = lambda g: sum(g) / total  # noqa: E731
    config = small(generations=15)
    nsga = nsga2_search(COUNTS, separable, [("cost", cost)], config=config, progress=False)
    rnd = random_search(COUNTS, separable, config=small(generations=30), progress=False, front_cost=cost)
    assert rnd.num_scored >= nsga.num_scored
    assert _hypervolume(nsga.front, cost) > _hypervolume(rnd.front, cost) + 0.02


def test_plots_write_pngs(tmp_path):
    from spos.search.plots import plot_best_per_generation, plot_search_scatter

    result = evolution_search(COUNTS, separable, config=small(), progress=False,
                              front_cost=lambda g: float(sum(g)))
    records = [{**r, "flops": 1e6 * sum(r["genes"])} for r in result.records]
    front = [{**r, "flops": 1e6 * sum(r["genes"])} for r in result.front]
    a = plot_search_scatter(records, "flops", tmp_path / "scatter.png", front=front, best=front[-1], limit=9e7)
    b = plot_best_per_generation(result.best_per_generation, tmp_path / "best.png")
    for path in (a, b):
        assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 2000


def test_progress_says_generation_and_best_so_far(monkeypatch):
    import spos.search.engine as engine

    descriptions = []

    class Bar:
        def __init__(self, *args, desc="", **kwargs):
            descriptions.append(desc)

        def set_description_str(self, text):
            descriptions.append(text)

        def update(self, n=1):
            pass

        def close(self):
            pass

    monkeypatch.setattr(engine, "tqdm", Bar)
    result = evolution_search(COUNTS, separable, config=small(generations=3), label="[2/5] search")
    assert descriptions[0] == "[2/5] search: generation 0/3"
    assert descriptions[-1] == f"[2/5] search: generation 3/3, best {100 * result.best_score:.1f}%"


def test_surrogate_ordering_finds_better_candidates_with_the_same_budget():
    """Children ordered by a ridge model on the scores so far (the default) beat the official evolution."""
    margins = []
    for seed in range(3):
        official = evolution_search(COUNTS, separable, config=small(seed=seed, surrogate_pool=1), progress=False)
        ordered = evolution_search(COUNTS, separable, config=small(seed=seed), progress=False)
        assert ordered.num_scored == official.num_scored
        margins.append(ordered.best_score - official.best_score)
    assert min(margins) > 0 and SearchConfig().surrogate_pool == 8


def test_canonical_candidates_are_drawn_and_scored_once():
    """Genes mapped to one representative (twins) are one candidate: never scored twice, always canonical."""
    canonical = lambda genes: tuple(sorted(genes[:4])) + genes[4:]  # noqa: E731 - the first four genes commute
    scored = []
    evolution_search(COUNTS, lambda g: scored.append(g) or separable(g), config=small(), progress=False,
                     canonical=canonical)
    assert len(scored) == len(set(scored)) and all(canonical(g) == g for g in scored)
