"""The layout of a space's networks: every shape a network is built from, resolved once when the space is made (the stem, each choice layer with the mid width of every candidate op at every width choice, the head)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spos.space.searchspace import SearchSpace

#: The paper's four block choices: ShuffleNetV2 3x3, 5x5, 7x7 and Xception-like.
SHUFFLENET_OPS = ("shufflenet-3x3", "shufflenet-5x5", "shufflenet-7x7", "xception-3x3")


@dataclass(frozen=True)
class LayerSpec:
    """The fixed facts of one choice layer; its op and width choice come from the architecture.

    ``mid_widths[op][width choice]`` is the mid width each candidate runs at, resolved once by the
    block's own rule when the space's `Layout` is built; every network and count reads it there.
    """

    index: int
    stage: int
    in_channels: int
    out_channels: int
    stride: int
    first: bool
    activation: str
    se: bool
    in_size: int
    ops: tuple[str, ...] = SHUFFLENET_OPS
    mid_widths: tuple[tuple[int, ...], ...] = ()

    @property
    def out_size(self) -> int:
        return (self.in_size - 1) // self.stride + 1

    @property
    def shape(self) -> LayerSpec:
        """This layer without its place (index, stage): layers of equal shape are checked, resolved,
        counted and timed once, as a block's plan depends on the shape alone."""
        return dataclasses.replace(self, index=0, stage=0)

    def block(self, op: int):
        """The `spos.space.blocks.Block` of candidate ``op``."""
        from spos.space.blocks import make_block  # blocks import torch; the space stays plain data

        return make_block(self.ops[op])

    def mid_channels(self, scale: float, op: int = 0) -> int:
        """The mid width of ``op`` at any ``scale``, for scales outside the space's width choices
        (official checkpoints are at 1.0); a choice of the space reads `mid_widths`."""
        return self.block(op).mid_channels(self, scale)



@dataclass(frozen=True)
class StemSpec:
    """The stem: a 3x3 conv, BN and activation."""

    in_channels: int
    out_channels: int
    stride: int
    activation: str
    in_size: int

    @property
    def out_size(self) -> int:
        return (self.in_size - 1) // self.stride + 1



@dataclass(frozen=True)
class HeadSpec:
    """The head: the last 1x1 conv (before pooling with BN, or after it with a bias), dropout and
    the classifier."""

    in_channels: int
    width: int
    pool_first: bool
    activation: str
    in_size: int
    num_classes: int
    bias: bool
    dropout: float



@dataclass(frozen=True)
class Layout:
    """Every shape a network of one space is built from, resolved once (`SearchSpace.layout`).

    The networks (`spos.nn.fixed`, `spos.nn.supernet`), the cost model (`spos.space.flops`), latency tables,
    plots and the canonical forms all read this one record rather than asking the space, the
    blocks and each other for sizes and widths, so a network and its counted cost cannot disagree.
    """

    input_shape: tuple[int, int, int]
    stem: StemSpec
    layers: tuple[LayerSpec, ...]
    head: HeadSpec



def build_layout(space: SearchSpace) -> Layout:
    """The layout of ``space``; each candidate block checks its layer before its widths are read."""
    stem = StemSpec(space.in_channels, space.stem_width, space.stem_stride, space.stem_activation, space.input_size)
    layers, in_channels, size, widths = [], stem.out_channels, stem.out_size, {}
    for stage, (repeats, width) in enumerate(zip(space.stage_repeats, space.stage_widths)):
        for i in range(repeats):
            ops = space.stage_first_ops[stage] if i == 0 and space.stage_first_ops[stage] else space.stage_ops[stage]
            spec = LayerSpec(len(layers), stage, in_channels, width, space.stage_strides[stage] if i == 0 else 1,
                             i == 0, space.stage_activations[stage], space.stage_se[stage], size, ops)
            shape = spec.shape
            if shape not in widths:
                widths[shape] = _mid_widths(spec, space.channel_scales)
            layers.append(dataclasses.replace(spec, mid_widths=widths[shape]))
            in_channels, size = width, spec.out_size
    head = HeadSpec(in_channels, space.last_conv_width, space.head == "pool-conv", space.head_activation, size,
                    space.num_classes, space.classifier_bias, space.dropout)
    return Layout((space.in_channels, space.input_size, space.input_size), stem, tuple(layers), head)



def _mid_widths(spec: LayerSpec, scales: tuple[float, ...]) -> tuple[tuple[int, ...], ...]:
    widths = []
    for op in range(len(spec.ops)):
        block = spec.block(op)
        block.check(spec)
        widths.append(tuple(block.mid_channels(spec, scale) for scale in scales))
    return tuple(widths)


__all__ = ['HeadSpec', 'LayerSpec', 'Layout', 'SHUFFLENET_OPS', 'StemSpec', 'build_layout']
