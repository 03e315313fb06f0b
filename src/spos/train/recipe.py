"""The ImageNet recipe's pieces, taken from timm: optimizer with no weight decay on BN and bias,
per-step LR schedules with linear warm-up, label smoothing, mixup/cutmix, EMA."""

from __future__ import annotations

import contextlib
import logging

import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler, PolyLRScheduler
from timm.utils import ModelEmaV3

from spos.errors import UserError

log = logging.getLogger(__name__)

OFFICIAL_LR, OFFICIAL_BATCH = 0.5, 1024  # the official supernet recipe
LR_WARN_FACTOR = 4.0


def build_optimizer(model: torch.nn.Module, optim: dict) -> torch.optim.Optimizer:
    """SGD (Nesterov if asked); timm's filter puts BN and bias parameters in a no-decay group."""
    return create_optimizer_v2(
        model, opt="sgd" if optim["nesterov"] else "momentum", lr=optim["lr"], momentum=optim["momentum"],
        weight_decay=optim["weight_decay"], filter_bias_and_bn=optim["no_wd_bn_bias"],
    )


def build_scheduler(optimizer, schedule: dict, total_steps: int, steps_per_epoch: int):
    """A per-step schedule: linear warm-up, then cosine or linear decay to ``min_lr``.

    timm's schedulers compute the LR from the step count alone, so resuming is just calling
    ``step_update(step)`` again: nothing to save.
    """
    warmup = int(round(schedule["warmup_epochs"] * steps_per_epoch))
    if warmup and warmup >= total_steps:
        log.warning(f"warning: the warm-up ({schedule['warmup_epochs']:g} epochs, {warmup} steps) lasts the whole run "
                    f"({total_steps} steps): the LR never reaches optim.lr nor decays; set schedule.warmup_epochs "
                    "below the run's epochs")
    common = dict(t_initial=max(total_steps - warmup, 1), lr_min=schedule["min_lr"], warmup_t=warmup,
                  warmup_lr_init=optimizer.param_groups[0]["lr"] / max(warmup, 1) if warmup else 0.0,
                  warmup_prefix=True, t_in_epochs=False)
    if schedule["name"] == "cosine":
        with _quiet_when(common["t_initial"] == 1, "timm.scheduler.cosine_lr"):
            return CosineLRScheduler(optimizer, **common)
    if schedule["name"] == "linear":
        return PolyLRScheduler(optimizer, power=1.0, **common)
    raise UserError(f"unknown schedule {schedule['name']!r}; use cosine or linear")


@contextlib.contextmanager
def _quiet_when(quiet: bool, logger_name: str):
    """Silence ``logger_name``'s warnings inside the block when ``quiet``.

    timm warns "Cosine annealing scheduler will have no effect" when one step is left after the
    warm-up (a one-epoch run with a one-epoch warm-up): the run asked for exactly that schedule,
    so the warning only alarms the user.
    """
    logger = logging.getLogger(logger_name)
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def build_mixup(train: dict, num_classes: int) -> Mixup | None:
    if not (train["mixup"] or train["cutmix"]):
        return None
    return Mixup(mixup_alpha=train["mixup"], cutmix_alpha=train["cutmix"],
                 label_smoothing=train["label_smoothing"], num_classes=num_classes)


def build_loss(train: dict, mixup: Mixup | None) -> torch.nn.Module:
    if mixup is not None:
        return SoftTargetCrossEntropy()  # mixup already smooths the targets
    if train["label_smoothing"]:
        return LabelSmoothingCrossEntropy(train["label_smoothing"])
    return torch.nn.CrossEntropyLoss()


def build_ema(model: torch.nn.Module, decay: float | None) -> ModelEmaV3 | None:
    return ModelEmaV3(model, decay=decay) if decay else None


def linear_scaled_lr(batch: int) -> float:
    """The official supernet LR scaled linearly to ``batch`` images per step (Goyal et al. 2017)."""
    return OFFICIAL_LR * batch / OFFICIAL_BATCH


def hot_lr_warning(lr: float, batch: int) -> str | None:
    """A warning when ``lr`` is more than 4x the linearly scaled official LR for ``batch``, else None.

    Measured on digits: at 6.4x (lr 0.2, batch 64) the supernet stayed at chance.
    """
    scaled = linear_scaled_lr(batch)
    if lr <= LR_WARN_FACTOR * scaled:
        return None
    return (f"warning: optim.lr {lr:g} is {lr / scaled:.1f}x the official supernet LR scaled to batch {batch} "
            f"(0.5 x {batch} / 1024 = {scaled:.4g}); supernets trained this hot measured at chance on digits. "
            f"Consider --set optim.lr={scaled:.4g}")


def soft_target_loss(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a probability distribution per sample (in-place distillation's
    loss; equal to the KL divergence up to the targets' entropy, which has no gradient)."""
    return SoftTargetCrossEntropy()(logits, soft_targets)
