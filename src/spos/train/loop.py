"""One training loop for the supernet and for a fixed network, with checkpoints that resume exactly.

A run writes into a new or empty output folder (or, with ``--resume``, its own earlier run's
folder), holding ``FOLDER/.lock`` for as long as it runs: ``config.yaml`` (the resolved config), ``last.pt`` (every
epoch, and every N steps if asked), ``previous.pt`` (the one before, which a resume continues when a
kill came between moving ``last.pt`` aside and writing the new one), ``best.pt``, ``metrics.jsonl``
and ``metrics.csv``. A resume that cannot read or restore its checkpoint stops with one line and
writes nothing (`cannot_resume` says how to go on); it never starts over in a run's folder.

Resuming restores the model, optimizer, EMA, AMP scaler, the path sampler's RNG, the global
RNGs and the position in the data order (which depends on (seed, epoch) only, as each image's
augmentation depends on (seed, epoch, index): the batches before it are not read again), so a run killed
and resumed ends bit-identical on the CPU to one that was never interrupted. The LR schedule is
a function of the step count, so it needs no state of its own.

Writes are ordered so that a kill at any instant, then ``--resume``, gives the files an
uninterrupted run gives: ``best.pt`` before ``last.pt`` (a lost ``best.pt`` is rewritten when
the epoch runs again), and the metrics files are rewritten whole from the history held in the
checkpoint (a row lost to a kill comes back); a mid-epoch checkpoint holds the epoch's running loss
and accuracy sums and seconds, so a resumed epoch reports all its batches and all its time (`EpochTally`).
A resume whose config differs from the saved one in anything but where and how it runs
(`spos.train.config.RESUMABLE_KEYS`) is refused.

Under torchrun the numbers recorded are the whole run's: the train_* sums are added up over the ranks, and
validation reads every image once across them (`spos.data.datasets.EpochShuffle`), so they equal one process's.
Dropout and mixup draw per micro-batch from a stream seeded by its place (`micro_batch_rng`), so N ranks
train as one process accumulating N batches does.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from spos.store import checkpoint
from spos.io import files
from spos.data.datasets import augmentation_seed, build_datasets, build_loader, epoch_batches, recalibration_batches
from spos.errors import UserError
from spos.nn.fewshot import FewShotSuperNet, split_epoch_of
from spos.nn.fixed import FixedNet
from spos.space.flops import readable
from spos.io.schema import MayBeMissing, problem
from spos.space.architecture import Architecture
from spos.space.searchspace import get_space, load_space
from spos.nn.supernet import SuperNet
from spos.train import distributed, preemption
from spos.nn.calibration import recalibrate_bn
from spos.train.config import dump, resume_differences
from spos.train.recipe import (build_ema, build_loss, build_mixup, build_optimizer, build_scheduler, hot_lr_warning,
                               soft_target_loss)
from spos.train.sampler import PathSampler
from spos.space.zoo import resolve_architecture

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    output: Path
    history: list[dict] = field(default_factory=list)
    best_top1: float = 0.0
    model: nn.Module | None = None

    @property
    def last(self) -> dict:
        return self.history[-1] if self.history else {}


# ----------------------------------------------------------------------------------------------
# Evaluation


@torch.inference_mode()
def evaluate(model: nn.Module, loader, *, device="cpu", channels_last: bool = False) -> dict:
    """Top-1, top-5 and cross-entropy of ``model``: a FixedNet, or a supernet path (``supernet.path(arch)``)."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64)
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x).float()
        top = logits.topk(min(5, logits.shape[1]), 1).indices
        totals += torch.tensor([(top[:, 0] == y).sum().item(), (top == y[:, None]).any(1).sum().item(),
                                nn.functional.cross_entropy(logits, y, reduction="sum").item(), y.numel()],
                               dtype=torch.float64)
    totals = distributed.all_reduce_sum(totals)  # under torchrun each rank read its share of every image
    n = max(totals[3].item(), 1.0)
    return {"top1": totals[0].item() / n, "top5": totals[1].item() / n, "loss": totals[2].item() / n}


def validation_paths(space, count: int, seed: int, sampling: dict | None = None) -> list[Architecture]:
    """The same K paths every epoch, so the curve compares like with like, drawn as training draws
    them (the run's sampling mode and FLOPs window; no channel warm-up) but from a seed of their own:
    a block-only supernet is validated on the paths it trains, not on random channels."""
    sampling = sampling or {}
    sampler = PathSampler(space, seed + 10_007, mode=sampling.get("mode", "both"),
                          flops_min=sampling.get("flops_min"), flops_max=sampling.get("flops_max"),
                          flops_bins=sampling.get("flops_bins"))
    return [sampler.sample() for _ in range(count)]


# ----------------------------------------------------------------------------------------------
# Building a run


def build_model(config: dict, info) -> nn.Module:
    adapt = dict(input_size=config["space"]["input_size"] or info.input_size, num_classes=info.num_classes,
                 in_channels=info.in_channels, width_mult=config["space"]["width_mult"])
    dropout = config["space"]["dropout"]

    def with_dropout(space):
        return space if dropout is None else space.replace(dropout=float(dropout))

    if config["kind"] == "supernet":
        return checkpoint.build_supernet(with_dropout(get_space(config["space"]["name"], **adapt)),
                                         entangled_kernels=bool(config["space"]["entangled_kernels"]),
                                         aligned_choices=bool(config["space"]["aligned_choices"]),
                                         few_shot_layers=config["sampling"]["few_shot_layers"])
    if not config["arch"]:
        raise UserError("a fixed-network run needs an architecture: --arch NAME_OR_FILE (or arch: in the config)")
    arch, space = resolve_architecture(str(config["arch"]), default_space=config["space"]["name"], **adapt)
    # An architecture file searched on other data keeps its choices and widths, adapted to this data.
    space = space.adapt(input_size=adapt["input_size"], num_classes=info.num_classes, in_channels=info.in_channels)
    return FixedNet(with_dropout(space), arch)


def width_note(config: dict, space) -> str | None:
    """What the config's ``space.width_mult`` did to the space's widths, or None at 1: a space file of
    one's own run with a shipped config (``digits-supernet`` narrows to 0.25) is otherwise narrowed
    without a word."""
    mult = config["space"]["width_mult"]
    declared = load_space(config["space"]["name"])
    if mult == 1 or declared.name != space.name:  # a fixed net whose architecture file brought its own space
        return None

    def widths(s) -> str:
        return "/".join(str(w) for w in (s.stem_width, *s.stage_widths, s.last_conv_width))

    return (f"space {space.name}: the config's space.width_mult {mult:g} scales every width (stem, stages, last "
            f"conv: {widths(declared)} -> {widths(space)}); --set space.width_mult=1 keeps the space's own widths")


def postfix_every(log_every: int, batches: int) -> int:
    """Batches between refreshes of the bar's running loss/accuracy: ``train.log_every``, but at
    least ten times an epoch, so the means move on a short epoch (digits has 18 batches)."""
    return max(1, min(log_every, batches // 10))


def _seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def _rng_state() -> dict:
    """The global RNG states as plain data (tensors, ints, lists), loadable with weights_only=True."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, words, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
             "python": [version, list(words), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# What a checkpoint needs to be resumed (a `spos.io.schema` schema), checked where it is read: a damaged or
# hand-made last.pt is one line naming it, not a KeyError in the middle of restoring it.
TRAINING_STATE = {
    "model": dict, "optimizer": {"state": dict, "param_groups": [dict]}, "scaler": dict, "ema": (dict, None),
    "sampler": ({"rng": list, "epoch": int}, None),
    "rng": {"torch": torch.Tensor, "python": list, "cuda": MayBeMissing([torch.Tensor]),
            "numpy": {"name": str, "keys": torch.Tensor, "pos": int, "has_gauss": int, "cached_gaussian": float}},
    "epoch": int, "step": int, "batches_done": int, "best_top1": float, "history": MayBeMissing([dict]),
    "config": dict, "epoch_sums": MayBeMissing(({"loss": torch.Tensor, "correct": torch.Tensor, "seen": int,
                                                 "seconds": MayBeMissing(float),
                                                 "pending": MayBeMissing(torch.Tensor)}, None)),  # at a stop
}


def resume_checkpoint(output: Path) -> Path | None:
    """The checkpoint a resume continues: ``last.pt``, or ``previous.pt`` when a kill came between moving
    ``last.pt`` aside and writing the new one (`Trainer.save`); None when the run was killed before its first."""
    for name in ("last.pt", "previous.pt"):
        if (output / name).exists() or (output / name).is_symlink():
            return output / name
    return None


def cannot_resume(path: Path, why: str) -> str:
    """The one line of a resume that cannot use its checkpoint: it stops, changes nothing, and says how to go on
    (never a silent start from scratch that replaces the run's best.pt)."""
    previous = path.with_name("previous.pt")
    if path.name == "last.pt" and previous.is_file():
        how = (f"to go on from the checkpoint before it, move {previous} to {path} and resume again, or start a "
               "new run in another --output")
    else:
        how = "start a new run in another --output"
    return f"--resume: no usable checkpoint in {path.parent}: {why}; nothing was changed: {how}"


def load_resume_state(output: Path) -> dict | None:
    """The checkpoint `resume_checkpoint` names, checked against `TRAINING_STATE`; a UserError (see
    `cannot_resume`) when it cannot be read or lacks what a resume restores."""
    path = resume_checkpoint(output)
    if path is None:
        return None
    try:
        state = checkpoint.load(path)
    except UserError as error:
        raise UserError(cannot_resume(path, str(error))) from None
    found = problem(state, TRAINING_STATE)
    if found:
        raise UserError(cannot_resume(path, f"{path} is damaged ({found})"))
    return state


RUN_MARKERS = ("last.pt", "previous.pt", "config.yaml")
TRAINING_FILES = ("config.yaml", "last.pt", "previous.pt", "best.pt", "metrics.jsonl", "metrics.csv")  # it writes


def read_resume_state(output: Path, config: dict) -> dict | None:
    """The checkpoint a ``--resume`` continues, once it is known to be the same run.

    None when the run was killed before its first checkpoint (it starts again from the top).
    """
    state = load_resume_state(output)
    if state is not None and state["kind"] != config["kind"]:
        command = "train-supernet" if state["kind"] == "supernet" else "train"
        raise UserError(f"{output} holds a {state['kind']} training run; continue it with `spos {command} --resume`")
    saved_config = state.get("config") if state is not None else _saved_config(output)
    if saved_config is None:
        raise UserError(f"--resume: no usable checkpoint in {output} (last.pt / previous.pt); choose another "
                        "--output to start a new run")
    differences = resume_differences(saved_config, config)
    if state is not None and state["kind"] == "fixed":  # compared by what it is in `Trainer._resume`, not by
        differences = [d for d in differences if not d.startswith("arch ")]  # the path naming its file
    if differences:
        raise UserError(f"--resume: {output} was started with other settings ({'; '.join(differences)}); resume "
                        "with the same settings or start a new run in another --output")
    return state


def _saved_config(output: Path) -> dict | None:
    from spos.train.config import load_config

    return load_config(str(output / "config.yaml")) if (output / "config.yaml").is_file() else None


@dataclass(frozen=True)
class StepCounts:
    """How long a run is: ``accumulate`` batches make a step, and the batches left at an epoch's end one
    more (so ``steps_per_epoch`` rounds up, as the loop steps); ``total_steps`` is ``train.iterations``,
    else ``train.epochs`` epochs of ``steps_per_epoch``; ``epochs`` is how many the loop starts."""

    accumulate: int
    steps_per_epoch: int
    total_steps: int
    epochs: int


def step_counts(train_cfg: dict, batches_per_epoch: int) -> StepCounts:
    accumulate = int(train_cfg["accumulate"])
    per_epoch = max(math.ceil(batches_per_epoch / accumulate), 1)
    iterations = train_cfg["iterations"]
    total = int(iterations) if iterations else int(train_cfg["epochs"]) * per_epoch
    return StepCounts(accumulate, per_epoch, total, math.ceil(total / per_epoch))


def amp_dtype(amp: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp``: None (full precision) off CUDA or when not asked."""
    if not amp or device.type != "cuda":
        return None
    if amp not in ("bf16", "fp16"):
        raise UserError(f"train.amp {amp!r}: use bf16, fp16 or null")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def build_path_sampler(space, config: dict) -> PathSampler:
    """The supernet's training path sampler, as the ``sampling`` section describes it."""
    sampling = config["sampling"]
    return PathSampler(space, config["train"]["seed"], mode=sampling["mode"], flops_min=sampling["flops_min"],
                       flops_max=sampling["flops_max"], flops_bins=sampling["flops_bins"],
                       channel_warmup_epochs=sampling["channel_warmup_epochs"],
                       channel_warmup_step_epochs=sampling["channel_warmup_step_epochs"],
                       strategy=sampling["strategy"], sandwich_paths=sampling["sandwich_paths"],
                       progressive_epochs=sampling["progressive_epochs"])


def micro_batch_seed(seed: int, epoch: int, place: int) -> int:
    """The seed of the random draws (dropout, mixup) of micro-batch ``place`` of an epoch, where ``place``
    counts the epoch's micro-batches over all ranks (`spos.data.datasets.TensorBatches`): rank r's batch b under
    torchrun and batch b * world + r of one process accumulating are the same images with the same draws.
    Offset from `augmentation_seed`, whose stream it must not repeat."""
    return (augmentation_seed(seed, epoch, place) + 0x9E3779B97F4A7C15) % (1 << 63)


@contextmanager
def micro_batch_rng(seed: int, device: torch.device) -> Iterator[None]:
    """torch's (CPU and ``device``'s) and numpy's global generators seeded with ``seed`` inside, restored after.

    Every rank starts from the same seed, so without this all ranks would draw the same dropout masks and
    mixup factors where one process accumulating draws new ones for each micro-batch. Seeded by place, the
    draws are also a pure function of (seed, epoch, place): a resumed run repeats them exactly."""
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        np.random.seed(seed % (1 << 32))
        try:
            yield
        finally:
            np.random.set_state(numpy_state)


class EpochTally:
    """The sums behind an epoch's train_loss, train_top1, train_seconds and images_per_s.

    `add` counts this process's batches (no communication); `fold` adds them up over the ranks into the
    totals, with the seconds since the last fold: a collective, which every rank calls at the same step (at
    a mid-epoch checkpoint and at the epoch's end). A mid-epoch checkpoint saves the totals (`state`) and a
    resumed epoch starts from them, so its numbers cover all its batches, on every rank, and the time they
    took before and after the resume. Folding at the same steps in a resumed and in an uninterrupted run
    keeps their float sums identical."""

    def __init__(self, device: torch.device, saved: dict | None = None) -> None:
        saved = saved or {}
        self.device = device
        self.totals = torch.tensor([float(saved.get("loss", 0.0)), float(saved.get("correct", 0)),
                                    float(saved.get("seen", 0))], dtype=torch.float64)
        self.seconds = float(saved.get("seconds", 0.0))  # a checkpoint written before it was kept: none
        self._reset()

    def _reset(self) -> None:
        self._loss = torch.zeros((), dtype=torch.float64, device=self.device)
        self._correct = torch.zeros((), dtype=torch.int64, device=self.device)
        self._seen, self._since = 0, time.perf_counter()

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self._loss += loss.detach().double() * len(labels)
        self._correct += (logits.detach().argmax(1) == labels).sum()
        self._seen += len(labels)

    def fold(self) -> None:
        local = torch.stack((self._loss, self._correct.double(),
                             torch.tensor(float(self._seen), dtype=torch.float64, device=self.device)))
        self.totals += distributed.all_reduce_sum(local).cpu()
        self.seconds += time.perf_counter() - self._since
        self._reset()

    def state(self) -> dict:
        """The totals as a checkpoint holds them (`TRAINING_STATE`'s ``epoch_sums``)."""
        return {"loss": self.totals[0].clone(), "correct": self.totals[1].clone(), "seen": int(self.totals[2]),
                "seconds": self.seconds}

    def metrics(self) -> dict:
        """The epoch's row fields, from the totals (`fold` first)."""
        loss, correct, seen = self.totals.tolist()
        return {"train_loss": loss / max(seen, 1), "train_top1": correct / max(seen, 1),
                "images_per_s": seen / max(self.seconds, 1e-9), "train_seconds": self.seconds}

    def postfix(self, world: int) -> dict:
        """The progress bar's running numbers: the totals so far with this rank's batches since (an estimate
        under torchrun, where the other ranks' are not asked for), images/s over all ranks since the last fold."""
        loss, correct, seen = self.totals.tolist()
        seen_here = seen + self._seen
        return {"loss": f"{(loss + self._loss.item()) / max(seen_here, 1):.3f}",
                "acc": f"{(correct + self._correct.item()) / max(seen_here, 1):.3f}",
                "img_s": f"{self._seen * world / max(time.perf_counter() - self._since, 1e-9):.0f}"}


class Trainer:
    """One run: built in the named steps of ``__init__``, then `run` trains, validates and checkpoints."""

    def __init__(self, config: dict, output: str | Path, *, resume: bool = False, progress: bool = True) -> None:
        """``config`` as `spos.train.config.load_config` returns it (checked there: counts at least 1...)."""
        self.config, self.output, self.progress = config, Path(output), progress
        files.check_output_folder(self.output, kind="training", resume=resume, markers=RUN_MARKERS)
        resume_state = read_resume_state(self.output, config) if resume else None
        self.rank, self.world = distributed.init_distributed()
        self.device = distributed.local_device(config["train"]["device"])
        _seed_everything(config["train"]["seed"], config["train"]["deterministic"])
        # a new run trains on spos's input convention; a resumed one goes on in the one its checkpoint records
        self.convention = checkpoint.convention_of(resume_state)
        splits = self._load_data()
        self._build_model(splits.info)
        self._build_loaders(splits)
        counts = step_counts(config["train"], len(self.train_loader))
        self.accumulate, self.steps_per_epoch = counts.accumulate, counts.steps_per_epoch
        self.total_steps, self.epochs = counts.total_steps, counts.epochs
        self.split_epoch = split_epoch_of(config["sampling"]["few_shot_split_epoch"], self.epochs) \
            if isinstance(self.model, FewShotSuperNet) else None
        self._build_optimization()
        self._build_path_sampling(splits.train)
        self.epoch, self.step, self.batches_done, self.best_top1 = 0, 0, 0, -1.0
        self.epoch_sums: dict | None = None  # the epoch in progress's running loss and accuracy (`train_epoch`)
        self.history: list[dict] = []
        if resume_state is not None:
            self._resume(resume_state, resume_checkpoint(self.output))
        if distributed.is_main():
            files.remove_stale_temps(self.output, TRAINING_FILES)
            files.write_text_atomic(dump(config), self.output / "config.yaml")
        self.tensorboard = self._tensorboard()

    # -- setup steps ---------------------------------------------------------------------------

    def _load_data(self):
        data_cfg = self.config["data"]
        if data_cfg["loader"] == "dali":
            from spos.data.dali import check_dali

            check_dali(data_cfg["name"], self.config["train"]["device"])
        return build_datasets(data_cfg["name"], data_cfg["root"], download=data_cfg["download"],
                              holdout=data_cfg["holdout"], seed=self.config["train"]["seed"],
                              input_size=self.config["space"]["input_size"], convention=self.convention)

    def _build_model(self, info) -> None:
        self.info = info
        self.model = build_model(self.config, info).to(self.device)
        self.space = self.model.space
        self.supernet = isinstance(self.model, (SuperNet, FewShotSuperNet))
        self.channels_last = bool(self.config["train"]["channels_last"])
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def _build_loaders(self, splits) -> None:
        """Training batches, and validation on the hold-out split for a supernet that has one (else val)."""
        data_cfg = self.config["data"]
        shared = dict(workers=data_cfg["workers"], rank=self.rank, world=self.world, device=str(self.device))
        self.train_loader = build_loader(splits.train, batch_size=data_cfg["batch_size"], train=True,
                                         seed=self.config["train"]["seed"], **shared)
        if data_cfg["loader"] == "dali":  # the same files, order and per-sample draws, augmented on the GPU
            from spos.data.dali import DaliBatches

            self.train_loader = DaliBatches(splits.train, batch_size=data_cfg["batch_size"],
                                            seed=self.config["train"]["seed"], rank=self.rank, world=self.world,
                                            device=self.device, input_size=self.space.input_size, info=splits.info,
                                            convention=self.convention)
        val_set = splits.holdout if (self.supernet and splits.holdout is not None) else splits.val
        self.val_split = "holdout" if val_set is splits.holdout else "val"
        self.val_loader = build_loader(val_set, batch_size=data_cfg["val_batch_size"], train=False, **shared)

    def _build_optimization(self) -> None:
        """Optimizer, LR schedule, mixup and loss, EMA (fixed nets), AMP and, under torchrun, DDP for a
        fixed net (the supernet averages its path's gradients itself: `spos.train.distributed`)."""
        config, train_cfg = self.config, self.config["train"]
        self.optimizer = build_optimizer(self.model, config["optim"])
        self.scheduler = build_scheduler(self.optimizer, config["schedule"], self.total_steps, self.steps_per_epoch)
        self.mixup = build_mixup(train_cfg, self.space.num_classes)
        self.loss_fn = build_loss(train_cfg, self.mixup)
        self.ema = build_ema(self.model, train_cfg["ema"]) if not self.supernet else None
        self.amp_dtype = amp_dtype(train_cfg["amp"], self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.ddp = None
        if self.world > 1 and not self.supernet:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _build_path_sampling(self, train_set) -> None:
        """For a supernet: the training path sampler, the fixed validation paths and BN calibration batches."""
        self.sampler = None
        if not self.supernet:
            return
        config, seed = self.config, self.config["train"]["seed"]
        self.sampler = build_path_sampler(self.space, config)
        self.val_paths = validation_paths(self.space, int(config["validation"]["paths"]), seed, config["sampling"])
        self.calibration = recalibration_batches(train_set, batch_size=config["data"]["batch_size"],
                                                 num_batches=int(config["validation"]["bn_batches"]), seed=seed)

    def _tensorboard(self):
        if not distributed.is_main():
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard is optional
            return None
        return SummaryWriter(str(self.output / "tensorboard"))

    def _resume(self, state: dict, path: Path) -> None:
        """Restore the run from ``state`` (read from ``path``); one line, and nothing written, when it cannot be."""
        if not self.supernet and Architecture.from_dict(state["arch"]) != self.model.arch:
            raise UserError(f"--resume: {self.output} was started with other settings (arch "
                            f"{Architecture.from_dict(state['arch'])} -> {self.model.arch}); resume with the same "
                            "architecture or start a new run in another --output")
        try:
            self._restore(state)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
            why = (str(error).splitlines() or [type(error).__name__])[0]
            raise UserError(cannot_resume(path, f"{path} cannot be restored ({why})")) from None
        log.info(f"resumed {self.output} at epoch {self.epoch + 1}, step {self.step}")

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema"):
            self.ema.module.load_state_dict(state["ema"])
        if self.sampler is not None:
            self.sampler.load_state(state["sampler"])
        _restore_rng(state["rng"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.batches_done, self.best_top1 = state["batches_done"], state["best_top1"]
        self.history = state.get("history", [])
        self.epoch_sums = state.get("epoch_sums")

    # -- checkpoints ---------------------------------------------------------------------------

    def _payload(self) -> dict:
        extra = dict(optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(),
                     ema=self.ema.module.state_dict() if self.ema is not None else None,
                     sampler=self.sampler.state() if self.sampler is not None else None,
                     rng=_rng_state(), epoch=self.epoch, step=self.step, batches_done=self.batches_done,
                     best_top1=self.best_top1, history=self.history, config=self.config,
                     epoch_sums=self.epoch_sums if self.batches_done else None)
        if self.supernet:
            return checkpoint.supernet_payload(self.model, self.convention, **extra)
        return checkpoint.fixed_payload(self.model, self.convention, **extra)

    def save(self, best: bool = False) -> None:
        if not distributed.is_main():
            return
        last, previous = self.output / "last.pt", self.output / "previous.pt"
        payload = self._payload()
        if best:  # before last.pt: a kill in between runs the epoch again and rewrites best.pt
            checkpoint.save_atomic(payload, self.output / "best.pt")
        if last.exists():
            last.replace(previous)
        checkpoint.save_atomic(payload, last)

    # -- the loop ------------------------------------------------------------------------------

    def _network(self, arch: Architecture | None) -> nn.Module:
        """The module a step runs as ``network(x)``: the sampled path of the supernet, or (``arch`` None)
        the fixed network, through its DDP wrapper under torchrun. The one place that asks which."""
        if arch is None:
            return self.ddp or self.model
        return self.model.path(arch)

    def _forward(self, x, arch):
        network = self._network(arch)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            return network(x)

    def train_epoch(self) -> dict:
        """Train one epoch (the rest of it, resumed mid-epoch); its row's train_* fields, over all ranks."""
        self._start_epoch()
        main = distributed.is_main()
        batches = len(self.train_loader)
        bar = tqdm(total=batches, initial=self.batches_done, disable=not (self.progress and main),
                   desc=f"epoch {self.epoch + 1}/{self.epochs}", leave=False, dynamic_ncols=True)
        tally = self._epoch_tally()
        refresh = postfix_every(int(self.config["train"]["log_every"]), batches)
        archs: list = [None]
        step_batches = self.accumulate
        for index, (x, y) in epoch_batches(self.train_loader, self.epoch, self.batches_done):  # resumed: from there
            if self.step >= self.total_steps:
                break
            if index % self.accumulate == 0:  # the first batch of a step
                archs = self.sampler.sample_step() if self.sampler is not None else [None]
                step_batches = min(self.accumulate, batches - index)  # fewer at the epoch's end
            seed = micro_batch_seed(int(self.config["train"]["seed"]), self.epoch, index * self.world + self.rank)
            with micro_batch_rng(seed, self.device):
                self._train_batch(x, y, archs, step_batches, tally)
            self.batches_done = index + 1
            if (index + 1) % self.accumulate == 0 or index + 1 == batches:
                self._optimizer_step(archs)
                self._checkpoint_mid_epoch(tally)
                preemption.after_training_step(self, tally)  # a stop asked for: checkpoint, raise Preempted
            bar.update(1)
            if main and self.progress and ((index + 1) % refresh == 0 or index + 1 == batches):
                bar.set_postfix(**tally.postfix(self.world), lr=f"{self.optimizer.param_groups[0]['lr']:.4f}")
        bar.close()
        tally.fold()
        return tally.metrics()

    def _start_epoch(self) -> None:
        self.model.train()
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)
        if self.split_epoch is not None and self.epoch >= self.split_epoch:
            self.model.split(self.optimizer)  # once: a run resumed after the split has the copies already

    def _epoch_tally(self) -> EpochTally:
        """The epoch's sums from zero, or, resuming mid-epoch, from those the checkpoint saved, so the epoch's
        train_* fields cover every batch and all its time, not only those after the resume."""
        saved = self.epoch_sums if self.batches_done else None
        self.epoch_sums = None
        return preemption.resumed_tally(EpochTally(self.device, saved), saved, self.rank, self.world)

    def _train_batch(self, x, y, archs: list, step_batches: int, tally: EpochTally) -> None:
        """Forward and backward one batch on each of the step's paths; its gradient, 1/step_batches of the
        step's, adds to those before it."""
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        targets = y
        if self.mixup is not None and len(x) % 2 == 0:
            x, targets = self.mixup(x, y)
        teacher = None  # sandwich: the widest path's soft predictions, the later paths' targets
        for arch in archs:  # fair / sandwich: several paths on the same batch, gradients summed
            logits = self._forward(x, arch)
            loss = self._path_loss(logits.float(), targets, teacher)
            if teacher is None and self.sampler is not None and self.sampler.distills:
                teacher = logits.detach().float().softmax(1)
            self.scaler.scale(loss / step_batches).backward()  # the step's gradient: the mean over its batches
            tally.add(loss, logits, y)

    def _checkpoint_mid_epoch(self, tally: EpochTally) -> None:
        """Every ``train.checkpoint_every_steps`` steps (but not at the epoch's end, which `run` saves): a
        checkpoint a resume goes on from, skipping the batches already trained, with the epoch's sums so far."""
        every = self.config["train"]["checkpoint_every_steps"]
        if every and self.step % int(every) == 0 and self.batches_done < len(self.train_loader):
            tally.fold()  # on every rank: the sums saved are those of all ranks
            self.epoch_sums = tally.state()
            self.save()

    def _path_loss(self, logits, targets, teacher):
        """The labels' loss, or with in-place distillation the cross-entropy against the teacher
        path's soft predictions (detached: the teacher learns from the labels only)."""
        if teacher is None:
            return self.loss_fn(logits, targets)
        return soft_target_loss(logits, teacher)

    def _step_parameters(self, archs: list) -> list | None:
        """The parameters the step's paths reach (each once), or None for a fixed network."""
        if archs == [None]:
            return None
        unique = {id(p): p for arch in archs for p in self.model.path_parameters(arch)}
        return list(unique.values())

    def _optimizer_step(self, archs: list) -> None:
        parameters = self._step_parameters(archs)
        if self.supernet:
            distributed.average_gradients(parameters)
        clip = self.config["train"]["clip_grad"]
        if clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(parameters or self.model.parameters(), float(clip))
        self.scheduler.step_update(self.step)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.model, step=self.step)

    def validate(self) -> dict:
        if not self.supernet:
            distributed.broadcast_buffers(self.model)  # every rank evaluates the network rank 0 saves
            if self.ema is not None:
                distributed.broadcast_buffers(self.ema.module)
            metrics = evaluate(self.model, self.val_loader, device=self.device, channels_last=self.channels_last)
            result = {f"val_{k}": v for k, v in metrics.items()}
            if self.ema is not None:
                ema = evaluate(self.ema.module, self.val_loader, device=self.device,
                               channels_last=self.channels_last)
                result.update({f"val_ema_{k}": v for k, v in ema.items()})
            return result
        scores = []
        for arch in self.val_paths:
            path = recalibrate_bn(self._network(arch), self.calibration)
            scores.append(evaluate(path, self.val_loader, device=self.device, channels_last=self.channels_last))
        return {f"val_{k}": sum(s[k] for s in scores) / len(scores) for k in ("top1", "top5", "loss")} | {
            "val_paths_top1": [s["top1"] for s in scores]}

    def run(self) -> RunResult:
        if distributed.is_main() and self.supernet:
            batch = int(self.config["data"]["batch_size"]) * self.world * self.accumulate
            warning = hot_lr_warning(float(self.config["optim"]["lr"]), batch)
            if warning:
                log.warning(warning)
        if distributed.is_main():
            note = width_note(self.config, self.space)
            if note:
                log.info(note)
            log.info(f"training a {'supernet' if self.supernet else 'fixed network'} "
                     f"({readable(sum(p.numel() for p in self.model.parameters()))} params) for {self.total_steps} "
                     f"steps ({self.epochs} epochs of {self.steps_per_epoch}) on {self.device}"
                     f"{f' x {self.world} processes' if self.world > 1 else ''}; output {self.output}")
        while self.epoch < self.epochs and self.step < self.total_steps:
            metrics = self.train_epoch()
            validating = self._validates_this_epoch()
            if validating:
                metrics.update(self.validate())
            row = {"epoch": self.epoch + 1, "step": self.step, "lr": self.optimizer.param_groups[0]["lr"],
                   **metrics}
            self.history.append(row)
            improved = validating and row["val_top1"] > self.best_top1
            if validating:
                self.best_top1 = max(self.best_top1, row["val_top1"])
            self.epoch += 1
            self.batches_done = 0
            self.save(best=improved)
            self._log_epoch(row)
            if self.step >= self.total_steps:
                break
        self._write_metrics()  # a resumed run killed after its last checkpoint gets its rows back
        distributed.barrier()
        return RunResult(self.output, self.history, self.best_top1, self.model)

    def _validates_this_epoch(self) -> bool:
        """Every ``validation.every`` epochs, and after the last one: a run always ends validated."""
        last = self.epoch + 1 >= self.epochs or self.step >= self.total_steps
        return last or (self.epoch + 1) % int(self.config["validation"]["every"]) == 0

    def _log_epoch(self, row: dict) -> None:
        if not distributed.is_main():
            return
        validated = (f"{self.val_split} top-1 {row['val_top1']:.4f} top-5 {row['val_top5']:.4f}" if "val_top1" in row
                     else f"not validated (validation.every {self.config['validation']['every']})")
        log.info(f"epoch {row['epoch']}/{self.epochs}: loss {row['train_loss']:.4f} train top-1 "
                 f"{row['train_top1']:.4f} | {validated} | lr {row['lr']:.5f} | {row['images_per_s']:.0f} img/s")
        self._write_metrics()
        flat = {k: v for k, v in row.items() if not isinstance(v, list)}
        if self.tensorboard is not None:
            for key, value in flat.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.tensorboard.add_scalar(key, value, row["epoch"])
            self.tensorboard.flush()


    def _write_metrics(self) -> None:
        """metrics.jsonl and metrics.csv, rewritten whole (atomically) from the history."""
        if not distributed.is_main() or not self.history:
            return
        files.write_text_atomic("".join(json.dumps(row) + "\n" for row in self.history),
                                self.output / "metrics.jsonl")
        flat = [{k: v for k, v in row.items() if not isinstance(v, list)} for row in self.history]
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=list(dict.fromkeys(k for row in flat for k in row)))
        writer.writeheader()
        writer.writerows(flat)
        files.write_text_atomic(table.getvalue(), self.output / "metrics.csv")


def run_training(config: dict, output: str | Path, *, resume: bool = False, progress: bool = True) -> RunResult:
    """Train what ``config`` describes (see `spos.train.config`) into ``output``, holding its lock."""
    files.check_output_folder(output, kind="training", resume=resume, markers=RUN_MARKERS)  # before locking
    with files.run_lock(output):
        return Trainer(config, output, resume=resume, progress=progress).run()
