"""Analytic multiply-adds (what papers call FLOPs) and parameters of any architecture.

Counted: convolutions, linear layers and squeeze-excitation (their multiply-adds); not BN,
activations, pooling or the SE gate's product, as `torch.utils.flop_counter` does. Parameters
are the FixedNet's (affine BN included). Costs come from the blocks' op plans (`spos.space.blocks`),
the same records the modules are built from. A per-layer table makes one architecture a sum of
one look-up per layer, fast enough to filter hundreds of thousands of candidates in a search.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from spos.errors import UserError
from spos.space import limits
from spos.space.architecture import Architecture
from spos.space.blocks import Op, op_plan, se_mid_channels
from spos.space.layout import HeadSpec, LayerSpec, StemSpec
from spos.space.searchspace import SPACE_CHECKS, SearchSpace


@dataclass(frozen=True)
class Cost:
    macs: int
    params: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.params + other.params)


def plan_cost(plan: list[Op], size: int) -> Cost:
    """Cost of one branch (a list of `spos.space.blocks.Op`) run on a ``size`` x ``size`` input."""
    macs = params = 0
    for op in plan:
        if op.kind == "conv":
            size = (size - 1) // op.stride + 1
            weights = op.out_channels * (op.in_channels // op.groups) * op.kernel * op.kernel
            macs += size * size * weights
            params += weights
        elif op.kind == "bn":
            params += 2 * op.out_channels
        elif op.kind == "se":
            c, mid = op.out_channels, se_mid_channels(op.out_channels)
            macs += 2 * c * mid
            params += 2 * c * mid + mid + c
    return Cost(macs, params)


def layer_cost(spec: LayerSpec, op: int, channel: int) -> Cost:
    """Cost of choice layer ``spec`` running candidate ``op`` at width choice ``channel``."""
    total = Cost(0, 0)
    for plan in op_plan(spec, spec.ops[op], spec.mid_widths[op][channel]).values():
        total = total + plan_cost(plan, spec.in_size)
    return total


def stem_cost(stem: StemSpec) -> Cost:
    weights = stem.out_channels * stem.in_channels * 9
    return Cost(stem.out_size ** 2 * weights, weights + 2 * stem.out_channels)


def head_cost(head: HeadSpec) -> Cost:
    cin, cout = head.in_channels, head.width
    if head.pool_first:
        last = Cost(cin * cout, cin * cout + cout)
    else:
        last = Cost(head.in_size ** 2 * cin * cout, cin * cout + 2 * cout)
    fc = cout * head.num_classes
    return last + Cost(fc, fc + (head.num_classes if head.bias else 0))


class CostTable:
    """Per-layer costs of every (op, width) choice plus the fixed stem and head.

    Layers with fewer candidate ops than others are padded; `extremes` never picks the padding.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        layout = space.layout
        self.fixed = stem_cost(layout.stem) + head_cost(layout.head)
        shape = (space.num_layers, space.num_blocks, space.num_channels)
        self.layer_macs = np.zeros(shape, dtype=np.int64)
        self.layer_params = np.zeros(shape, dtype=np.int64)
        self.valid = np.zeros(shape, dtype=bool)
        for spec in layout.layers:
            for op in range(len(spec.ops)):
                for channel in range(space.num_channels):
                    cost = layer_cost(spec, op, channel)
                    self.layer_macs[spec.index, op, channel] = cost.macs
                    self.layer_params[spec.index, op, channel] = cost.params
                    self.valid[spec.index, op, channel] = True
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
        valid = self.valid.reshape(self.space.num_layers, -1)
        nc = self.space.num_channels
        wide = np.where(valid, flat, -1).argmax(1)
        narrow = np.where(valid, flat, np.iinfo(np.int64).max).argmin(1)
        return (Architecture(tuple(wide // nc), tuple(wide % nc)),
                Architecture(tuple(narrow // nc), tuple(narrow % nc)))


@lru_cache(maxsize=32)
def cost_table(space: SearchSpace) -> CostTable:
    return CostTable(space)


def count(space: SearchSpace, arch: Architecture) -> Cost:
    return cost_table(space).cost(arch.validate(space))


@lru_cache(maxsize=256)  # every SearchSpace built asks (spos.space.limits): equal spaces are built again and again
def supernet_parameters(space: SearchSpace) -> int:
    """Parameters of ``space``'s supernet, every candidate op at its widest choice: an upper bound (an
    entangled supernet shares some), and what `spos.space.limits.MAX_PARAMETERS` bounds."""
    layout, scales = space.layout, space.channel_scales
    widest = scales.index(max(scales))
    shapes = Counter(spec.shape for spec in layout.layers)  # equal layers, counted once
    layers = sum(count * layer_cost(spec, op, widest).params for spec, count in shapes.items()
                 for op in range(len(spec.ops)))
    return stem_cost(layout.stem).params + head_cost(layout.head).params + layers


def readable(count: float) -> str:
    """A count with three significant digits and its SI prefix: ``3.43M``, ``18.2k``, ``512``: a network
    of any size reads as a number, where a fixed ``/ 1e6`` prints a small one as ``0.00M``."""
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(count) >= scale * 0.9995:
            return f"{count / scale:.3g}{prefix}"
    return f"{count:.3g}"


def check_supernet_size(space) -> None:
    """A space whose supernet would be too large to build is refused before anything is built."""
    params = supernet_parameters(space)
    if params > limits.MAX_PARAMETERS:
        raise UserError(f"space {space.name!r}: its supernet would hold {params / 1e6:,.0f}M parameters, beyond "
                        f"spos's limit of {limits.MAX_PARAMETERS / 1e6:,.0f}M (spos/limits.py); narrow its "
                        "widths or layers")


SPACE_CHECKS.append(check_supernet_size)
