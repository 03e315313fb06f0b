"""BN recalibration: the statistics of one path, re-estimated on training batches.

The supernet's running statistics mix every path it was trained on, so before a path (or a
FixedNet extracted from it) is evaluated its BN statistics are reset and re-estimated in train
mode with cumulative averaging (``momentum=None``) over a fixed set of batches (official: 20).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


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
