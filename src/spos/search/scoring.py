"""Score candidates with a trained supernet: inherit its weights, recalibrate BN, measure the hold-out split.

Each candidate runs directly on its supernet path (no FixedNet is built): its BN statistics are
reset and re-estimated on a fixed set of training batches with cumulative averaging (the
official default is 20 batches), then top-1 and cross-entropy are measured on the hold-out
split in one pass. The score is top-1 (the official one) or the negative cross-entropy, which
is continuous where top-1 on a few hundred images moves in steps of one image: it ranked
architectures better in most measured supernets (benchmarks/README.md). The batches are moved to
the device once, so the time a search spends outside the forward passes stays small.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from spos.nn.calibration import recalibrate_bn
from spos.nn.supernet import SuperNet
from spos.search.engine import percent
from spos.space.architecture import Architecture
from spos.train import preemption
from spos.train.distributed import rank_and_world

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]
STOPPED_BETWEEN_CANDIDATES = "between two candidates (each one scored so far is in the history)"


def materialize(batches: Iterable[Batch], device: torch.device | str, limit: int | None = None) -> list[Batch]:
    """Batches on the device, read once; ``limit`` caps how many are kept."""
    kept = []
    for index, (x, y) in enumerate(batches):
        if limit is not None and index >= limit:
            break
        kept.append((x.to(device, non_blocking=True), y.to(device, non_blocking=True)))
    return kept


@dataclass(frozen=True)
class HoldoutMeasure:
    top1: float
    loss: float  # mean cross-entropy


@torch.inference_mode()
def holdout_measure(model: nn.Module, batches: Sequence[Batch]) -> HoldoutMeasure:
    """Top-1 and mean cross-entropy of ``model`` over ``batches``, from one forward pass each; the sums
    stay on the device until the end, so a candidate costs one device synchronisation, not one per batch."""
    correct, loss, total = 0, 0.0, 0
    for x, y in batches:
        logits = model(x)
        correct = correct + (logits.argmax(1) == y).sum()
        loss = loss + F.cross_entropy(logits.float(), y, reduction="sum")
        total += y.numel()
    if not total:
        return HoldoutMeasure(0.0, 0.0)
    return HoldoutMeasure(float(correct) / total, float(loss) / total)


# score name -> the number a search maximises, from a hold-out measure
SCORES = {"top1": lambda measure: measure.top1, "loss": lambda measure: -measure.loss}


def score_of(measure: HoldoutMeasure, score: str) -> float:
    return SCORES[score](measure)


def score_text(value: float, score: str) -> str:
    """A score as people read it: ``96.4%`` for top-1, ``loss 0.123`` for minus the cross-entropy."""
    return percent(value) if score == "top1" else f"loss {-value:.3f}"


class SupernetScorer:
    """``scorer(arch) -> score`` of the supernet path ``arch``: hold-out top-1, or minus its cross-entropy.

    It takes an `Architecture`, never raw genes: how a search's genes become a path (block-only
    search fixes channels at scale 1.0, for one) is decided once, by the caller's gene map, so the
    path scored is the path the history, the limits and the outputs describe."""

    def __init__(self, supernet: SuperNet, calibration: Sequence[Batch], evaluation: Sequence[Batch],
                 score: str = "top1") -> None:
        if not calibration or not evaluation:
            raise ValueError("scoring needs at least one calibration and one evaluation batch")
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")
        self.supernet = supernet
        self.calibration = calibration
        self.evaluation = evaluation
        self.score = score
        self.scored = 0  # candidates scored by `score_many` in this process (the test hooks count them)

    def measure(self, arch: Architecture) -> HoldoutMeasure:
        path = recalibrate_bn(self.supernet.path(arch), self.calibration)
        return holdout_measure(path.eval(), self.evaluation)

    def __call__(self, arch: Architecture) -> float:
        return score_of(self.measure(arch), self.score)

    def score_many(self, candidates: Sequence[Architecture]) -> Iterator[float]:
        """The scores of a generation, yielded in order as they are measured, so the caller can record each
        at once. Under torch.distributed only rank 0 runs the search: it sends the generation to the ranks
        waiting in `serve`, the ranks take ``world`` candidates at a time, one each, and the scores are
        merged by architecture, so no score can land on another architecture than the one it measured."""
        if rank_and_world()[1] == 1:
            for arch in candidates:
                preemption.raise_if_stop_agreed(STOPPED_BETWEEN_CANDIDATES)  # the ones before: in the history
                yield self(arch)
                self.scored += 1
                preemption.run_test_hooks(self.scored, 0)
            return
        box = [list(candidates)]
        dist.broadcast_object_list(box, src=0)
        yield from self._shared_scores(box[0])

    def serve(self) -> None:
        """On every rank but 0: score this rank's share of each generation rank 0 sends, until it sends None."""
        while True:
            box: list = [None]
            dist.broadcast_object_list(box, src=0)
            if box[0] is None:
                return
            for _ in self._shared_scores(box[0]):
                pass

    def stop_serving(self) -> None:
        """On rank 0 when its search ends (or fails): release the ranks in `serve`."""
        if rank_and_world()[1] > 1:
            dist.broadcast_object_list([None], src=0)

    def _shared_scores(self, candidates: list[Architecture]) -> Iterator[float]:
        rank, world = rank_and_world()
        for start in range(0, len(candidates), world):
            if preemption.stop_agreed():  # every rank at the same round: they stop together
                if rank == 0:
                    preemption.stop_here(STOPPED_BETWEEN_CANDIDATES)
                return
            chunk = candidates[start:start + world]
            mine = {chunk[rank]: self(chunk[rank])} if rank < len(chunk) else {}
            gathered: list[dict] = [None] * world  # type: ignore[list-item]
            dist.all_gather_object(gathered, mine)
            merged = {arch: score for part in gathered for arch, score in part.items()}
            yield from (merged[arch] for arch in chunk)
            self.scored += len(chunk)
            preemption.run_test_hooks(self.scored, rank)
