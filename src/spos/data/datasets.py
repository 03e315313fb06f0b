"""Datasets, transforms, hold-out splits and loaders.

Names: ``imagefolder`` (ImageNet layout), ``cifar10``, ``cifar100``, ``mnist`` (torchvision),
``digits`` (scikit-learn's 1,797 real 8x8 digits, the embedded default: needs nothing outside
the install), ``synthetic`` (random tensors). A hold-out split is carved from the training set,
as the paper holds out 50,000 ImageNet training images: the search scores candidates on it,
never on the val/test set.

Small datasets live in memory as tensors (`TensorImages`) and are batched by indexing whole
batches at once, so a CPU run spends its time in the network, not in per-image Python.
"""

from __future__ import annotations

import gzip
import math
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from spos.data.conventions import DatasetInfo, InputConvention, dataset_info, input_convention
from spos.errors import UserError

DOWNLOADABLE = ("cifar10", "cifar100", "mnist")  # torchvision fetches these; ImageNet has to be got by hand

MNIST_PAD = 2  # MNIST's 28x28 images are zero-padded to 32x32, the size of the CIFAR-style spaces
EVAL_CROP_FRACTION = 0.875  # ImageFolder evaluation: resize the shorter side to size / 0.875, centre-crop size


@dataclass
class Splits:
    train: Dataset
    holdout: Dataset | None
    val: Dataset
    info: DatasetInfo


class TensorImages(Dataset):
    """Images and labels held as tensors; ``augment`` is applied per batch on the train side."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, augment: str | None = None) -> None:
        self.images, self.labels, self.augment = images, labels, augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        return self.get_batch(torch.as_tensor([index]))[0][0], self.labels[index]

    def subset(self, indices: Sequence[int] | torch.Tensor, augment: str | None = None) -> TensorImages:
        indices = torch.as_tensor(indices, dtype=torch.long)
        return TensorImages(self.images[indices], self.labels[indices], augment)

    def get_batch(self, indices: torch.Tensor, generator: torch.Generator | None = None):
        x = self.images[indices]
        if self.augment == "crop-flip":
            x = random_crop_flip(x, padding=4 if x.shape[-1] >= 32 else 1, generator=generator)
        elif self.augment == "shift":
            x = random_crop_flip(x, padding=1, flip=False, generator=generator)
        return x, self.labels[indices]


def random_crop_flip(x: torch.Tensor, padding: int, flip: bool = True,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image random crop after zero padding (and horizontal flip), done for a whole batch."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]
    if flip:
        mirror = torch.rand(n, generator=generator) < 0.5
        out[mirror] = out[mirror].flip(-1)
    return out


def _normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    shape = (1, -1, 1, 1)
    return (images - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)


def _in_convention(images: torch.Tensor, info: DatasetInfo, convention: InputConvention,
                   already_scaled: bool = False) -> torch.Tensor:
    """RGB images in 0..1 (or already times ``convention.scale``), shaped N,C,H,W, in ``convention``."""
    if not already_scaled and convention.scale != 1.0:
        images = images * convention.scale
    if convention.channel_order == "bgr" and images.shape[1] == 3:
        images = images.flip(1)
    mean, std = convention.stats(info)
    return _normalise(images, mean, std)


def _from_uint8_hwc(array: np.ndarray, info: DatasetInfo, convention: InputConvention) -> torch.Tensor:
    """uint8 pixels scaled in one multiplication, so the official convention gets the exact values 0..255."""
    images = torch.from_numpy(np.ascontiguousarray(array)).float().mul_(convention.scale / 255)
    images = images.permute(0, 3, 1, 2) if images.ndim == 4 else images.unsqueeze(1)
    return _in_convention(images, info, convention, already_scaled=True).contiguous()


class ConventionTransform:
    """The last step of an image transform: a ``ToTensor`` RGB tensor (C,H,W in 0..1) into a convention."""

    def __init__(self, info: DatasetInfo, convention: InputConvention) -> None:
        self.info, self.convention = info, convention

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return _in_convention(image.unsqueeze(0), self.info, self.convention)[0]


# ----------------------------------------------------------------------------------------------
# The datasets


def _digits(info: DatasetInfo, convention: InputConvention):
    """scikit-learn's 8x8 digits with a fixed stratified 80/20 split (independent of --seed)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.images).float().div_(16).unsqueeze(1)
    labels = torch.from_numpy(digits.target).long()
    train_idx, val_idx = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=0,
                                          stratify=digits.target)
    data = TensorImages(_in_convention(images, info, convention), labels)
    return data.subset(train_idx, "shift"), data.subset(val_idx)


def _synthetic(info: DatasetInfo, size: int, seed: int):
    """Random images whose class shifts their mean a little: learnable, deterministic from the seed."""
    generator = torch.Generator().manual_seed(seed)
    shape = (info.in_channels, info.input_size, info.input_size)

    def make(n: int):
        labels = torch.randint(0, info.num_classes, (n,), generator=generator)
        images = torch.randn(n, *shape, generator=generator)
        images += (labels.float() / info.num_classes - 0.5).view(-1, 1, 1, 1)
        return TensorImages(images, labels)

    return make(size), make(max(size // 5, 1))


def _npz_path(root: Path) -> Path | None:
    if root.suffix == ".npz" and root.is_file():
        return root
    for candidate in (root / "cifar10_subset.npz", root / "cifar-10-subset" / "cifar10_subset.npz"):
        if candidate.is_file():
            return candidate
    return None


def _cifar_npz(path: Path, info: DatasetInfo, convention: InputConvention):
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            raise UserError(f"{path} is not a .npz file (a zip of arrays, as np.savez writes); give the CIFAR-10 "
                            "subset's cifar10_subset.npz or a folder in torchvision's layout")
    try:
        return _read_cifar_npz(path, info, convention)
    except UserError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise UserError(f"{path}: not a readable .npz ({str(error).splitlines()[0]})") from None
    except ValueError as error:  # object arrays need unpickling, which numpy (allow_pickle=False) refuses
        if "pickle" in str(error):
            raise UserError(f"{path} holds pickled objects, which spos will not load (unpickling can run code); "
                            "save plain uint8/int arrays x_train, y_train, x_test, y_test with np.savez") from None
        raise UserError(f"{path}: not a readable .npz ({str(error).splitlines()[0]})") from None


def _read_cifar_npz(path: Path, info: DatasetInfo, convention: InputConvention):
    with np.load(path, allow_pickle=False) as z:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
        if missing:
            raise UserError(f"{path}: missing arrays {sorted(missing)}; expected x_train, y_train, x_test, y_test")
        arrays = {name: z[name] for name in ("x_train", "y_train", "x_test", "y_test")}
    for split in ("train", "test"):
        _check_npz_split(path, arrays, split, info)
    train = TensorImages(_from_uint8_hwc(arrays["x_train"], info, convention),
                         torch.from_numpy(arrays["y_train"]).long(), "crop-flip")
    val = TensorImages(_from_uint8_hwc(arrays["x_test"], info, convention), torch.from_numpy(arrays["y_test"]).long())
    return train, val


def _check_npz_split(path: Path, arrays: dict, split: str, info: DatasetInfo) -> None:
    """x_SPLIT: uint8 RGB pixels shaped N,H,W,3 at the dataset's size; y_SPLIT: N class indices."""
    images, side = arrays[f"x_{split}"], info.input_size
    if images.dtype != np.uint8 or images.shape[1:] != (side, side, 3) or not len(images):
        raise UserError(f"{path}: x_{split} holds {images.dtype} shaped {images.shape}; it must hold uint8 RGB "
                        f"pixels shaped N,{side},{side},3 with N at least 1 (as CIFAR-10's)")
    _check_labels(f"{path}: y_{split}", arrays[f"y_{split}"], len(images), info.num_classes)


def _check_labels(where: str, labels: np.ndarray, count: int, num_classes: int) -> None:
    """One class index in 0..num_classes-1 per image."""
    if labels.dtype.kind not in "iu" or labels.shape != (count,):
        raise UserError(f"{where} holds {labels.dtype} shaped {labels.shape}; it must hold {count} integer labels, "
                        "one per image")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise UserError(f"{where} has labels {labels.min()}..{labels.max()}; they must lie in 0..{num_classes - 1}")


def _read_idx(path: Path) -> np.ndarray:
    """An idx file of uint8 (MNIST's format: zeros, type 8, the number of dimensions, the sizes, the data)."""
    gzipped = path.suffix == ".gz"
    try:
        with (gzip.open if gzipped else open)(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"mnist: {path} cannot be read as {'a gzip' if gzipped else 'an idx'} file "
                        f"({str(error).splitlines()[0] or type(error).__name__}); fetch it again") from None
    dims = data[3] if len(data) >= 4 and data[:3] == b"\x00\x00\x08" else 0
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    if not 1 <= dims <= 3 or len(data) != 4 + 4 * dims + math.prod(shape):
        raise UserError(f"mnist: {path} is not a whole idx file of bytes ({len(data)} bytes, header "
                        f"{data[:4].hex() or 'missing'}); fetch it again")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _mnist_raw(root: Path) -> Path:
    return root / "MNIST" / "raw" if (root / "MNIST").is_dir() else root / "raw" if (root / "raw").is_dir() else root


def _idx_file(raw: Path, stem: str) -> Path | None:
    for candidate in (raw / stem, raw / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _readable_already(name: str, root: Path) -> bool:
    """Whether spos can read ``name`` from ``root`` as it is (then --download fetches nothing and
    writes nothing: a read-only copy of MNIST's .gz files or the CIFAR-10 subset .npz stays untouched)."""
    if name == "mnist":
        return all(_idx_file(_mnist_raw(root), stem) is not None for stem in MNIST_FILES)
    return name == "cifar10" and _npz_path(root) is not None


def _mnist(root: Path, info: DatasetInfo, convention: InputConvention):
    """MNIST read straight from the idx files (gzipped or not): works from a read-only folder.

    Images are padded from 28x28 to 32x32, the size of the CIFAR-style spaces.
    """
    raw = _mnist_raw(root)

    def find(stem: str) -> Path:
        found = _idx_file(raw, stem)
        if found is not None:
            return found
        raise UserError(f"mnist: no {stem}(.gz) in {raw}; expected ROOT/MNIST/raw/*-idx?-ubyte.gz "
                        f"(or pass --download to fetch it into {root})")

    def load(prefix: str, augment: str | None):
        images_path, labels_path = find(f"{prefix}-images-idx3-ubyte"), find(f"{prefix}-labels-idx1-ubyte")
        pixels = _read_idx(images_path)
        if pixels.ndim != 3 or pixels.shape[1:] != (28, 28) or not len(pixels):
            raise UserError(f"mnist: {images_path} holds images shaped {pixels.shape}; MNIST's are N,28,28")
        label_values = _read_idx(labels_path)
        _check_labels(f"mnist: {labels_path}", label_values, len(pixels), info.num_classes)
        images = torch.from_numpy(pixels.copy()).float().div_(255).unsqueeze(1)
        images = torch.nn.functional.pad(images, (MNIST_PAD,) * 4)
        labels = torch.from_numpy(label_values.copy()).long()
        return TensorImages(_in_convention(images, info, convention), labels, augment)

    return load("train", "shift"), load("t10k", None)


def _torchvision_cifar(name: str, root: Path, info: DatasetInfo, convention: InputConvention):
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        train = cls(str(root), train=True)
        val = cls(str(root), train=False)
    except RuntimeError:
        raise UserError(f"{name}: no dataset in {root}; expected torchvision's layout ({root}/"
                        f"{cls.base_folder}), or pass --download to fetch it there") from None
    return (TensorImages(_from_uint8_hwc(train.data, info, convention), torch.tensor(train.targets), "crop-flip"),
            TensorImages(_from_uint8_hwc(val.data, info, convention), torch.tensor(val.targets)))


def _read_image(path: str):
    """An RGB image, or a one-line UserError naming the file that cannot be read (never a PIL traceback)."""
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            image = Image.open(handle)
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"image {path} cannot be read ({reason}); remove or replace it") from None


def read_image_tensor(path: str) -> torch.Tensor:
    """An RGB image as a uint8 C,H,W tensor, decoded by torchvision (libjpeg-turbo, no PIL image made);
    files torchvision cannot decode (CMYK or odd JPEGs, other formats) go through PIL instead.
    torchvision 0.29 deprecates its decoders for TorchCodec; they are kept (and the warning silenced)
    until TorchCodec is a dependency worth adding."""
    import warnings

    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_image(read_file(path), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError):
        return torch.from_numpy(np.asarray(_read_image(path))).permute(2, 0, 1).contiguous()


def download_dataset(name: str, root: str | Path) -> None:
    """Fetch CIFAR-10/100 or MNIST into ``root`` with torchvision (nothing happens when it is there
    already, checksums included); a failed download is one line saying what to do instead."""
    from torchvision import datasets

    if name not in DOWNLOADABLE:
        raise UserError(f"--download fetches {', '.join(DOWNLOADABLE)}; {name} has to be put in --data-root by "
                        "hand (ImageNet: ROOT/train/CLASS/*.jpg and ROOT/val/CLASS/*.jpg)")
    if _readable_already(name, Path(root)):
        return
    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100, "mnist": datasets.MNIST}[name]
    try:
        cls(str(root), train=True, download=True)
    except (RuntimeError, OSError) as error:  # URLError is an OSError; torchvision wraps checksum failures
        reason = str(error).strip().splitlines()
        raise UserError(f"{name}: download into {root} failed ({reason[-1] if reason else type(error).__name__}); "
                        f"check the connection, or fetch it by hand into {root} (see the README)") from None


def _imagefolder(root: Path, input_size: int, info: DatasetInfo, convention: InputConvention):
    """ImageFolder splits decoded by torchvision into uint8 tensors and transformed by transforms.v2 on them:
    1.4x PIL's images/s per core with the same steps, 2x for evaluation (benchmarks/input_pipeline.py). The random steps draw
    from torch's global generator exactly as the PIL transforms did (same crop box, flip and jitter factors
    for the same draw); resizing is antialiased bilinear as PIL's is, pixels agree within a level or two."""
    from torchvision import datasets
    from torchvision.transforms import v2

    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            raise UserError(f"imagefolder: no folder {folder}; expected ROOT/train/CLASS/*.jpg and "
                            "ROOT/val/CLASS/*.jpg")
    to_input = [v2.ToDtype(torch.float32, scale=True), ConventionTransform(info, convention)]
    train_tf = v2.Compose([v2.RandomResizedCrop(input_size, antialias=True), v2.RandomHorizontalFlip(),
                           v2.ColorJitter(0.4, 0.4, 0.4), *to_input])
    eval_tf = v2.Compose([v2.Resize(int(input_size / EVAL_CROP_FRACTION), antialias=True), v2.CenterCrop(input_size),
                          *to_input])
    try:
        train = datasets.ImageFolder(str(root / "train"), train_tf, loader=read_image_tensor)
        val = datasets.ImageFolder(str(root / "val"), eval_tf, loader=read_image_tensor)
        train_eval = datasets.ImageFolder(str(root / "train"), eval_tf, loader=read_image_tensor)
    except (FileNotFoundError, RuntimeError) as error:
        raise UserError(f"imagefolder: {str(error).splitlines()[0]}; expected ROOT/train/CLASS/*.jpg") from None
    if len(train.classes) < 2:
        raise UserError(f"imagefolder: {root / 'train'} has {len(train.classes)} class folder; a classifier needs at "
                        "least two (ROOT/train/CLASS/*.jpg, one folder per class)")
    if train.classes != val.classes:
        raise UserError(f"imagefolder: train has {len(train.classes)} classes but val has {len(val.classes)}; "
                        "both need the same CLASS folders")
    return train, val, train_eval


def parse_holdout(text: str) -> float | int:
    """``--holdout`` as given on the command line: a count (50000) or a fraction (0.2)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value >= 1 and not value.is_integer()):
        raise UserError(f"--holdout {text!r}: give a count (e.g. 50000) or a fraction between 0 and 1 (e.g. 0.2)")
    return value if 0 < value < 1 else int(value)


def holdout_count(holdout: float | int, n: int) -> int:
    """How many of ``n`` images a hold-out of ``holdout`` (a count, or a fraction of ``n``) takes."""
    return int(round(holdout * n)) if isinstance(holdout, float) else int(holdout)


def carve(dataset: Dataset, holdout: float | int, seed: int) -> Dataset:
    """A seeded random part of ``dataset`` of ``holdout`` images (a count or a fraction), drawn as
    `build_datasets` draws its hold-out from train: e.g. a hold-out taken from the val split."""
    count = holdout_count(holdout, len(dataset))
    if not 0 < count < len(dataset):
        raise UserError(f"a part of {holdout} of {len(dataset)} images: give a count between 1 and "
                        f"{len(dataset) - 1} or a fraction between 0 and 1")
    _, held = _holdout_indices(len(dataset), holdout, seed)
    return dataset.subset(held) if isinstance(dataset, TensorImages) else Subset(dataset, held.tolist())


def _holdout_indices(n: int, holdout: float | int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    count = holdout_count(holdout, n)
    if isinstance(holdout, float) and not 0 < holdout < 1:
        raise UserError(f"holdout fraction {holdout} must be between 0 and 1")
    if not 0 < count < n:
        raise UserError(f"holdout {holdout} leaves no training images (the training set has {n}); "
                        f"give a count below {n} or a fraction")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[count:].sort().values, order[:count].sort().values


def build_datasets(name: str, root: str | Path | None = None, *, download: bool = False,
                   holdout: float | int = 0, seed: int = 0, input_size: int | None = None,
                   num_classes: int | None = None, synthetic_size: int = 512,
                   convention: str | dict | InputConvention | None = None) -> Splits:
    """Train, hold-out and val sets of a dataset, with its facts (classes, size, channels, stats).

    Images come in the input ``convention`` (default spos's: RGB 0..1 normalised by the dataset's
    mean/std); synthetic images are random tensors, already network input, so it does not apply to them.
    """
    info = dataset_info(name)
    convention = input_convention(convention)
    needs_root = name in ("imagefolder", "cifar10", "cifar100", "mnist")
    if needs_root and root is None:
        raise UserError(f"{name} needs --data-root (the folder holding the dataset)")
    path = Path(root).expanduser() if root is not None else None  # "~/data/mnist" from a config file too
    if download and needs_root:
        download_dataset(name, path)  # imagefolder: refused with what to do instead
    if needs_root and not path.exists():
        hint = " or pass --download to fetch it there" if name in DOWNLOADABLE else ""
        raise UserError(f"{name}: data root {path} does not exist; pass the right --data-root{hint}")
    train_eval = None
    if name == "digits":
        train, val = _digits(info, convention)
    elif name == "synthetic":
        info = DatasetInfo("synthetic", num_classes or info.num_classes, input_size or info.input_size,
                           info.in_channels, info.mean, info.std)
        train, val = _synthetic(info, synthetic_size, seed)
    elif name == "mnist":
        train, val = _mnist(path, info, convention)
    elif name == "cifar10" and _npz_path(path) is not None:
        train, val = _cifar_npz(_npz_path(path), info, convention)
    elif name in ("cifar10", "cifar100"):
        train, val = _torchvision_cifar(name, path, info, convention)
    else:
        size = input_size or info.input_size
        train, val, train_eval = _imagefolder(path, size, info, convention)
        info = DatasetInfo(name, len(train.classes), size, 3, info.mean, info.std)
    held = None
    if holdout:
        keep, held_idx = _holdout_indices(len(train), holdout, seed)
        if isinstance(train, TensorImages):
            train, held = train.subset(keep, train.augment), train.subset(held_idx)
        else:
            train, held = Subset(train, keep.tolist()), Subset(train_eval, held_idx.tolist())
    return Splits(train, held, val, info)


__all__ = ['ConventionTransform', 'DOWNLOADABLE', 'EVAL_CROP_FRACTION', 'MNIST_FILES', 'MNIST_PAD', 'Splits', 'TensorImages', 'build_datasets', 'carve', 'download_dataset', 'holdout_count', 'parse_holdout', 'random_crop_flip', 'read_image_tensor']
