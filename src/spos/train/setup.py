"""The pieces a run is built from, each a function of its config: the network (with the space's dropout), the step counts, AMP, the path sampler, and the per-micro-batch random streams and running sums an epoch keeps."""

from __future__ import annotations

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

from spos.data.loaders import augmentation_seed
from spos.errors import UserError
from spos.nn.fixed import FixedNet
from spos.space.searchspace import get_space, load_space
from spos.space.zoo import resolve_architecture
from spos.store import checkpoint
from spos.train import distributed
from spos.train.sampler import PathSampler


@dataclass
class RunResult:
    output: Path
    history: list[dict] = field(default_factory=list)
    best_top1: float = 0.0
    model: nn.Module | None = None

    @property
    def last(self) -> dict:
        return self.history[-1] if self.history else {}



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
    counts the epoch's micro-batches over all ranks (`spos.data.loaders.TensorBatches`): rank r's batch b under
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
