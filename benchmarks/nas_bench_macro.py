"""End to end against NAS-Bench-Macro: train a supernet, search it under a FLOPs limit, judge the pick by the table.

Usage (about 25 minutes of supernet training on a 2-core CPU at the defaults, and the search's up to population x
generations = 1,000 paths at 3-10 s each there; minutes on a GPU):
    python benchmarks/nas_bench_macro.py --table nas-bench-macro_cifar10.json \
        --data-root cifar10_subset.npz --output runs/nbm-e2e [--epochs 30] [--flops-quantile 0.5] \
        [--set KEY=VALUE ...] [--bn-batches 20] [--population N --generations N] [--seed N]

1. `cifar10-supernet` (aligned choices, width x0.5) in the `mbv2-macro-cifar` space on the CIFAR-10 data
   (the 5,085-image subset here), ``--epochs`` epochs; a finished supernet in OUTPUT/supernet is reused.
2. The search (the engine's defaults; twins scored once) scores paths by the hold-out ``--score`` under a
   FLOPs limit given in the table's own FLOPs (width 1.0; default: the median network's).
3. The searched architecture's stand-alone accuracy in the table and its rank and percentile among all
   networks within the limit, beside the table's best within the limit and a random pick (percentile
   ~50 on average), and beside what the one-line rules of `spos.bench.engine.HEURISTICS` (most FLOPs,
   deepest, ...) pick under the same limit with no supernet at all: the bar the search must clear. Written
   to OUTPUT/result.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from spos.bench.engine import Limits, TableObjective, flops_quantile, heuristic_picks
from spos.bench.tables import Benchmark, load_benchmark
from spos.io.files import write_text_atomic
from spos.search import engine


def train_supernet(output: Path, *, config: str = "cifar10-supernet", overrides: tuple[str, ...] = (),
                   progress: bool = True) -> Path:
    """The supernet checkpoint (trained here unless OUTPUT/last.pt is there, a cut run resumed)."""
    from spos.train.config import load_config
    from spos.train.loop import run_training
    from spos.train.resume import RUN_MARKERS

    if (output / "last.pt").is_file() and (output / "done").is_file():
        return output / "last.pt"
    resume = any((output / marker).exists() for marker in RUN_MARKERS)
    run_training(load_config(config, ["space.name=mbv2-macro-cifar", *overrides]), output, resume=resume,
                 progress=progress)
    write_text_atomic("finished\n", output / "done")
    return output / "last.pt"


def search_under_table_flops(supernet_path: Path, benchmark: Benchmark, flops_max: float, *, score: str = "loss",
                             config=None, bn_batches: int = 20, batch_size: int = 128, device: str | None = None):
    """The engine (``config``: `SearchConfig`, default the search's) over the supernet's paths, limited by the
    table's FLOPs of each network; returns (best architecture, engine result)."""
    from spos.search.constraints import GeneMap
    from spos.search.holdout import load_scoring_data, with_supernet_data
    from spos.search.run import SearchJob
    from spos.search.scoring import SupernetScorer
    from spos.store import checkpoint
    from spos.train.distributed import local_device

    state = checkpoint.load_kind(supernet_path, "supernet")
    job = with_supernet_data(SearchJob(supernet=str(supernet_path), bn_batches=bn_batches, batch_size=batch_size),
                             state.get("config") or {})
    device = local_device(device)
    supernet = checkpoint.build_model(state).to(device)
    benchmark.check_space(supernet.space)
    genes = GeneMap(supernet.space, "both")
    calibration, evaluation, _ = load_scoring_data(job, supernet.space, device, checkpoint.convention_of(state))
    scorer, score_many = genes.scoring(SupernetScorer(supernet, calibration, evaluation, score))
    limit = engine.Constraint("flops", lambda g: benchmark.entry(genes.arch(g)).flops, flops_max)
    result = engine.evolution_search(genes.counts, scorer, [limit], config or engine.SearchConfig(),
                                     score_many=score_many, canonical=genes.canonical(), progress=False)
    return genes.arch(result.best_genes), result


def judge(benchmark: Benchmark, arch, flops_max: float) -> dict:
    """The architecture's table accuracy, rank and percentile among the networks within the limit (as
    `TableObjective.standing` judges any pick), and what the `HEURISTICS` pick there."""
    objective = TableObjective(benchmark, Limits(flops_max=flops_max))
    standing = objective.standing(arch)
    accuracies = [entry.accuracy for entry in objective.inside.values()]
    return {**{key: standing[key] for key in ("arch", "key", "accuracy", "flops", "rank", "percentile")},
            "networks_within_limit": len(accuracies), "best_within_limit": max(accuracies),
            "median_within_limit": statistics.median(accuracies), "heuristics": heuristic_picks(objective)}


def heuristics_text(verdict: dict) -> str:
    """One line per rule: its pick under the same limit and where it stands beside the search's pick."""
    return "\n".join(f"  rule {pick['rule']}: {pick['key']} {100 * pick['accuracy']:.2f}%, rank {pick['rank']}, "
                     f"percentile {pick['percentile']:.1f}" for pick in verdict["heuristics"].values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, help="NAS-Bench-Macro's JSON file")
    parser.add_argument("--data-root", required=True, help="CIFAR-10 (a folder, or the subset's .npz)")
    parser.add_argument("--output", default="runs/nbm-e2e")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe change for the supernet, e.g. --set sampling.few_shot_layers=[0] (repeatable)")
    parser.add_argument("--flops-quantile", type=float, default=0.5,
                        help="the limit: this quantile of the table's FLOPs (0.5: the median network's)")
    parser.add_argument("--score", choices=("top1", "loss"), default="loss")
    parser.add_argument("--bn-batches", type=int, default=20, help="BN recalibration batches per path (default 20)")
    parser.add_argument("--population", type=int, default=None, help="the search's population (default the engine's)")
    parser.add_argument("--generations", type=int, default=None, help="its generations (default the engine's)")
    parser.add_argument("--seed", type=int, default=0, help="the search's seed (default 0); the supernet is reused")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    output = Path(args.output)
    benchmark = load_benchmark("nas-bench-macro", args.table)
    flops_max = flops_quantile(benchmark, args.flops_quantile)
    started = time.perf_counter()
    supernet = train_supernet(output / "supernet", overrides=(f"train.epochs={args.epochs}", "data.name=cifar10",
                                                              f"data.root={args.data_root}", *args.overrides))
    trained = time.perf_counter()
    search = {key: value for key, value in (("population", args.population), ("generations", args.generations))
              if value is not None} | {"seed": args.seed}
    arch, result = search_under_table_flops(supernet, benchmark, flops_max, score=args.score, device=args.device,
                                            config=engine.SearchConfig(**search), bn_batches=args.bn_batches)
    verdict = {**judge(benchmark, arch, flops_max), "flops_max": flops_max, "score": args.score,
               "epochs": args.epochs, "scored": result.num_scored, "bn_batches": args.bn_batches, **search,
               "train_seconds": trained - started, "search_seconds": time.perf_counter() - trained}
    write_text_atomic(json.dumps(verdict, indent=2) + "\n", output / "result.json")
    print(f"limit {flops_max / 1e6:.1f}M FLOPs (the table's): {verdict['networks_within_limit']} networks; searched "
          f"{verdict['key']} ({verdict['arch']}): {100 * verdict['accuracy']:.2f}% trained alone, rank "
          f"{verdict['rank']}, percentile {verdict['percentile']:.1f} (best {100 * verdict['best_within_limit']:.2f}%, "
          f"median {100 * verdict['median_within_limit']:.2f}%; a random pick: percentile ~50); "
          f"training {verdict['train_seconds']:.0f} s, search {verdict['search_seconds']:.0f} s "
          f"({verdict['scored']} paths)")
    print(f"beside the one-line rules under the same limit (no supernet):\n{heuristics_text(verdict)}")


if __name__ == "__main__":
    main()
