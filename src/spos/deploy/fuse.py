"""Conv-BN fusion for inference: each BN after a conv folds into that conv's weight and bias.

At inference BN is an affine map per channel, so ``BN(conv(x))`` is one conv with rescaled
weights and a bias; fusing removes a memory pass per conv. torch does the arithmetic
(`torch.nn.utils.fusion.fuse_conv_bn_eval`); this module finds the pairs in spos networks.
Module names are kept (a fused BN becomes ``nn.Identity``), so a fused network still reads
like the original one.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every Conv2d directly followed by a BatchNorm2d (inside
    one ``nn.Sequential``) fused. The original is left untouched."""
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                module._modules[first] = fuse_conv_bn_eval(conv, bn)
                module._modules[second] = nn.Identity()
    return fused


def count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
