"""Canonical architectures: one representative for each set of architectures that build the same network.

Two kinds of twins occur in spaces that can skip layers:

- An identity op that is the input itself (rule "skip" and no branch: stride 1, same width) can
  move among neighbouring layers of the same shape and candidates without changing the network:
  in a stage's last two layers, ``identity, mbconv-e6-k5`` and ``mbconv-e6-k5, identity`` are one
  network. NAS-Bench-Macro's 6,561 keys hold 3,969 networks for this reason.
- The width choice of an op whose plan does not depend on the width (identity, with or without its
  projection) changes nothing.

`canonical` moves such identities to the end of their run of interchangeable layers (the other
layers keep their order) and sets such width choices to the space's default, so that twins are one
candidate for the search, the rank and the caches. In a space without such ops it returns every
architecture unchanged.
"""

from __future__ import annotations

from functools import lru_cache

from spos.space.architecture import Architecture
from spos.space.blocks import make_block, op_plan
from spos.space.layout import LayerSpec
from spos.space.searchspace import SearchSpace


def _plans(spec: LayerSpec, op: int) -> list[dict]:
    """The op plan of ``op`` at every width choice."""
    return [op_plan(spec, spec.ops[op], mid) for mid in spec.mid_widths[op]]


def _is_free_identity(spec: LayerSpec, op: int) -> bool:
    """The op is the input itself at this layer, whatever the width choice."""
    return make_block(spec.ops[op]).rule == "skip" and not any(_plans(spec, op))


def _shape(spec: LayerSpec) -> tuple:
    """What makes two layers interchangeable: the same candidates, input size and activation, and for
    every candidate and width the same op plan (a stage's first layer differs only where a plan does)."""
    plans = [_plans(spec, op) for op in range(len(spec.ops))]
    return spec.ops, spec.in_size, spec.activation, plans


class Canonicalizer:
    """`canonical` for one space, with the layers' facts worked out once (a search calls it per candidate)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        specs = space.layers()
        self.free = [frozenset(op for op in range(len(s.ops)) if _is_free_identity(s, op)) for s in specs]
        self.width_free = [frozenset(op for op in range(len(s.ops)) if _width_free(s, op)) for s in specs]
        self.runs = [run for run in _runs(specs) if len(run) > 1 and self.free[run[0]]]
        self.default = space.default_channel

    @property
    def trivial(self) -> bool:
        """True when every architecture is its own canonical form (no twins in this space)."""
        return not self.runs and (self.space.num_channels == 1 or not any(self.width_free))

    def __call__(self, arch: Architecture) -> Architecture:
        if self.trivial:
            return arch
        blocks = list(arch.blocks)
        channels = [self.default if b in self.width_free[i] else c
                    for i, (b, c) in enumerate(zip(arch.blocks, arch.channels))]
        for run in self.runs:
            identity = min(self.free[run[0]])
            kept = [(blocks[i], channels[i]) for i in run if blocks[i] not in self.free[i]]
            kept += [(identity, self.default)] * (len(run) - len(kept))
            for i, (b, c) in zip(run, kept):
                blocks[i], channels[i] = b, c
        return Architecture(tuple(blocks), tuple(channels))


def _width_free(spec: LayerSpec, op: int) -> bool:
    plans = _plans(spec, op)
    return all(plan == plans[0] for plan in plans)


def _runs(specs: tuple[LayerSpec, ...]) -> list[list[int]]:
    """Maximal runs of consecutive interchangeable layers."""
    runs: list[list[int]] = []
    shapes = [_shape(spec) for spec in specs]
    for spec in specs:
        if runs and shapes[runs[-1][-1]] == shapes[spec.index]:
            runs[-1].append(spec.index)
        else:
            runs.append([spec.index])
    return runs


@lru_cache(maxsize=32)
def canonicalizer(space: SearchSpace) -> Canonicalizer:
    return Canonicalizer(space)


def canonical(arch: Architecture, space: SearchSpace) -> Architecture:
    """The representative of ``arch``'s twins in ``space`` (``arch`` itself where it has none)."""
    return canonicalizer(space)(arch.validate(space))


def distinct(archs, space: SearchSpace) -> list[Architecture]:
    """``archs`` with twins dropped (each kept as its canonical form, first come first kept)."""
    return list(dict.fromkeys(canonicalizer(space)(arch) for arch in archs))
