"""BN recalibration: the statistics of one path, re-estimated on training batches.

The supernet's running statistics mix every path it was trained on, so before a path (or a
FixedNet extracted from it) is evaluated its BN statistics are reset and re-estimated in train
mode with cumulative averaging (``momentum=None``) over a fixed set of batches (official: 20).

Which batches is decided here once (`calibration_batches`): ``spos eval``, ``spos export``, the
search and ``spos rank`` all recalibrate a supernet path on the same training images, so a path's
searched score, its evaluation and its exported network describe one network.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from spos.data.loaders import recalibration_batches

BN_BATCHES = 20  # the official count
BN_BATCH_SIZE = 128
BN_SEED = 0


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable) -> nn.Module:
    """Reset and re-estimate every BN of ``model``: a FixedNet, or a supernet path (``supernet.path(arch)``)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    try:
        device = next(model.parameters()).device
        for x, _ in batches:
            x = x.to(device, non_blocking=True)
            model(x)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return model


def calibration_batches(train_set, num_batches: int = BN_BATCHES) -> list:
    """The training batches every command recalibrates a supernet path on: ``num_batches`` batches of
    `BN_BATCH_SIZE` images of ``train_set`` (the supernet's training split), drawn by a fixed seed.

    Their size is fixed rather than each command's evaluation batch size, so ``spos eval``, ``spos export``
    and the search cannot calibrate the same path differently."""
    return recalibration_batches(train_set, batch_size=BN_BATCH_SIZE, num_batches=num_batches, seed=BN_SEED)
