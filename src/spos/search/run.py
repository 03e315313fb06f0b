"""The `spos search` job: a supernet, data, limits and an algorithm in; history, best, front and plots out."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from spos.store import checkpoint
from spos.io import files
from spos.errors import UserError
from spos.space.flops import cost_table
from spos.io.schema import FINITE, MayBeMissing, fits, read_json
from spos.search.engine import SearchConfig
from spos.space.architecture import Architecture, canonical_mode, save_architecture
from spos.space.searchspace import SearchSpace

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


class GeneMap:
    """Maps the engine's genes to architectures: block-only search fixes channels at scale 1.0,
    channel-only search fixes blocks at 3x3, and the engine sees one choice for fixed genes."""

    def __init__(self, space: SearchSpace, mode: str) -> None:
        self.space, self.mode = space, canonical_mode(mode)
        n = space.num_layers
        self.counts = (list(space.op_counts) if self.mode != "channel" else [1] * n) + \
            [space.num_channels if self.mode != "block" else 1] * n

    def arch(self, genes) -> Architecture:
        n = self.space.num_layers
        blocks = genes[:n] if self.mode != "channel" else (0,) * n
        channels = genes[n:] if self.mode != "block" else (self.space.default_channel,) * n
        return Architecture(tuple(blocks), tuple(channels))

    def full_genes(self, genes) -> tuple[int, ...]:
        return self.arch(genes).genes

    def genes_of(self, arch: Architecture) -> tuple[int, ...]:
        """The engine's genes of ``arch`` (the inverse of `arch` on the genes this mode searches)."""
        n = self.space.num_layers
        return ((arch.blocks if self.mode != "channel" else (0,) * n) +
                (arch.channels if self.mode != "block" else (0,) * n))

    def canonical(self):
        """The engine's ``canonical``: genes of twins (`spos.space.canonical`) to their representative's, so equal
        networks are one candidate; None in a space without twins."""
        from spos.space.canonical import canonicalizer

        canonicalize = canonicalizer(self.space)
        return None if canonicalize.trivial else (lambda genes: self.genes_of(canonicalize(self.arch(genes))))

    def scoring(self, scorer):
        """The engine's ``score_fn`` and ``score_many`` for an architecture scorer, through `arch`."""
        return (lambda genes: scorer(self.arch(genes)),
                lambda candidates: scorer.score_many([self.arch(genes) for genes in candidates]))


LATENCY_LOG = "latencies.jsonl"
#: A line of latencies.jsonl, and the part of a history.jsonl record a resume reads its latency from.
LATENCY_RECORD = {"arch": str, "latency": FINITE}


class MeasuredLatencies:
    """Each architecture's latency, timed once on this device and kept: every timing goes into
    OUTPUT/latencies.jsonl (`record_into`), those of candidates refused for their latency included,
    because those refusals decide what the random stream draws next. A resume starts from the killed
    run's timings (`recorded_latencies`), so it draws what that run drew however busy the machine is
    now, and times only architectures that run never timed."""

    def __init__(self, space: SearchSpace, device, recorded: dict[str, float]) -> None:
        from spos.deploy.latency import measure_model

        self.space, self.device, self.measure_model = space, str(device), measure_model
        self.timings = dict(recorded)  # by the architecture's text form, as history.jsonl writes it
        self.unwritten: list[str] = []  # timed before the output folder is ready (the feasibility check)
        self.log = None

    def __call__(self, arch: Architecture) -> float:
        key = str(arch)
        if key not in self.timings:
            from spos.nn.fixed import FixedNet

            net = FixedNet(self.space, arch)
            stats = self.measure_model(net, self.space.layout.input_shape, warmup=3, repeats=10, device=self.device)
            self.timings[key] = stats.median_ms
            self.unwritten.append(key)
            self._write_unwritten()
        return self.timings[key]

    def record_into(self, path: Path) -> None:
        """Append every timing, those taken so far first, to ``path`` (after job.json is written, so a
        folder holding latencies.jsonl always holds the job they belong to)."""
        self.log = files.AppendLog(path)
        self._write_unwritten()

    def _write_unwritten(self) -> None:
        if self.log is not None:
            for key in self.unwritten:
                self.log.write_line(json.dumps({"arch": key, "latency": self.timings[key]}))
            self.unwritten.clear()

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def recorded_latencies(output: Path, history: list[dict]) -> dict[str, float]:
    """The latencies a killed search measured, by architecture: those of its scored candidates
    (history.jsonl) and every one in latencies.jsonl (refused candidates' too); damaged lines of the
    latter are dropped, and their architectures timed again."""
    from spos.search.engine import read_log

    timings = {record["arch"]: float(record["latency"]) for record in history if fits(record, LATENCY_RECORD)}
    path = output / LATENCY_LOG
    if path.is_file():
        records = read_log(path, LATENCY_RECORD, "their architectures are timed again")
        timings.update({record["arch"]: float(record["latency"]) for record in records})
    if timings:
        log.info(f"resuming with {len(timings)} latencies measured before the resume: those are not timed again")
    return timings


def build_measures(job: SearchJob, space: SearchSpace, genes_to_arch, device,
                   latencies: MeasuredLatencies | None = None) -> dict:
    """Cheap per-candidate measures: analytic FLOPs and params, latency from a table or, where the job
    needs latency and has no table, from ``latencies`` (one with no timings when None)."""
    table = cost_table(space)
    measures = {"flops": lambda g: float(table.macs(genes_to_arch(g))),
                "params": lambda g: float(table.params(genes_to_arch(g)))}
    wants_latency = job.latency_max is not None or "latency" in job.objectives or job.latency_table
    if wants_latency:
        if job.latency_table:
            from spos.deploy.latency import load_latency_table

            latency_table = load_latency_table(job.latency_table)
            differences = latency_table.differences(space)
            if differences:
                raise UserError(f"latency table {job.latency_table} was built for another space than this supernet's "
                                f"({'; '.join(differences)}); build one for it with `spos latency table --supernet "
                                f"{job.supernet} --output FILE`")
            error = latency_table.error_text()
            (log.warning if error.startswith("warning") else log.info)(f"latency table {job.latency_table}: {error}")
            measures["latency"] = lambda g: float(latency_table.predict(genes_to_arch(g)))
        else:
            timed = latencies if latencies is not None else MeasuredLatencies(space, device, {})
            measures["latency"] = lambda g: timed(genes_to_arch(g))
    return measures


def measure_once(measures: dict):
    """``measured(genes) -> {name: value}`` of every measure, computed once per candidate: the history,
    the front files and the plots read the same figures."""
    cache: dict = {}

    def measured(genes) -> dict:
        key = tuple(genes)
        if key not in cache:
            cache[key] = {name: measure(genes) for name, measure in measures.items()}
        return cache[key]

    return measured


def build_constraints(job: SearchJob, measures: dict) -> list:
    from spos.search.engine import Constraint

    constraints = []
    if job.flops_max is not None:
        constraints.append(Constraint("flops", measures["flops"], job.flops_max))
    if job.flops_min is not None:
        constraints.append(Constraint("flops_min", lambda g: -measures["flops"](g), -job.flops_min))
    if job.params_max is not None:
        constraints.append(Constraint("params", measures["params"], job.params_max))
    if job.latency_max is not None:
        constraints.append(Constraint("latency", measures["latency"], job.latency_max, measured=not job.latency_table))
    return constraints


HOLDOUT_SOURCES = ("train", "val")
DEFAULT_HOLDOUT = 0.2  # of val with --holdout-from val; of train with --allow-trained-images


def with_supernet_data(job, saved_config: dict):
    """``job`` (a search or rank job) scoring on the supernet's own data unless told otherwise, with the
    hold-out the supernet recorded (``supernet_holdout``: the images it never trained on, carved by its
    training seed) as the default. A job whose scored images the supernet may have trained on is
    refused here (`check_holdout_source`) or, once the data's size is known, by `scoring_sets`."""
    from dataclasses import replace

    data = saved_config.get("data") or {}
    same_data = job.data is None or job.data == data.get("name")
    recorded = (data.get("holdout") or None) if same_data else None
    job = replace(job, data=job.data or data.get("name") or "digits",
                  data_root=job.data_root or (data.get("root") if same_data else None),
                  split_seed=job.split_seed if job.split_seed is not None else
                  (saved_config.get("train", {}).get("seed") if same_data else None), supernet_holdout=recorded)
    check_holdout_source(job, _unknown_holdout(saved_config, same_data, job.data))
    default = recorded if job.holdout_from == "train" and recorded else DEFAULT_HOLDOUT
    return replace(job, holdout=job.holdout if job.holdout is not None else default)


def _unknown_holdout(saved_config: dict, same_data: bool, name: str) -> str:
    """Why a supernet has no hold-out on ``name`` that it is known never to have trained on."""
    if not saved_config:
        return "records no training config (as a converted official checkpoint), so nothing says which images it saw"
    if not same_data:
        return f"was trained on {saved_config['data'].get('name')}, so nothing says which {name} images it saw"
    return f"was trained on every {name} training image (data.holdout 0)"


def check_holdout_source(job, why: str) -> None:
    """Refuse, before any data is read, a job that would score on a hold-out carved from training images
    its supernet may have trained on (``why`` says why no hold-out of the supernet's applies)."""
    if job.holdout_from not in HOLDOUT_SOURCES:
        raise UserError(f"--holdout-from {job.holdout_from!r}: use train or val")
    split = getattr(job, "split", "holdout")  # a rank job scores the hold-out split only
    if split == "val" and job.holdout_from == "val":
        raise UserError("--split val scores the whole validation split and --holdout-from val a part of it; "
                        "give one of the two")
    if split == "val" or job.holdout_from == "val" or job.supernet_holdout or job.allow_trained_images:
        return
    raise UserError(f"the {_network(job)} {job.supernet} {why}: a hold-out carved from the {job.data} training "
                    "images would score it on images it trained on; pass --holdout-from val to score on part of "
                    "the validation split, or --allow-trained-images to score on training images anyway")


def _network(job) -> str:
    """What the hold-out rule's messages call ``job``'s checkpoint (a rank job's is always a supernet)."""
    return getattr(job, "network", "supernet")


@dataclass
class ScoringSets:
    train: object  # the supernet's training split: BN is recalibrated on it
    scored: object  # the images candidates are scored on
    record: dict  # which images those are and whether the supernet trained on them, for the outputs


def scoring_sets(job: SearchJob, space: SearchSpace, convention=None) -> ScoringSets:
    """The training split to recalibrate on and the images to score (`with_supernet_data` settled the
    job): the supernet's hold-out or a seeded part of it, the validation split or a part of it, or, with
    ``allow_trained_images`` only, a hold-out carved from images the supernet trained on."""
    from spos.data.datasets import carve, holdout_count

    from_train = job.split == "holdout" and job.holdout_from == "train"
    if from_train and not job.supernet_holdout:
        splits = _build_splits(job, space, convention, job.holdout)
        return _scoring(job, splits.train, splits.holdout, False, "training images, asked for with "
                        f"--allow-trained-images: the {_network(job)} records no hold-out, so it trained on them")
    splits = _build_splits(job, space, convention, job.supernet_holdout or 0)  # the supernet's own train split
    if job.split == "val":
        log.warning("warning: scoring candidates on the val/test split: the search then overfits the set you "
                    "report on; use --split holdout")
        return _scoring(job, splits.train, splits.val, True, "the validation split, which training never reads")
    if job.holdout_from == "val":
        return _scoring(job, splits.train, carve(splits.val, job.holdout, job.seed), True,
                        f"a part of the validation split drawn by seed {job.seed}; training never reads it")
    held, total = len(splits.holdout), len(splits.train) + len(splits.holdout)
    wanted = holdout_count(job.holdout, total)
    own = f"the {_network(job)}'s hold-out (data.holdout {job.supernet_holdout}, seed {job.split_seed})"
    if wanted == held:
        return _scoring(job, splits.train, splits.holdout, True, own)
    if wanted < held:
        return _scoring(job, splits.train, carve(splits.holdout, wanted, job.seed), True,
                        f"{wanted} of the {held} images of {own}, drawn by seed {job.seed}")
    if not job.allow_trained_images:
        raise UserError(f"--holdout {job.holdout} asks for {wanted} images but the {_network(job)} held out {held} "
                        f"(data.holdout {job.supernet_holdout}): it trained on the other {wanted - held}; give "
                        f"--holdout {held} or fewer (or omit it), or pass --allow-trained-images")
    larger = _build_splits(job, space, convention, job.holdout)
    return _scoring(job, larger.train, larger.holdout, False, f"{own} and {wanted - held} images it trained "
                    "on, asked for with --allow-trained-images")


def _build_splits(job: SearchJob, space: SearchSpace, convention, holdout):
    from spos.data.datasets import build_datasets

    splits = build_datasets(job.data, job.data_root, download=job.download, holdout=holdout,
                            seed=job.seed if job.split_seed is None else job.split_seed,
                            input_size=space.input_size, num_classes=space.num_classes, convention=convention)
    splits.info.check_fits(space)
    return splits


def _scoring(job: SearchJob, train, scored, unseen: bool, basis: str) -> ScoringSets:
    """`ScoringSets` with its record: what `spos search` and `spos rank` write about the images they scored."""
    images = len(scored) if job.eval_batches is None else min(len(scored), job.eval_batches * job.batch_size)
    held = job.split != "val"
    record = scored_images_record(job.data, job.split, job.holdout_from if held else None,
                                  job.holdout if held else None, images, unseen, basis)
    return ScoringSets(train, scored, record)


def scored_images_record(data: str, split: str, source: str | None, holdout, images: int, unseen: bool,
                         basis: str) -> dict:
    """The ``scored_images`` record (`SCORED_IMAGES`) search, rank and eval write: which images were scored
    and whether the checkpoint trained on them (``unseen_by_supernet``), so no number passes for a hold-out
    one unless it is one."""
    return {"data": data, "split": split, "from": source, "holdout": holdout, "images": images,
            "unseen_by_supernet": unseen, "basis": basis}


def load_scoring_data(job: SearchJob, space: SearchSpace, device, convention=None):
    """(calibration batches, scored batches, the record of `scoring_sets`), on the device."""
    from spos.data.loaders import build_loader
    from spos.search.scoring import materialize
    from spos.nn.calibration import calibration_batches

    sets = scoring_sets(job, space, convention)
    calibration = materialize(calibration_batches(sets.train, job.bn_batches), device)  # as eval and export
    loader = build_loader(sets.scored, batch_size=job.batch_size, train=False, workers=job.workers,
                          device=str(device))
    evaluation = materialize(loader, device, limit=job.eval_batches)
    return calibration, evaluation, sets.record


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
    from spos.search import engine

    history_path = output / "history.jsonl"
    history = engine.read_history(history_path) if job.resume and history_path.exists() else []
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
    from spos.search import engine

    files.remove_stale_temps(output, SEARCH_FILES)
    files.write_text_atomic(json.dumps(fingerprint, indent=2) + "\n", output / JOB_FILE)
    if latencies is not None:
        latencies.record_into(output / LATENCY_LOG)
    return engine.HistoryWriter(output / "history.jsonl")


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
