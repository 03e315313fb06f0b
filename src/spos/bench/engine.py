"""The search engine run against a tabular benchmark instead of a supernet: the engine itself, measured.

A table answers a query (an architecture's stand-alone accuracy) in microseconds, so the engine's
own quality can be measured over many seeds in seconds: **queries to the optimum** (how many
distinct networks a search scores before it scores the best network within the limits; twins,
`spos.space.canonical`, count as one) and the best accuracy found after N queries. `engine_curves`
returns best-so-far curves of several algorithms over seeds, `plot_engine_curves` draws them:
evolution against random search is the picture that says what the search adds. `heuristic_picks`
says what the one-line rules a user would try instead of a search (most FLOPs, deepest, ...) pick
under the same limits, and where each pick stands: the bar a search must clear to be worth running.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from spos.bench.tables import Benchmark, Entry
from spos.errors import UserError
from spos.search import engine
from spos.search.constraints import GeneMap
from spos.search.engine import Constraint, SearchConfig
from spos.space.architecture import Architecture

ALGORITHMS = ("evolution", "random", "nsga2")


@dataclass(frozen=True)
class Limits:
    """The search's limits, in the table's own units (FLOPs as multiply-adds, params)."""

    flops_max: float | None = None
    flops_min: float | None = None
    params_max: float | None = None

    def holds(self, flops: float, params: float) -> bool:
        return ((self.flops_max is None or flops <= self.flops_max)
                and (self.flops_min is None or flops >= self.flops_min)
                and (self.params_max is None or params <= self.params_max))


class TableObjective:
    """The engine's view of a table: gene counts, score (mean accuracy), limits, the canonical form."""

    def __init__(self, benchmark: Benchmark, limits: Limits = Limits()) -> None:
        self.benchmark, self.limits = benchmark, limits
        self.genes = GeneMap(benchmark.space, "both")
        self.canonical = self.genes.canonical() or (lambda genes: tuple(genes))
        self.counts = self.genes.counts
        inside = {arch: entry for arch, entry in benchmark.networks.items() if limits.holds(entry.flops, entry.params)}
        if not inside:
            raise UserError(f"no network of {benchmark.spec.name} is within the limits; relax them")
        self.inside = inside
        self.optimum = max(inside, key=lambda arch: (inside[arch].accuracy, [-g for g in arch.genes]))

    def score(self, genes) -> float:
        return self.benchmark.accuracy(self.genes.arch(genes))

    def measure(self, name: str):
        return lambda genes: float(getattr(self.benchmark.entry(self.genes.arch(genes)), name))

    def constraints(self) -> list[Constraint]:
        limits, found = self.limits, []
        if limits.flops_max is not None:
            found.append(Constraint("flops", self.measure("flops"), limits.flops_max))
        if limits.flops_min is not None:
            found.append(Constraint("flops_min", lambda g: -self.measure("flops")(g), -limits.flops_min))
        if limits.params_max is not None:
            found.append(Constraint("params", self.measure("params"), limits.params_max))
        return found

    def percentile(self, accuracy: float) -> float:
        """Share of the networks within the limits that are no better than ``accuracy`` (100: the best)."""
        return 100 * sum(e.accuracy <= accuracy for e in self.inside.values()) / len(self.inside)

    def standing(self, arch: Architecture) -> dict:
        """Where ``arch`` (any twin) stands among the networks within the limits: its table accuracy, FLOPs,
        params, rank (1: the best; ties share the better rank) and percentile, so a pick of any kind (a
        search's, a rule's) is judged in the same terms."""
        entry = self.benchmark.entry(arch)
        return {"arch": str(arch), "key": self.benchmark.spec.key(arch), "accuracy": entry.accuracy,
                "flops": entry.flops, "params": entry.params,
                "rank": 1 + sum(e.accuracy > entry.accuracy for e in self.inside.values()),
                "percentile": self.percentile(entry.accuracy), "networks_within_limits": len(self.inside)}


def flops_quantile(benchmark: Benchmark, quantile: float) -> int:
    """The FLOPs of the network at ``quantile`` of the table's distinct networks ordered by FLOPs (0.5: the
    median network's): a limit that keeps a known share of the table, whatever its units."""
    if not 0 <= quantile <= 1:
        raise UserError(f"FLOPs quantile {quantile:g}: give a number from 0 to 1 (0.5: the median network's)")
    flops = sorted(entry.flops for entry in benchmark.networks.values())
    return flops[int(quantile * (len(flops) - 1))]


# ----------------------------------------------------------------------------------------------
# The picks a user would make without a search


@dataclass(frozen=True)
class HeuristicRule:
    """A one-line rule a user would try instead of a search, and the function that applies it to the
    networks within the limits (ties the rule leaves open go to the network listed first in the table)."""

    description: str
    pick: Callable[[TableObjective], Architecture]


def _ordered(objective: TableObjective, key: Callable[[Architecture, Entry], tuple]) -> list[Architecture]:
    """The distinct networks within the limits sorted by ``key``, smallest first; a sort that is stable, so
    networks the key ties stay in the table's order and every rule picks the same network every time."""
    return sorted(objective.inside, key=lambda arch: key(arch, objective.inside[arch]))


def _by_flops(arch: Architecture, entry: Entry) -> tuple:
    return -entry.flops, entry.params


def pick_most_flops(objective: TableObjective) -> Architecture:
    """FLOPs as the proxy of accuracy: the costliest network the limit allows, the lighter of equals."""
    return _ordered(objective, _by_flops)[0]


def pick_fewest_params_among_most_flops(objective: TableObjective, top: int = 50) -> Architecture:
    """Among the ``top`` networks with the most FLOPs, the one with the fewest params: compute spent on
    resolution (early layers) rather than on wide late layers, a rule of thumb for small images."""
    heaviest = _ordered(objective, _by_flops)[:top]
    return min(heaviest, key=lambda arch: objective.inside[arch].params)


def identity_layers(objective: TableObjective, arch: Architecture) -> int:
    """How many layers of ``arch`` skip (their op is an identity, with or without a projection)."""
    from spos.space.blocks import make_block

    specs = objective.benchmark.space.layers()
    return sum(make_block(spec.ops[op]).rule == "skip" for spec, op in zip(specs, arch.blocks))


def pick_deepest_then_most_flops(objective: TableObjective) -> Architecture:
    """Depth as the proxy: the fewest identity layers, then the most FLOPs (then the fewest params)."""
    return _ordered(objective, lambda arch, entry: (identity_layers(objective, arch), *_by_flops(arch, entry)))[0]


def pick_most_params(objective: TableObjective) -> Architecture:
    """Capacity as the proxy: the most params, the cheaper in FLOPs of equals."""
    return _ordered(objective, lambda arch, entry: (-entry.params, entry.flops))[0]


HEURISTICS: dict[str, HeuristicRule] = {
    "most-flops": HeuristicRule("most FLOPs (ties: fewer params)", pick_most_flops),
    "fewest-params-of-top-50-flops": HeuristicRule("fewest params among the 50 networks with the most FLOPs",
                                                   pick_fewest_params_among_most_flops),
    "deepest-then-most-flops": HeuristicRule("deepest (fewest identity layers), then most FLOPs",
                                             pick_deepest_then_most_flops),
    "most-params": HeuristicRule("most params (ties: fewer FLOPs)", pick_most_params),
}


def heuristic_picks(objective: TableObjective) -> dict[str, dict]:
    """Every rule of `HEURISTICS` applied to the distinct networks within the objective's limits (twins as
    one, as the engine counts them): ``{name: {"rule": description, **objective.standing(pick)}}``."""
    return {name: {"rule": rule.description, **objective.standing(rule.pick(objective))}
            for name, rule in HEURISTICS.items()}


@dataclass
class EngineRun:
    """One search against the table: the networks it scored, in order, with their accuracies."""

    algorithm: str
    seed: int
    queried: list[tuple[int, ...]]
    scores: list[float]
    optimum: tuple[int, ...]

    @property
    def queries_to_optimum(self) -> int | None:
        """Distinct networks scored up to and including the optimum (None: never scored)."""
        return self.queried.index(self.optimum) + 1 if self.optimum in self.queried else None

    def best_after(self, queries: int) -> float:
        """The best accuracy among the first ``queries`` scored (a search stopped at the optimum keeps it)."""
        return max(self.scores[:queries]) if self.scores[:queries] else float("nan")

    def curve(self, budget: int) -> list[float]:
        """Best so far after 1..``budget`` queries; past the last query (the optimum, or the budget) it stays."""
        best, curve = float("-inf"), []
        for score in self.scores[:budget]:
            best = max(best, score)
            curve.append(best)
        return curve + [best] * (budget - len(curve)) if curve else []


def run_engine(objective: TableObjective, algorithm: str, config: SearchConfig, *, budget: int | None = None
               ) -> EngineRun:
    """One search with ``config`` against the table; ``budget`` (queries) sets the generations so a
    search can go on until it has scored that many networks (default: the config's generations)."""
    if algorithm not in ALGORITHMS:
        raise UserError(f"unknown algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
    queried: list[tuple[int, ...]] = []
    scores: list[float] = []
    optimum = objective.optimum.genes

    def on_evaluated(record: dict) -> None:
        queried.append(objective.canonical(record["genes"]))
        scores.append(record["score"])
        if queried[-1] == optimum and budget is not None:
            raise _OptimumFound  # nothing after it changes the best so far: the search stops here

    if budget is not None:
        config = replace(config, generations=max(config.generations, -(-budget // max(1, config.population)) + 1))
    common = dict(on_evaluated=on_evaluated, progress=False, canonical=objective.canonical)
    constraints = objective.constraints()
    try:
        if algorithm == "random":
            engine.random_search(objective.counts, objective.score, constraints, config, **common)
        elif algorithm == "nsga2":
            engine.nsga2_search(objective.counts, objective.score, [("flops", objective.measure("flops"))],
                                constraints, config, **common)
        else:
            engine.evolution_search(objective.counts, objective.score, constraints, config, **common)
    except _OptimumFound:
        pass
    if budget is not None:
        queried, scores = queried[:budget], scores[:budget]
    return EngineRun(algorithm, config.seed, queried, scores, optimum)


class _OptimumFound(Exception):
    """Raised from the history callback to end a measured search once it has scored the optimum."""


def engine_curves(objective: TableObjective, algorithms: Sequence[str] = ("evolution", "random"), *,
                  seeds: int = 20, budget: int = 1000,
                  config: SearchConfig = SearchConfig()) -> dict:  # noqa: B008 - a frozen dataclass, never changed
    """Per algorithm: best-so-far accuracy after each query (one curve per seed), queries to the
    optimum per seed and their median, and the median best after ``budget`` queries.

    Returns ``{"optimum": {...}, "budget": N, "algorithms": {name: {"curves": [[...]], "queries_to_optimum":
    [...], "median_queries": q, "median_best": a}}}``; `plot_engine_curves` draws it."""
    result = {"optimum": {"arch": str(objective.optimum), "accuracy": objective.inside[objective.optimum].accuracy,
                          "networks_within_limits": len(objective.inside)},
              "budget": budget, "seeds": seeds, "algorithms": {}}
    for algorithm in algorithms:
        runs = [run_engine(objective, algorithm, replace(config, seed=seed), budget=budget) for seed in range(seeds)]
        curves = [run.curve(budget) for run in runs]
        hits = [run.queries_to_optimum for run in runs]
        result["algorithms"][algorithm] = {
            "curves": curves, "queries_to_optimum": hits,
            "median_queries": median_or_none(hits), "found": sum(h is not None for h in hits),
            "median_best": statistics.median(run.best_after(budget) for run in runs),
        }
    return result


def median_or_none(values: Sequence[int | None]) -> float | None:
    """The median, counting a search that never reached the optimum as worse than any that did;
    None when at least half never did (the median is then unknown)."""
    ordered = sorted(values, key=lambda v: (v is None, v or 0))
    middle = ordered[(len(ordered) - 1) // 2], ordered[len(ordered) // 2]
    return None if None in middle else (middle[0] + middle[1]) / 2


def plot_engine_curves(curves: dict, path: str | Path, title: str | None = None) -> Path:
    """Median best-so-far accuracy (with the 25-75% band over seeds) against queries, one line per algorithm."""
    import numpy as np

    from spos.search.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for name, data in curves["algorithms"].items():
        length = min(len(c) for c in data["curves"])
        values = 100 * np.array([c[:length] for c in data["curves"]])
        x = np.arange(1, length + 1)
        low, mid, high = np.percentile(values, [25, 50, 75], axis=0)
        median = data["median_queries"]
        label = f"{name} (median {median:.0f} queries to the optimum)" if median else f"{name}"
        ax.plot(x, mid, label=label)
        ax.fill_between(x, low, high, alpha=0.2)
    ax.axhline(100 * curves["optimum"]["accuracy"], color="grey", ls="--", lw=1, label="the optimum")
    ax.set_xscale("log")
    ax.set_xlabel("queries (distinct networks scored)")
    ax.set_ylabel("best accuracy so far (%)")
    ax.set_title(title or f"median of {curves['seeds']} seeds, 25-75% band", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


@dataclass(frozen=True, kw_only=True)
class TableSearchJob(SearchConfig):
    """``spos search --benchmark``: the engine (with `SearchConfig`'s settings) against a table, over seeds,
    beside random search, under the same limits (in the table's units)."""

    benchmark: str
    benchmark_file: str | None = None
    output: str = "runs/bench-search"
    algorithm: str = "evolution"
    seeds: int = 20
    budget: int | None = None  # queries per search; None: population x generations, what a search scores
    limits: Limits = Limits()


def run_table_search(job: TableSearchJob) -> dict:
    """Run the job's algorithm and random search for seeds 0..seeds-1 (the job's seed added), and apply
    the `HEURISTICS` under the same limits; write ``engine.json`` and ``engine_curves.png`` into the output
    folder and return the summary."""
    import json

    from spos.bench.tables import load_benchmark
    from spos.io import files

    if job.seeds < 1:
        raise UserError(f"--seeds {job.seeds}: must be at least 1")
    objective = TableObjective(load_benchmark(job.benchmark, job.benchmark_file), job.limits)
    output = Path(job.output)
    files.check_output_folder(output, kind="benchmark search", resume=False, markers=("engine.json",))
    budget = job.budget or job.population * job.generations
    algorithms = list(dict.fromkeys([job.algorithm, "random"]))
    with files.run_lock(output):
        curves = engine_curves(objective, algorithms, seeds=job.seeds, budget=budget, config=job)
        for data in curves["algorithms"].values():
            data["median_best_percentile"] = objective.percentile(data["median_best"])
        curves["limits"] = {k: v for k, v in vars(job.limits).items() if v is not None}
        curves["heuristics"] = heuristic_picks(objective)
        curves["benchmark"] = job.benchmark
        plot = plot_engine_curves(curves, output / "engine_curves.png",
                                  title=f"{job.benchmark}, {len(objective.inside):,} networks within the limits: "
                                        f"median of {job.seeds} seeds")
        curves["files"] = {"engine": str(output / "engine.json"), "plot": str(plot)}
        files.write_text_atomic(json.dumps(curves) + "\n", output / "engine.json")
    return curves
