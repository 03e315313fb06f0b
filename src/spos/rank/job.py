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
  `spos.stats.ranking`) and ``rank_scatter.png``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from spos.store import checkpoint
from spos.io import files
from spos.errors import UserError, naming
from spos.space.canonical import canonicalizer, distinct
from spos.space.flops import CostTable, cost_table
from spos.io.schema import MayBeMissing, damaged_lines_text, read_json, read_jsonl
from spos.search.scoring import SCORES
from spos.space.architecture import Architecture, sample_architecture, save_architecture
from spos.space.searchspace import SearchSpace
from spos.train import preemption

log = logging.getLogger(__name__)

SETTINGS = "settings.json"
STANDALONE_LOG = "standalone.jsonl"
SCORES_LOG = "supernet_scores.jsonl"
STRATIFY = ("flops", "none")
POOL_PER_ARCH = 50
MAX_DRAW_ROUNDS = 200  # pools drawn for a narrow FLOPs window before giving up


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
    holdout_from: str = "train"  # the split the scored hold-out is carved from (`spos.search.run.scoring_sets`)
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


# ----------------------------------------------------------------------------------------------
# Which architectures


def flops_spread_pool(space: SearchSpace, size: int, rng: random.Random) -> list[Architecture]:
    """Random paths whose channel choices share a random window per path, so light and heavy
    architectures both occur (uniform paths crowd around the median FLOPs)."""
    pool = []
    for _ in range(size):
        low = rng.randrange(space.num_channels)
        high = rng.randrange(low, space.num_channels)
        blocks = tuple(rng.randrange(count) for count in space.op_counts)
        channels = tuple(rng.randint(low, high) for _ in range(space.num_layers))
        pool.append(Architecture(blocks, channels))
    return pool


def spread_over_flops(candidates: list[Architecture], count: int, table: CostTable) -> list[Architecture]:
    """``count`` distinct candidates, the closest to evenly spaced FLOPs between the lightest and heaviest."""
    unique = list(dict.fromkeys(candidates))
    if count > len(unique):
        raise UserError(f"asked for {count} architectures but only {len(unique)} distinct ones are available")
    flops = [table.macs(arch) for arch in unique]
    low, high = min(flops), max(flops)
    targets = [low + (high - low) * i / max(count - 1, 1) for i in range(count)]
    available = set(range(len(unique)))
    chosen = []
    for target in targets:
        best = min(available, key=lambda j: (abs(flops[j] - target), j))
        available.remove(best)
        chosen.append(unique[best])
    return sorted(chosen, key=table.macs)


def draw_architectures(space: SearchSpace, count: int, stratify: str, seed: int,
                       flops_min: float | None = None, flops_max: float | None = None) -> list[Architecture]:
    """``count`` architectures, spread over the FLOPs range (or uniformly random paths), inside
    [flops_min, flops_max] when given: a narrow window ranks what a constrained search compares."""
    if stratify not in STRATIFY:
        raise UserError(f"--stratify {stratify!r}: use one of {', '.join(STRATIFY)}")
    rng = random.Random(seed)
    table = cost_table(space)
    inside = flops_window(flops_min, flops_max)
    wanted = count if stratify == "none" else POOL_PER_ARCH * count
    found: list[Architecture] = []
    for _ in range(MAX_DRAW_ROUNDS):  # one round when there is no window
        batch = ([sample_architecture(space, rng) for _ in range(count)] if stratify == "none"
                 else flops_spread_pool(space, wanted, rng))
        found += [arch for arch in batch if inside(table.macs(arch))]
        if len(found) >= wanted:
            break
    found = found[:wanted]
    if (flops_min is not None or flops_max is not None) and len(set(found)) < count:
        raise UserError(f"only {len(set(found))} distinct architectures with FLOPs in "
                        f"{_window_text(flops_min, flops_max)} turned up in {MAX_DRAW_ROUNDS} rounds of draws; "
                        "widen --flops-min/--flops-max or ask for fewer --archs")
    if stratify == "none":
        return sorted(dict.fromkeys(found), key=table.macs)
    return spread_over_flops(found, count, table)


def flops_window(low: float | None, high: float | None):
    """A test ``flops -> bool`` for [low, high] (either side open when None)."""
    if low is not None and high is not None and low > high:
        raise UserError(f"--flops-min {low:g} is above --flops-max {high:g}; swap them")
    return lambda flops: (low is None or flops >= low) and (high is None or flops <= high)


def _window_text(low: float | None, high: float | None) -> str:
    return f"[{'-' if low is None else f'{low / 1e6:g}M'}, {'-' if high is None else f'{high / 1e6:g}M'}]"


def read_architecture_list(path: str | Path, space: SearchSpace) -> list[Architecture]:
    """A JSON list (texts ``B,..,B/C,..,C`` or objects with blocks and channels) or one text per line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"architecture list {path} does not exist")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise UserError(f"architecture list {path} is binary; give a JSON list or one 'B,..,B/C,..,C' per "
                        "line") from None
    with naming(f"architecture list {path}"):
        if text.lstrip().startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as error:
                raise UserError(f"invalid JSON ({error.msg} at line {error.lineno})") from None
            archs = [Architecture.from_dict(i) if isinstance(i, dict) else Architecture.parse(str(i), space)
                     for i in items]
        else:
            archs = [Architecture.parse(line, space) for line in text.splitlines()
                     if line.strip() and not line.startswith("#")]
        return [arch.validate(space) for arch in archs]


def read_ground_truth(path: str | Path, space: SearchSpace) -> dict[Architecture, float]:
    """Architecture -> accuracy from JSON (``{"B,../C,..": acc}`` or a list of ``{"arch", "accuracy"}``)
    or CSV (columns ``arch`` and ``accuracy``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ground-truth file {path} does not exist")
    if path.suffix.lower() == ".csv":
        try:
            with open(path, newline="") as handle:
                rows = list(csv.DictReader(handle))
        except (UnicodeDecodeError, csv.Error) as error:
            raise UserError(f"ground-truth file {path} is not a CSV text file ({error}); give columns arch,accuracy "
                            "or a JSON file") from None
        if not rows or not {"arch", "accuracy"} <= set(rows[0]):
            raise UserError(f"ground-truth file {path}: expected a CSV header with columns arch and accuracy")
        pairs = [(row["arch"], row["accuracy"]) for row in rows]
    else:
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UserError(f"ground-truth file {path} is neither CSV (by its name) nor valid JSON: {error}") from None
        if isinstance(data, dict):
            pairs = list(data.items())
        elif isinstance(data, list) and all(isinstance(r, dict) and {"arch", "accuracy"} <= set(r) for r in data):
            pairs = [(r["arch"], r["accuracy"]) for r in data]
        else:
            raise UserError(f"ground-truth file {path}: expected {{\"ARCH\": accuracy}} or a list of "
                            "{\"arch\": ..., \"accuracy\": ...} objects")
    values: dict[Architecture, list[float]] = {}
    canonical = canonicalizer(space)
    for arch_text, accuracy in pairs:
        try:
            value = float(accuracy)
        except (TypeError, ValueError):
            raise UserError(f"ground-truth file {path}: accuracy {accuracy!r} of {arch_text} is not a number") from None
        values.setdefault(canonical(Architecture.parse(str(arch_text)).validate(space)), []).append(value)
    return as_fractions({arch: sum(v) / len(v) for arch, v in values.items()}, f"ground-truth file {path}")


def as_fractions(truth: dict[Architecture, float], where: str) -> dict[Architecture, float]:
    """Accuracies as fractions: values in percent (the largest above 1, none above 100) are divided by 100,
    and the log says so; missing values (NaN) are dropped with a warning; nothing usable is an error."""
    finite = {arch: value for arch, value in truth.items() if math.isfinite(value)}
    if len(finite) < len(truth):
        log.warning(f"warning: {where}: {len(truth) - len(finite)} of {len(truth)} accuracies are not numbers "
                    "(NaN); those architectures are left out")
    if not finite:
        raise UserError(f"{where} holds no accuracy that is a number; give accuracies as fractions (0.93) or "
                        "percent (93.1)")
    low, high = min(finite.values()), max(finite.values())
    if low < 0 or high > 100:
        raise UserError(f"{where}: accuracies must be fractions (0..1) or percent (0..100), found {low:g}..{high:g}")
    if high > 1:
        log.info(f"{where}: accuracies read as percent (largest {high:g}) and divided by 100")
        return {arch: value / 100 for arch, value in finite.items()}
    log.info(f"{where}: accuracies read as fractions (largest {high:g})")
    return finite


def choose_architectures(job: RankJob, space: SearchSpace, truth: dict[Architecture, float] | None,
                         flops_of=None) -> list[Architecture]:
    """The architectures to rank (twins as one), inside the FLOPs window; ``flops_of`` counts the FLOPs
    the window is in (default: the supernet's space, as drawn)."""
    table = cost_table(space)
    flops_of = flops_of or table.macs
    inside = flops_window(job.flops_min, job.flops_max)
    if job.arch_file:
        archs = [a for a in distinct(read_architecture_list(job.arch_file, space), space) if inside(flops_of(a))]
        missing = [str(a) for a in archs if truth is not None and a not in truth]
        if missing:
            raise UserError(f"{len(missing)} architectures of {job.arch_file} have no accuracy in "
                            f"{job.ground_truth} (first: {missing[0]})")
        return archs
    if truth is not None:
        archs = sorted((a for a in truth if inside(flops_of(a))), key=lambda a: (flops_of(a), a.genes))
        if job.archs is not None and job.archs < len(archs):
            shuffled = random.Random(job.seed).sample(archs, len(archs))  # --seed picks among equals
            if job.stratify == "none":
                return sorted(shuffled[:job.archs], key=flops_of)
            return spread_over_flops(shuffled, job.archs, table)
        return archs
    return distinct(draw_architectures(space, job.archs or 12, job.stratify, job.seed, job.flops_min,
                                       job.flops_max), space)


# ----------------------------------------------------------------------------------------------
# The output folder


# What a resume reads back, each checked where it is read (`spos.io.schema`).
SETTINGS_RECORD = {"job": dict, "architectures": [str]}
SCORE_ROW = {"arch": str, "supernet_top1": float, "supernet_loss": MayBeMissing(float)}  # rows of SCORES_LOG
STANDALONE_ROW = {"index": int, "seed": int, "top1": float}  # rows of the stand-alone logs
# The files rank 0 writes at the top of the output folder, for `files.remove_stale_temps`.
RANK_FILES = (SETTINGS, STANDALONE_LOG, SCORES_LOG, "rank.json", "rank_scatter.png")


def _read_jsonl(path: Path, schema, quiet: bool = False) -> list[dict]:
    """The rows of a log that fit ``schema``; a line cut by a kill or damaged is dropped (with a warning
    unless ``quiet``) and that result measured again."""
    if not path.is_file():
        return []
    rows, damaged, _ = read_jsonl(path, schema)
    if damaged and not quiet:
        log.warning(damaged_lines_text(path, damaged, len(rows), "the dropped results are measured again"))
    return rows


def _append_jsonl(path: Path, row: dict) -> None:
    with files.AppendLog(path) as appended:
        appended.write_line(json.dumps(row))


def _settings(job: RankJob, archs: list[Architecture]) -> dict:
    """What defines the job: its options, with every input file by what it holds (`input_fingerprint`), so a
    resume from another working directory matches and a replaced supernet does not."""
    from spos.store.pretrained import weights_file
    from spos.search.run import input_fingerprint

    asked = {k: v for k, v in asdict(job).items()
             if k not in ("output", "resume", "progress", "device", "split_seed", "score", "flops_windows",
                          "benchmark_file", "supernet_holdout")  # score and windows: statistics only
             and (k, v) not in (("holdout_from", "train"), ("allow_trained_images", False))}  # as jobs saved before
    asked.update({k: input_fingerprint(asked[k]) for k in ("arch_file", "ground_truth", "standalone", "data_root")})
    asked["supernet"] = input_fingerprint(weights_file(job.supernet))  # a model folder is known by its weights
    return {"job": asked, "architectures": [str(a) for a in archs]}


def _saved_architectures(path: Path) -> list[Architecture]:
    saved = read_json(path, SETTINGS_RECORD, "start the rank job again in another --output")
    try:
        return [Architecture.parse(text) for text in saved["architectures"]]
    except UserError as error:
        raise UserError(f"{path} is damaged ({error}); start the rank job again in another --output") from None


def prepare_output(job: RankJob, archs: list[Architecture]) -> list[Architecture]:
    """A new folder gets the settings; ``--resume`` continues only the job that made the folder.

    Under torchrun only rank 0 checks and writes; the other ranks wait for its settings file."""
    from spos.train.distributed import launcher_rank_and_world

    output = Path(job.output)
    saved = output / SETTINGS
    settings = _settings(job, archs)
    if launcher_rank_and_world()[0] != 0:
        _wait_until(saved.is_file, f"waiting for rank 0 to write {saved}", poll=0.5)
        return _saved_architectures(saved)
    if job.resume:
        if not saved.is_file():
            raise UserError(f"--resume: {output} holds no rank job ({SETTINGS} is missing)")
        previous = read_json(saved, SETTINGS_RECORD, "start the rank job again in another --output")
        changed = [k for k, v in settings["job"].items() if previous["job"].get(k) != v]
        if changed:
            raise UserError(f"--resume: {output} was started with other settings ({', '.join(changed)}); "
                            "repeat the first command's options or choose another --output")
        archs = _saved_architectures(saved)
    output.mkdir(parents=True, exist_ok=True)
    files.remove_stale_temps(output, RANK_FILES)
    if not job.resume:
        files.write_text_atomic(json.dumps(settings, indent=2) + "\n", saved)
    return archs


# ----------------------------------------------------------------------------------------------
# Measuring


def scoring_job(job: RankJob):
    """The search job whose scoring a rank job's paths get: the same data, hold-out and batches."""
    from spos.search.run import SearchJob

    return SearchJob(supernet=job.supernet, data=job.data, data_root=job.data_root, holdout=job.holdout,
                     holdout_from=job.holdout_from, allow_trained_images=job.allow_trained_images,
                     supernet_holdout=job.supernet_holdout, batch_size=job.batch_size, bn_batches=job.bn_batches,
                     eval_batches=job.eval_batches, seed=job.seed, split_seed=job.split_seed)


def supernet_measures(job: RankJob, supernet, archs: list[Architecture], device, convention=None) -> dict[str, dict]:
    """Each path's hold-out top-1 and cross-entropy (``{"top1", "loss"}``), logged as measured so a
    resumed job measures only what is missing (rows from before the loss was logged included)."""
    from spos.search.run import load_scoring_data
    from spos.search.scoring import SupernetScorer

    log_path = Path(job.output) / SCORES_LOG
    measures = {row["arch"]: {"top1": row["supernet_top1"], "loss": row["supernet_loss"]}
                for row in _read_jsonl(log_path, SCORE_ROW) if "supernet_loss" in row}
    todo = [arch for arch in archs if str(arch) not in measures]
    if not todo:
        return measures
    calibration, evaluation, _ = load_scoring_data(scoring_job(job), supernet.space, device, convention)
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


def _wait_until(condition, message: str, poll: float = 5.0) -> None:
    """Poll until ``condition()``: torchrun ends every rank when one fails, so this cannot wait forever on a
    dead rank."""
    if not condition():
        log.info(message)
    while not condition():
        preemption.raise_if_stop_agreed("while it waited for another rank")  # a world of one: no collective
        time.sleep(poll)


def standalone_accuracies(job: RankJob, space: SearchSpace, archs: list[Architecture]
                          ) -> dict[str, list[float]] | None:
    """Final val top-1 of every (architecture, seed) run; finished runs are read back, cut ones resumed.

    Under torchrun the runs are shared out over the ranks (run k to rank k mod world size), each trained
    alone, as one process; every rank but 0 returns None once its share is done, rank 0 waits for all."""
    from spos.train import distributed
    from spos.train.loop import RUN_MARKERS, run_training

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


def run_rank(job: RankJob) -> dict:
    """Run (or continue) one rank job; returns the summary written to OUTPUT/rank.json.

    Under torchrun every rank trains a share of the stand-alone runs; rank 0 also scores the paths,
    waits for the others and writes the results (the other ranks return an empty dict)."""
    from spos.search.run import scoring_sets, with_supernet_data
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
    measures = supernet_measures(job, supernet, archs, device, convention)  # the input the supernet was trained on
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
             "standalone_runs": accuracies[str(arch)]} for i, arch in enumerate(archs)]
    if benchmark is not None:
        for row, arch in zip(rows, archs):
            row.update(benchmark_flops=benchmark.entry(arch).flops, benchmark_params=benchmark.entry(arch).params)
    keys = ("benchmark_flops", "benchmark_params") if benchmark is not None else ("flops", "params")
    by_score = {name: score_statistics(job, rows, name, keys) for name in SCORES}
    return write_outputs(job, rows, by_score, time.perf_counter() - started, unit, scored_images)


def score_statistics(job: RankJob, rows: list[dict], score: str, keys: tuple[str, str]) -> dict:
    """Rank statistics of one score (``top1`` or ``loss``) over the rows, whole and per FLOPs window, with
    FLOPs' and params' own tau as the baselines."""
    from spos.stats.ranking import rank_statistics
    from spos.stats.windows import window_report
    from spos.search.scoring import HoldoutMeasure, score_of

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
    """Undefined statistics (every score tied) as JSON null rather than the non-standard NaN."""
    if isinstance(value, dict):
        return {k: _nan_as_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_as_null(v) for v in value]
    return None if isinstance(value, float) and value != value else value
