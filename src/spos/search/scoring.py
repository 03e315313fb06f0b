"""Score candidates with a trained supernet: inherit its weights, recalibrate BN, measure hold-out top-1.

Each candidate runs directly on its supernet path (no FixedNet is built): its BN statistics are
reset and re-estimated on a fixed set of training batches with cumulative averaging (the
official default is 20 batches), then top-1 is measured on the hold-out split. The batches are
moved to the device once, so the time a search spends outside the forward passes stays small.
"""

from __future__ import annotations

import logging
from typing import Iterable, Sequence

import torch
import torch.distributed as dist
from torch import nn

from spos.space import Architecture
from spos.supernet import SuperNet
from spos.train.bn import recalibrate_bn
from spos.train.distributed import rank_and_world

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]


def materialize(batches: Iterable[Batch], device: torch.device | str, limit: int | None = None) -> list[Batch]:
    """Batches on the device, read once; ``limit`` caps how many are kept."""
    kept = []
    for index, (x, y) in enumerate(batches):
        if limit is not None and index >= limit:
            break
        kept.append((x.to(device, non_blocking=True), y.to(device, non_blocking=True)))
    return kept


@torch.inference_mode()
def top1(model: nn.Module, batches: Sequence[Batch]) -> float:
    correct = total = 0
    for x, y in batches:
        correct += (model(x).argmax(1) == y).sum().item()
        total += y.numel()
    return correct / max(total, 1)


class SupernetScorer:
    """``scorer(arch) -> hold-out top-1`` of the supernet path ``arch``.

    It takes an `Architecture`, never raw genes: how a search's genes become a path (block-only
    search fixes channels at scale 1.0, for one) is decided once, by the caller's gene map, so the
    path scored is the path the history, the limits and the outputs describe."""

    def __init__(self, supernet: SuperNet, calibration: Sequence[Batch], evaluation: Sequence[Batch]) -> None:
        if not calibration or not evaluation:
            raise ValueError("scoring needs at least one calibration and one evaluation batch")
        self.supernet = supernet
        self.calibration = calibration
        self.evaluation = evaluation

    def __call__(self, arch: Architecture) -> float:
        path = recalibrate_bn(self.supernet.path(arch), self.calibration)
        return top1(path.eval(), self.evaluation)

    def score_many(self, candidates: Sequence[Architecture]) -> list[float]:
        """Score a generation; under torch.distributed each rank takes every world-th candidate."""
        rank, world = rank_and_world()
        if world == 1:
            return [self(arch) for arch in candidates]
        mine = {i: self(candidates[i]) for i in range(rank, len(candidates), world)}
        gathered: list[dict] = [None] * world  # type: ignore[list-item]
        dist.all_gather_object(gathered, mine)
        merged = {i: score for part in gathered for i, score in part.items()}
        return [merged[i] for i in range(len(candidates))]
