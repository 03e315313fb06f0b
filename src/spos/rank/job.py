"""The `spos rank` job: does a path's accuracy inside the supernet predict its accuracy trained alone?

Architectures spread over the FLOPs range (or given in a file) are scored as supernet paths,
exactly as the search scores candidates (BN recalibrated on training batches, top-1 and
cross-entropy on the hold-out split; ``score`` picks which one ranks), and compared with their accuracy trained alone: either read from a ground-truth
file, or measured here by training each one with a retraining config and K seeds. The output
folder holds:

- ``settings.json``: the architectures and what was asked (a resumed job continues only the same job);
- ``archs/<i>.json``: the architecture files the stand-alone runs train;
- ``standalone/<i>-seed<k>/``: one training run each, resumable (a cut run continues from its
  checkpoint, a finished one is read back from ``standalone.jsonl`` and never trained again);
  under torchrun rank R trains runs R, R + world, ... and logs them in ``standalone.rankR.jsonl``;
- ``supernet_scores.jsonl`` (each path's hold-out top-1 and loss), ``rank.json`` (one row per architecture and the statistics of
  `spos.stats.ranking`) and ``rank_scatter.png``;
- ``proxies.jsonl`` with ``--proxies``: each zero-cost proxy (`spos.rank.proxies`) of each path, extracted from the
  supernet as a network of its own, on one seeded batch of the scored hold-out images; a resume computes only
  the (path, proxy) pairs it does not hold.

Beside the supernet, rank.json's windows report the baselines a user would try instead (FLOPs, fewer params,
more params, depth, the asked proxies), each with its tau and interval and the supernet's paired lead over it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from spos.errors import UserError
from spos.io import files
from spos.rank.choose import _window_text, choose_architectures, read_ground_truth
from spos.rank.folder import (
    PROXIES_LOG,
    PROXY_ROW,
    SCORE_ROW,
    SCORES_LOG,
    SETTINGS,
    STANDALONE_LOG,
    STANDALONE_ROW,
    _append_jsonl,
    _read_jsonl,
    _wait_until,
    prepare_output,
)
from spos.search.scoring import SCORES
from spos.space.architecture import Architecture, save_architecture
from spos.space.flops import cost_table
from spos.space.searchspace import SearchSpace
from spos.store import checkpoint
from spos.train import preemption

log = logging.getLogger(__name__)


@dataclass
class RankJob:
    supernet: str
    output: str = "runs/rank"
    archs: int | None = None
    arch_file: str | None = None
    stratify: str = "flops"
    flops_min: float | None = None  # only architectures in this FLOPs window (drawn, listed or in the truth)
    flops_max: float | None = None
    standalone: str | None = None
    seeds: int = 1
    overrides: list[str] = field(default_factory=list)
    ground_truth: str | None = None
    data: str | None = None
    data_root: str | None = None
    holdout: float | int | None = None
    holdout_from: str = "train"  # the split the scored hold-out is carved from (`spos.search.holdout.scoring_sets`)
    allow_trained_images: bool = False
    supernet_holdout: float | int | None = None  # the hold-out the supernet recorded (`with_supernet_data`)
    batch_size: int = 128
    bn_batches: int = 20
    eval_batches: int | None = None
    seed: int = 0
    bootstrap: int = 1000
    split_seed: int | None = None  # the supernet's training seed, which carved its hold-out split
    score: str = "top1"  # what ranks the paths: hold-out top-1, or "loss" (minus the cross-entropy)
    device: str | None = None
    resume: bool = False
    progress: bool = True
    benchmark: str | None = None  # a tabular benchmark as the truth (`spos.bench.tables`); FLOPs windows in its units
    benchmark_file: str | None = None
    flops_windows: int = 1  # >1: statistics inside that many equal-count FLOPs windows too
    proxies: list[str] = field(default_factory=list)  # zero-cost proxies reported as baselines (`spos.rank.proxies`)


# ----------------------------------------------------------------------------------------------
# Which architectures


# ----------------------------------------------------------------------------------------------
# The output folder


# ----------------------------------------------------------------------------------------------
# Measuring


def scoring_job(job: RankJob):
    """The search job whose scoring a rank job's paths get: the same data, hold-out and batches."""
    from spos.search.run import SearchJob

    return SearchJob(supernet=job.supernet, data=job.data, data_root=job.data_root, holdout=job.holdout,
                     holdout_from=job.holdout_from, allow_trained_images=job.allow_trained_images,
                     supernet_holdout=job.supernet_holdout, batch_size=job.batch_size, bn_batches=job.bn_batches,
                     eval_batches=job.eval_batches, seed=job.seed, split_seed=job.split_seed)


def scoring_data_once(job: RankJob, space: SearchSpace, device, convention=None):
    """A function returning (calibration batches, scored batches), read on its first call only: the scores and
    the proxies share them, and a resume with nothing left to measure reads no data at all."""
    from spos.search.holdout import load_scoring_data

    kept: list = []

    def data() -> tuple[list, list]:
        if not kept:
            kept.extend(load_scoring_data(scoring_job(job), space, device, convention)[:2])
        return kept[0], kept[1]
    return data


def supernet_measures(job: RankJob, supernet, archs: list[Architecture], device, convention=None,
                      data=None) -> dict[str, dict]:
    """Each path's hold-out top-1 and cross-entropy (``{"top1", "loss"}``), logged as measured so a
    resumed job measures only what is missing (rows from before the loss was logged included)."""
    from spos.search.scoring import SupernetScorer

    log_path = Path(job.output) / SCORES_LOG
    measures = {row["arch"]: {"top1": row["supernet_top1"], "loss": row["supernet_loss"]}
                for row in _read_jsonl(log_path, SCORE_ROW) if "supernet_loss" in row}
    todo = [arch for arch in archs if str(arch) not in measures]
    if not todo:
        return measures
    calibration, evaluation = (data or scoring_data_once(job, supernet.space, device, convention))()
    scorer = SupernetScorer(supernet, calibration, evaluation)
    log.info(f"scoring {len(todo):,} supernet paths{f' ({len(measures):,} measured before)' if measures else ''}")
    started = time.perf_counter()
    for done, arch in enumerate(todo, 1):
        preemption.raise_if_stop_agreed(f"between two supernet paths (each one measured so far is in {SCORES_LOG})")
        measure = scorer.measure(arch)
        if done == min(ESTIMATE_AFTER, len(todo)) and len(todo) > done:
            each = (time.perf_counter() - started) / done
            log.info(f"the first {done} paths took {each:.2f} s each: about {_duration(each * len(todo))} for all "
                     f"{len(todo):,} (--archs N ranks fewer)")
        measures[str(arch)] = {"top1": measure.top1, "loss": measure.loss}
        _append_jsonl(log_path, {"arch": str(arch), "supernet_top1": measure.top1, "supernet_loss": measure.loss})
    return measures


ESTIMATE_AFTER = 3  # paths timed before the expected time of the rest is printed


def proxy_batch(evaluation: list, size: int, seed: int) -> tuple:
    """(images, labels): ``size`` of the scored hold-out images (all, when fewer), drawn by ``seed`` once, so
    every path's proxies see the same batch and no image the supernet trained on."""
    import torch

    images = torch.cat([x for x, _ in evaluation])
    labels = torch.cat([y for _, y in evaluation])
    chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:size]
    return images[chosen.to(images.device)], labels[chosen.to(labels.device)]


def proxy_measures(job: RankJob, supernet, archs: list[Architecture], data) -> dict[str, dict[str, float]]:
    """arch text -> {proxy: value} for the job's proxies, each computed on the path extracted from the supernet
    (its weights copied, BN recalibrated on the scoring's calibration batches; the supernet is never changed)
    and logged as computed, so a resumed job computes only the pairs its log does not hold."""
    from spos.rank.proxies import PROXIES

    log_path = Path(job.output) / PROXIES_LOG
    values: dict[str, dict[str, float]] = {}
    for row in _read_jsonl(log_path, PROXY_ROW):
        values.setdefault(row["arch"], {})[row["proxy"]] = row["value"]
    todo = [arch for arch in archs if any(name not in values.get(str(arch), {}) for name in job.proxies)]
    if todo:
        calibration, evaluation = data()
        images, labels = proxy_batch(evaluation, job.batch_size, job.seed)
        log.info(f"zero-cost proxies ({', '.join(job.proxies)}) of {len(todo):,} paths on {len(images)} hold-out "
                 "images")
    for arch in todo:
        network = supernet.extract(arch, calibration)
        for name in job.proxies:
            if name not in values.setdefault(str(arch), {}):
                values[str(arch)][name] = PROXIES[name](network, images, labels)
                _append_jsonl(log_path, {"arch": str(arch), "proxy": name, "value": values[str(arch)][name]})
    return {str(arch): {name: values[str(arch)][name] for name in job.proxies} for arch in archs}


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def standalone_config(job: RankJob, arch_file: Path, seed_offset: int) -> dict:
    from spos.train.config import load_config
    from spos.train.distributed import shared_device

    config = load_config(job.standalone, job.overrides)
    if config["kind"] != "fixed":
        raise UserError(f"--standalone {job.standalone}: a {config['kind']} recipe; give a retraining (fixed) "
                        "config such as digits-retrain")
    data = {"name": job.data, **({"root": job.data_root} if job.data_root else {})}
    return load_config(job.standalone, job.overrides, arch=str(arch_file), data=data,
                       train={"seed": int(config["train"]["seed"]) + seed_offset,
                              "device": str(shared_device(job.device or config["train"]["device"]))})


def _standalone_logs(output: Path, quiet: bool = False) -> dict[tuple[int, int], dict]:
    """Every finished stand-alone run, from rank 0's log and the other ranks' (``standalone.rankR.jsonl``)."""
    rows = [row for path in sorted(output.glob("standalone*.jsonl")) for row in _read_jsonl(path, STANDALONE_ROW,
                                                                                              quiet)]
    return {(row["index"], row["seed"]): row for row in rows}


def standalone_accuracies(job: RankJob, space: SearchSpace, archs: list[Architecture]
                          ) -> dict[str, list[float]] | None:
    """Final val top-1 of every (architecture, seed) run; finished runs are read back, cut ones resumed.

    Under torchrun the runs are shared out over the ranks (run k to rank k mod world size), each trained
    alone, as one process; every rank but 0 returns None once its share is done, rank 0 waits for all."""
    from spos.train import distributed
    from spos.train.loop import run_training
    from spos.train.resume import RUN_MARKERS

    rank, world = distributed.launcher_rank_and_world()
    output = Path(job.output)
    log_path = output / (STANDALONE_LOG if rank == 0 else f"standalone.rank{rank}.jsonl")
    runs = [(index, seed) for index in range(len(archs)) for seed in range(job.seeds)]
    done = _standalone_logs(output)
    for index, seed in runs[rank::world]:
        if (index, seed) in done:
            continue
        preemption.raise_if_stop_agreed(f"between two stand-alone runs (each finished one is in {log_path.name})")
        arch_file = output / "archs" / f"{index}.json"
        if not arch_file.is_file():
            files.remove_stale_temps(output, (f"archs/{index}.json",))  # this rank's own: no other writes it
            save_architecture(arch_file, archs[index], space)
        folder = output / "standalone" / f"{index}-seed{seed}"
        cut = any((folder / marker).exists() for marker in RUN_MARKERS)
        log.info(f"stand-alone run {index + 1}/{len(archs)}, seed {seed + 1}/{job.seeds}: {archs[index]}"
                 f"{' (resuming)' if cut else ''}{f' on rank {rank}' if world > 1 else ''}")
        with distributed.alone():
            result = run_training(standalone_config(job, arch_file, seed), folder, resume=cut,
                                  progress=job.progress and rank == 0)
        _append_jsonl(log_path, {"index": index, "seed": seed, "arch": str(archs[index]),
                                 "top1": result.last["val_top1"], "best_top1": result.best_top1,
                                 "steps": result.last["step"]})
    if rank != 0:
        return None
    _wait_until(lambda: set(runs) <= set(_standalone_logs(output, quiet=True)),
                "waiting for the other ranks' stand-alone runs")
    done = _standalone_logs(output)
    accuracies: dict[str, list[float]] = {}
    for index, seed in runs:
        accuracies.setdefault(str(archs[index]), []).append(done[(index, seed)]["top1"])
    return accuracies


# ----------------------------------------------------------------------------------------------
# The job


def check_job(job: RankJob) -> None:
    if job.ground_truth is None and job.standalone is None and job.benchmark is None:
        raise UserError("give --standalone CONFIG (train each architecture alone), --ground-truth FILE "
                        "(accuracies measured elsewhere) or --benchmark NAME (a table, see `spos bench`)")
    if job.ground_truth is not None and job.standalone is not None:
        raise UserError("--ground-truth replaces stand-alone training; give --ground-truth or --standalone, "
                        "not both")
    if job.archs is not None and job.arch_file is not None:
        raise UserError("--archs draws architectures and --arch-file lists them; give one of the two")
    for name in ("seeds", "bn_batches", "batch_size", "bootstrap"):
        if getattr(job, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if job.archs is not None and job.archs < 3:
        raise UserError(f"--archs {job.archs}: rank statistics need at least 3 architectures")
    if job.score not in SCORES:
        raise UserError(f"--score {job.score}: choose one of {', '.join(SCORES)}")
    if job.benchmark is not None and (job.ground_truth is not None or job.standalone is not None):
        raise UserError("--benchmark is the ground truth; give it without --ground-truth or --standalone")
    if job.flops_windows < 1:
        raise UserError(f"--flops-windows {job.flops_windows}: must be at least 1")
    from spos.rank.proxies import check_proxy_names

    check_proxy_names(job.proxies)


def run_rank(job: RankJob) -> dict:
    """Run (or continue) one rank job; returns the summary written to OUTPUT/rank.json.

    Under torchrun every rank trains a share of the stand-alone runs; rank 0 also scores the paths,
    waits for the others and writes the results (the other ranks return an empty dict)."""
    from spos.search.holdout import scoring_sets, with_supernet_data
    from spos.train.distributed import launcher_rank_and_world, shared_device

    check_job(job)
    started = time.perf_counter()
    saved = checkpoint.load_kind(job.supernet, "supernet")
    job = with_supernet_data(job, saved.get("config") or {})
    device = shared_device(job.device)
    supernet = checkpoint.build_model(saved).to(device)
    space = supernet.space
    benchmark = _benchmark_for(job, space)
    truth = read_ground_truth(job.ground_truth, space) if job.ground_truth else None
    if benchmark is not None:
        truth = {arch: entry.accuracy for arch, entry in benchmark.networks.items()}
    unit = flops_unit(job, space, saved.get("config") or {}, benchmark)
    log.info(unit)
    chosen = choose_architectures(job, space, truth, (lambda a: benchmark.entry(a).flops) if benchmark else None)
    if len(chosen) < 3:
        window = "" if job.flops_min is None and job.flops_max is None else \
            f" with FLOPs in {_window_text(job.flops_min, job.flops_max)}"
        raise UserError(f"rank statistics need at least 3 architectures, got {len(chosen)}{window}")
    if launcher_rank_and_world()[0] != 0:  # rank 0 checks and locks the folder; this rank trains its share
        if truth is None:
            standalone_accuracies(job, space, prepare_output(job, chosen))
        return {}
    files.check_output_folder(job.output, kind="rank", resume=job.resume, markers=(SETTINGS,))  # before locking
    convention = checkpoint.convention_of(saved)
    scored_images = scoring_sets(scoring_job(job), space, convention).record  # refused before anything is written
    with files.run_lock(job.output):
        return _measure(job, supernet, space, prepare_output(job, chosen), truth, device, started, convention,
                        benchmark, unit, scored_images)


def _benchmark_for(job: RankJob, space: SearchSpace):
    if job.benchmark is None:
        return None
    from spos.bench.tables import load_benchmark

    benchmark = load_benchmark(job.benchmark, job.benchmark_file)
    benchmark.check_space(space)
    return benchmark


def flops_unit(job: RankJob, space: SearchSpace, config: dict, benchmark=None) -> str:
    """What the FLOPs figures of a rank job count: the supernet's space at its width, or the benchmark's."""
    width = (config.get("space") or {}).get("width_mult")
    at = f"at width x{width:g}" if width is not None else "at the widths its checkpoint holds"
    own = (f"FLOPs are multiply-adds of the supernet's space {space.name} {at}, "
           f"{space.input_size}x{space.input_size} input")
    if benchmark is None:
        return f"{own} (--flops-min/--flops-max and rank.json's flops)"
    return (f"--flops-min/--flops-max and the FLOPs windows are {benchmark.spec.name}'s FLOPs ({benchmark.spec.space} "
            f"at width 1.0; rank.json's benchmark_flops); {own} (rank.json's flops)")


def _measure(job: RankJob, supernet, space: SearchSpace, archs: list[Architecture],
             truth: dict[Architecture, float] | None, device, started: float, convention=None,
             benchmark=None, unit: str = "", scored_images: dict | None = None) -> dict:
    data = scoring_data_once(job, space, device, convention)  # the input the supernet was trained on
    measures = supernet_measures(job, supernet, archs, device, convention, data)
    proxies = proxy_measures(job, supernet, archs, data) if job.proxies else {}
    if benchmark is not None:
        accuracies = {str(arch): list(benchmark.entry(arch).accuracies) for arch in archs}
    elif truth is not None:
        accuracies = {str(arch): [truth[arch]] for arch in archs}
    else:
        accuracies = standalone_accuracies(job, space, archs)
    table = cost_table(space)
    rows = [{"index": i, "arch": str(arch), "flops": table.macs(arch), "params": table.params(arch),
             "supernet_top1": measures[str(arch)]["top1"], "supernet_loss": measures[str(arch)]["loss"],
             "standalone_top1": sum(accuracies[str(arch)]) / len(accuracies[str(arch)]),
             "standalone_runs": accuracies[str(arch)], "depth": depth(arch, space),
             **({"proxies": proxies[str(arch)]} if proxies else {})} for i, arch in enumerate(archs)]
    if benchmark is not None:
        for row, arch in zip(rows, archs):
            row.update(benchmark_flops=benchmark.entry(arch).flops, benchmark_params=benchmark.entry(arch).params)
    keys = ("benchmark_flops", "benchmark_params") if benchmark is not None else ("flops", "params")
    by_score = {name: score_statistics(job, rows, name, keys) for name in SCORES}
    return write_outputs(job, rows, by_score, time.perf_counter() - started, unit, scored_images)


def depth(arch: Architecture, space: SearchSpace) -> int:
    """The layers of ``arch`` that compute something: those whose op is not ``identity`` (the depth baseline)."""
    return sum(name != "identity" for name in arch.op_names(space))


def score_statistics(job: RankJob, rows: list[dict], score: str, keys: tuple[str, str]) -> dict:
    """Rank statistics of one score (``top1`` or ``loss``) over the rows, whole and per FLOPs window, with the
    baselines' tau and the supernet's lead over each per window (``baselines`` keeps FLOPs' and params' tau over
    the whole range, as before)."""
    from spos.search.scoring import HoldoutMeasure, score_of
    from spos.stats.ranking import rank_statistics
    from spos.stats.windows import window_report

    scores = [score_of(HoldoutMeasure(r["supernet_top1"], r["supernet_loss"]), score) for r in rows]
    statistics = rank_statistics(scores, [r["standalone_top1"] for r in rows], samples=job.bootstrap,
                                 seed=job.seed)
    windows = window_report([{**r, "flops": r[keys[0]], "params": r[keys[1]]} for r in rows], scores,
                            job.flops_windows, samples=job.bootstrap, seed=job.seed)
    baselines = {"flops": windows[0]["flops_tau"], "params": windows[0]["params_tau"]} if windows else {}
    return {"statistics": statistics, "baselines": baselines, "windows": windows, "scores": scores}


def write_outputs(job: RankJob, rows: list[dict], by_score: dict, seconds: float, unit: str = "",
                  scored_images: dict | None = None) -> dict:
    from spos.rank.plots import plot_window
    from spos.search import plots

    output = Path(job.output)
    chosen = by_score[job.score]
    suffix = "" if job.score == "top1" else f"_{job.score}"  # one file per score: a --resume by the other keeps it
    scatter = plots.plot_rank_scatter(rows, chosen["statistics"], output / f"rank_scatter{suffix}.png",
                                      score=job.score)
    window_plots = [str(plot_window(rows, chosen["scores"], window,
                                    output / f"rank_window{window['window']}{suffix}.png", score=job.score))
                    for window in chosen["windows"][1:]]
    summary = {
        "supernet": job.supernet, "data": job.data, "holdout": job.holdout, "scored_images": scored_images,
        "truth": {"benchmark": job.benchmark} if job.benchmark else {"ground_truth": job.ground_truth}
        if job.ground_truth else {"standalone": job.standalone, "overrides": job.overrides, "seeds": job.seeds},
        "score": job.score, "mean_supernet_top1": sum(r["supernet_top1"] for r in rows) / len(rows),
        "mean_supernet_loss": sum(r["supernet_loss"] for r in rows) / len(rows),
        "mean_standalone_top1": sum(r["standalone_top1"] for r in rows) / len(rows), "flops_unit": unit,
        "statistics": chosen["statistics"], "baselines": chosen["baselines"], "windows": chosen["windows"],
        "by_score": {name: {k: v for k, v in data.items() if k != "scores"} for name, data in by_score.items()},
        "rows": rows, "seconds": seconds,
        "files": {"rank": str(output / "rank.json"), "scatter": str(scatter), "windows": window_plots},
    }
    files.write_text_atomic(json.dumps(_nan_as_null(summary), indent=2) + "\n", output / "rank.json")
    return summary


def _nan_as_null(value):
    """Undefined statistics (every score tied) and proxies that are not finite (a singular NASWOT kernel) as JSON
    null rather than the non-standard NaN and Infinity."""
    if isinstance(value, dict):
        return {k: _nan_as_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_as_null(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value
