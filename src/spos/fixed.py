"""`FixedNet`: plain static modules for one architecture, trainable from scratch and exportable.

Module names follow the official ShuffleNet-Series networks (``first_conv``, ``features.N``,
``conv_last``, ``classifier``), so official checkpoints load with a key-for-key mapping.
"""

from __future__ import annotations

import torch
from torch import nn

from spos.blocks import init_weights, make_activation, static_block
from spos.space import Architecture, SearchSpace


def build_stem(space: SearchSpace, affine: bool = True) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(space.in_channels, space.stem_width, 3, space.stem_stride, 1, bias=False),
        nn.BatchNorm2d(space.stem_width, affine=affine),
        make_activation(space.stem_activation),
    )


def build_last_conv(space: SearchSpace, affine: bool = True) -> nn.Sequential:
    """The 1x1 conv to ``last_conv_width``: before pooling with BN (the paper), or after pooling
    with a bias and no BN (MobileNetV3 style, the OneShot+ models)."""
    in_channels = space.stage_widths[-1]
    act = make_activation(space.head_activation)
    if space.head == "pool-conv":
        return nn.Sequential(nn.Conv2d(in_channels, space.last_conv_width, 1, bias=True), act)
    return nn.Sequential(nn.Conv2d(in_channels, space.last_conv_width, 1, bias=False),
                         nn.BatchNorm2d(space.last_conv_width, affine=affine), act)


def build_classifier(space: SearchSpace) -> nn.Sequential:
    return nn.Sequential(nn.Linear(space.last_conv_width, space.num_classes, bias=space.classifier_bias))


class Head(nn.Module):
    """Shared by FixedNet and SuperNet: last conv, global pool, dropout, classifier."""

    def __init__(self, space: SearchSpace, affine: bool = True) -> None:
        super().__init__()
        self.pool_first = space.head == "pool-conv"
        self.conv_last = build_last_conv(space, affine)
        self.dropout = nn.Dropout(space.dropout)
        self.classifier = build_classifier(space)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_first:
            x = self.conv_last(x.mean((2, 3), keepdim=True))
        else:
            x = self.conv_last(x).mean((2, 3), keepdim=True)
        return self.classifier(self.dropout(torch.flatten(x, 1)))


class FixedNet(nn.Module):
    """The network of one architecture in one space.

    ``affine=False`` gives the BN of the official supernet; a network trained from scratch or
    extracted from a supernet uses the default affine BN.
    """

    def __init__(self, space: SearchSpace, arch: Architecture, affine: bool = True) -> None:
        super().__init__()
        arch.validate(space)
        self.space, self.arch = space, arch
        self.first_conv = build_stem(space, affine)
        self.features = nn.Sequential(*(
            static_block(spec, spec.ops[block], spec.mid_channels(space.channel_scales[channel], block), affine)
            for spec, block, channel in zip(space.layers(), arch.blocks, arch.channels)
        ))
        self.head = Head(space, affine)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.first_conv(x)))
