"""Loaders: the order each epoch reads the training images in (the same on every rank, cut into equal shares), seeded per-sample augmentation, in-memory batches, evaluation shares that read every image once, and BN recalibration batches. A position's draws are a function of where it is, never of what was read before it, so a resumed run can skip what it trained."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from spos.data.datasets import TensorImages
from spos.errors import UserError


def augmentation_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the random augmentation of one sample (or in-memory batch) of one epoch: a function
    of where it is, never of what was read before it, so a resumed run can skip what it trained."""
    return ((seed * 1_000_003 + epoch) * 2_000_000_011 + position) % (1 << 63)  # --loader dali draws from it too



class SeededSamples(Dataset):
    """A dataset whose random transforms draw from a generator seeded by (seed, epoch, index): image
    ``index`` of epoch ``epoch`` comes out the same in any loader worker, at any time, whether or not
    the images before it were read. It is indexed by ``(epoch, index)`` (`EpochShuffle` with ``keyed``).

    torchvision's transforms draw from torch's global generator, so that one is seeded for the sample
    and restored afterwards: the training loop's own random stream (dropout) is left as it was."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(augmentation_seed(self.seed, epoch, index))
            return self.dataset[index]



class EpochShuffle(Sampler):
    """A shuffled order that is a function of (seed, epoch) only, so a resumed run sees the same
    batches as an uninterrupted one.

    Under torch.distributed each rank takes every world-th index, or, when ``chunk`` (the per-rank
    batch size) is given, the rank-th contiguous chunk of every global batch: then N ranks see
    exactly the micro-batches of one process accumulating N batches, so the two runs are equal
    (their augmentation too: each batch's is seeded by its place in the epoch, see `TensorBatches`;
    and their dropout, seeded by the same place, see `spos.train.setup.micro_batch_rng`).

    Training shares are equal (the ``size % world`` images left over are not read that epoch), as
    every step waits for every rank. With ``whole`` (evaluation) every image is read exactly once:
    the last shares are one image (or chunk) shorter on some ranks, and the ranks' sums are added
    up, so a metric under torchrun is the one-process metric.

    ``start`` (set with the epoch) skips the first samples of this rank's order: a run resumed
    mid-epoch does not read again what it trained; the length stays the whole epoch's. ``keyed``
    yields ``(epoch, index)`` for `SeededSamples`.
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1,
                 chunk: int | None = None, keyed: bool = False, whole: bool = False) -> None:
        self.size, self.seed, self.shuffle, self.rank, self.world = size, seed, shuffle, rank, world
        self.chunk, self.keyed, self.whole = chunk, keyed, whole
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            order = torch.arange(self.size)
        else:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100003 + self.epoch))
        if self.world > 1:
            used = self._used()
            if not self.chunk:
                return order[self.rank:used:self.world]
            block = self.chunk * self.world
            full = used - used % block
            head = order[:full].view(-1, self.world, self.chunk)[:, self.rank].reshape(-1)
            tail = order[full:used].tensor_split(self.world)[self.rank]  # equal parts unless ``whole``
            order = torch.cat((head, tail))
        return order

    def _used(self) -> int:
        """How many of the images the ranks read together: all with ``whole``, else a multiple of the world."""
        return self.size if self.whole else self.size - self.size % self.world

    def __iter__(self) -> Iterator:
        indices = self.order()[self.start:].tolist()
        return iter([(self.epoch, index) for index in indices] if self.keyed else indices)

    def __len__(self) -> int:
        """This rank's share, as `order` deals it, counted without drawing the order (a loop asks every batch)."""
        if self.world == 1:
            return self.size
        used = self._used()
        if not self.chunk:
            return len(range(self.rank, used, self.world))
        block = self.chunk * self.world
        full = used - used % block
        tail = used - full  # dealt as tensor_split does: the first ``tail % world`` ranks get one more
        return full // self.world + tail // self.world + (self.rank < tail % self.world)



class TensorBatches:
    """Batches of a `TensorImages` by indexing whole batches: no per-image Python, no workers needed.

    Batch ``b`` of rank ``r`` of ``w`` is augmented from a generator seeded by its place among the
    epoch's micro-batches, ``b * w + r``: the same draws as the same images get in one process
    accumulating ``w`` batches, and the same whichever batches before it were skipped."""

    def __init__(self, data: TensorImages, sampler: EpochShuffle, batch_size: int, drop_last: bool) -> None:
        self.dataset, self.sampler, self.batch_size, self.drop_last = data, sampler, batch_size, drop_last

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        sampler = self.sampler
        order = sampler.order()
        for batch in range(sampler.start // self.batch_size, len(self)):
            place = batch * sampler.world + sampler.rank
            generator = torch.Generator().manual_seed(augmentation_seed(sampler.seed, sampler.epoch, place))
            yield self.dataset.get_batch(order[batch * self.batch_size:(batch + 1) * self.batch_size], generator)



def build_loader(dataset: Dataset, *, batch_size: int, train: bool, workers: int = 0, seed: int = 0,
                 drop_last: bool | None = None, rank: int = 0, world: int = 1, device: str = "cpu"):
    """An iterable of (images, labels) batches whose order depends on (seed, epoch) only; set the epoch
    with ``loader.sampler.set_epoch(e)``, as with torch's DistributedSampler.

    ``rank`` of ``world`` processes (torch.distributed) reads its own share of every epoch: equal shares
    for training, and for evaluation (``train`` False) shares that together hold every image once."""
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    drop_last = train if drop_last is None else drop_last
    if drop_last and len(dataset) < batch_size * world:
        drop_last = False  # a tiny dataset still yields one (short) batch
    shares = dict(shuffle=train, rank=rank, world=world, whole=not train)  # evaluation reads every image once
    if isinstance(dataset, TensorImages):
        return TensorBatches(dataset, EpochShuffle(len(dataset), seed, chunk=batch_size, **shares), batch_size,
                             drop_last)
    sampler = EpochShuffle(len(dataset), seed, keyed=train, **shares)
    # a generator of its own: starting an epoch draws the workers' base seed from it, not from the global one
    loader = DataLoader(SeededSamples(dataset, seed) if train else dataset, batch_size=batch_size, sampler=sampler,
                        num_workers=workers, pin_memory=str(device).startswith("cuda"), drop_last=drop_last,
                        persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                        generator=torch.Generator().manual_seed(seed))
    return loader



def epoch_batches(loader, epoch: int, start: int = 0):
    """``(index, batch)`` of epoch ``epoch`` of a `build_loader` loader, from batch ``start`` on: a run
    resumed mid-epoch goes on where it stopped, without reading the batches before ``start``."""
    loader.sampler.set_epoch(epoch, start * loader.batch_size)
    return enumerate(loader, start)



def first_batch(dataset: Dataset, size: int) -> torch.Tensor:
    """The first ``size`` images of ``dataset`` in its fixed (unshuffled) order: a real batch to check on."""
    return next(iter(build_loader(dataset, batch_size=size, train=False)))[0]



def recalibration_batches(dataset: Dataset, *, batch_size: int, num_batches: int, seed: int) -> list:
    """A fixed random subset of training batches (deterministic by seed) for BN recalibration."""
    loader = build_loader(dataset, batch_size=batch_size, train=True, seed=seed + 1)
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == num_batches:
            break
    return batches


__all__ = ['EpochShuffle', 'SeededSamples', 'TensorBatches', 'augmentation_seed', 'build_loader', 'epoch_batches', 'first_batch', 'recalibration_batches']
