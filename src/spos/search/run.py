"""The `spos search` job: a supernet, data, limits and an algorithm in; history, best, front and plots out."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from spos.errors import UserError
from spos.io import files
from spos.io.schema import MayBeMissing, read_json
from spos.search.constraints import (
    LATENCY_LOG,
    GeneMap,
    MeasuredLatencies,
    build_constraints,
    build_measures,
    measure_once,
    recorded_latencies,
)
from spos.search.engine import SearchConfig
from spos.search.holdout import load_scoring_data, with_supernet_data
from spos.space.architecture import save_architecture
from spos.space.searchspace import SearchSpace
from spos.store import checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SearchJob(SearchConfig):
    """One ``spos search``: the engine's settings (`SearchConfig`, where their defaults are stated)
    and the supernet, data, limits and outputs around them."""

    supernet: str
    output: str = "runs/search"
    data: str | None = None  # None: the supernet's (see `with_supernet_data`)
    data_root: str | None = None
    download: bool = False
    holdout: float | int | None = None
    holdout_from: str = "train"  # the split the scored hold-out is carved from: train or val
    allow_trained_images: bool = False  # score on training images the supernet may have trained on
    supernet_holdout: float | int | None = None  # the hold-out the supernet recorded (`with_supernet_data`)
    network: str = "supernet"  # what the hold-out rule's messages call the checkpoint (`spos eval`: "network" too)
    split_seed: int | None = None  # the seed that carved the hold-out split; None: ``seed``
    split: str = "holdout"
    batch_size: int = 128
    bn_batches: int = 20
    eval_batches: int | None = None
    score: str = "top1"  # what the search maximises: hold-out top-1, or "loss" (minus the cross-entropy)
    workers: int = 0
    flops_max: float | None = None
    flops_min: float | None = None
    params_max: float | None = None
    latency_max: float | None = None
    latency_table: str | None = None
    algorithm: str = "evolution"
    objectives: list[str] = field(default_factory=list)
    mode: str = "both"
    device: str | None = None
    resume: bool = False
    progress: bool = True
    progress_label: str = "search"  # the bar reads "<label>: generation 3/5, best 17.8%"
    input: str | None = None  # input convention preset; None: the one the supernet checkpoint records
    ema: bool = False  # score the checkpoint's EMA weights (`spos.store.checkpoint.chosen_weights`)

    @property
    def cost_axis(self) -> str:
        """The cost accuracy is traded against (the front of evolution and random search, the scatter's
        x axis): latency when it is limited or an objective, else FLOPs."""
        return "latency" if self.latency_max is not None or "latency" in self.objectives else "flops"

    @property
    def times_latency(self) -> bool:
        """Whether candidates are timed on this device (a latency limit or objective with no table)."""
        return self.cost_axis == "latency" and not self.latency_table


JOB_FILE = "job.json"
SCORED_IMAGES = "scored_images"  # the key of `scoring_sets`' record in job.json, best.json, summary.json, rank.json
SEARCH_MARKERS = ("history.jsonl", JOB_FILE)
# Every file a search writes, for `files.remove_stale_temps` (globs relative to the output folder).
SEARCH_FILES = ("history.jsonl", LATENCY_LOG, JOB_FILE, "summary.json", "best.json", "front/arch-*.json",
                "search_scatter.png", "best_per_generation.png")
# job.json as a resume reads it: an object of saved settings (compared one by one with the new job's)
JOB_RECORD = {"population": MayBeMissing(int)}
# What defines a search: a resume that changes any of these would mix two searches' scores.
# ``generations`` may grow on resume: the search replays its stream and goes on.
FINGERPRINT_FIELDS = ("data", "holdout", "split", "batch_size", "bn_batches", "eval_batches", "flops_max",
                      "flops_min", "params_max", "latency_max", "algorithm", "objectives", "mode", "population",
                      "parents", "mutations", "crossovers", "mutation_prob", "surrogate_pool", "seed")


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def input_fingerprint(value: str | Path | None) -> dict | str | None:
    """What an input is, not how its path was written: a file (a checkpoint, a CIFAR-10 .npz) by its sha256,
    a folder by its resolved path, anything else (a config or dataset name) as given; so a resume from
    another working directory matches, and a replaced file does not."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_file():
        return {"sha256": _sha256(path)}
    return {"folder": str(path.resolve())} if path.is_dir() else str(value)


def job_fingerprint(job: SearchJob) -> dict:
    """The settings and input files (by sha256) that define ``job``'s scores, as JSON data."""
    fingerprint = {name: getattr(job, name) for name in FINGERPRINT_FIELDS}
    fingerprint.update(mutations=job.num_mutations, crossovers=job.num_crossovers)  # what ran, given or not
    if job.input is not None:  # only when given, so searches saved before --input existed still resume
        fingerprint["input"] = job.input
    if job.score != "top1":  # likewise for searches saved before --score existed
        fingerprint["score"] = job.score
    if job.data_root is not None:  # likewise for searches saved before the data root was recorded
        fingerprint["data_root"] = input_fingerprint(job.data_root)
    if job.ema:  # likewise for --ema
        fingerprint["ema"] = True
    if job.holdout_from != "train":  # and for the hold-out rules
        fingerprint["holdout_from"] = job.holdout_from
    if job.allow_trained_images:
        fingerprint["allow_trained_images"] = True
    from spos.store.pretrained import weights_file

    supernet = weights_file(job.supernet)  # a model folder is known by its weights
    fingerprint["supernet_sha256"] = _sha256(supernet) if supernet.is_file() else None
    if job.latency_table:
        fingerprint["latency_table_sha256"] = _sha256(job.latency_table) if Path(job.latency_table).is_file() else None
    return json.loads(json.dumps(fingerprint))  # tuples as lists, as they read back


def _children_counted(saved: dict) -> dict:
    """A saved fingerprint with its children counts as numbers: a job.json written before they were
    recorded resolved holds null for "half the population"."""
    half = saved.get("population", 0) // 2
    return {**saved, **{key: half for key in ("mutations", "crossovers") if key in saved and saved[key] is None}}


def check_resumed_job(output: Path, fingerprint: dict) -> None:
    """Refuse a ``--resume`` whose supernet, seed, data, limits or algorithm differ from the saved job."""
    saved_path = output / JOB_FILE
    if not saved_path.is_file():
        if (output / "history.jsonl").exists():
            raise UserError(f"--resume: {output} holds no {JOB_FILE} (an older spos search), so spos cannot check "
                            "that it is the same search; start a new one in another --output")
        return
    saved = _children_counted(read_json(saved_path, JOB_RECORD, "start a new search in another --output"))
    saved.pop(SCORED_IMAGES, None)  # what the settings chose, recorded beside them
    differing = [f"{key} {saved.get(key)!r} -> {fingerprint.get(key)!r}" for key in dict.fromkeys([*saved, *fingerprint])
                 if saved.get(key) != fingerprint.get(key)]
    if differing:
        raise UserError(f"--resume: {output} holds another search ({'; '.join(differing)}); resume with the same "
                        "settings or choose another --output")


def check_generations(history: list[dict], generations: int, path: Path) -> None:
    """Refuse a resume with fewer generations than its history already holds: its best would be taken from
    the first generations while the history keeps the later ones."""
    reached = max((record.get("generation", 0) for record in history), default=-1) + 1
    if reached > generations:
        raise UserError(f"--resume --generations {generations}: {path} already holds {reached} generations; resume "
                        f"with --generations {reached} or more, or start a new search in another --output")


def run_search(job: SearchJob) -> dict:
    """Run one search, holding OUTPUT/.lock; returns the summary also written to OUTPUT/summary.json."""
    from spos.search.scoring import SCORES

    if job.algorithm not in ("evolution", "random", "nsga2"):
        raise UserError(f"unknown algorithm {job.algorithm!r}; use evolution, random or nsga2")
    if job.score not in SCORES:
        raise UserError(f"--score {job.score}: choose one of {', '.join(SCORES)}")
    output = Path(job.output)
    files.check_output_folder(output, kind="search", resume=job.resume, markers=SEARCH_MARKERS)
    with files.run_lock(output):
        return _run_search(job, output)


def _run_search(job: SearchJob, output: Path) -> dict:
    from spos.search.scoring import SupernetScorer
    from spos.train import distributed

    distributed.init_distributed()  # under torchrun: rank 0 searches, every rank scores a share of each generation
    device = distributed.local_device(job.device)
    state = checkpoint.load_kind(job.supernet, "supernet")
    job = with_supernet_data(job, state.get("config") or {})
    weights = checkpoint.chosen_weights(state, job.ema)
    supernet = checkpoint.build_model(state, prefer_ema=weights == "ema").to(device)
    supernet_top1 = _mean_path_top1(state)
    convention = checkpoint.convention_of(state, job.input)
    del state
    fingerprint = job_fingerprint(job)
    if job.resume:
        check_resumed_job(output, fingerprint)
    space = supernet.space
    genes = GeneMap(space, job.mode)
    # Rank 0 alone decides what to score (limits, candidates): a latency timed on each rank differs between them.
    history = _resumed_history(job, output) if distributed.is_main() else []
    plan = search_plan(job, space, genes, device, _recorded(job, output, history)) if distributed.is_main() else None
    calibration, evaluation, scored_images = load_scoring_data(job, space, device, convention)
    arch_scorer = SupernetScorer(supernet, calibration, evaluation, job.score)
    distributed.barrier()  # every rank has looked at the output folder before rank 0 writes into it
    if not distributed.is_main():
        arch_scorer.serve()  # its share of every generation rank 0 sends, until the search ends
        return {}
    try:
        writer = _prepare_folder(output, {**fingerprint, SCORED_IMAGES: scored_images}, plan.latencies)
        return _search(job, genes, plan, arch_scorer, history, writer, supernet_top1=supernet_top1,
                       scored_images=scored_images)
    finally:
        arch_scorer.stop_serving()


@dataclass
class SearchPlan:
    measures: dict  # name -> genes -> value
    constraints: list
    latencies: MeasuredLatencies | None  # the timings, when the search times candidates


def search_plan(job: SearchJob, space: SearchSpace, genes: GeneMap, device,
                recorded: dict[str, float] | None = None) -> SearchPlan:
    """The measures and constraints of the search, checked before anything is written: the objectives
    are known measures and random draws find candidates within the limits. ``recorded``: latencies
    measured before a resume (`recorded_latencies`), reused rather than timed again."""
    from spos.search import engine

    latencies = MeasuredLatencies(space, device, recorded or {}) if job.times_latency else None
    measures = build_measures(job, space, genes.arch, device, latencies)
    constraints = build_constraints(job, measures)
    for name in job.objectives[1:]:
        if name not in measures:
            raise UserError(f"unknown objective {name!r}; use acc with flops, params or latency")
    engine.check_feasible(genes.counts, constraints, job.seed, job.max_tries)
    return SearchPlan(measures, constraints, latencies)


def _search(job: SearchJob, genes: GeneMap, plan: SearchPlan, arch_scorer, history: list, writer, *,
            supernet_top1: float | None, scored_images: dict) -> dict:
    """The engine's run on rank 0 (or the only process): each candidate into history.jsonl as it is scored,
    then the outputs."""
    from spos.search import engine
    from spos.search.scoring import score_text

    measures, constraints = plan.measures, plan.constraints
    scorer, score_many = genes.scoring(arch_scorer)
    measured = measure_once(measures)

    def on_evaluated(record: dict) -> None:
        writer.write({**record, "arch": str(genes.arch(record["genes"])), **measured(record["genes"])})

    front_cost = measures[job.cost_axis]
    started = time.perf_counter()
    common = dict(history=history, on_evaluated=on_evaluated, progress=job.progress, score_many=score_many,
                  label=job.progress_label, score_text=lambda value: score_text(value, job.score),
                  canonical=genes.canonical())
    if job.algorithm == "nsga2":
        cost_names = job.objectives[1:] or ["flops"]
        result = engine.nsga2_search(genes.counts, scorer, [(n, measures[n]) for n in cost_names], constraints,
                                     job, **common)
    elif job.algorithm == "random":
        result = engine.random_search(genes.counts, scorer, constraints, job, front_cost=front_cost, **common)
    else:
        result = engine.evolution_search(genes.counts, scorer, constraints, job, front_cost=front_cost, **common)
    writer.close()
    if plan.latencies is not None:
        plan.latencies.close()
    elapsed = time.perf_counter() - started
    return write_outputs(job, genes.space, genes, measured, result, elapsed, supernet_top1=supernet_top1,
                         holdout=arch_scorer.measure, scored_images=scored_images)


def _resumed_history(job: SearchJob, output: Path) -> list[dict]:
    """The history a resume continues (none for a new search), checked against --generations."""
    from spos.search.history import read_history

    history_path = output / "history.jsonl"
    history = read_history(history_path) if job.resume and history_path.exists() else []
    if history:
        check_generations(history, job.generations, history_path)
        log.info(f"resuming from {history_path}: {len(history)} candidates already scored")
    return history


def _recorded(job: SearchJob, output: Path, history: list[dict]) -> dict[str, float]:
    """The latencies a resumed search that times candidates reuses (`recorded_latencies`); none otherwise."""
    return recorded_latencies(output, history) if job.resume and job.times_latency else {}


def _prepare_folder(output: Path, fingerprint: dict, latencies: MeasuredLatencies | None):
    """Rank 0's folder made ready: stale temporary files removed, job.json written, then the timings
    (``latencies``) recording into latencies.jsonl; returns history.jsonl opened for appending."""
    from spos.search.history import HistoryWriter

    files.remove_stale_temps(output, SEARCH_FILES)
    files.write_text_atomic(json.dumps(fingerprint, indent=2) + "\n", output / JOB_FILE)
    if latencies is not None:
        latencies.record_into(output / LATENCY_LOG)
    return HistoryWriter(output / "history.jsonl")


def _mean_path_top1(state: dict) -> float | None:
    """The supernet's last validation score (mean top-1 of its validation paths), when it was trained by spos."""
    history = state.get("history") or []
    return history[-1].get("val_top1") if history else None


def write_outputs(job: SearchJob, space, genes: GeneMap, measured, result, elapsed: float, *,
                  supernet_top1: float | None = None, holdout=None, scored_images: dict | None = None) -> dict:
    """best.json, front/*.json, the plots and summary.json; ``measured`` is `measure_once`'s, ``scored_images``
    `scoring_sets`' record of the images scored, written into best.json and summary.json.

    The files' ``accuracy`` is always hold-out top-1: a search by loss measures it (``holdout``:
    arch -> `HoldoutMeasure`) for the best architecture and the front, and records the loss beside it."""
    from spos.search import plots

    def reported(record_genes, score: float) -> dict:
        if job.score == "top1":
            return {"accuracy": score}
        measure = holdout(genes.arch(record_genes))
        return {"accuracy": measure.top1, "holdout_loss": measure.loss}

    output = Path(job.output)
    best = genes.arch(result.best_genes)
    best_measures = {**reported(result.best_genes, result.best_score), **measured(result.best_genes)}
    save_architecture(output / "best.json", best, space, **best_measures, score=job.score,
                      **{SCORED_IMAGES: scored_images})
    front_files = [str(save_architecture(output / "front" / f"arch-{i:02d}.json", genes.arch(record["genes"]), space,
                                         **reported(record["genes"], record["score"]), **measured(record["genes"]),
                                         score=job.score))
                   for i, record in enumerate(result.front)]
    records = [{**r, **measured(r["genes"])} for r in result.records]
    front = [{**r, **measured(r["genes"])} for r in result.front]
    best_record = {"score": result.best_score, **best_measures}
    axis = job.cost_axis
    limit = job.latency_max if axis == "latency" else job.flops_max
    scatter = plots.plot_search_scatter(records, axis, output / "search_scatter.png", front=front,
                                        best=best_record, limit=limit, score=job.score)
    curve = plots.plot_best_per_generation(result.best_per_generation, output / "best_per_generation.png",
                                           chance=1 / space.num_classes, supernet_top1=supernet_top1,
                                           score=job.score)
    summary = {
        "best": {"arch": str(best), **best_measures}, "score": job.score, "weights": "ema" if job.ema else "raw",
        "scored": result.num_scored, "seconds": elapsed, "algorithm": job.algorithm,
        "limits": {k: getattr(job, k) for k in ("flops_max", "flops_min", "params_max", "latency_max")
                   if getattr(job, k) is not None}, SCORED_IMAGES: scored_images,
        "files": {"history": str(output / "history.jsonl"), "best": str(output / "best.json"),
                  "front": front_files, "plots": [str(scatter), str(curve)]},
    }
    files.write_text_atomic(json.dumps(summary, indent=2) + "\n", output / "summary.json")
    return summary
