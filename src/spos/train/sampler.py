"""Which path the supernet trains on each step: uniform, optionally inside a FLOPs window.

The official code first draws a 10 MFLOPs bin in [290, 360] MFLOPs uniformly, then
rejection-samples a path inside it (``flops_bins``); a plain [min, max] window is offered too.
The seed's channel warm-up trains only the widest channel choices first, then lowers the
smallest allowed choice step by step (``min_channel`` as a function of the epoch).

``strategy="fair"`` is FairNAS's strictly fair sampling (Chu et al. 2019): each step trains m
paths (m = block choices per layer) in which every block choice of every layer appears exactly
once, so every block gets one gradient per step instead of one in m steps on average.
"""

from __future__ import annotations

import random

from spos.errors import UserError
from spos.flops import cost_table
from spos.space import Architecture, SearchSpace, canonical_mode, sample_architecture

MAX_TRIES = 10_000
STRATEGIES = ("uniform", "fair")


class PathSampler:
    def __init__(self, space: SearchSpace, seed: int, *, mode: str = "both", flops_min: float | None = None,
                 flops_max: float | None = None, flops_bins: list[float] | None = None,
                 channel_warmup_epochs: int = 0, channel_warmup_step_epochs: int = 1,
                 strategy: str = "uniform") -> None:
        self.space, self.mode = space, canonical_mode(mode)
        if strategy not in STRATEGIES:
            raise UserError(f"sampling.strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
        if strategy == "fair" and (self.mode == "channel" or flops_min is not None or flops_max is not None
                                   or flops_bins is not None):
            raise UserError("sampling.strategy fair draws every block of every layer once per step: it needs "
                            "sampling.mode both or block and no FLOPs window (flops_min/flops_max/flops_bins null)")
        self.strategy = strategy
        self.rng = random.Random(seed)
        self.table = cost_table(space)
        if flops_min is not None and flops_max is not None and flops_min > flops_max:
            raise UserError(f"sampling.flops_min {flops_min:g} is above sampling.flops_max {flops_max:g}; swap them")
        self.flops_min, self.flops_max = flops_min, flops_max
        if flops_bins is not None:
            if len(flops_bins) != 3 or not flops_bins[0] < flops_bins[1] or flops_bins[2] <= 0:
                raise UserError(f"sampling.flops_bins {flops_bins}: give [low, high, width], e.g. [290e6, 360e6, 10e6]")
        self.flops_bins = flops_bins
        self.warmup_epochs, self.warmup_step = channel_warmup_epochs, max(1, channel_warmup_step_epochs)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def min_channel(self) -> int:
        """Widest choices only until the warm-up ends, then one more choice every ``warmup_step`` epochs."""
        if self.warmup_epochs <= 0:
            return 0
        widest_two = max(0, self.space.num_channels - 2)
        if self.epoch < self.warmup_epochs:
            return widest_two
        return max(0, widest_two - 1 - (self.epoch - self.warmup_epochs) // self.warmup_step)

    def _window(self) -> tuple[float, float]:
        if self.flops_bins:
            low, high, width = self.flops_bins
            bins = int((high - low) // width)
            start = low + width * self.rng.randrange(max(bins, 1))
            return start, start + width
        return (self.flops_min or 0.0, self.flops_max or float("inf"))

    def sample(self) -> Architecture:
        low, high = self._window()
        constrained = low > 0 or high < float("inf")
        for _ in range(MAX_TRIES if constrained else 1):
            arch = sample_architecture(self.space, self.rng, mode=self.mode, min_channel=self.min_channel)
            if not constrained or low <= self.table.macs(arch) <= high:
                return arch
        raise UserError(f"no path with {low / 1e6:.1f}-{high / 1e6:.1f} MFLOPs found in {MAX_TRIES} draws; "
                        "widen the sampling window (sampling.flops_min/flops_max/flops_bins)")

    def sample_step(self) -> list[Architecture]:
        """The paths one optimizer step trains: one path, or m strictly fair ones."""
        if self.strategy == "uniform":
            return [self.sample()]
        return self.sample_fair()

    def sample_fair(self) -> list[Architecture]:
        """m paths (m: the most ops any layer offers); at every layer each op appears once, in a
        random order (a layer with fewer ops fills the rest with random repeats)."""
        m = self.space.num_blocks
        permutations = [self._fair_column(n, m) for n in self.space.op_counts]
        layers = range(self.space.num_layers)
        paths = []
        for j in range(m):
            channels = sample_architecture(self.space, self.rng, mode=self.mode, min_channel=self.min_channel).channels
            paths.append(Architecture(tuple(permutations[layer][j] for layer in layers), channels))
        return paths

    def _fair_column(self, n: int, m: int) -> list[int]:
        column = list(range(n)) + [self.rng.randrange(n) for _ in range(m - n)]
        return self.rng.sample(column, m)

    def state(self) -> dict:
        version, words, gauss = self.rng.getstate()  # lists, not tuples: plain data in the checkpoint
        return {"rng": [version, list(words), gauss], "epoch": self.epoch}

    def load_state(self, state: dict) -> None:
        self.rng.setstate(_as_tuple(state["rng"]))
        self.epoch = state["epoch"]


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value
