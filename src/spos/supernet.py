"""`SuperNet`: one set of weights per block choice per layer, shared by all channel choices.

``forward(x, arch)`` runs one path; channel selection slices the shared weights (see
`spos.dynamic`), so a training step on a narrow path costs what the narrow subnet costs.
BN is non-affine as in the official supernet, so its statistics can be recalibrated per path.
Parameter names follow the official block-search supernet: ``features.LAYER.BLOCK.*``.

``entangled_kernels=True`` makes the ShuffleNet 3x3/5x5/7x7 choices of a layer share one 7x7
depthwise kernel (each uses its centre, as Once-for-All's elastic kernel) and their pointwise
convs, so the choices stay aligned and every step trains the weights all of them use. BN
statistics stay per choice. The default keeps the official independent weights (and so loads
official checkpoints).
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from spos.blocks import init_weights
from spos.dynamic import DynamicShuffleNetBlock
from spos.fixed import FixedNet, Head, build_stem
from spos.dynamic import centre_slice
from spos.space import BLOCK_KERNELS, XCEPTION, Architecture, SearchSpace


class SuperNet(nn.Module):
    def __init__(self, space: SearchSpace, *, entangled_kernels: bool = False) -> None:
        super().__init__()
        self.space = space
        self.entangled_kernels = entangled_kernels
        specs = space.layers()
        self.mid_widths = [[spec.mid_channels(scale) for scale in space.channel_scales] for spec in specs]
        self.first_conv = build_stem(space, affine=False)
        self.features = nn.ModuleList(
            nn.ModuleList(DynamicShuffleNetBlock(spec, block, max(widths)) for block in range(space.num_blocks))
            for spec, widths in zip(specs, self.mid_widths)
        )
        self.head = Head(space, affine=False)
        if entangled_kernels:
            self._entangle()
        init_weights(self)

    def _entangle(self) -> None:
        shufflenet = [b for b in range(self.space.num_blocks) if b != XCEPTION]
        if len(shufflenet) < 2:
            return
        widest = max(shufflenet, key=lambda b: BLOCK_KERNELS[b])
        for layer in self.features:
            for block in shufflenet:
                if block != widest:
                    layer[block].entangle(layer[widest])

    def forward(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
        arch.validate(self.space)
        x = self.first_conv(x)
        for layer, widths, block, channel in zip(self.features, self.mid_widths, arch.blocks, arch.channels):
            x = layer[block](x, widths[channel])
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

    @staticmethod
    def _source_key(key: str, arch: Architecture) -> str:
        if key.startswith("features."):
            _, layer, rest = key.split(".", 2)
            return f"features.{layer}.{arch.blocks[int(layer)]}.{rest}"
        return key

    @torch.no_grad()
    def extract(self, arch: Architecture) -> FixedNet:
        """A FixedNet of ``arch`` holding this supernet's weights (leading slices) and BN statistics.

        Its eval-mode output equals ``self.eval()(x, arch)``. The supernet's BN has no affine
        parameters, so the FixedNet's start at weight 1 and bias 0.
        """
        net = FixedNet(self.space, arch, affine=True)
        source = self.state_dict()
        for key, target in net.state_dict().items():
            origin = source.get(self._source_key(key, arch))
            if origin is None:
                target.fill_(1.0 if key.endswith(".weight") else 0.0)
            else:
                target.copy_(centre_slice(origin, target.shape))
        return net.train(self.training)


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
