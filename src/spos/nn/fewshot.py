"""Few-shot supernets (Zhao et al., "Few-shot Neural Architecture Search", ICML 2021).

One supernet shares one set of weights among every path, so each layer's weights serve paths that
want different things from them (co-adaptation), and a path's score inside the supernet mismatches
its accuracy trained alone. A few-shot supernet splits the one-shot supernet on the block choices
of a few layers into K sub-supernets (K = the product of those layers' op counts): each owns the
paths with one combination of choices there, and its weights serve only those.

Training stays one run: until the split epoch every path trains sub-supernet 0 (the one-shot
supernet). At the split its weights, BN statistics and optimizer state are copied into the others
(`FewShotSuperNet.split`), so each starts from the one-shot weights, as the paper does, and trains on
the steps whose paths it owns: its share of the remaining budget. Whether the split happened is a
buffer of the model, so a checkpoint written after it resumes with the copies it holds. A path is
always scored by the sub-supernet it belongs to, so the search, `spos rank` and extraction use a
few-shot supernet as they use a `SuperNet`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn

from spos.errors import UserError
from spos.nn.fixed import FixedNet
from spos.nn.supernet import PathView, SuperNet
from spos.space.architecture import Architecture
from spos.space.searchspace import SearchSpace


def check_split_layers(space: SearchSpace, layers: Sequence[int]) -> tuple[int, ...]:
    """``layers`` as a tuple of distinct layer indices that each offer more than one block, or a UserError."""
    layers = tuple(layers)
    counts = space.op_counts
    if not layers:
        raise UserError("sampling.few_shot_layers is empty; give the layers to split on, e.g. [0], or null for "
                        "a one-shot supernet")
    bad = [layer for layer in layers
           if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(counts)]
    if bad:
        raise UserError(f"sampling.few_shot_layers {list(layers)}: {bad[0]!r} is not a layer of {space.name} "
                        f"(0..{len(counts) - 1})")
    if len(set(layers)) != len(layers):
        raise UserError(f"sampling.few_shot_layers {list(layers)} names a layer twice; name each once")
    single = [layer for layer in layers if counts[layer] < 2]
    if single:
        raise UserError(f"sampling.few_shot_layers: layer {single[0]} of {space.name} has one block, nothing to "
                        "split on; choose a layer with several")
    return layers


def split_epoch_of(split_epoch: int | None, epochs: int) -> int:
    """The epoch the split happens at the start of: ``sampling.few_shot_split_epoch``, or half the run when
    null; a split at or after the last epoch would leave the sub-supernets untrained, so it is refused."""
    epoch = epochs // 2 if split_epoch is None else int(split_epoch)
    if not 0 <= epoch < epochs:
        raise UserError(f"sampling.few_shot_split_epoch {epoch} is not inside the run's {epochs} epochs; give "
                        f"0..{epochs - 1} (null: half the run)")
    return epoch


class FewShotSuperNet(nn.Module):
    """K `SuperNet` copies (``shots``), each owning the paths of one combination of blocks at ``split_layers``;
    until `split` every path runs on ``shots[0]``. Called, viewed and extracted like a `SuperNet`."""

    def __init__(self, space: SearchSpace, split_layers: Sequence[int], *, entangled_kernels: bool = False,
                 aligned_choices: bool = False) -> None:
        super().__init__()
        self.split_layers = check_split_layers(space, split_layers)
        first = SuperNet(space, entangled_kernels=entangled_kernels, aligned_choices=aligned_choices)
        count = math.prod(space.op_counts[layer] for layer in self.split_layers)
        self.shots = nn.ModuleList([first] + [copy.deepcopy(first) for _ in range(count - 1)])
        self.register_buffer("split_done", torch.zeros((), dtype=torch.bool))
        self.space = space
        self.entangled_kernels, self.aligned_choices = entangled_kernels, aligned_choices

    @property
    def is_split(self) -> bool:
        return bool(self.split_done)

    def shot_of(self, arch: Architecture) -> int:
        """The index of the sub-supernet ``arch`` belongs to (its blocks at the split layers, mixed radix);
        0 for every path before the split."""
        if not self.is_split:
            return 0
        index = 0
        for layer in self.split_layers:
            index = index * self.space.op_counts[layer] + arch.blocks[layer]
        return index

    def shot(self, arch: Architecture) -> SuperNet:
        return self.shots[self.shot_of(arch.validate(self.space))]

    def forward(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
        return self.shot(arch)(x, arch)

    def path(self, arch: Architecture) -> PathView:
        """The path as a plain network, run by the sub-supernet it belongs to (``path(arch)(x) == self(x, arch)``)."""
        return PathView(self, arch.validate(self.space))

    def path_modules(self, arch: Architecture) -> Iterator[nn.Module]:
        return self.shot(arch).path_modules(arch)

    def path_parameters(self, arch: Architecture) -> Iterator[nn.Parameter]:
        return self.shot(arch).path_parameters(arch)

    def extract(self, arch: Architecture, calibration: Iterable | None = None) -> FixedNet:
        """`SuperNet.extract` by the sub-supernet ``arch`` belongs to (its BN recalibrated on ``calibration``)."""
        return self.shot(arch).extract(arch, calibration)

    @torch.no_grad()
    def split(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Copy sub-supernet 0 (weights, BN statistics and, given ``optimizer``, each parameter's state, e.g.
        its momentum) into every other one and route paths by their blocks from now on. Done once."""
        if self.is_split:
            return
        first = self.shots[0]
        sources = list(first.parameters())  # shared (entangled) weights once each, in the same order per copy
        for shot in self.shots[1:]:
            shot.load_state_dict(first.state_dict())
            if optimizer is not None:
                for source, target in zip(sources, shot.parameters()):
                    if source in optimizer.state:
                        optimizer.state[target] = {key: value.clone() if torch.is_tensor(value) else value
                                                   for key, value in optimizer.state[source].items()}
        self.split_done.fill_(True)
