"""Analytic multiply-adds (what papers call FLOPs) and parameters of any architecture.

Counted: convolutions, linear layers and squeeze-excitation (their multiply-adds); not BN,
activations, pooling or the SE gate's product, as `torch.utils.flop_counter` does. Parameters
are the FixedNet's (affine BN included). A per-layer table makes one architecture a sum of 20
look-ups, fast enough to filter hundreds of thousands of candidates in a search.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from spos.blocks import main_branch_plan, proj_branch_plan, se_mid_channels
from spos.space import Architecture, SearchSpace


@dataclass(frozen=True)
class Cost:
    macs: int
    params: int

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.macs + other.macs, self.params + other.params)


def plan_cost(plan: list[tuple], size: int) -> Cost:
    """Cost of a list of ops (see `blocks.main_branch_plan`) run on a ``size`` x ``size`` input."""
    macs = params = 0
    for op in plan:
        if op[0] == "conv":
            _, cin, cout, k, stride, groups, _ = op
            size = (size - 1) // stride + 1
            weights = cout * (cin // groups) * k * k
            macs += size * size * weights
            params += weights
        elif op[0] == "bn":
            params += 2 * op[1]
        elif op[0] == "se":
            c, mid = op[1], se_mid_channels(op[1])
            macs += 2 * c * mid
            params += 2 * c * mid + mid + c
    return Cost(macs, params)


def stem_cost(space: SearchSpace) -> Cost:
    weights = space.stem_width * space.in_channels * 9
    return Cost(space.stem_size ** 2 * weights, weights + 2 * space.stem_width)


def head_cost(space: SearchSpace) -> Cost:
    cin, cout = space.stage_widths[-1], space.last_conv_width
    if space.head == "pool-conv":
        last = Cost(cin * cout, cin * cout + cout)
    else:
        last = Cost(space.final_size ** 2 * cin * cout, cin * cout + 2 * cout)
    fc = cout * space.num_classes
    return last + Cost(fc, fc + (space.num_classes if space.classifier_bias else 0))


class CostTable:
    """Per-layer costs of every (block, channel) choice plus the fixed stem and head."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.fixed = stem_cost(space) + head_cost(space)
        shape = (space.num_layers, space.num_blocks, space.num_channels)
        self.layer_macs = np.zeros(shape, dtype=np.int64)
        self.layer_params = np.zeros(shape, dtype=np.int64)
        for spec in space.layers():
            for block in range(space.num_blocks):
                proj = plan_cost(proj_branch_plan(spec, block), spec.in_size)
                for channel, scale in enumerate(space.channel_scales):
                    cost = proj + plan_cost(main_branch_plan(spec, block, spec.mid_channels(scale)), spec.in_size)
                    self.layer_macs[spec.index, block, channel] = cost.macs
                    self.layer_params[spec.index, block, channel] = cost.params
        self._macs_rows = self.layer_macs.tolist()
        self._params_rows = self.layer_params.tolist()

    def macs(self, arch: Architecture) -> int:
        rows = self._macs_rows
        return self.fixed.macs + sum(rows[i][b][c] for i, (b, c) in enumerate(zip(arch.blocks, arch.channels)))

    def params(self, arch: Architecture) -> int:
        rows = self._params_rows
        return self.fixed.params + sum(rows[i][b][c] for i, (b, c) in enumerate(zip(arch.blocks, arch.channels)))

    def cost(self, arch: Architecture) -> Cost:
        return Cost(self.macs(arch), self.params(arch))

    def batch(self, blocks: np.ndarray, channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Costs of many architectures at once: ``blocks`` and ``channels`` are (N, layers) int arrays."""
        layers = np.arange(self.space.num_layers)[None, :]
        macs = self.layer_macs[layers, blocks, channels].sum(1) + self.fixed.macs
        params = self.layer_params[layers, blocks, channels].sum(1) + self.fixed.params
        return macs, params

    def extremes(self) -> tuple[Architecture, Architecture]:
        """The widest (most MACs) and narrowest (fewest MACs) paths; layers are independent."""
        flat = self.layer_macs.reshape(self.space.num_layers, -1)
        nc = self.space.num_channels
        wide, narrow = flat.argmax(1), flat.argmin(1)
        return (Architecture(tuple(wide // nc), tuple(wide % nc)),
                Architecture(tuple(narrow // nc), tuple(narrow % nc)))


@lru_cache(maxsize=32)
def cost_table(space: SearchSpace) -> CostTable:
    return CostTable(space)


def count(space: SearchSpace, arch: Architecture) -> Cost:
    return cost_table(space).cost(arch.validate(space))
