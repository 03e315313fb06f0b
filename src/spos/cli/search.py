"""`spos search`: evolutionary (or random, or NSGA-II) search of a trained supernet under limits."""

from __future__ import annotations

from dataclasses import fields

from spos.cli._common import (
    add_benchmark_arguments,
    add_command,
    add_input_argument,
    add_weights_argument,
    device,
    holdout,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
    seed,
    writable_path,
)
from spos.search.engine import SearchConfig
from spos.space.architecture import SEARCH_MODES

ORDER = 30


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "search",
        help="search a trained supernet for the best architectures under FLOPs/params/latency limits",
        description="Score candidate architectures with inherited supernet weights (BN recalibrated on "
                    "training batches, top-1 on the hold-out split) and search with evolution (the "
                    "official settings by default), random search, or NSGA-II for a Pareto front. "
                    "Writes history.jsonl, best.json (for `spos train --arch`), front/*.json and PNG plots.",
        example="spos search --supernet runs/supernet/last.pt --data imagefolder --data-root /data/imagenet "
                "--holdout 50000 --flops-max 330e6 --output runs/search",
    )
    parser.add_argument("--supernet", default=None, metavar="CKPT", help="a supernet checkpoint")
    _add_table_arguments(parser)
    _add_data_arguments(parser.add_argument_group("data"))
    _add_limit_arguments(parser.add_argument_group("limits"))
    _add_algorithm_arguments(parser.add_argument_group("algorithm"))
    parser.add_argument("--device", type=device, default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--output", type=writable_path, default="runs/search", help="output folder (default runs/search)")
    parser.add_argument("--resume", action="store_true",
                        help="continue a killed search from OUTPUT/history.jsonl without re-scoring or re-timing anything")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run, preemptible=True)


def _add_data_arguments(data) -> None:
    """Which images the candidates are scored on, and how (the supernet's own hold-out by default)."""
    data.add_argument("--data", default=None, help="dataset: imagefolder, cifar10, cifar100, mnist, digits, "
                                                   "synthetic (default: the one the supernet was trained on)")
    data.add_argument("--data-root", default=None, help="dataset folder, or .npz file for the CIFAR-10 subset "
                                                        "(default: the supernet's, with its data)")
    data.add_argument("--download", action="store_true",
                      help="download the dataset if missing (CIFAR-10/100, MNIST; needs internet)")
    data.add_argument("--holdout", type=holdout, default=None,
                      help="hold-out images the candidates are scored on: a count or a fraction (default: the "
                           "supernet's own hold-out, split by its seed, so no candidate is scored on images it "
                           "trained on; with --holdout-from val, 0.2 of val). More than the supernet held out is "
                           "refused, fewer are a seeded part of its hold-out")
    data.add_argument("--holdout-from", choices=("train", "val"), default="train",
                      help="carve the hold-out from train (default: the supernet's recorded hold-out) or from "
                           "val, for a supernet that trained on every training image (a converted official one, "
                           "or one trained with data.holdout 0)")
    data.add_argument("--allow-trained-images", action="store_true",
                      help="score on a hold-out carved from train even when the supernet trained on some of it "
                           "(it records no hold-out, or --holdout asks for more); the outputs record it")
    data.add_argument("--split", choices=("holdout", "val"), default="holdout",
                      help="split the candidates are scored on (default holdout; val is the test set: avoid)")
    data.add_argument("--batch-size", type=positive_int, default=128, help="batch size for scoring (default 128)")
    data.add_argument("--bn-batches", type=positive_int, default=20,
                      help="training batches each path's BN is recalibrated on, the ones `spos eval` and "
                           "`spos export` use (official: 20)")
    data.add_argument("--eval-batches", type=positive_int, default=None, help="cap on hold-out batches per candidate")
    add_input_argument(data)
    add_weights_argument(data)
    data.add_argument("--workers", type=non_negative_int, default=0, help="data loader workers (default 0)")


def _add_limit_arguments(limits) -> None:
    limits.add_argument("--flops-max", type=positive_float, default=None, help="FLOPs (multiply-adds) limit, e.g. 330e6")
    limits.add_argument("--flops-min", type=positive_float, default=None, help="lower FLOPs limit")
    limits.add_argument("--params-max", type=positive_float, default=None, help="parameter limit, e.g. 3.5e6")
    limits.add_argument("--latency-max", type=positive_float, default=None, help="latency limit in milliseconds")
    limits.add_argument("--latency-table", default=None, metavar="FILE",
                        help="latency table from `spos latency table` (default: measure each candidate here)")


def _add_algorithm_arguments(algo) -> None:
    algo.add_argument("--algorithm", choices=("evolution", "random", "nsga2"), default="evolution",
                      help="evolution (the paper's, default evolution), random search (the baseline) or nsga2")
    algo.add_argument("--objectives", default=None,
                      help="multi-objective search, e.g. acc,flops or acc,latency (implies nsga2)")
    algo.add_argument("--mode", choices=SEARCH_MODES, default="both",
                      help="search ops and widths (default both), ops only (block), or widths only (channel); "
                           "op and width are the same as block and channel")
    _add_engine_arguments(algo, SearchConfig())
    algo.add_argument("--score", choices=("top1", "loss"), default="top1",
                      help="what a candidate is scored by on the hold-out split: top1 (default, as the "
                           "official search) or loss (lower cross-entropy is better; continuous, so less noisy "
                           "on a small hold-out split); best.json reports hold-out top-1 either way")
    algo.add_argument("--seed", type=seed, default=SearchConfig.seed,
                      help=f"seed for the search and the hold-out split (default {SearchConfig.seed})")


def _add_table_arguments(parser) -> None:
    table = parser.add_argument_group("against a benchmark table instead of a supernet (measures the engine itself)")
    add_benchmark_arguments(table, "run the engine against it, beside random search, for --seeds seeds: queries "
                                   "to the optimum within the limits and the best found, beside what one-line rules "
                                   "(most FLOPs, deepest, ...) pick; in seconds, no supernet")
    table.add_argument("--seeds", type=positive_int, default=20, help="searches per algorithm, seeds 0..N-1 (default 20)")
    table.add_argument("--budget", type=positive_int, default=None, metavar="QUERIES",
                       help="queries (distinct networks scored) per search (default population x generations)")


def _add_engine_arguments(group, defaults) -> None:
    """The evolution's settings, with the defaults `SearchConfig` states (the official search's)."""
    group.add_argument("--population", type=positive_int, default=defaults.population,
                       help=f"candidates per generation (default {defaults.population})")
    group.add_argument("--generations", type=positive_int, default=defaults.generations,
                       help="generations; about population x generations candidates are scored "
                            f"(default {defaults.generations})")
    group.add_argument("--parents", type=positive_int, default=defaults.parents,
                       help=f"top-k kept as parents (default {defaults.parents})")
    half = f"population // 2, {defaults.num_mutations} at population {defaults.population}"
    group.add_argument("--mutations", type=non_negative_int, default=defaults.mutations,
                       help=f"children by mutation per generation (default: {half})")
    group.add_argument("--crossovers", type=non_negative_int, default=defaults.crossovers,
                       help=f"children by crossover per generation (default: {half})")
    group.add_argument("--mutation-prob", type=probability, default=defaults.mutation_prob,
                       help=f"per-gene mutation probability (default {defaults.mutation_prob})")
    group.add_argument("--surrogate-pool", type=positive_int, default=defaults.surrogate_pool,
                       help="children drawn per child scored; a ridge model fitted to the scores so far picks the "
                            f"most promising (default {defaults.surrogate_pool}; 1: no model, the official evolution)")


def run(args) -> int:
    from spos.errors import UserError
    from spos.search.run import SEARCH_MARKERS, SearchJob, run_search
    from spos.space.flops import readable
    from spos.train.elastic import resumes_after_restart

    objectives = [name.strip() for name in args.objectives.split(",")] if args.objectives else []
    if objectives and (objectives[0] != "acc" or len(objectives) < 2):
        raise UserError(f"--objectives {args.objectives!r}: start with acc, then flops, params or latency "
                        "(e.g. acc,flops)")
    if (args.supernet is None) == (args.benchmark is None):
        raise UserError("give --supernet CKPT (search a trained supernet) or --benchmark NAME (measure the engine "
                        "against a table), one of the two")
    if args.benchmark:
        return _run_against_table(args, objectives)
    job = SearchJob(
        supernet=args.supernet, output=args.output, data=args.data, data_root=args.data_root,
        download=args.download, holdout=args.holdout, split=args.split,
        holdout_from=args.holdout_from, allow_trained_images=args.allow_trained_images,
        batch_size=args.batch_size, bn_batches=args.bn_batches, eval_batches=args.eval_batches,
        score=args.score, workers=args.workers, flops_max=args.flops_max, flops_min=args.flops_min,
        params_max=args.params_max,
        latency_max=args.latency_max, latency_table=args.latency_table,
        algorithm="nsga2" if objectives else args.algorithm, objectives=objectives, mode=args.mode,
        device=args.device, resume=args.resume or resumes_after_restart(args.output, SEARCH_MARKERS),
        progress=not args.no_progress, input=args.input, ema=args.ema,
        **{f.name: getattr(args, f.name) for f in fields(SearchConfig) if f.name in vars(args)},
    )
    summary = run_search(job)
    if summary:
        best = summary["best"]
        latency = f"{best['latency']:.3g} ms  " if "latency" in best else ""
        print(f"best: {best['arch']}  accuracy {best['accuracy']:.4f}  {readable(best['flops'])} FLOPs  "
              f"{readable(best['params'])} params  {latency}({summary['scored']} candidates scored in "
              f"{summary['seconds']:.0f}s, {summary['weights']} weights)")
        scored = summary["scored_images"]
        print(f"{'scored':>8}: {scored['images']} {scored['data']} images, {scored['basis']}")
        for name, path in (("history", summary["files"]["history"]), ("best", summary["files"]["best"])):
            print(f"{name:>8}: {path}")
        print(f"{'front':>8}: {len(summary['files']['front'])} files in {args.output}/front")
        print(f"{'plots':>8}: {', '.join(summary['files']['plots'])}")
    return 0


def _run_against_table(args, objectives) -> int:
    from spos.bench.engine import Limits, TableSearchJob, run_table_search
    from spos.errors import UserError

    if args.latency_max is not None or args.latency_table or objectives or args.resume:
        raise UserError("--benchmark takes FLOPs and params limits only (no latency, --objectives or --resume)")
    job = TableSearchJob(
        benchmark=args.benchmark, benchmark_file=args.benchmark_file, output=args.output, algorithm=args.algorithm,
        seeds=args.seeds, budget=args.budget,
        limits=Limits(flops_max=args.flops_max, flops_min=args.flops_min, params_max=args.params_max),
        **{f.name: getattr(args, f.name) for f in fields(SearchConfig) if f.name in vars(args)})
    result = run_table_search(job)
    optimum = result["optimum"]
    print(f"{args.benchmark}: {optimum['networks_within_limits']:,} networks within the limits (FLOPs and params as "
          f"the table counts them); the best is {optimum['arch']} at {100 * optimum['accuracy']:.2f}%")
    for name, data in result["algorithms"].items():
        median = data["median_queries"]
        reached = f"median {median:.0f} queries to the optimum" if median is not None else "optimum not reached in half"
        print(f"  {name:>9}: {reached} ({data['found']}/{args.seeds} seeds reached it within {result['budget']}); "
              f"median best after {result['budget']} queries {100 * data['median_best']:.2f}% "
              f"(percentile {data['median_best_percentile']:.1f})")
    _print_heuristic_picks(result["heuristics"])
    print(f"engine: {result['files']['engine']}\nplot: {result['files']['plot']}")
    return 0


def _print_heuristic_picks(picks: dict) -> None:
    """The one-line rules' picks under the same limits, each with its standing: the bar a search must clear."""
    print("  what one-line rules pick within the same limits (no search):")
    for pick in picks.values():
        print(f"    {pick['rule']}: {pick['key']} at {100 * pick['accuracy']:.2f}%, rank {pick['rank']:,} of "
              f"{pick['networks_within_limits']:,} (percentile {pick['percentile']:.1f})")
