"""`spos demo`: the whole one-shot pipeline on small data, ending in a report a person reads.

Stages, each the library call a command makes, each writing into its own folder of the report:
train a supernet, search it under a FLOPs limit, check the supernet's ranking against
stand-alone accuracies measured beforehand (`spos rank --ground-truth`; shipped for the digits
default), retrain the winner from scratch, export it to ONNX, and write ``report.md`` with the
figures and plots. The headline is the ranking check, a claim that holds on digits (Kendall tau
above 0 in every demo seed measured); the report says what the run cannot show there: that the
search beats a random pick of the same FLOPs, which differ by less than retraining noise.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shlex
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from importlib import resources
from pathlib import Path

from spos.demo.report import render_report, summarise, write_plots
from spos.errors import UserError
from spos.io import files
from spos.io.schema import dataclass_schema, read_json
from spos.space.architecture import Architecture, sample_architecture
from spos.space.flops import cost_table
from spos.space.searchspace import SearchSpace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs. ``budget`` scales every epoch and generation count (tests use a small one)."""

    data: str = "digits"
    space: str | None = None  # a preset or space file; None: the supernet config's (oneshot)
    data_root: str | None = None
    download: bool = False
    supernet_config: str = "digits-supernet"
    retrain_config: str = "digits-retrain"
    supernet_epochs: int = 12
    retrain_epochs: int = 10
    population: int = 16
    generations: int = 5
    bn_batches: int = 5
    eval_batches: int | None = None  # cap on hold-out batches per candidate (large hold-out sets)
    # candidates scored by hold-out cross-entropy: it ranked architectures better than top-1 in most supernets
    # measured (digits and the CIFAR-10 subset, benchmarks/README.md); the search's own default stays top-1
    score: str = "loss"
    flops_quantile: float = 0.5
    seed: int = 0
    progress: bool = True

    def scaled(self, budget: float) -> DemoSettings:
        if not budget > 0:
            raise UserError(f"--budget {budget}: give a positive factor (1 = the default run)")

        def scale(n: int) -> int:
            return max(1, round(n * budget))

        return replace(self, supernet_epochs=scale(self.supernet_epochs), retrain_epochs=scale(self.retrain_epochs),
                       population=max(4, scale(self.population)), generations=scale(self.generations))


# Sensible sizes per dataset: the embedded digits run in minutes on a laptop; real data gets more.
PRESETS: dict[str, DemoSettings] = {
    "digits": DemoSettings(),
    "synthetic": DemoSettings(data="synthetic"),
    "mnist": DemoSettings(data="mnist", supernet_epochs=6, retrain_epochs=6, population=20, generations=8,
                          bn_batches=10, eval_batches=20),
    "cifar10": DemoSettings(data="cifar10", supernet_config="cifar10-supernet", retrain_config="cifar10-retrain",
                            supernet_epochs=30, retrain_epochs=30, population=30, generations=10, bn_batches=10,
                            eval_batches=20),
    "cifar100": DemoSettings(data="cifar100", supernet_config="cifar10-supernet", retrain_config="cifar10-retrain",
                             supernet_epochs=30, retrain_epochs=30, population=30, generations=10, bn_batches=10,
                            eval_batches=20),
}


def demo_settings(data: str = "digits", *, data_root: str | None = None, download: bool = False,
                  budget: float = 1.0, seed: int = 0, progress: bool = True, space: str | None = None) -> DemoSettings:
    if data not in PRESETS:
        raise UserError(f"the demo runs on {', '.join(PRESETS)}; got {data!r} (for ImageNet use the commands "
                        "in the README)")
    if data in ("mnist", "cifar10", "cifar100") and not data_root:
        raise UserError(f"--data {data} needs --data-root (the folder holding the dataset)")
    if space is not None:
        from spos.space.searchspace import load_space

        load_space(space)  # an unknown name or a bad file stops here, before anything runs
    root = str(Path(data_root).expanduser().absolute()) if data_root else None  # a resume may run from elsewhere
    return replace(PRESETS[data], data_root=root, download=download, seed=seed, space=space,
                   progress=progress).scaled(budget)


def default_output(base: str | Path = "runs") -> Path:
    """``runs/demo``, or ``runs/demo-2``, ``-3``... so a second demo never touches the first."""
    base = Path(base)
    candidate, n = base / "demo", 1
    while candidate.exists():
        n += 1
        candidate = base / f"demo-{n}"
    return candidate


# -- stages ------------------------------------------------------------------------------------------

def stage_overrides(settings: DemoSettings, stage: str, extra: list[str] | None = None) -> list[str]:
    """The ``key=value`` overrides of training stage ``stage`` ("supernet" or "retrain") on its config:
    what the demo runs, and what the report's commands pass as ``--set`` (one list, so they agree)."""
    from spos.train.config import load_config

    epochs = getattr(settings, f"{stage}_epochs")
    overrides = [f"train.epochs={epochs}", f"train.seed={settings.seed}", f"data.name={settings.data}"]
    if settings.data_root:
        overrides.append(f"data.root={settings.data_root}")
    if settings.space:
        overrides.append(f"space.name={settings.space}")
    if stage == "supernet":
        overrides.append(f"validation.bn_batches={settings.bn_batches}")
    overrides += extra or []
    planned = getattr(PRESETS.get(settings.data, DemoSettings()), f"{stage}_epochs")
    return overrides + scaled_schedule(load_config(stage_config(settings, stage), overrides), epochs / planned)


def stage_config(settings: DemoSettings, stage: str) -> str:
    return getattr(settings, f"{stage}_config")


#: Schedule lengths in epochs, and the least each may be: a budget scales them with the epochs.
SCHEDULE_LENGTHS = {"schedule.warmup_epochs": 0, "sampling.channel_warmup_epochs": 0,
                    "sampling.progressive_epochs": 0, "sampling.channel_warmup_step_epochs": 1}


def scaled_schedule(config: dict, factor: float) -> list[str]:
    """Overrides that scale every schedule length of ``config`` by ``factor`` (the run's epochs over
    the planned ones), so a short run keeps each phase's share and still ends its schedule: a
    one-epoch run under a one-epoch warm-up would never leave the warm-up. The decay spans the
    run's steps, so it scales with the epochs by itself. Lengths in whole epochs round down."""
    from spos.train.config import SCHEMA

    if factor == 1:
        return []
    overrides = []
    for key, least in SCHEDULE_LENGTHS.items():
        section, name = key.split(".")
        value = config[section][name]
        if not value:
            continue
        whole = SCHEMA[key][0] == "int"
        scaled = max(least, math.floor(value * factor)) if whole else value * factor
        if scaled != value:
            overrides.append(f"{key}={scaled:.6g}")
    return overrides


def _config(settings: DemoSettings, stage: str, arch: str | None = None) -> dict:
    """The resolved config of a stage, as ``spos train[-supernet] --config C [--arch A] --set ...`` builds it."""
    from spos.train.config import load_config

    sections = {"arch": arch} if arch is not None else {}
    return load_config(stage_config(settings, stage), stage_overrides(settings, stage), **sections)


def search_options(settings: DemoSettings, flops_max: float) -> dict:
    """The search's settings as `spos.search.run.SearchJob` fields (named like ``spos search``'s options):
    what the demo's search runs with and what the report's command passes, from one dict. Data and
    hold-out split are left to the supernet's own, the command's default too."""
    population = settings.population
    return {"flops_max": flops_max, "score": settings.score, "bn_batches": settings.bn_batches,
            "eval_batches": settings.eval_batches, "population": population, "generations": settings.generations,
            "parents": max(2, population // 5), "mutations": population // 2, "crossovers": population // 2,
            "seed": settings.seed}


def rank_options(settings: DemoSettings, reference: Path) -> dict:
    """The ranking check's settings as `spos.rank.job.RankJob` fields (``spos rank``'s options): the
    paths scored exactly as the search scores candidates (same score, BN batches and seed)."""
    return {"ground_truth": str(reference), "score": settings.score, "bn_batches": settings.bn_batches,
            "eval_batches": settings.eval_batches, "seed": settings.seed}


def pipeline_commands(settings: DemoSettings, flops_max: float, reference: Path | None) -> list[list[str]]:
    """The commands that do what the demo did, run in an empty folder: built from the overrides and
    options the demo's stages ran with."""
    def sets(overrides: list[str]) -> list[str]:
        return [part for override in overrides for part in ("--set", override)]

    def options(values: dict) -> list[str]:
        return [part for key, value in values.items() if value is not None
                for part in (f"--{key.replace('_', '-')}", repr(value) if isinstance(value, float) else str(value))]

    rank = [["spos", "rank", "--supernet", "supernet/last.pt", *options(rank_options(settings, reference)),
             "--output", "rank"]] if reference is not None else []
    return [["spos", "train-supernet", "--config", settings.supernet_config,
             *sets(stage_overrides(settings, "supernet")), "--output", "supernet"],
            ["spos", "search", "--supernet", "supernet/last.pt", *options(search_options(settings, flops_max)),
             "--output", "search"],
            *rank,
            ["spos", "train", "--config", settings.retrain_config, "--arch", BEST_FILE,
             *sets(stage_overrides(settings, "retrain")), "--output", "retrain-best"],
            ["spos", "export", "retrain-best/best.pt", "--format", "onnx", "--output", "best.onnx"]]


BEST_FILE = "search/best.json"  # the searched architecture, relative to the report folder


@dataclass(frozen=True)
class Reference:
    """Stand-alone accuracies measured beforehand, in `spos rank --ground-truth`'s format (spos/demo/references)."""

    file: str
    epochs: int  # of the retraining config, per run
    measured: str  # how, in words

    @property
    def path(self) -> Path:
        return Path(str(resources.files("spos.demo") / "references" / self.file))


#: (data, space name, the supernet config's width_mult) -> its reference. On digits the data split is
#: fixed, so one measurement serves every run.
REFERENCES = {
    ("digits", "oneshot", 0.25): Reference(
        "digits-oneshot.json", 10, "12 architectures spread over FLOPs, each trained alone with digits-retrain for "
        "10 epochs with 3 seeds (the median), measured once beforehand (benchmarks/README.md)"),
}


def reference_for(settings: DemoSettings, supernet_config: dict) -> Reference | None:
    """The shipped reference for this demo's data and supernet space; None if there is none."""
    space = supernet_config["space"]
    return REFERENCES.get((settings.data, space["name"], space["width_mult"]))


def flops_limit(space: SearchSpace, quantile: float, seed: int, samples: int = 2000) -> float:
    """The FLOPs of the ``quantile`` of uniformly random architectures: a limit that binds."""
    table, rng = cost_table(space), random.Random(seed)
    flops = sorted(table.macs(sample_architecture(space, rng)) for _ in range(samples))
    return float(flops[min(int(quantile * samples), samples - 1)])


@dataclass
class StageTimes:
    supernet: float = 0.0
    search: float = 0.0
    ranking: float = 0.0
    retrain: float = 0.0
    export: float = 0.0

    @property
    def total(self) -> float:
        return sum(asdict(self).values())


SETTINGS_FILE = "demo.json"
TIMES_FILE = "times.json"  # seconds per stage, summed over every invocation of a resumed demo


def _load_times(output: Path) -> StageTimes:
    """The stage times of the invocations before this one (none for a new demo)."""
    path = output / TIMES_FILE
    if not path.is_file():
        return StageTimes()
    try:
        data = json.loads(path.read_text())
        if not (isinstance(data, dict) and set(data) <= set(asdict(StageTimes()))
                and all(isinstance(v, (int, float)) and v >= 0 for v in data.values())):
            raise ValueError("expected seconds >= 0 for each of " + ", ".join(asdict(StageTimes())))
    except ValueError as error:
        raise UserError(f"{path} is damaged ({error}); delete it to count the times from this run on") from None
    return StageTimes(**data)


def _check_new_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file; give a folder (new or empty)")
    if files.folder_contents(output):
        raise UserError(f"{output} is not empty; pass --resume to continue the demo in it, or choose another "
                        "--output (the demo never overwrites a run)")


# Every file the demo writes at the top of its folder (each stage's folder is its own run), for
# `files.remove_stale_temps`.
DEMO_FILES = (SETTINGS_FILE, TIMES_FILE, "summary.json", "report.md", "best.onnx", "training_curves.png",
              "best_architecture.png")


def check_stage_configs(settings: DemoSettings) -> None:
    """Both training configs the settings make load and pass their checks (a negative --seed stops here)."""
    _config(settings, "supernet")
    _config(settings, "retrain")


def _saved_settings(saved: Path, progress: bool) -> DemoSettings:
    """The settings a demo saved, checked like the ones given on the command line."""
    remedy = "start a new demo in another --output"
    data = read_json(saved, dataclass_schema(DemoSettings), remedy)
    settings = DemoSettings(**{f.name: data[f.name] for f in fields(DemoSettings) if f.name in data})
    try:
        check_stage_configs(settings)
    except UserError as error:
        raise UserError(f"{saved} holds settings the demo cannot run ({error}); {remedy}") from None
    return replace(settings, progress=progress)


def _prepare_output(settings: DemoSettings, output: Path, resume: bool) -> DemoSettings:
    """A new or empty folder gets the settings written, once they are known to run; ``resume`` reads them back."""
    saved = output / SETTINGS_FILE
    if resume:
        if not saved.is_file():
            raise UserError(f"--resume: {output} holds no demo ({SETTINGS_FILE} is missing)")
        settings = _saved_settings(saved, settings.progress)
        files.remove_stale_temps(output, DEMO_FILES)
        return settings
    _check_new_output(output)
    check_stage_configs(settings)
    files.write_text_atomic(json.dumps(asdict(settings), indent=2) + "\n", saved)
    return settings


def run_demo(settings: DemoSettings, output: str | Path, *, resume: bool = False) -> dict:
    """Run every stage into ``output`` (new or empty); returns the summary.

    With ``resume`` a killed demo continues in its folder with its saved settings: finished
    stages are read back, a stage cut short resumes from its last checkpoint or history line.
    The demo holds OUTPUT/.lock while it runs (each stage's folder has its own).
    """
    output = Path(output)
    if not resume:
        _check_new_output(output)  # before the lock: a refused demo leaves the folder as it was
    with files.run_lock(output):
        return _run_demo(settings, output, resume)


def _run_demo(settings: DemoSettings, output: Path, resume: bool) -> dict:
    from spos.data.datasets import build_datasets

    if resume:
        settings = _prepare_output(settings, output, resume=True)
    # The data loads (or downloads) before a new demo writes anything: a wrong --data-root then
    # leaves no folder behind, and the corrected command runs as it is.
    data = build_datasets(settings.data, settings.data_root, download=settings.download)
    val = data.val
    if not resume:
        settings = _prepare_output(settings, output, resume=False)
    elif (output / "report.md").is_file():  # written last: the demo finished
        log.info(f"the demo in {output} finished before; it is left as it is (report: {output / 'report.md'})")
        return json.loads((output / "summary.json").read_text())
    times = _load_times(output)

    log.info(f"[1/6] training a supernet on {settings.data} for {settings.supernet_epochs} epochs")
    supernet_config = _config(settings, "supernet")
    with _timing(times, "supernet", output):
        supernet_run = _train(settings, supernet_config, output / "supernet")
    space = supernet_run.model.space

    limit = flops_limit(space, settings.flops_quantile, settings.seed)
    log.info(f"[2/6] evolutionary search: population {settings.population}, {settings.generations} generations, "
             f"FLOPs at most {limit / 1e6:.3f}M (the median of random architectures)")
    with _timing(times, "search", output):
        search = _search(settings, output, flops_max=limit)

    reference = reference_for(settings, supernet_config)
    ranking = None
    if reference is not None:
        log.info("[3/6] checking the supernet's ranking against stand-alone accuracies measured beforehand")
        with _timing(times, "ranking", output):
            ranking = ranking_summary(_check_ranking(settings, output, reference.path), reference)
    else:
        log.info(f"[3/6] no stand-alone reference for {settings.data} in the {space.name} space: ranking not checked")

    log.info(f"[4/6] retraining the searched architecture from scratch, {settings.retrain_epochs} epochs")
    with _timing(times, "retrain", output):
        retrained = _train(settings, _config(settings, "retrain", str(output / BEST_FILE)), output / "retrain-best")

    log.info("[5/6] exporting the retrained architecture to ONNX")
    with _timing(times, "export", output):
        exported = export_best(retrained, output / "best.onnx", val, data.info)

    log.info("[6/6] writing the report")
    best = Architecture.parse(search["best"]["arch"])
    summary = summarise(settings, output, space, supernet_run, search, limit, best, ranking, retrained, exported,
                        times, val_images=len(val))
    summary["commands"] = [shlex.join(c) for c in pipeline_commands(settings, limit, reference and reference.path)]
    files.write_text_atomic(json.dumps(summary, indent=2) + "\n", output / "summary.json")
    write_plots(output, space, supernet_run, retrained, best)
    files.write_text_atomic(render_report(summary), output / "report.md")
    return summary


@contextmanager
def _timing(times: StageTimes, stage: str, output: Path):
    """Add the seconds the ``with`` block takes to ``times.<stage>`` and save them, also when it is cut
    short, so a resumed demo reports the time of all its runs. A stage that refuses to run (a
    `UserError`) writes nothing: a refusal leaves the folder as it was."""
    started = time.perf_counter()
    refused = False
    try:
        yield
    except UserError:
        refused = True
        raise
    finally:
        if not refused:
            setattr(times, stage, getattr(times, stage) + time.perf_counter() - started)
            files.write_text_atomic(json.dumps(asdict(times)) + "\n", output / TIMES_FILE)


def _train(settings: DemoSettings, config: dict, folder: Path):
    """One training stage; a folder with a run in it (a killed demo) is resumed."""
    from spos.train.loop import run_training

    return run_training(config, folder, resume=bool(files.folder_contents(folder)), progress=settings.progress)


def _search(settings: DemoSettings, output: Path, *, flops_max: float) -> dict:
    """The search stage's summary: read back when it finished before, else run (or resumed). It scores
    on the supernet's own data and hold-out split, the images the supernet never trained on."""
    from spos.search.run import SearchJob, run_search

    search_dir = output / "search"
    if (search_dir / "summary.json").is_file():
        return json.loads((search_dir / "summary.json").read_text())
    return run_search(SearchJob(
        supernet=str(output / "supernet" / "last.pt"), output=str(search_dir), **search_options(settings, flops_max),
        progress=settings.progress, progress_label="[2/6] search", resume=bool(files.folder_contents(search_dir))))


def _check_ranking(settings: DemoSettings, output: Path, reference: Path) -> dict:
    """`spos rank` of the reference's architectures on this supernet (its rank.json summary), read back
    when it finished before: each path scored as the search scores candidates, against the accuracy it
    reached trained alone."""
    from spos.rank.job import RankJob, run_rank

    folder = output / "rank"
    if (folder / "rank.json").is_file():
        return json.loads((folder / "rank.json").read_text())
    return run_rank(RankJob(supernet=str(output / "supernet" / "last.pt"), output=str(folder),
                            **rank_options(settings, reference), progress=settings.progress,
                            resume=bool(files.folder_contents(folder))))


def ranking_summary(rank: dict, reference: Reference) -> dict:
    """The ranking check in a few figures: the supernet's Kendall tau and, for scale, that of FLOPs alone."""
    from spos.search.scoring import HoldoutMeasure, score_of
    from spos.stats.ranking import pairs_in_order

    rows = rank["rows"]
    truth = [r["standalone_top1"] for r in rows]
    scores = [score_of(HoldoutMeasure(r["supernet_top1"], r["supernet_loss"]), rank["score"]) for r in rows]
    return {"reference": str(reference.path), "measured": reference.measured, "epochs": reference.epochs,
            "n": len(rows), "score": rank["score"], "pairs_in_order": pairs_in_order(scores, truth),
            "kendall_tau": rank["statistics"]["kendall_tau"], "spearman_rho": rank["statistics"]["spearman_rho"],
            "flops_kendall_tau": rank["baselines"]["flops"], "scatter": f"rank/{Path(rank['files']['scatter']).name}",
            "flops": [min(r["flops"] for r in rows), max(r["flops"] for r in rows)],
            "standalone_top1": [min(truth), max(truth)],
            "rows": [{k: r[k] for k in ("arch", "flops", "standalone_top1")} for r in rows],
            "folder": str(Path(rank["files"]["rank"]).parent)}


def export_best(result, path: Path, val, info):
    """The best epoch's checkpoint (the one the report's figure comes from) as ONNX, checked on val images
    of the dataset ``info`` describes, with the whole preprocessing in its metadata: its raw weights, the
    ones that figure measured (`spos.store.checkpoint.chosen_weights`)."""
    from spos.data.loaders import first_batch
    from spos.data.preprocessing import preprocessing_record
    from spos.deploy.export import export_model
    from spos.store import checkpoint

    state = checkpoint.load_kind(result.output / "best.pt", "fixed")
    model, convention = checkpoint.build_model(state), checkpoint.convention_of(state)
    record = preprocessing_record(info, convention, model.space.input_size, model.space.in_channels)
    return export_model(model, path, first_batch(val, 16), fmt="onnx", convention=convention, preprocessing=record)


__all__ = ['BEST_FILE', 'DEMO_FILES', 'DemoSettings', 'PRESETS', 'REFERENCES', 'Reference', 'SCHEDULE_LENGTHS', 'SETTINGS_FILE', 'StageTimes', 'TIMES_FILE', 'check_stage_configs', 'default_output', 'demo_settings', 'export_best', 'flops_limit', 'log', 'pipeline_commands', 'rank_options', 'ranking_summary', 'reference_for', 'run_demo', 'scaled_schedule', 'search_options', 'stage_config', 'stage_overrides']
