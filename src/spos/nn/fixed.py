"""`FixedNet`: plain static modules for one architecture, trainable from scratch and exportable.

Module names follow the official ShuffleNet-Series networks (``first_conv``, ``features.N``,
``conv_last``, ``classifier``), so official checkpoints load with a key-for-key mapping.
"""

from __future__ import annotations

import torch
from torch import nn

from spos.nn.ops import init_weights, make_activation, static_block
from spos.space.architecture import Architecture
from spos.space.layout import HeadSpec, StemSpec
from spos.space.searchspace import SearchSpace


def build_stem(stem: StemSpec, affine: bool = True) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(stem.in_channels, stem.out_channels, 3, stem.stride, 1, bias=False),
        nn.BatchNorm2d(stem.out_channels, affine=affine),
        make_activation(stem.activation),
    )


def build_last_conv(head: HeadSpec, affine: bool = True) -> nn.Sequential:
    """The 1x1 conv to the head's width: before pooling with BN (the paper), or after pooling
    with a bias and no BN (MobileNetV3 style, the OneShot+ models)."""
    act = make_activation(head.activation)
    if head.pool_first:
        return nn.Sequential(nn.Conv2d(head.in_channels, head.width, 1, bias=True), act)
    return nn.Sequential(nn.Conv2d(head.in_channels, head.width, 1, bias=False),
                         nn.BatchNorm2d(head.width, affine=affine), act)


class Head(nn.Module):
    """Shared by FixedNet and SuperNet: last conv, global pool, dropout, classifier."""

    def __init__(self, head: HeadSpec, affine: bool = True) -> None:
        super().__init__()
        self.pool_first = head.pool_first
        self.conv_last = build_last_conv(head, affine)
        self.dropout = nn.Dropout(head.dropout)
        self.classifier = nn.Sequential(nn.Linear(head.width, head.num_classes, bias=head.bias))

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
        layout = space.layout
        self.first_conv = build_stem(layout.stem, affine)
        self.features = nn.Sequential(*(
            static_block(spec, spec.ops[block], spec.mid_widths[block][channel], affine)
            for spec, block, channel in zip(layout.layers, arch.blocks, arch.channels)
        ))
        self.head = Head(layout.head, affine)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.first_conv(x)))
