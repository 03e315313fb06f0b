"""A search engine over any discrete space given as choice counts: evolution, random, NSGA-II.

A candidate is a tuple of ints ``genes`` with ``0 <= genes[i] < counts[i]``. The engine knows
nothing of networks: it is handed a score function (higher is better) and constraints (cheap
measures with limits), so it is tested on known objectives and serves the supernet unchanged.

- A candidate that breaks a limit is never scored; limits that leave no room fail at once.
- Every candidate is scored once (a cache keyed by its genes); same seed, same result.
- ``history`` (records of an earlier, killed run) pre-fills the cache: the search replays the
  same random stream from the start and only scores what the cache lacks, so a resumed run
  scores nothing twice and ends exactly where an uninterrupted one ends.
- ``score_many`` scores a generation's new candidates in one call (torchrun ranks split it); each
  score is recorded as it is yielded, so a kill mid-generation keeps what was scored before it.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from spos.errors import UserError
from spos.search.surrogate import fit_surrogate
from spos.space import limits

log = logging.getLogger(__name__)

Genes = tuple[int, ...]


@dataclass(frozen=True)
class Constraint:
    """``measure(genes) <= limit``; measures should be cheap (analytic FLOPs, a latency table). A
    ``measured`` one times a network per candidate: `check_feasible` times at most
    `spos.space.limits.MEASURED_DRAWS` candidates for it."""

    name: str
    measure: Callable[[Genes], float]
    limit: float
    measured: bool = False

    def holds(self, genes: Genes) -> bool:
        return self.measure(genes) <= self.limit


@dataclass(frozen=True)
class SearchConfig:
    """Defaults are the official SPOS search: 50 x 20, top 10 parents, 25 mutations (p=0.1), 25 crossovers.

    The one statement of the search's settings and their defaults: `spos.search.run.SearchJob`
    extends it and the ``spos search`` options read their defaults from it.
    """

    population: int = 50
    generations: int = 20
    parents: int = 10
    mutations: int | None = None  # children by mutation per generation; None: see `num_mutations`
    crossovers: int | None = None
    mutation_prob: float = 0.1
    seed: int = 0
    max_tries: int = 10_000
    #: Children drawn per child scored: a ridge model on everything scored so far picks the most promising
    #: 1/pool of them (1: no model). On NAS-Bench-Macro 8 cuts the median queries to the optimum from 173
    #: to 107 (random search: 1,694); benchmarks/README.md has every variant tried.
    surrogate_pool: int = 8

    @property
    def num_mutations(self) -> int:
        """As given, else half the population, so a search scores about population x generations
        candidates (the official 25 at 50)."""
        return self.population // 2 if self.mutations is None else self.mutations

    @property
    def num_crossovers(self) -> int:
        return self.population // 2 if self.crossovers is None else self.crossovers


@dataclass
class SearchResult:
    best_genes: Genes
    best_score: float
    records: list[dict]
    best_per_generation: list[float]
    front: list[dict] = field(default_factory=list)
    num_scored: int = 0  # candidates the result rests on, those scored before a resume included
    score_seconds: float = 0.0
    total_seconds: float = 0.0

    def top(self, k: int) -> list[dict]:
        return sorted(self.records, key=lambda r: -r["score"])[:k]


# ----------------------------------------------------------------------------------------------
# History files


# ----------------------------------------------------------------------------------------------
# Scoring with a cache


class Evaluator:
    def __init__(self, score_fn, score_many, history: Iterable[dict], on_evaluated) -> None:
        self.score_fn, self.score_many, self.on_evaluated = score_fn, score_many, on_evaluated
        self.cache: dict[Genes, float] = {tuple(r["genes"]): float(r["score"]) for r in history}
        self.records: dict[Genes, dict] = {}
        self.num_scored = 0
        self.seconds = 0.0

    def evaluate(self, candidates: Sequence[Genes], generation: int) -> list[float]:
        fresh = list(dict.fromkeys(g for g in candidates if g not in self.cache))
        # Each score is recorded (and handed to ``on_evaluated``, the history) the moment it exists: one
        # by one, or as ``score_many`` yields them, so a kill mid-generation loses one candidate's work.
        started = time.perf_counter()
        scores = iter(self.score_many(fresh)) if self.score_many and fresh else (self.score_fn(g) for g in fresh)
        for genes in fresh:
            score = float(next(scores))
            self.seconds += time.perf_counter() - started
            self.num_scored += 1
            self.cache[genes] = score
            if self.on_evaluated:
                self.on_evaluated({"genes": list(genes), "score": score, "generation": generation})
            started = time.perf_counter()
        for genes in candidates:
            self.records.setdefault(genes, {"genes": list(genes), "score": self.cache[genes], "generation": generation})
        return [self.cache[g] for g in candidates]

    def best(self) -> tuple[Genes, float]:
        genes = max(self.records, key=lambda g: (self.records[g]["score"], [-x for x in g]))
        return genes, self.records[genes]["score"]


# ----------------------------------------------------------------------------------------------
# Candidates


def _valid(genes: Genes, constraints: Sequence[Constraint]) -> bool:
    return all(c.holds(genes) for c in constraints)


#: Maps a candidate to the representative of its twins (candidates that are one network, see
#: `spos.space.canonical`), so that twins are drawn, scored and counted once; None: every candidate is its own.
Canonical = Callable[[Genes], Genes] | None


def _as_canonical(genes: Genes, canonical: Canonical) -> Genes:
    return genes if canonical is None else tuple(canonical(genes))


def random_valid(counts: Sequence[int], rng: random.Random, constraints: Sequence[Constraint],
                 max_tries: int, avoid: set | None = None, canonical: Canonical = None) -> Genes | None:
    """A uniformly random candidate within the limits (and not in ``avoid``); None after max_tries."""
    for _ in range(max_tries):
        genes = _as_canonical(tuple(rng.randrange(n) for n in counts), canonical)
        if (avoid is None or genes not in avoid) and _valid(genes, constraints):
            return genes
    return None


def check_feasible(counts: Sequence[int], constraints: Sequence[Constraint], seed: int, tries: int) -> None:
    """Fail at once, naming the tightest limit, when random draws find no candidate within the limits.

    Cheap limits are checked first; a ``measured`` one is timed only on draws within the cheap ones,
    and on at most `spos.space.limits.MEASURED_DRAWS` of them."""
    if not constraints:
        return
    rng = random.Random(seed ^ 0x5EED)
    smallest: dict[str, float] = {}
    cheap, measured = [c for c in constraints if not c.measured], [c for c in constraints if c.measured]
    draws = timed = 0
    while draws < tries and timed < limits.MEASURED_DRAWS:
        draws += 1
        genes = tuple(rng.randrange(n) for n in counts)
        values = {c.name: c.measure(genes) for c in cheap}
        if measured and all(values[c.name] <= c.limit for c in cheap):
            timed += 1
            values.update({c.name: c.measure(genes) for c in measured})
        if len(values) == len(constraints) and all(values[c.name] <= c.limit for c in constraints):
            return
        for name, value in values.items():
            smallest[name] = min(smallest.get(name, value), value)
    broken = [c for c in constraints if smallest.get(c.name, -math.inf) > c.limit]
    worst = broken[0] if broken else constraints[0]
    how = f"{draws} random draws" + (f", {timed} of them timed" if measured else "")
    seen = f"{smallest[worst.name]:g}" if worst.name in smallest else "none measured"
    advice = ("; a table of timings (`spos latency table`, then --latency-table) lets many more draws be checked"
              if worst.measured else "")
    raise UserError(f"no architecture satisfies {worst.name} <= {worst.limit:g} in {how} (smallest seen: "
                    f"{seen}); relax that limit{advice}")


def mutate(genes: Genes, counts: Sequence[int], rng: random.Random, prob: float) -> Genes:
    return tuple(rng.randrange(n) if rng.random() < prob else g for g, n in zip(genes, counts))


def most_promising(candidates: list[Genes], wanted: int, predict, seen: set) -> list[Genes]:
    """The ``wanted`` candidates predicted best (ties by drawing order); the others go back to being
    unseen, so a later generation may draw them again."""
    if len(candidates) <= wanted:
        return candidates
    predicted = predict(candidates)
    order = sorted(range(len(candidates)), key=lambda i: (-predicted[i], i))
    for i in order[wanted:]:
        seen.discard(candidates[i])
    return [candidates[i] for i in order[:wanted]]


def crossover(a: Genes, b: Genes, rng: random.Random) -> Genes:
    return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b))


def _children(make: Callable[[], Genes], wanted: int, constraints, seen: set, tries: int,
              canonical: Canonical = None) -> list[Genes]:
    """Up to ``wanted`` new valid candidates from ``make``, within a bounded number of tries."""
    children: list[Genes] = []
    for _ in range(tries):
        if len(children) >= wanted:
            break
        child = _as_canonical(make(), canonical)
        if child not in seen and _valid(child, constraints):
            seen.add(child)
            children.append(child)
    return children


def _fill_random(population: list[Genes], size: int, counts, rng, constraints, seen: set, tries: int,
                 canonical: Canonical = None) -> None:
    while len(population) < size:
        genes = random_valid(counts, rng, constraints, tries, avoid=seen, canonical=canonical)
        if genes is None:
            break  # the space within the limits is (nearly) exhausted: search with what there is
        seen.add(genes)
        population.append(genes)


# ----------------------------------------------------------------------------------------------
# The algorithms


def percent(score: float) -> str:
    return f"{100 * score:.1f}%"


class GenerationBar:
    """One step per generation, saying where the search is: ``[2/5] search: generation 3/5, best 17.8%``."""

    def __init__(self, total: int, enabled: bool, label: str, score_text: Callable[[float], str] = percent) -> None:
        self.total, self.label, self.done, self.score_text = total, label, 0, score_text
        self.bar = tqdm(total=total, disable=not enabled, desc=f"{label}: generation 0/{total}",
                        dynamic_ncols=True, leave=False)

    def advance(self, best: float) -> None:
        self.done += 1
        self.bar.set_description_str(f"{self.label}: generation {self.done}/{self.total}, "
                                     f"best {self.score_text(best)}")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _start(counts, constraints, config: SearchConfig, score_fn, score_many, history, on_evaluated):
    """What every search begins with: its limits checked, its seeded stream, its score cache (pre-filled
    by ``history``) and the set of candidates already drawn."""
    check_feasible(counts, constraints, config.seed, config.max_tries)
    seen: set[Genes] = set()
    return random.Random(config.seed), Evaluator(score_fn, score_many, history, on_evaluated), seen


def evolution_search(counts: Sequence[int], score_fn: Callable[[Genes], float],
                     constraints: Sequence[Constraint] = (), config: SearchConfig = SearchConfig(), *,
                     history: Iterable[dict] = (), on_evaluated=None, progress: bool = True,
                     score_many=None, front_cost: Callable[[Genes], float] | None = None,
                     label: str = "evolution", score_text: Callable[[float], str] = percent,
                     canonical: Canonical = None) -> SearchResult:
    """The official SPOS evolution: parents are the top-k of everything scored so far."""
    started = time.perf_counter()
    rng, evaluator, seen = _start(counts, constraints, config, score_fn, score_many, history, on_evaluated)
    population: list[Genes] = []
    _fill_random(population, config.population, counts, rng, constraints, seen, config.max_tries, canonical)
    best_per_generation = []
    bar = GenerationBar(config.generations, progress, label, score_text)
    for generation in range(config.generations):
        evaluator.evaluate(population, generation)
        best_per_generation.append(evaluator.best()[1])
        bar.advance(best_per_generation[-1])
        if generation == config.generations - 1:
            break
        ranked = sorted(evaluator.records.values(), key=lambda r: -r["score"])
        parents = [tuple(r["genes"]) for r in ranked[:config.parents]]
        tries, pool = config.max_tries, config.surrogate_pool
        mutated = _children(lambda: mutate(rng.choice(parents), counts, rng, config.mutation_prob),
                            config.num_mutations * pool, constraints, seen, tries, canonical)
        crossed = _children(lambda: crossover(rng.choice(parents), rng.choice(parents), rng),
                            config.num_crossovers * pool, constraints, seen, tries, canonical)
        if pool > 1:
            predict = fit_surrogate(list(evaluator.records.values()), counts)
            mutated = most_promising(mutated, config.num_mutations, predict, seen)
            crossed = most_promising(crossed, config.num_crossovers, predict, seen)
        population = mutated + crossed
        _fill_random(population, config.population, counts, rng, constraints, seen, tries, canonical)
    bar.close()
    return _result(evaluator, best_per_generation, started, front_cost)


def random_search(counts: Sequence[int], score_fn: Callable[[Genes], float],
                  constraints: Sequence[Constraint] = (), config: SearchConfig = SearchConfig(), *,
                  history: Iterable[dict] = (), on_evaluated=None, progress: bool = True,
                  score_many=None, front_cost: Callable[[Genes], float] | None = None,
                  label: str = "random search", score_text: Callable[[float], str] = percent,
                  canonical: Canonical = None) -> SearchResult:
    """The baseline: as many distinct random candidates as evolution scores, in generation-sized chunks."""
    started = time.perf_counter()
    rng, evaluator, seen = _start(counts, constraints, config, score_fn, score_many, history, on_evaluated)
    best_per_generation = []
    bar = GenerationBar(config.generations, progress, label, score_text)
    for generation in range(config.generations):
        chunk: list[Genes] = []
        _fill_random(chunk, config.population, counts, rng, constraints, seen, config.max_tries, canonical)
        if chunk:
            evaluator.evaluate(chunk, generation)
        best_per_generation.append(evaluator.best()[1])
        bar.advance(best_per_generation[-1])
    bar.close()
    return _result(evaluator, best_per_generation, started, front_cost)


def _result(evaluator: Evaluator, best_per_generation, started, front_cost) -> SearchResult:
    genes, score = evaluator.best()
    records = list(evaluator.records.values())
    front = pareto_front(records, [front_cost]) if front_cost else [evaluator.records[genes]]
    return SearchResult(genes, score, records, best_per_generation, front, len(records), evaluator.seconds,
                        time.perf_counter() - started)


# ----------------------------------------------------------------------------------------------
# Multi-objective: NSGA-II


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` dominates ``b`` when it is no worse in every objective and better in one (minimising)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated_sort(points: Sequence[Sequence[float]]) -> list[list[int]]:
    """Fronts of indices, best first (Deb et al.'s fast non-dominated sort)."""
    dominated_by: list[list[int]] = [[] for _ in points]
    counts = [0] * len(points)
    fronts: list[list[int]] = [[]]
    for i, p in enumerate(points):
        for j, q in enumerate(points):
            if dominates(p, q):
                dominated_by[i].append(j)
            elif dominates(q, p):
                counts[i] += 1
        if counts[i] == 0:
            fronts[0].append(i)
    while fronts[-1]:
        following = []
        for i in fronts[-1]:
            for j in dominated_by[i]:
                counts[j] -= 1
                if counts[j] == 0:
                    following.append(j)
        fronts.append(following)
    return fronts[:-1]


def crowding_distance(points: Sequence[Sequence[float]], front: Sequence[int]) -> dict[int, float]:
    distance = {i: 0.0 for i in front}
    for k in range(len(points[front[0]]) if front else 0):
        ordered = sorted(front, key=lambda i: points[i][k])
        low, high = points[ordered[0]][k], points[ordered[-1]][k]
        distance[ordered[0]] = distance[ordered[-1]] = float("inf")
        if high == low:
            continue
        for before, here, after in zip(ordered, ordered[1:], ordered[2:]):
            distance[here] += (points[after][k] - points[before][k]) / (high - low)
    return distance


def _objectives(record: dict, costs: Sequence[Callable[[Genes], float]]) -> tuple[float, ...]:
    genes = tuple(record["genes"])
    return (-record["score"], *(cost(genes) for cost in costs))


def pareto_front(records: Sequence[dict], costs: Sequence[Callable[[Genes], float]]) -> list[dict]:
    """The non-dominated records (accuracy up, every cost down), sorted by the first cost."""
    if not records:
        return []
    points = [_objectives(r, costs) for r in records]
    front = [records[i] for i in non_dominated_sort(points)[0]]
    return sorted(front, key=lambda r: _objectives(r, costs)[1:])


def nsga2_search(counts: Sequence[int], score_fn: Callable[[Genes], float],
                 objectives: Sequence[tuple[str, Callable[[Genes], float]]],
                 constraints: Sequence[Constraint] = (), config: SearchConfig = SearchConfig(), *,
                 history: Iterable[dict] = (), on_evaluated=None, progress: bool = True,
                 score_many=None, label: str = "nsga-ii",
                 score_text: Callable[[float], str] = percent, canonical: Canonical = None) -> SearchResult:
    """NSGA-II: maximise the score and minimise each cost in ``objectives`` ((name, measure) pairs)."""
    started = time.perf_counter()
    rng, evaluator, seen = _start(counts, constraints, config, score_fn, score_many, history, on_evaluated)
    costs = [measure for _, measure in objectives]
    population: list[Genes] = []
    _fill_random(population, config.population, counts, rng, constraints, seen, config.max_tries, canonical)
    best_per_generation = []
    bar = GenerationBar(config.generations, progress, label, score_text)
    for generation in range(config.generations):
        evaluator.evaluate(population, generation)
        points = [_objectives(evaluator.records[g], costs) for g in population]
        fronts = non_dominated_sort(points)
        rank = {i: r for r, front in enumerate(fronts) for i in front}
        crowd = {i: d for front in fronts for i, d in crowding_distance(points, front).items()}
        best_per_generation.append(evaluator.best()[1])
        bar.advance(best_per_generation[-1])
        if generation == config.generations - 1:
            break

        def tournament() -> Genes:
            a, b = rng.randrange(len(population)), rng.randrange(len(population))
            return population[min((a, b), key=lambda i: (rank[i], -crowd[i]))]

        offspring = _children(lambda: mutate(crossover(tournament(), tournament(), rng), counts, rng,
                                             config.mutation_prob),
                              config.population, constraints, seen, config.max_tries, canonical)
        _fill_random(offspring, config.population, counts, rng, constraints, seen, config.max_tries, canonical)
        evaluator.evaluate(offspring, generation)
        union = list(dict.fromkeys(population + offspring))
        points = [_objectives(evaluator.records[g], costs) for g in union]
        survivors: list[Genes] = []
        for front in non_dominated_sort(points):
            if len(survivors) + len(front) <= config.population:
                survivors += [union[i] for i in front]
                continue
            crowd = crowding_distance(points, front)
            ordered = sorted(front, key=lambda i: -crowd[i])
            survivors += [union[i] for i in ordered[:config.population - len(survivors)]]
            break
        population = survivors
    bar.close()
    genes, score = evaluator.best()
    records = list(evaluator.records.values())
    return SearchResult(genes, score, records, best_per_generation, pareto_front(records, costs), len(records),
                        evaluator.seconds, time.perf_counter() - started)
