"""`SuperNet`: one set of weights per candidate op per layer, shared by all width choices.

``forward(x, arch)`` runs one path; channel selection slices the shared weights (see
`spos.nn.dynamic`), so a training step on a narrow path costs what the narrow subnet costs.
BN is non-affine as in the official supernet, so its statistics can be recalibrated per path.
Parameter names follow the official block-search supernet: ``features.LAYER.BLOCK.*``.

``entangled_kernels=True`` makes the ops of a layer that share a layout share weights (see
`entangle_layer`): the ShuffleNet 3x3/5x5/7x7 choices use one 7x7 depthwise kernel and one set
of pointwise convs. The default keeps the official independent weights (and so loads official
checkpoints). ``aligned_choices=True`` (with entangled kernels) also ties the Xception choice to
the ShuffleNet ones and starts every choice of a layer computing nearly the same function
(`start_aligned`, `start_as_identity`), so random paths agree from the first step.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn

from spos.errors import UserError
from spos.nn.dynamic import DynamicBlock, DynamicConv2d, inherit
from spos.nn.fixed import FixedNet, Head, build_stem
from spos.nn.ops import init_weights
from spos.space.architecture import Architecture
from spos.space.searchspace import SearchSpace


class SuperNet(nn.Module):
    def __init__(self, space: SearchSpace, *, entangled_kernels: bool = False, aligned_choices: bool = False) -> None:
        super().__init__()
        if aligned_choices and not entangled_kernels:
            raise UserError("space.aligned_choices needs space.entangled_kernels: true (aligned choices share "
                            "weights); set both, or neither")
        self.space = space
        self.entangled_kernels, self.aligned_choices = entangled_kernels, aligned_choices
        layout = space.layout
        #: mid_widths[layer][op][width choice]: the width a path runs each op at.
        self.mid_widths = [spec.mid_widths for spec in layout.layers]
        self.first_conv = build_stem(layout.stem, affine=False)
        self.features = nn.ModuleList(
            nn.ModuleList(DynamicBlock(spec, name, max(widths[op])) for op, name in enumerate(spec.ops))
            for spec, widths in zip(layout.layers, self.mid_widths)
        )
        self.head = Head(layout.head, affine=False)
        own = [conv for layer in self.features for conv in entangle_layer(layer, aligned=aligned_choices)] \
            if entangled_kernels else []
        init_weights(self)
        if aligned_choices:
            for layer in self.features:
                start_aligned(layer)
            with torch.no_grad():
                for conv in own:
                    start_as_identity(conv)

    def forward(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
        arch.validate(self.space)
        x = self.first_conv(x)
        for layer, widths, block, channel in zip(self.features, self.mid_widths, arch.blocks, arch.channels):
            x = layer[block](x, widths[block][channel])
        return self.head(x)

    def path(self, arch: Architecture) -> PathView:
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

    def extract(self, arch: Architecture, calibration: Iterable | None = None) -> FixedNet:
        """A FixedNet of ``arch`` holding this supernet's weights (leading slices, centred kernels),
        built module by module from the path (`spos.nn.dynamic.inherit`), with its BN statistics
        re-estimated for this path on ``calibration``: training batches, those of
        `spos.nn.calibration.calibration_batches` for the numbers ``spos eval`` and ``spos export`` give.

        The supernet's own running statistics belong to no path (training mixes every path, and
        validating a path resets the BN of every op off it), so a copy without recalibration is
        refused rather than handed over. The result's eval-mode output equals
        ``self.path(arch)`` recalibrated on the same batches. The supernet's BN has no affine
        parameters, so the FixedNet's start at weight 1 and bias 0.
        """
        if calibration is None:
            raise UserError("a supernet path's BN statistics must be recalibrated before it is a network of its "
                            "own: pass calibration batches, e.g. extract(arch, spos.nn.calibration.calibration_batches("
                            "<the supernet's training split>))")
        from spos.nn.calibration import recalibrate_bn  # spos.train builds supernets, so it is imported here

        return recalibrate_bn(self._inherited(arch), calibration).train(self.training)

    @torch.no_grad()
    def _inherited(self, arch: Architecture) -> FixedNet:
        """The path's weights and (stale) BN statistics copied into a FixedNet on this supernet's device."""
        net = FixedNet(self.space, arch, affine=True).to(next(self.parameters()).device)
        inherit(net.first_conv, self.first_conv)
        for fixed, layer, block in zip(net.features, self.features, arch.blocks):
            inherit(fixed, layer[block])
        inherit(net.head, self.head)
        return net


def entangle_layer(layer: nn.ModuleList, *, aligned: bool = False) -> list[DynamicConv2d]:
    """Let the ops of one layer that share a layout (ShuffleNet 3x3/5x5/7x7; MBConv of any kernel
    and expansion) use the weights of the largest of them: each runs the leading channels and the
    centre of the kernel (Once-for-All's elastic kernel and width), so the choices stay aligned
    and every step trains weights all of them use. BN statistics stay per op. A group is left
    independent when no op is at least as large as all others in both kernel and width.

    ``aligned`` also ties the ops of another layout that name a group in ``align_key`` (the
    Xception choice to the ShuffleNet ones) through their ``align_convs``; returns their convs
    of their own, for `start_as_identity`."""
    groups: dict[tuple, list[DynamicBlock]] = {}
    for op in layer:
        if op.block.entangle_key is not None:
            groups.setdefault(op.block.entangle_key, []).append(op)
    own: list[DynamicConv2d] = []
    for key, ops in groups.items():
        source = max(ops, key=lambda op: (op.block.kernel, op.max_mid))
        tied = [op for op in layer if aligned and op.block.align_key == key]
        if not all(_fits(op, source) for op in ops + tied):
            continue
        for op in ops:
            if op is not source:
                op.entangle(source)
        for op in tied:
            own += op.entangle(source, op.block.align_convs)
    return own


def _fits(op: DynamicBlock, source: DynamicBlock) -> bool:
    return op.block.kernel <= source.block.kernel and op.max_mid <= source.max_mid


@torch.no_grad()
def start_aligned(layer: nn.ModuleList) -> None:
    """Zero the taps of every shared kernel outside the centre its smallest user runs, so the
    kernel-size choices of a layer start as the same function and only grow apart by training.

    Measured on digits (benchmarks/README.md): with independent or merely entangled weights, the
    oneshot supernet's paths compute unrelated features and stay at chance for the demo's
    budget; with aligned starts random kernel sizes learn about as fast as one fixed path."""
    users: dict[int, list[DynamicConv2d]] = {}
    for conv in layer.modules():
        if isinstance(conv, DynamicConv2d):
            users.setdefault(id(conv.weight), []).append(conv)
    for convs in users.values():
        keep, weight = min(conv.kernel_size[0] for conv in convs), convs[0].weight
        start = (weight.shape[-1] - keep) // 2
        if start > 0:
            centre = weight[..., start:start + keep, start:start + keep].clone()
            weight.zero_()
            weight[..., start:start + keep, start:start + keep] = centre


@torch.no_grad()
def start_as_identity(conv: DynamicConv2d) -> None:
    """A conv that passes its first inputs through: 1 at the kernel centre, channel i to i (each
    channel to itself for a depthwise kernel), 0 elsewhere."""
    weight = conv.weight
    centre = weight.shape[-1] // 2
    weight.zero_()
    if conv.depthwise:
        weight[:, 0, centre, centre] = 1
    else:
        n = min(weight.shape[0], weight.shape[1])
        weight[torch.arange(n), torch.arange(n), centre, centre] = 1


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
