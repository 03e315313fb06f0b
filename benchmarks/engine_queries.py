"""The search engine measured: queries to NAS-Bench-Macro's optimum, and a synthetic landscape as a check.

Usage:
    python benchmarks/engine_queries.py --table nas-bench-macro_cifar10.json [--seeds 100] [--random-seeds 300]

1. NAS-Bench-Macro (the table a user fetches with `spos bench nas-bench-macro --download`): for each
   engine variant (SearchConfig fields, the search's defaults otherwise), the median number of queries
   (distinct networks scored; twins count as one) to the best network, without limits and under a FLOPs
   limit, against random search.
2. A synthetic landscape over the ShuffleNet `oneshot` space's 40 genes (additive + pairwise
   interactions + noise on every score, so the engine is not tuned to one table): the median noiseless
   value of the candidate a search picks (its best by the noisy score) after the default budget (50 x 20).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from spos.bench.engine import Limits, TableObjective, engine_curves
from spos.bench.tables import load_benchmark
from spos.search import engine
from spos.search.engine import SearchConfig

VARIANTS = {"official evolution (surrogate_pool=1)": SearchConfig(surrogate_pool=1),
            "surrogate_pool=4": SearchConfig(surrogate_pool=4),
            "surrogate_pool=8 (the default)": SearchConfig(),
            "surrogate_pool=16": SearchConfig(surrogate_pool=16)}


def table_rows(path: str, seeds: int, random_seeds: int) -> None:
    benchmark = load_benchmark("nas-bench-macro", path)
    for limits in (Limits(), Limits(flops_max=50e6)):
        objective = TableObjective(benchmark, limits)
        started = time.perf_counter()
        rnd = engine_curves(objective, ("random",), seeds=random_seeds, budget=4000)["algorithms"]["random"]
        print(f"\n{limits}: {len(objective.inside)} networks; random search median {rnd['median_queries']} queries "
              f"({random_seeds} seeds)")
        for name, config in VARIANTS.items():
            data = engine_curves(objective, ("evolution",), seeds=seeds, budget=4000, config=config)
            evo = data["algorithms"]["evolution"]
            ratio = rnd["median_queries"] / evo["median_queries"]
            print(f"  {name:40s} median {evo['median_queries']:7.1f}  ({ratio:.1f}x fewer than random; "
                  f"{evo['found']}/{seeds} reached it)", flush=True)
        print(f"  ({time.perf_counter() - started:.0f} s)")


def synthetic(seed: int, noise: float):
    """An additive + pairwise function over the oneshot genes (20 x 4 ops, 20 x 10 widths), its noiseless
    twin, and the counts."""
    counts = [4] * 20 + [10] * 20
    rng = random.Random(seed)
    additive = [[rng.gauss(0, 1) for _ in range(n)] for n in counts]
    pairs = [tuple(rng.sample(range(40), 2)) for _ in range(60)]
    weights = [[[rng.gauss(0, 0.7) for _ in range(counts[j])] for _ in range(counts[i])] for i, j in pairs]

    def clean(genes):
        return (sum(a[g] for a, g in zip(additive, genes))
                + sum(w[genes[i]][genes[j]] for (i, j), w in zip(pairs, weights)))

    def noisy(genes):
        return clean(genes) + random.Random(hash((seed, genes))).gauss(0, noise)

    return counts, noisy, clean


def synthetic_rows(seeds: int, noise: float) -> None:
    print(f"\nsynthetic landscape (oneshot genes, additive + 60 pairwise terms, noise sd {noise}), {seeds} seeds:")
    picked: dict[str, list[float]] = {}
    for seed in range(seeds):
        counts, noisy, clean = synthetic(seed, noise)
        config = SearchConfig(seed=seed)
        rnd = engine.random_search(counts, noisy, config=config, progress=False)
        picked.setdefault("random search", []).append(clean(rnd.best_genes))
        for name, variant in VARIANTS.items():
            result = engine.evolution_search(counts, noisy, config=variant.__class__(**{**vars(variant), "seed": seed}),
                                             progress=False)
            picked.setdefault(name, []).append(clean(result.best_genes))
    for name, values in picked.items():
        print(f"  {name:40s} median noiseless value of the pick {statistics.median(values):7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, help="NAS-Bench-Macro's JSON file")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--random-seeds", type=int, default=300)
    parser.add_argument("--synthetic-seeds", type=int, default=20)
    parser.add_argument("--noise", type=float, default=1.0)
    args = parser.parse_args()
    table_rows(args.table, args.seeds, args.random_seeds)
    synthetic_rows(args.synthetic_seeds, args.noise)


if __name__ == "__main__":
    main()
