from pathlib import Path

import numpy as np
import pytest
import torch

from spos.data.conventions import DATASETS
from spos.data.datasets import TensorImages, build_datasets
from spos.data.loaders import build_loader, recalibration_batches
from spos.errors import UserError

SHARED = next((p for p in (Path(__file__).resolve().parents[2] / "shared" / "data", Path("/work/shared/data"))
               if p.is_dir()), None)
needs_shared = pytest.mark.skipif(SHARED is None, reason="../shared/data is not on this machine")


def test_digits_is_embedded_fixed_and_disjoint():
    a = build_datasets("digits")
    b = build_datasets("digits", seed=5)
    assert (len(a.train), len(a.val)) == (1437, 360)
    assert a.info.num_classes == 10 and a.info.in_channels == 1 and a.info.input_size == 8
    assert torch.equal(a.val.images, b.val.images)  # the split does not move with the seed
    train_rows = {tuple(r) for r in a.train.images.flatten(1).tolist()}
    overlap = sum(tuple(r) in train_rows for r in a.val.images.flatten(1).tolist())
    assert overlap < 5  # the digits set has a few exact duplicate images, nothing more
    assert abs(a.train.images.mean().item()) < 0.1 and abs(a.train.images.std().item() - 1) < 0.1


def test_synthetic_shapes_and_determinism():
    a = build_datasets("synthetic", input_size=16, num_classes=4, seed=1, synthetic_size=64)
    b = build_datasets("synthetic", input_size=16, num_classes=4, seed=1, synthetic_size=64)
    assert a.train.images.shape == (64, 3, 16, 16) and int(a.train.labels.max()) < 4
    assert torch.equal(a.train.images, b.train.images)


@pytest.mark.parametrize("holdout,expected", [(100, 100), (0.25, 359)])
def test_holdout_is_carved_from_train(holdout, expected):
    full = build_datasets("digits")
    split = build_datasets("digits", holdout=holdout, seed=3)
    assert len(split.holdout) == expected
    assert len(split.train) + len(split.holdout) == len(full.train)
    assert split.holdout.augment is None  # scored without augmentation
    rows = {tuple(r) for r in split.train.images.flatten(1).tolist()}
    assert sum(tuple(r) in rows for r in split.holdout.images.flatten(1).tolist()) < 5


@pytest.mark.parametrize("holdout", [-1, 1437, 5000, 1.5])
def test_bad_holdout(holdout):
    with pytest.raises(UserError):
        build_datasets("digits", holdout=holdout)


def test_loader_order_depends_on_seed_and_epoch_only():
    data = build_datasets("digits").train

    def first_labels(seed, epoch):
        loader = build_loader(data, batch_size=32, train=True, seed=seed)
        loader.sampler.set_epoch(epoch)
        return next(iter(loader))[1].tolist()

    assert first_labels(0, 1) == first_labels(0, 1)
    assert first_labels(0, 1) != first_labels(0, 2)
    assert first_labels(0, 1) != first_labels(1, 1)
    val = build_loader(build_datasets("digits").val, batch_size=100, train=False)
    assert sum(len(y) for _, y in val) == 360


def test_a_dataloader_over_a_plain_dataset_takes_its_epoch_through_the_sampler():
    data = torch.utils.data.TensorDataset(torch.arange(64).float().view(64, 1), torch.arange(64))

    def order(epoch):
        loader = build_loader(data, batch_size=16, train=True, seed=0)
        loader.sampler.set_epoch(epoch)
        return torch.cat([y for _, y in loader]).tolist()

    assert order(1) == order(1) and order(1) != order(2)
    assert sorted(order(2)) == list(range(64))


def test_two_ranks_get_the_augmented_batches_of_one_process_accumulating_two():
    """With augmentation (digits: random shifts), rank r's batch j is, pixel for pixel, micro-batch 2j + r of
    one process, as the DDP equality needs; and an epoch started at batch k is the rest of the whole one."""
    data = build_datasets("digits").train
    assert data.augment == "shift"
    one = [x for x, _ in build_loader(data, batch_size=16, train=True, seed=3)]
    ranks = [[x for x, _ in build_loader(data, batch_size=16, train=True, seed=3, rank=r, world=2)] for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(one) // 2
    for j in range(len(ranks[0])):
        assert torch.equal(ranks[0][j], one[2 * j]) and torch.equal(ranks[1][j], one[2 * j + 1]), j
    from spos.data.loaders import epoch_batches

    loader = build_loader(data, batch_size=16, train=True, seed=3)
    resumed = [(index, x) for index, (x, _) in epoch_batches(loader, 0, start=5)]
    assert [index for index, _ in resumed] == list(range(5, len(one)))
    assert all(torch.equal(x, one[index]) for index, x in resumed)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("in_memory", [True, False])
def test_evaluation_shares_hold_every_image_once_and_training_shares_are_equal(world, in_memory):
    """287 images (digits' hold-out) over 2 or 3 ranks: evaluation reads each exactly once, in shares as long as
    their loaders say, however the count divides (#34 item 2); training shares stay equal (every step waits for
    every rank), each image in one of them at most."""
    labels = torch.arange(287)
    data = TensorImages(torch.zeros(287, 1, 2, 2), labels) if in_memory else \
        torch.utils.data.TensorDataset(torch.zeros(287, 1, 2, 2), labels)
    for train in (False, True):
        shares = []
        for rank in range(world):
            loader = build_loader(data, batch_size=32, train=train, rank=rank, world=world)
            batches = [y for _, y in loader]
            assert len(batches) == len(loader)
            shares.append(torch.cat(batches).tolist())
        read = sorted(index for share in shares for index in share)
        if train:
            assert len({len(share) for share in shares}) == 1 and len(set(read)) == len(read)
        else:
            assert read == list(range(287))


def test_recalibration_batches_fixed_by_seed():
    data = build_datasets("digits").train
    a = recalibration_batches(data, batch_size=16, num_batches=3, seed=0)
    b = recalibration_batches(data, batch_size=16, num_batches=3, seed=0)
    assert len(a) == 3 and all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b))


def test_unknown_dataset_and_missing_roots(tmp_path):
    with pytest.raises(UserError, match="choose one of"):
        build_datasets("imagenet-21k")
    with pytest.raises(UserError, match="needs --data-root"):
        build_datasets("cifar10")
    with pytest.raises(UserError, match="--download"):
        build_datasets("cifar100", tmp_path)
    with pytest.raises(UserError, match="expected ROOT/train/CLASS"):
        build_datasets("imagefolder", tmp_path)


def test_imagefolder_on_generated_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    splits = build_datasets("imagefolder", tmp_path, input_size=32, holdout=2)
    assert splits.info.num_classes == 2 and len(splits.train) == 4 and len(splits.holdout) == 2
    x, y = next(iter(build_loader(splits.train, batch_size=4, train=True)))
    assert x.shape == (4, 3, 32, 32)
    assert splits.holdout[0][0].shape == (3, 32, 32)


@needs_shared
def test_mnist_from_read_only_shared_folder():
    splits = build_datasets("mnist", SHARED, holdout=1000)
    assert (len(splits.train), len(splits.holdout), len(splits.val)) == (59000, 1000, 10000)
    assert splits.train.images.shape[1:] == (1, 32, 32)
    assert torch.bincount(splits.val.labels).tolist()[:2] == [980, 1135]


@needs_shared
def test_cifar10_subset_npz():
    splits = build_datasets("cifar10", SHARED / "cifar-10-subset")
    assert (len(splits.train), len(splits.val)) == (5085, 1017)
    assert splits.train.images.shape[1:] == (3, 32, 32) and splits.info.num_classes == 10


def test_crop_flip_keeps_shape():
    data = TensorImages(torch.randn(10, 3, 32, 32), torch.zeros(10, dtype=torch.long), "crop-flip")
    x, _ = data.get_batch(torch.arange(10), torch.Generator().manual_seed(0))
    assert x.shape == (10, 3, 32, 32)
    assert set(DATASETS) >= {"digits", "mnist"}
