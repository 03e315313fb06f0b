"""`spos rank`: how well a trained supernet ranks architectures against their stand-alone accuracy."""

from __future__ import annotations

from spos.cli._common import (
    add_benchmark_arguments,
    add_command,
    device,
    holdout,
    positive_float,
    positive_int,
    seed,
    writable_path,
)

ORDER = 35


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "rank",
        help="measure how well a supernet ranks architectures (Kendall tau vs stand-alone accuracy)",
        description="Draw architectures spread over the FLOPs range (or read a list), score each as a supernet "
                    "path the way the search does (BN recalibrated, hold-out top-1 and cross-entropy), and compare with each one "
                    "trained alone with a retraining config and K seeds (or with accuracies from a ground-truth "
                    "file). Writes rank.json (one row per architecture; Kendall tau, Spearman rho and top-k "
                    "overlap with bootstrap 95% intervals) and rank_scatter.png. Every stand-alone run is kept "
                    "in OUTPUT/standalone/; --resume trains none of the finished ones again. Under torchrun the "
                    "stand-alone runs are shared out over the ranks (several ranks may share a GPU) and rank 0 "
                    "reports.",
        example="spos rank --supernet runs/supernet/last.pt --archs 12 --standalone digits-retrain --seeds 2 "
                "--output runs/rank")
    parser.add_argument("--supernet", required=True, metavar="CKPT", help="a supernet checkpoint")
    which = parser.add_argument_group("architectures")
    truth = parser.add_argument_group("stand-alone accuracy")
    _add_architecture_arguments(which)
    _add_truth_arguments(truth)
    _add_benchmark_arguments(which, truth)
    _add_scoring_arguments(parser.add_argument_group("scoring data"))
    parser.add_argument("--proxies", default=None, metavar="NAME,NAME",
                        help="zero-cost proxies of each path, reported as baselines beside the supernet: "
                             "grad_norm, synflow, naswot or all (default: none, which costs nothing); computed on "
                             "the path extracted from the supernet, on --batch-size seeded hold-out images; "
                             "--resume computes only those not yet recorded")
    parser.add_argument("--bootstrap", type=positive_int, default=1000, help="bootstrap resamples for the 95%% intervals "
                                                                    "(default 1000)")
    parser.add_argument("--seed", type=seed, default=0, help="seed for drawing architectures, the hold-out split "
                                                            "and the bootstrap (default 0)")
    parser.add_argument("--device", type=device, default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--output", type=writable_path, default="runs/rank", help="output folder (default runs/rank)")
    parser.add_argument("--resume", action="store_true",
                        help="continue a killed rank job in --output: finished runs are read back, a cut one "
                             "resumes from its checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run, preemptible=True)


def _add_architecture_arguments(which) -> None:
    """Which architectures are ranked: drawn over the FLOPs range, or listed in a file."""
    which.add_argument("--archs", type=positive_int, default=None, metavar="N",
                       help="how many architectures to draw (default 12; with --ground-truth: all of the file's)")
    which.add_argument("--stratify", choices=("flops", "none"), default="flops",
                       help="flops (default): spread the drawn architectures evenly over the FLOPs range; "
                            "none: uniformly random paths")
    which.add_argument("--flops-min", type=positive_float, default=None,
                       help="only architectures with at least these FLOPs (multiply-adds), e.g. 300e6: drawn, "
                            "listed or in the ground truth")
    which.add_argument("--flops-max", type=positive_float, default=None,
                       help="only architectures with at most these FLOPs; a narrow window measures the ranking a "
                            "search under a FLOPs limit relies on, among architectures of about equal cost")
    which.add_argument("--arch-file", default=None, metavar="FILE",
                       help="architectures to rank instead of drawing them: a JSON list or one "
                            "'B,..,B/C,..,C' per line")


def _add_truth_arguments(truth) -> None:
    """Where the stand-alone accuracy comes from: training here with K seeds, or a file."""
    truth.add_argument("--standalone", default=None, metavar="CONFIG",
                       help="retraining config each architecture is trained alone with (e.g. digits-retrain)")
    truth.add_argument("--seeds", type=positive_int, default=1, metavar="K",
                       help="stand-alone runs per architecture with seeds 0..K-1 added to the config's; their "
                            "mean final val top-1 is the architecture's accuracy (default 1)")
    truth.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a key of the stand-alone config, e.g. --set train.epochs=3 (repeatable)")
    truth.add_argument("--ground-truth", default=None, metavar="FILE",
                       help="accuracies measured elsewhere instead of training here: JSON {\"ARCH\": accuracy} "
                            "or CSV with columns arch,accuracy (the arch text in quotes); fractions or percent "
                            "(the log says which it read)")


def _add_scoring_arguments(data) -> None:
    """The images the supernet paths are scored on, as the search scores its candidates."""
    data.add_argument("--data", default=None, help="dataset (default: the one the supernet was trained on)")
    data.add_argument("--data-root", default=None, help="dataset folder (default: the supernet's)")
    data.add_argument("--holdout", type=holdout, default=None,
                      help="hold-out images the paths are scored on: a count or a fraction (default: the "
                           "supernet's own hold-out, the images it never trained on; with --holdout-from val, "
                           "0.2 of val). More than the supernet held out is refused")
    data.add_argument("--holdout-from", choices=("train", "val"), default="train",
                      help="carve the hold-out from train (default: the supernet's recorded hold-out) or from "
                           "val, for a supernet that trained on every training image")
    data.add_argument("--allow-trained-images", action="store_true",
                      help="score on a hold-out carved from train even when the supernet trained on some of it; "
                           "rank.json records it")
    data.add_argument("--batch-size", type=positive_int, default=128, help="batch size for scoring (default 128)")
    data.add_argument("--bn-batches", type=positive_int, default=20, help="BN recalibration batches (official: 20)")
    data.add_argument("--eval-batches", type=positive_int, default=None, help="cap on hold-out batches per path")
    data.add_argument("--score", choices=("top1", "loss"), default="top1",
                      help="what ranks the paths: top1 (default: hold-out top-1, as the official search) or loss "
                           "(lower hold-out cross-entropy ranks higher); both are kept in rank.json, and "
                           "--resume with the other one recomputes the statistics without scoring again")


def _add_benchmark_arguments(which, truth) -> None:
    which.add_argument("--flops-windows", type=positive_int, default=1, metavar="N",
                       help="also report inside N equal-count FLOPs windows (tau with its interval, the truth's "
                            "seed-to-seed tau, FLOPs' and params' tau, the supernet's first pick against a random "
                            "pick) and plot each (default 1: the whole range only)")
    add_benchmark_arguments(truth, "the truth, every distinct network of the table unless --archs or a FLOPs "
                                   "window says otherwise; --flops-min/--flops-max and --flops-windows are then in "
                                   "the table's FLOPs")


def run(args) -> int:
    from spos.rank.folder import SETTINGS
    from spos.rank.job import RankJob, run_rank
    from spos.rank.proxies import proxy_names
    from spos.train.elastic import resumes_after_restart

    job = RankJob(
        supernet=args.supernet, output=args.output, archs=args.archs, arch_file=args.arch_file,
        stratify=args.stratify, flops_min=args.flops_min, flops_max=args.flops_max, standalone=args.standalone,
        seeds=args.seeds, overrides=list(args.overrides),
        ground_truth=args.ground_truth, data=args.data, data_root=args.data_root,
        holdout=args.holdout, holdout_from=args.holdout_from,
        allow_trained_images=args.allow_trained_images, batch_size=args.batch_size,
        bn_batches=args.bn_batches, eval_batches=args.eval_batches, score=args.score, seed=args.seed,
        bootstrap=args.bootstrap, benchmark=args.benchmark, benchmark_file=args.benchmark_file,
        flops_windows=args.flops_windows, proxies=proxy_names(args.proxies),
        device=args.device, resume=args.resume or resumes_after_restart(args.output, (SETTINGS,)),
        progress=not args.no_progress,
    )
    summary = run_rank(job)
    if not summary:  # a torchrun rank other than 0: its share is trained, rank 0 reports
        return 0
    print_report(summary)
    return 0


def _interval(estimate: dict) -> str:
    if estimate["value"] is None or estimate["value"] != estimate["value"]:
        return "undefined (every score tied)"
    return f"{estimate['value']:.3f}  95% CI [{estimate['low']:.3f}, {estimate['high']:.3f}]"


def print_report(summary: dict) -> None:
    stats = summary["statistics"]
    print(f"{stats['n']} architectures: mean supernet path top-1 {summary['mean_supernet_top1']:.4f} "
          f"(cross-entropy {summary['mean_supernet_loss']:.3f}), mean stand-alone top-1 "
          f"{summary['mean_standalone_top1']:.4f}; ranked by the supernet's hold-out "
          f"{'cross-entropy' if summary['score'] == 'loss' else 'top-1'}")
    print(f"  Kendall tau   {_interval(stats['kendall_tau'])}")
    print(f"  Spearman rho  {_interval(stats['spearman_rho'])}")
    for k, estimate in stats["top_k"].items():
        print(f"  top-k overlap (k={k}) {_interval(estimate)}")
    print_baselines(summary["windows"][0]["baselines"])
    print(f"  ({summary['flops_unit']})")
    for window in summary["windows"][1:]:
        print_window(window)
    print(f"rank: {summary['files']['rank']}\nplot: {summary['files']['scatter']}")
    if summary["files"]["windows"]:
        print(f"window plots: {', '.join(summary['files']['windows'])}")


def print_window(window: dict) -> None:
    low, high = window["flops"]
    ceiling = f", the truth's seeds agree at {window['ceiling_tau']:.3f}" if window["ceiling_tau"] is not None else ""
    pick, chance = window["pick"], window["random_pick"]
    print(f"window {window['window']}: FLOPs {low / 1e6:.2f}M-{high / 1e6:.2f}M, {window['n']} architectures: "
          f"tau {_interval(window['kendall_tau'])}{ceiling}")
    print_baselines(window["baselines"])
    print(f"  first pick {pick['arch']}: rank {pick['rank']} of {window['n']}, percentile {pick['percentile']:.1f} "
          f"(a random pick: rank {chance['rank']:.1f}, percentile {chance['percentile']:.1f} on average)")


BASELINE_NAMES = {"flops": "FLOPs'", "fewer_params": "fewer params'", "more_params": "more params'",
                  "depth": "depth's"}


def print_baselines(baselines: dict) -> None:
    """One line per baseline: its own tau, and how far the supernet's tau is above it (paired interval)."""
    for name, entry in baselines.items():
        label = BASELINE_NAMES.get(name, f"{name}'s")
        print(f"  {label} own Kendall tau {_interval(entry['kendall_tau'])}; the supernet's lead over it "
              f"{_interval(entry['lead'])}")
