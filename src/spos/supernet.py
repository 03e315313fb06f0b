"""`SuperNet`: one set of weights per candidate op per layer, shared by all width choices.

``forward(x, arch)`` runs one path; channel selection slices the shared weights (see
`spos.dynamic`), so a training step on a narrow path costs what the narrow subnet costs.
BN is non-affine as in the official supernet, so its statistics can be recalibrated per path.
Parameter names follow the official block-search supernet: ``features.LAYER.BLOCK.*``.

``entangled_kernels=True`` makes the ops of a layer that share a layout share weights (see
`entangle_layer`): the ShuffleNet 3x3/5x5/7x7 choices use one 7x7 depthwise kernel and one set
of pointwise convs. The default keeps the official independent weights (and so loads official
checkpoints).
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from spos.blocks import init_weights
from spos.dynamic import DynamicBlock, inherit
from spos.fixed import FixedNet, Head, build_stem
from spos.space import Architecture, SearchSpace


class SuperNet(nn.Module):
    def __init__(self, space: SearchSpace, *, entangled_kernels: bool = False) -> None:
        super().__init__()
        self.space = space
        self.entangled_kernels = entangled_kernels
        specs = space.layers()
        #: mid_widths[layer][op][width choice]: the width a path runs each op at.
        self.mid_widths = [[[spec.mid_channels(scale, op) for scale in space.channel_scales]
                            for op in range(len(spec.ops))] for spec in specs]
        self.first_conv = build_stem(space, affine=False)
        self.features = nn.ModuleList(
            nn.ModuleList(DynamicBlock(spec, name, max(widths[op])) for op, name in enumerate(spec.ops))
            for spec, widths in zip(specs, self.mid_widths)
        )
        self.head = Head(space, affine=False)
        if entangled_kernels:
            for layer in self.features:
                entangle_layer(layer)
        init_weights(self)

    def forward(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
        arch.validate(self.space)
        x = self.first_conv(x)
        for layer, widths, block, channel in zip(self.features, self.mid_widths, arch.blocks, arch.channels):
            x = layer[block](x, widths[block][channel])
        return self.head(x)

    def path(self, arch: Architecture) -> "PathView":
        """This supernet as a plain network of one path: ``path(arch)(x) == self(x, arch)``."""
        return PathView(self, arch.validate(self.space))

    def path_modules(self, arch: Architecture) -> Iterator[nn.Module]:
        """The modules one path runs through; every other parameter gets no gradient from it."""
        yield self.first_conv
        for layer, block in zip(self.features, arch.blocks):
            yield layer[block]
        yield self.head

    def path_parameters(self, arch: Architecture) -> Iterator[nn.Parameter]:
        for module in self.path_modules(arch):
            yield from module.parameters()

    @torch.no_grad()
    def extract(self, arch: Architecture) -> FixedNet:
        """A FixedNet of ``arch`` holding this supernet's weights (leading slices, centred kernels)
        and BN statistics, built module by module from the path (`spos.dynamic.inherit`).

        Its eval-mode output equals ``self.eval()(x, arch)``. The supernet's BN has no affine
        parameters, so the FixedNet's start at weight 1 and bias 0.
        """
        net = FixedNet(self.space, arch, affine=True)
        inherit(net.first_conv, self.first_conv)
        for fixed, layer, block in zip(net.features, self.features, arch.blocks):
            inherit(fixed, layer[block])
        inherit(net.head, self.head)
        return net.train(self.training)


def entangle_layer(layer: nn.ModuleList) -> None:
    """Let the ops of one layer that share a layout (ShuffleNet 3x3/5x5/7x7; MBConv of any kernel
    and expansion) use the weights of the largest of them: each runs the leading channels and the
    centre of the kernel (Once-for-All's elastic kernel and width), so the choices stay aligned
    and every step trains weights all of them use. BN statistics stay per op. A group is left
    independent when no op is at least as large as all others in both kernel and width."""
    groups: dict[tuple, list[DynamicBlock]] = {}
    for op in layer:
        if op.block.entangle_key is not None:
            groups.setdefault(op.block.entangle_key, []).append(op)
    for ops in groups.values():
        source = max(ops, key=lambda op: (op.block.kernel, op.max_mid))
        if len(ops) > 1 and all(op.block.kernel <= source.block.kernel and op.max_mid <= source.max_mid
                                for op in ops):
            for op in ops:
                if op is not source:
                    op.entangle(source)


class PathView(nn.Module):
    """One path of a network called as ``network(x, arch)``, as a module called as ``view(x)``.

    It holds no weights of its own: ``network`` is the supernet itself (or the DDP wrapper around
    it, so gradients still synchronise), and ``view.train()``/``eval()`` switch the supernet's
    mode. Recalibration, evaluation, scoring and training then call every model the same way.
    """

    def __init__(self, network: nn.Module, arch: Architecture) -> None:
        super().__init__()
        self.network, self.arch = network, arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x, self.arch)
