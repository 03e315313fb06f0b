"""Evaluation of a network on a loader (every image once, summed over the ranks under torchrun), and the fixed paths a supernet run validates."""

from __future__ import annotations

import torch
from torch import nn

from spos.space.architecture import Architecture
from spos.train import distributed
from spos.train.sampler import PathSampler


@torch.inference_mode()
def evaluate(model: nn.Module, loader, *, device="cpu", channels_last: bool = False) -> dict:
    """Top-1, top-5 and cross-entropy of ``model``: a FixedNet, or a supernet path (``supernet.path(arch)``)."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64)
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x).float()
        top = logits.topk(min(5, logits.shape[1]), 1).indices
        totals += torch.tensor([(top[:, 0] == y).sum().item(), (top == y[:, None]).any(1).sum().item(),
                                nn.functional.cross_entropy(logits, y, reduction="sum").item(), y.numel()],
                               dtype=torch.float64)
    totals = distributed.all_reduce_sum(totals)  # under torchrun each rank read its share of every image
    n = max(totals[3].item(), 1.0)
    return {"top1": totals[0].item() / n, "top5": totals[1].item() / n, "loss": totals[2].item() / n}



def validation_paths(space, count: int, seed: int, sampling: dict | None = None) -> list[Architecture]:
    """The same K paths every epoch, so the curve compares like with like, drawn as training draws
    them (the run's sampling mode and FLOPs window; no channel warm-up) but from a seed of their own:
    a block-only supernet is validated on the paths it trains, not on random channels."""
    sampling = sampling or {}
    sampler = PathSampler(space, seed + 10_007, mode=sampling.get("mode", "both"),
                          flops_min=sampling.get("flops_min"), flops_max=sampling.get("flops_max"),
                          flops_bins=sampling.get("flops_bins"))
    return [sampler.sample() for _ in range(count)]
