"""Zero-cost proxies: what a network's untrained (or supernet-inherited) weights say about it, from one batch.

A user who doubts a supernet's ranking tries these first, so `spos rank --proxies` reports them beside it:

- ``grad_norm`` (Abdelfattah et al. 2021, "Zero-cost proxies for lightweight NAS"): the sum over parameters
  of the L2 norm of the gradient of the mean cross-entropy on one batch;
- ``synflow`` (Tanaka et al. 2020; Abdelfattah et al. 2021): on a copy whose weights are replaced by their
  absolute values and whose BN layers are removed (as the zero-cost paper's code does: BN would rescale by
  batch statistics the all-ones input does not have), R = the sum of the output for an all-ones input, and
  the score is the sum over parameters of theta * dR/dtheta; computed in float64, where float32 overflows on
  deep networks;
- ``naswot`` (Mellor et al. 2021, "Neural architecture search without training"): the log-determinant of
  K = N_A + N_B, K_ij the number of ReLU units where images i and j share their binary code (both active or
  both inactive), summed over every ReLU of the network (forward hooks).

Every proxy works on a deep copy, so the model handed in (its weights, its BN statistics, its mode, its
gradients) is never changed. grad_norm and naswot run BN in train mode (batch statistics, as both papers'
code does, so a path's stale or recalibrated statistics do not matter) and everything else, dropout
included, in eval mode, so a proxy is a deterministic function of the weights and the batch. Higher is
predicted better for each.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spos.errors import UserError

EXACT_FLOAT32 = 2 ** 24  # float32 counts whole numbers exactly up to here: the per-ReLU code agreements stay exact


def _private_copy(model: nn.Module) -> nn.Module:
    """A deep copy to work on: a proxy may change modes, weights and gradients without touching ``model``."""
    return copy.deepcopy(model)


def _batch_statistics_only(model: nn.Module) -> nn.Module:
    """Eval mode but for BN, which normalises with the batch's statistics: deterministic (no dropout) and
    independent of whatever running statistics the network carries."""
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train()
    return model


def _without_batch_norm(model: nn.Module) -> nn.Module:
    """``model`` with every BN layer replaced by an identity, as SynFlow's zero-cost implementation does."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, nn.Identity())
    return model


def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum over parameters of ||d CE / d theta||_2, CE the mean cross-entropy of ``model`` on one batch."""
    net = _batch_statistics_only(_private_copy(model))
    net.zero_grad(set_to_none=True)
    with torch.enable_grad():
        F.cross_entropy(net(images), labels).backward()
    norms = [p.grad.norm() for p in net.parameters() if p.grad is not None]
    return float(torch.stack(norms).sum()) if norms else 0.0


def synflow(model: nn.Module, input_shape: Sequence[int]) -> float:
    """SynFlow of ``model`` for one input of ``input_shape`` (one image's shape, e.g. (3, 32, 32))."""
    net = _without_batch_norm(_private_copy(model)).double().eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.abs_()
    net.zero_grad(set_to_none=True)
    device = next(net.parameters()).device
    with torch.enable_grad():
        net(torch.ones((1, *input_shape), dtype=torch.float64, device=device)).sum().backward()
    terms = [(p.detach() * p.grad).sum() for p in net.parameters() if p.grad is not None]
    return float(torch.stack(terms).sum()) if terms else 0.0


def naswot(model: nn.Module, images: torch.Tensor) -> float:
    """log det K, K_ij the ReLU units (over every ReLU of ``model``) where images i and j agree in being active;
    -inf where K is singular (two images with the same codes)."""
    net = _batch_statistics_only(_private_copy(model))
    count = len(images)
    kernel = torch.zeros((count, count), dtype=torch.float64, device=images.device)

    def add_agreements(module, inputs, output) -> None:
        codes = (output.detach().reshape(count, -1) > 0)
        units = codes.shape[1]
        codes = codes.to(torch.float32 if units < EXACT_FLOAT32 else torch.float64)
        active = codes.sum(1, keepdim=True)
        both_active = codes @ codes.T
        # both inactive: units - active_i - active_j + both_active; K adds both kinds of agreement
        kernel.add_((2 * both_active + units - active - active.T).double())

    hooks = [m.register_forward_hook(add_agreements) for m in net.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    if not hooks:
        raise UserError(f"naswot counts ReLU codes, and {type(model).__name__} has no nn.ReLU; leave naswot out "
                        "of --proxies for this network")
    try:
        with torch.no_grad():
            net(images)
    finally:
        for hook in hooks:
            hook.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else -math.inf


# name -> proxy(model, images, labels): a higher value predicts a better network
PROXIES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "grad_norm": grad_norm,
    "synflow": lambda model, images, labels: synflow(model, images.shape[1:]),
    "naswot": lambda model, images, labels: naswot(model, images),
}


def proxy_names(text: str | None) -> list[str]:
    """``--proxies`` as given: names separated by commas (``-`` read as ``_``), ``all`` for every proxy, None or
    empty for none."""
    if not text:
        return []
    names = [name.strip().replace("-", "_") for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return list(PROXIES)
    check_proxy_names(names)
    return list(dict.fromkeys(names))


def check_proxy_names(names: Sequence[str]) -> None:
    unknown = [name for name in names if name not in PROXIES]
    if unknown:
        raise UserError(f"--proxies: unknown proxy {unknown[0]!r}; choose from {', '.join(PROXIES)} (comma-separated) "
                        "or all")
