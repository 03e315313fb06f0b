"""torchrun / DDP support.

The supernet is not wrapped in DistributedDataParallel: every rank samples the same path (the
path sampler is seeded identically), so after backward exactly the path's parameters have
gradients on every rank, and those alone are averaged in one flattened all-reduce. Parameters
the path does not use cost nothing, and no ``find_unused_parameters`` scan runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from spos.errors import UserError


def init_distributed() -> tuple[int, int]:
    """Join the process group torchrun describes in the environment; (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, **_attempt_store())
    return rank_and_world()


def _attempt_store() -> dict:
    """Under torchrun, the process group's store with its keys under this attempt's prefix.

    A worker group torchrun restarts (``--max-restarts``) meets in the store of the first attempt, which still
    holds that attempt's keys (the dead ranks' addresses): a rank reading one before its peer rewrote it
    connects to a port nobody listens on and the restart fails. Keys of their own per attempt avoid that."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None:
        return {}
    store, rank, world = next(dist.rendezvous("env://"))
    return dict(store=dist.PrefixStore(f"spos/attempt-{attempt}", store), rank=rank, world_size=world)


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size of the process group; (0, 1) outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_and_world()[0] == 0


def check_device_name(name: str) -> str:
    """``name`` when it is a device spos runs on (cpu, cuda, cuda:N), else a UserError: torch would take
    "meta" too, and fail later with no word about the flag."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise UserError(f"--device {name}: give cpu, cuda or cuda:N")
    return name


def local_device(requested: str | None) -> torch.device:
    """The device asked for, else this process's GPU (``LOCAL_RANK`` under torchrun), else the CPU."""
    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {requested}: CUDA is not available on this machine; use --device cpu")
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def launcher_rank_and_world() -> tuple[int, int]:
    """(rank, world size) as torchrun set them in the environment, whether or not a process group exists:
    for jobs whose ranks share out independent work and never communicate."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def shared_device(requested: str | None) -> torch.device:
    """Like `local_device`, but ranks beyond the GPU count share the GPUs round-robin: independent runs
    (one per rank) may share a GPU, which DDP training may not."""
    if requested or not torch.cuda.is_available():
        return local_device(requested)
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


@contextmanager
def alone() -> Iterator[None]:
    """Inside, this process is a world of one whatever torchrun said: a training run started here joins
    no process group, syncs nothing and locks its own folder as rank 0 would."""
    saved = {name: os.environ.get(name) for name in ("RANK", "WORLD_SIZE")}
    os.environ.update(RANK="0", WORLD_SIZE="1")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def average_gradients(parameters) -> None:
    """Average the gradients that exist across ranks, in one flattened all-reduce."""
    world = rank_and_world()[1]
    if world == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world
    for grad, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
        grad.copy_(synced)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """``values`` added up over the ranks (a new tensor, on ``values``' device): sums and counts, never
    means, so ranks with unequal shares (an evaluation's last batches) weigh each image alike. NCCL
    reduces CUDA tensors only, so CPU sums travel through this rank's GPU there."""
    if rank_and_world()[1] == 1:
        return values
    carrier = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else values.device
    summed = values.to(carrier, copy=True)
    dist.all_reduce(summed)
    return summed.to(values.device)


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (BN running statistics) on every rank: each rank's last forward under DDP updated
    them with its own batch, so without this the ranks would evaluate slightly different networks, and
    not the one rank 0 saves."""
    if rank_and_world()[1] == 1:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, 0)


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()
