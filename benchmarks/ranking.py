"""Which supernet recipe ranks architectures: Kendall tau of supernet path scores against stand-alone top-1.

On digits: N architectures spread over the FLOPs range are trained alone once (K seeds each,
cached in OUTPUT/standalone: the same for every recipe), then each recipe trains a supernet
from `digits-supernet` plus its overrides and `spos rank` scores the same architectures on it
against those stand-alone accuracies. Prints one row per recipe: mean path top-1, Kendall tau
with its bootstrap 95% interval for paths scored by hold-out top-1 and by hold-out cross-entropy
(`--score loss`), Spearman rho and top-3 overlap (top-1), supernet training time (the training
steps only, per-epoch validation excluded). Every stage resumes: a second invocation trains
nothing that is finished. ``--seeds 6 --truth-seeds 3-5`` measures against the mean of seeds 3-5
only, a reference independent of seeds 0-2.

    python benchmarks/ranking.py [--archs 12] [--seeds 2] [--recipes baseline,linear-lr] [--threads 1]
                                 [--space mbv2-macro-cifar] [--data cifar10 --data-root DIR]

``--space`` ranks in another space (its own cache folder, ``runs/ranking-bench-SPACE``).
``--flops-band MIN MAX`` draws the architectures inside one FLOPs window (give it its own
``--output``): how well a supernet ranks architectures of about equal cost, which a search under a
FLOPs limit relies on and a wide FLOPs spread does not test.
``--data cifar10`` ranks on CIFAR-10 (the shared subset through ``--data-root``) with
`cifar10-supernet` / `cifar10-retrain` and the ``cifar-*`` recipes. ``--standalone-only``
trains the stand-alone runs and writes ``ground_truth.json``; under torchrun the runs are
shared out over the ranks (several may share one GPU), so a GPU machine can measure the
reference while this CPU trains the supernets, which then read that file.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from spos.data.conventions import dataset_info
from spos.rank.choose import draw_architectures
from spos.rank.job import RankJob, run_rank, standalone_accuracies
from spos.train.config import load_config
from spos.train.loop import run_training
from spos.train.resume import RUN_MARKERS
from spos.train.setup import build_model

# recipe name -> `--set` overrides of digits-supernet
RECIPES = {
    "baseline": ["optim.lr=0.2"],                      # the demo's supernet before this study
    "linear-lr": ["optim.lr=0.03125"],                 # 0.5 x 64 / 1024, the official rule
    # fair sampling runs 4 paths per step: a quarter of the epochs keeps the forward/backward passes equal
    "fair": ["optim.lr=0.03125", "sampling.strategy=fair", "train.epochs=3"],
    "entangled": ["optim.lr=0.03125", "space.entangled_kernels=true"],
    "fair+entangled": ["optim.lr=0.03125", "sampling.strategy=fair", "train.epochs=3", "space.entangled_kernels=true"],
    # 4x the demo's budget: does the supernet start to learn and rank with more steps?
    "entangled-4x": ["optim.lr=0.03125", "space.entangled_kernels=true", "train.epochs=48"],
    "linear-lr-4x": ["optim.lr=0.03125", "train.epochs=48"],   # the control for entangled-4x
    # the sandwich trains 3 paths per step (widest, narrowest, one random): a third of the epochs keeps the
    # forward/backward passes near the demo's (the widest path costs more than an average one)
    "sandwich": ["optim.lr=0.03125", "sampling.strategy=sandwich", "train.epochs=4"],
    # progressive release: layers freed from the input on over the first half of the 12 epochs
    "progressive": ["optim.lr=0.03125", "sampling.progressive_epochs=6"],
    "sandwich+entangled": ["optim.lr=0.03125", "sampling.strategy=sandwich", "train.epochs=4",
                           "space.entangled_kernels=true"],
    "progressive+entangled": ["optim.lr=0.03125", "sampling.progressive_epochs=6", "space.entangled_kernels=true"],
    "sandwich+progressive+entangled": ["optim.lr=0.03125", "sampling.strategy=sandwich", "train.epochs=4",
                                       "sampling.progressive_epochs=2", "space.entangled_kernels=true"],
    # the same recipes with another supernet seed (a repeat, and its control without progressive release)
    "progressive+entangled-seed1": ["optim.lr=0.03125", "sampling.progressive_epochs=6",
                                    "space.entangled_kernels=true", "train.seed=1"],
    "entangled-seed1": ["optim.lr=0.03125", "space.entangled_kernels=true", "train.seed=1"],
    "entangled-seed2": ["optim.lr=0.03125", "space.entangled_kernels=true", "train.seed=2"],
    # aligned choices: the Xception choice tied to the ShuffleNet ones, every choice starting alike
    "aligned": ["optim.lr=0.03125", "space.entangled_kernels=true", "space.aligned_choices=true"],
    "aligned-seed1": ["optim.lr=0.03125", "space.entangled_kernels=true", "space.aligned_choices=true",
                      "train.seed=1"],
    "aligned-seed2": ["optim.lr=0.03125", "space.entangled_kernels=true", "space.aligned_choices=true",
                      "train.seed=2"],
}
# aligned supernets learn at this budget: do the other recipes add to them now? (3 supernet seeds each)
_ALIGNED = ["optim.lr=0.03125", "space.entangled_kernels=true", "space.aligned_choices=true"]
for _name, _extra in {"aligned-lr0.1": ["optim.lr=0.1"],
                      "aligned+fair": ["sampling.strategy=fair", "train.epochs=3"],
                      "aligned+progressive": ["sampling.progressive_epochs=6"]}.items():
    for _seed in range(3):
        RECIPES[_name + (f"-seed{_seed}" if _seed else "")] = [*_ALIGNED, *_extra, *([f"train.seed={_seed}"] if _seed else [])]
# six fresh supernet seeds of the default and of the best-looking addition, measured after the choice
for _name, _extra in {"aligned": [], "aligned+progressive": ["sampling.progressive_epochs=6"]}.items():
    for _seed in range(3, 9):
        RECIPES[f"{_name}-seed{_seed}"] = [*_ALIGNED, *_extra, f"train.seed={_seed}"]
# CIFAR-10 (`cifar10-supernet`: batch 128, lr 0.0625 by the linear rule); epochs from --supernet-epochs
RECIPES.update({
    "cifar-independent": ["space.entangled_kernels=false"],
    "cifar-entangled": ["space.entangled_kernels=true"],
    "cifar-entangled-seed1": ["space.entangled_kernels=true", "train.seed=1"],
    "cifar-progressive+entangled": ["space.entangled_kernels=true", "sampling.progressive_epochs=10"],
    # the demo's supernet budget on CIFAR-10 (30 epochs at --budget 1): run without --supernet-epochs
    "cifar-entangled-30ep": ["space.entangled_kernels=true", "train.epochs=30"],
    "cifar-independent-30ep": ["space.entangled_kernels=false", "train.epochs=30"],
    "cifar-independent-30ep-seed1": ["space.entangled_kernels=false", "train.epochs=30", "train.seed=1"],
    "cifar-aligned-30ep": ["space.entangled_kernels=true", "space.aligned_choices=true", "train.epochs=30"],
    "cifar-aligned-30ep-seed1": ["space.entangled_kernels=true", "space.aligned_choices=true", "train.epochs=30",
                                 "train.seed=1"],
    "cifar-aligned": ["space.entangled_kernels=true", "space.aligned_choices=true"],
})
# both supernet configs now entangle and align by default: a recipe that does not ask for one keeps
# it off (the official independent weights), as it was when it was measured
for _overrides in RECIPES.values():
    for _key in ("space.entangled_kernels", "space.aligned_choices"):
        if f"{_key}=true" not in _overrides and f"{_key}=false" not in _overrides:
            _overrides.append(f"{_key}=false")
CONFIGS = {"digits": ("digits-supernet", "digits-retrain"), "cifar10": ("cifar10-supernet", "cifar10-retrain")}

DEMO_BUDGET_RECIPES = ("baseline", "linear-lr", "fair", "entangled", "fair+entangled", "sandwich", "progressive",
                       "sandwich+entangled", "progressive+entangled", "sandwich+progressive+entangled")


def data_overrides(data: str, root: str | None) -> list[str]:
    return [f"data.name={data}", *([f"data.root={root}"] if root else [])]


def bench_space(data: str, space_overrides: list[str]):
    """The space the data's supernet config builds (with ``space.name=...`` when another is ranked)."""
    return build_model(load_config(CONFIGS[data][0], [*data_overrides(data, None), *space_overrides]),
                       dataset_info(data)).space


def standalone_truth(output: Path, archs: int, seeds: int, epochs: int, space_overrides: list[str],
                     data: str = "digits", root: str | None = None,
                     band: tuple[float | None, float | None] = (None, None),
                     truth_seeds: list[int] | None = None) -> Path | None:
    """Train every architecture alone (cached) and write ``ground_truth.json`` (mean of the seeds, or of
    ``truth_seeds`` only: ``ground_truth-seeds3_4_5.json``, a reference independent of seeds 0-2).

    Under torchrun every rank trains its share; only rank 0 writes the file (None elsewhere)."""
    space = bench_space(data, space_overrides)
    chosen = draw_architectures(space, archs, "flops", seed=0, flops_min=band[0], flops_max=band[1])
    job = RankJob(supernet="", output=str(output / "standalone"), standalone=CONFIGS[data][1], seeds=seeds,
                  overrides=[f"train.epochs={epochs}"], data=data, data_root=root, progress=False)
    (output / "standalone").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    accuracies = standalone_accuracies(job, space, chosen)
    if accuracies is None:  # another rank's share is done; rank 0 writes the results
        return None
    chosen_seeds = truth_seeds if truth_seeds is not None else list(range(seeds))
    if max(chosen_seeds) >= seeds:
        raise SystemExit(f"--truth-seeds {chosen_seeds}: only seeds 0-{seeds - 1} are trained (raise --seeds)")
    truth = {arch: sum(values[i] for i in chosen_seeds) / len(chosen_seeds) for arch, values in accuracies.items()}
    if seeds >= 2:  # the noise ceiling: how well one seed ranks the architectures like another
        from itertools import combinations

        from spos.stats.ranking import kendall_tau, rank_statistics

        first, second = [v[0] for v in accuracies.values()], [v[1] for v in accuracies.values()]
        agreement = rank_statistics(first, second)["kendall_tau"]
        print(f"stand-alone seed 0 vs seed 1: Kendall tau {agreement['value']:.2f} "
              f"[{agreement['low']:.2f}, {agreement['high']:.2f}] (a supernet cannot rank better than this)")
        pairs = [kendall_tau([v[i] for v in accuracies.values()], [v[j] for v in accuracies.values()])
                 for i, j in combinations(range(seeds), 2)]
        print(f"stand-alone seeds pairwise: Kendall tau mean {sum(pairs) / len(pairs):.2f} "
              f"({min(pairs):.2f} to {max(pairs):.2f}, {len(pairs)} pairs)")
    name = "ground_truth.json" if truth_seeds is None else f"ground_truth-{truth_suffix(truth_seeds)[1:]}.json"
    path = output / name
    path.write_text(json.dumps(truth, indent=2) + "\n")
    print(f"stand-alone: {archs} architectures x {seeds} seeds, {epochs} epochs of {CONFIGS[data][1]} "
          f"({time.perf_counter() - started:.0f} s this invocation); top-1 from {min(truth.values()):.4f} "
          f"to {max(truth.values()):.4f}")
    return path


def truth_suffix(truth_seeds: list[int] | None) -> str:
    """What tells a reference of chosen seeds apart in file and folder names ('' for all seeds)."""
    return "" if truth_seeds is None else "-seeds" + "_".join(map(str, truth_seeds))


def parse_seeds(text: str) -> list[int]:
    """'3-5' or '3,4,5' -> [3, 4, 5]."""
    if "-" in text:
        low, high = text.split("-")
        return list(range(int(low), int(high) + 1))
    return [int(part) for part in text.split(",")]


def train_supernet(output: Path, name: str, overrides: list[str], epochs: int | None,
                   space_overrides: list[str], data: str = "digits", root: str | None = None) -> Path:
    """Train (or finish) the recipe's supernet; its training seconds are kept in ``done``."""
    folder = output / f"supernet-{name}"
    # one validation path per epoch: the ranking is measured by `spos rank` afterwards, not by the curve
    config = load_config(CONFIGS[data][0], ["validation.paths=1", *data_overrides(data, root), *space_overrides,
                                            *overrides,
                                             *([f"train.epochs={epochs}"] if epochs else [])])
    started = time.perf_counter()
    if not (folder / "done").is_file():
        run_training(config, folder, resume=any((folder / m).exists() for m in RUN_MARKERS), progress=False)
        (folder / "done").write_text(f"{time.perf_counter() - started:.1f}\n")
    return folder


def measure_recipe(output: Path, name: str, overrides: list[str], truth: Path, epochs: int | None,
                   space_overrides: list[str], data: str = "digits", root: str | None = None,
                   suffix: str = "") -> dict:
    """The recipe's row: its paths ranked by hold-out top-1 (the statistics of `spos rank`) and by
    hold-out cross-entropy (`spos rank --score loss`), from one scoring pass."""
    from spos.stats.ranking import rank_statistics

    folder = train_supernet(output, name, overrides, epochs, space_overrides, data, root)
    # time in training steps only (validation excluded), summed over the epochs
    train_seconds = sum(json.loads(line)["train_seconds"] for line in (folder / "metrics.jsonl").open())
    rank_dir = output / f"rank-{name}{suffix}"
    summary = run_rank(RankJob(supernet=str(folder / "last.pt"), ground_truth=str(truth), output=str(rank_dir),
                               bn_batches=5, resume=(rank_dir / "settings.json").exists(), progress=False))
    stats, rows = summary["statistics"], summary["rows"]
    by_loss = rank_statistics([-r["supernet_loss"] for r in rows], [r["standalone_top1"] for r in rows])
    return {"recipe": name, "overrides": overrides, "truth": truth.name, "mean_path_top1": summary["mean_supernet_top1"],
            "tau": stats["kendall_tau"], "tau_loss": by_loss["kendall_tau"], "rho": stats["spearman_rho"]["value"],
            "top3": stats["top_k"].get("3", {}).get("value"), "train_seconds": train_seconds}


def flops_row(output: Path, truth: Path, space_overrides: list[str], data: str = "digits") -> str:
    """The same table row for FLOPs as the predictor: what a supernet has to beat to be worth training."""
    from spos.space.architecture import Architecture
    from spos.space.flops import cost_table
    from spos.stats.ranking import rank_statistics

    space = bench_space(data, space_overrides)
    accuracies = json.loads(truth.read_text())
    flops = [cost_table(space).macs(Architecture.parse(a)) for a in accuracies]
    stats = rank_statistics(flops, list(accuracies.values()))
    tau = stats["kendall_tau"]
    return (f"| (FLOPs as the score) | - | {tau['value']:.2f} [{tau['low']:.2f}, {tau['high']:.2f}] | "
            f"- | {stats['spearman_rho']['value']:.2f} | {stats['top_k']['3']['value']:.2f} | 0 s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=None,
                        help="cache folder (default runs/ranking-bench, runs/ranking-bench-SPACE with --space)")
    parser.add_argument("--space", default=None, help="rank in this space (default: the supernet config's)")
    parser.add_argument("--data", choices=sorted(CONFIGS), default="digits", help="dataset (default digits)")
    parser.add_argument("--data-root", default=None, help="dataset folder (CIFAR-10: the shared subset's)")
    parser.add_argument("--archs", type=int, default=12, help="architectures ranked (default 12)")
    parser.add_argument("--seeds", type=int, default=2, help="stand-alone seeds per architecture (default 2)")
    parser.add_argument("--standalone-epochs", type=int, default=4, help="retraining epochs (default 4)")
    parser.add_argument("--flops-band", type=float, nargs=2, default=(None, None), metavar=("MIN", "MAX"),
                        help="draw the architectures inside this FLOPs window (equal-cost ranking; own --output)")
    parser.add_argument("--truth-seeds", type=parse_seeds, default=None, metavar="SEEDS",
                        help="the reference is the mean of these stand-alone seeds only, e.g. 3-5 (default: all "
                             "--seeds); its own ground-truth file and rank folders")
    parser.add_argument("--supernet-epochs", type=int, default=None, help="override the supernet config's epochs")
    parser.add_argument("--recipes", default=",".join(DEMO_BUDGET_RECIPES),
                        help=f"comma-separated, from {', '.join(RECIPES)} (default: all at the demo's budget)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--supernets-only", action="store_true",
                        help="only train the recipes' supernets (e.g. beside a process training the stand-alone runs)")
    parser.add_argument("--standalone-only", action="store_true",
                        help="only train the stand-alone runs and write ground_truth.json (torchrun shares them out)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    suffix = "".join(f"-{part}" for part in (args.space, None if args.data == "digits" else args.data) if part)
    output = Path(args.output or f"runs/ranking-bench{suffix}")
    space_overrides = [f"space.name={args.space}"] if args.space else []
    data = (args.data, args.data_root)
    if args.supernets_only:
        for name in args.recipes.split(","):
            folder = train_supernet(output, name, RECIPES[name], args.supernet_epochs, space_overrides, *data)
            print(f"{name}: supernet trained in {float((folder / 'done').read_text()):.0f} s", flush=True)
        return
    truth = standalone_truth(output, args.archs, args.seeds, args.standalone_epochs, space_overrides, *data,
                             band=tuple(args.flops_band), truth_seeds=args.truth_seeds)
    if truth is None or args.standalone_only:
        return
    print(f"\nreference: {truth.name}")
    print("| recipe | mean path top-1 | Kendall tau [95% CI] | by cross-entropy | Spearman | top-3 overlap | "
          "supernet time |")
    print("|---|---|---|---|---|---|---|")
    print(flops_row(output, truth, space_overrides, args.data), flush=True)
    for name in args.recipes.split(","):
        row = measure_recipe(output, name, RECIPES[name], truth, args.supernet_epochs, space_overrides, *data,
                             suffix=truth_suffix(args.truth_seeds))
        with open(output / "results.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")
        tau = row["tau"]
        by_loss = row["tau_loss"]
        print(f"| {name} | {100 * row['mean_path_top1']:.1f}% | {tau['value']:.2f} [{tau['low']:.2f}, "
              f"{tau['high']:.2f}] | {by_loss['value']:.2f} [{by_loss['low']:.2f}, {by_loss['high']:.2f}] | "
              f"{row['rho']:.2f} | {row['top3']:.2f} | {row['train_seconds']:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
