"""Which path the supernet trains on each step: uniform, optionally inside a FLOPs window.

The official code first draws a 10 MFLOPs bin in [290, 360] MFLOPs uniformly, then
rejection-samples a path inside it (``flops_bins``); a plain [min, max] window is offered too.
The seed's channel warm-up trains only the widest channel choices first, then lowers the
smallest allowed choice step by step (``min_channel`` as a function of the epoch).

``strategy="fair"`` is FairNAS's strictly fair sampling (Chu et al. 2019): each step trains m
paths (m = block choices per layer) in which every block choice of every layer appears exactly
once, so every block gets one gradient per step instead of one in m steps on average.

``strategy="sandwich"`` is BigNAS's sandwich rule (Yu et al. 2020): each step trains the widest
path (most FLOPs among the paths the sampling mode allows) on the labels, then the narrowest
path and ``sandwich_paths - 1`` random ones on the widest path's soft predictions (in-place
distillation, done by the training loop), so the extremes that bound every other path are
trained on every step and the small paths learn from the big one rather than from noisy labels.

``progressive_epochs=E`` is the block analogue of the channel warm-up: in epoch e < E only the
first ceil(L (e + 1) / (E + 1)) of the L layers are drawn at random, the others keep one fixed
choice (the layer's first op, the 3x3 block in the ShuffleNet spaces, at channel scale 1.0:
what the block and channel modes fix), so the released share grows by L / (E + 1) layers an
epoch until every layer is free from epoch E on.
Layers are released from the input on: the issue's measurement on digits trained a supernet
with random blocks in layer 0 only to 74% val, because the fixed layers after a random one
adapt to its changing features; each layer released later joins a network whose earlier
layers already vary. Every strategy honours it (fair sampling is fair over the released layers,
the sandwich's widest and narrowest paths are taken among the paths allowed now).
"""

from __future__ import annotations

import math
import random

from spos.errors import UserError
from spos.space.architecture import Architecture, canonical_mode, sample_architecture
from spos.space.flops import cost_table
from spos.space.searchspace import SearchSpace

MAX_TRIES = 10_000
STRATEGIES = ("uniform", "fair", "sandwich")
DISTILLING = ("sandwich",)  # strategies whose later paths learn from the first path's predictions


class PathSampler:
    def __init__(self, space: SearchSpace, seed: int, *, mode: str = "both", flops_min: float | None = None,
                 flops_max: float | None = None, flops_bins: list[float] | None = None,
                 channel_warmup_epochs: int = 0, channel_warmup_step_epochs: int = 1,
                 strategy: str = "uniform", sandwich_paths: int = 2, progressive_epochs: int = 0) -> None:
        self.space, self.mode = space, canonical_mode(mode)
        if strategy not in STRATEGIES:
            raise UserError(f"sampling.strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
        if strategy == "fair" and (self.mode == "channel" or flops_min is not None or flops_max is not None
                                   or flops_bins is not None):
            raise UserError("sampling.strategy fair draws every block of every layer once per step: it needs "
                            "sampling.mode both or block and no FLOPs window (flops_min/flops_max/flops_bins null)")
        if strategy == "sandwich" and (flops_min is not None or flops_max is not None or flops_bins is not None):
            raise UserError("sampling.strategy sandwich trains the widest and narrowest paths, which lie outside any "
                            "FLOPs window: set sampling.flops_min/flops_max/flops_bins to null")
        if sandwich_paths < 1:
            raise UserError(f"sampling.sandwich_paths {sandwich_paths}: give at least 1 (the narrowest path)")
        self.strategy, self.sandwich_paths = strategy, sandwich_paths
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
        self.progressive_epochs = progressive_epochs
        self.epoch = 0
        self._extremes: dict[tuple[int, int], tuple[Architecture, Architecture]] = {}  # by (min_channel, released)

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

    @property
    def released_layers(self) -> int:
        """How many layers, counted from the input, are drawn at random this epoch (progressive training)."""
        layers, epochs = self.space.num_layers, self.progressive_epochs
        if self.epoch >= epochs:
            return layers
        return math.ceil(layers * (self.epoch + 1) / (epochs + 1))

    def _pinned_choice(self) -> tuple[int, int]:
        """(block, channel) of a layer not released yet: its first op at scale 1.0, or at the
        channel warm-up's lowest allowed choice while that is wider."""
        if self.mode == "block":
            return 0, self.space.default_channel
        return 0, max(self.space.default_channel, self.min_channel)

    def _pin(self, arch: Architecture) -> Architecture:
        """``arch`` with every layer not released yet at its pinned choice."""
        released, layers = self.released_layers, self.space.num_layers
        if released >= layers:
            return arch
        block, channel = self._pinned_choice()
        return Architecture(arch.blocks[:released] + (block,) * (layers - released),
                            arch.channels[:released] + (channel,) * (layers - released))

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
            arch = self._pin(sample_architecture(self.space, self.rng, mode=self.mode, min_channel=self.min_channel))
            if not constrained or low <= self.table.macs(arch) <= high:
                return arch
        raise UserError(f"no path with {low / 1e6:.1f}-{high / 1e6:.1f} MFLOPs found in {MAX_TRIES} draws; "
                        "widen the sampling window (sampling.flops_min/flops_max/flops_bins)")

    @property
    def distills(self) -> bool:
        """Whether a step's later paths learn from its first path's soft predictions, not the labels."""
        return self.strategy in DISTILLING

    def sample_step(self) -> list[Architecture]:
        """The paths one optimizer step trains: one path, m strictly fair ones, or a sandwich."""
        if self.strategy == "uniform":
            return [self.sample()]
        if self.strategy == "sandwich":
            return self.sample_sandwich()
        return [self._pin(arch) for arch in self.sample_fair()]

    def sample_sandwich(self) -> list[Architecture]:
        """The widest path (the teacher), the narrowest, then ``sandwich_paths - 1`` random paths."""
        widest, narrowest = self.extreme_paths()
        return [widest, narrowest, *(self.sample() for _ in range(self.sandwich_paths - 1))]

    def extreme_paths(self) -> tuple[Architecture, Architecture]:
        """The paths with the most and the fewest FLOPs among those ``sample`` can draw now (its
        mode, the channel warm-up's lowest choice and the layers released). Layers cost
        independently, so each layer takes its own costliest / cheapest choice (the lowest index on
        a tie); in mode 'both' without warm-ups this is `CostTable.extremes`."""
        key = (self.min_channel, self.released_layers)
        if key not in self._extremes:
            channels = ((self.space.default_channel,) if self.mode == "block"
                        else range(self.min_channel, self.space.num_channels))
            base = Architecture((0,) * self.space.num_layers, (self.space.default_channel,) * self.space.num_layers)
            widest, narrowest = [], []
            for layer, ops in enumerate(self.space.op_counts):
                blocks = (0,) if self.mode == "channel" else range(ops)
                free = [(b, c) for b in blocks for c in channels]
                choices = free if layer < self.released_layers else [self._pinned_choice()]
                costs = {(b, c): self.table.macs(_with_layer(base, layer, b, c)) for b, c in choices}
                widest.append(max(costs, key=costs.get))
                narrowest.append(min(costs, key=costs.get))
            self._extremes[key] = (_from_pairs(widest), _from_pairs(narrowest))
        return self._extremes[key]

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


def _with_layer(arch: Architecture, layer: int, block: int, channel: int) -> Architecture:
    blocks, channels = list(arch.blocks), list(arch.channels)
    blocks[layer], channels[layer] = block, channel
    return Architecture(tuple(blocks), tuple(channels))


def _from_pairs(pairs: list[tuple[int, int]]) -> Architecture:
    return Architecture(tuple(b for b, _ in pairs), tuple(c for _, c in pairs))
