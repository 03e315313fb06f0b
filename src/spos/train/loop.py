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
validation reads every image once across them (`spos.data.loaders.EpochShuffle`), so they equal one process's.
Dropout and mixup draw per micro-batch from a stream seeded by its place (`micro_batch_rng`), so N ranks
train as one process accumulating N batches does.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from spos.data.datasets import build_datasets
from spos.data.loaders import build_loader, epoch_batches, recalibration_batches
from spos.errors import UserError
from spos.io import files
from spos.nn.calibration import recalibrate_bn
from spos.nn.fewshot import FewShotSuperNet, split_epoch_of
from spos.nn.supernet import SuperNet
from spos.space.architecture import Architecture
from spos.space.flops import readable
from spos.store import checkpoint
from spos.train import distributed, preemption
from spos.train.config import dump
from spos.train.evaluation import evaluate, validation_paths
from spos.train.recipe import (
    build_ema,
    build_loss,
    build_mixup,
    build_optimizer,
    build_scheduler,
    hot_lr_warning,
    soft_target_loss,
)
from spos.train.resume import (
    RUN_MARKERS,
    TRAINING_FILES,
    _restore_rng,
    _rng_state,
    cannot_resume,
    read_resume_state,
    resume_checkpoint,
)
from spos.train.setup import (
    EpochTally,
    RunResult,
    _seed_everything,
    amp_dtype,
    build_model,
    build_path_sampler,
    micro_batch_rng,
    micro_batch_seed,
    postfix_every,
    step_counts,
    width_note,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Evaluation


# ----------------------------------------------------------------------------------------------
# Building a run


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
