"""The ImageFolder pipeline on uint8 tensors (torchvision.io + transforms.v2) matches the PIL one it replaced:
the same crop box, flip and jitter for the same draw of torch's generator, pixels within a level or two.
And ``--loader dali`` refuses clearly where DALI or a GPU is missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import transforms
from torchvision.transforms import v2

from spos.cli import main
from spos.data.conventions import input_convention
from spos.data.datasets import ConventionTransform, build_datasets, read_image_tensor


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny ImageFolder of JPEGs of several shapes, smooth colour fields with texture, as photos are."""
    from PIL import Image

    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for k, (cls, size) in enumerate((("cat", (120, 90)), ("dog", (90, 120)), ("owl", (100, 67)))):
            (root / split / cls).mkdir(parents=True)
            coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
            pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-10, 11, (size[1], size[0], 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / split / cls / f"{k}.jpg", quality=90)
    return root


def _pil_pipeline(size: int, info, train: bool):
    """The transforms spos used before (PIL images), ending in the same convention step."""
    last = [transforms.ToTensor(), ConventionTransform(info, input_convention(None))]
    if train:
        return transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(),
                                   transforms.ColorJitter(0.4, 0.4, 0.4), *last])
    return transforms.Compose([transforms.Resize(int(size / 0.875)), transforms.CenterCrop(size), *last])


def test_the_same_draw_gives_the_same_crop_box():
    image = torch.zeros(3, 375, 500, dtype=torch.uint8)
    from PIL import Image

    for seed in range(50):
        torch.manual_seed(seed)
        old = transforms.RandomResizedCrop.get_params(Image.new("RGB", (500, 375)), (0.08, 1.0), (3 / 4, 4 / 3))
        torch.manual_seed(seed)
        new = v2.RandomResizedCrop(224).make_params([image])
        assert old == (new["top"], new["left"], new["height"], new["width"])


@pytest.mark.parametrize("split", ["train", "val"])
def test_tensor_pipeline_matches_the_pil_one(folder, split):
    from PIL import Image

    splits = build_datasets("imagefolder", folder, input_size=32)
    dataset = splits.train if split == "train" else splits.val
    old = _pil_pipeline(32, splits.info, train=split == "train")
    std = torch.tensor(splits.info.std).view(3, 1, 1)
    differences = []
    for seed in range(8):
        for index, (path, _) in enumerate(dataset.samples):
            torch.manual_seed(seed)
            new_x = dataset[index][0]
            torch.manual_seed(seed)
            old_x = old(Image.open(path).convert("RGB"))
            differences.append(((new_x - old_x) * std * 255).abs())  # in pixel levels
    levels = torch.stack(differences)
    assert float(levels.mean()) < 1.5 and float(torch.quantile(levels.flatten()[:100000], 0.99)) < 6


def test_unreadable_image_is_one_line(tmp_path):
    from spos.errors import UserError

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UserError, match="cannot be read"):
        read_image_tensor(str(bad))


def test_dali_loader_is_refused_clearly_without_dali_or_a_gpu(folder, tmp_path, capsys):
    try:
        import nvidia.dali  # noqa: F401
        have_dali = True
    except ImportError:
        have_dali = False
    if have_dali and torch.cuda.is_available():
        pytest.skip("DALI and a GPU are here: nothing to refuse")
    code = main(["train", "--config", "digits-retrain", "--set", "data.name=imagefolder", "--set",
                 f"data.root={folder}", "--set", "space.input_size=32", "--loader", "dali", "--output",
                 str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert ("nvidia-dali-cuda" in err) if not have_dali else ("GPU" in err)
    assert not (tmp_path / "run").exists()


def test_dali_loader_refuses_data_held_in_memory(tmp_path, capsys):
    code = main(["train", "--config", "digits-retrain", "--loader", "dali", "--output", str(tmp_path / "r"),
                 "--no-progress"])
    assert code == 2 and "--loader dali reads ImageFolder" in capsys.readouterr().err


def test_dali_per_sample_draws_are_torchvisions_and_depend_only_on_seed_epoch_index():
    from PIL import Image

    from spos.data.dali import _sample_seed, sample_params

    first = sample_params((500, 375), 224, seed=3, epoch=2, index=17)
    assert sample_params((500, 375), 224, seed=3, epoch=2, index=17) == first  # no state carried between calls
    assert sample_params((500, 375), 224, seed=3, epoch=2, index=18) != first
    torch.manual_seed(_sample_seed(3, 2, 17))  # the CPU transforms' own draws from the same generator state
    top, left, h, w = transforms.RandomResizedCrop.get_params(Image.new("RGB", (500, 375)), (0.08, 1.0), (3 / 4, 4 / 3))
    assert (first["anchor"], first["shape"]) == ((left, top), (w, h))
    assert first["mirror"] == bool(torch.rand(1) < 0.5)
