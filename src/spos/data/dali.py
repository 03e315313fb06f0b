"""Training batches of an ImageFolder decoded and augmented on the GPU with NVIDIA DALI (``data.loader: dali``).

The CPU path (`spos.data.datasets._imagefolder`, torchvision on uint8 tensors) feeds 100-200 images/s per
core, so a GPU training a ShuffleNet-sized network needs dozens of cores; NNI's SPOS port uses DALI
for that reason. This path runs the same recipe on the same data:

- the same files, hold-out split and label of every sample (the training `Subset`'s indices);
- the same (seed, epoch) order from `spos.data.loaders.EpochShuffle`, and the same per-rank shares;
- the same crop box, flip and jitter factors as the CPU path draws for a sample: they are drawn on
  the CPU by torchvision's own ``make_params`` from torch's generator seeded by (seed, epoch,
  sample index), so a batch does not depend on the batches before it and a resumed epoch equals an
  uninterrupted one;
- the same input convention (scale, channel order, mean/std), applied on the GPU.

Differences, by construction: nvJPEG decodes and DALI resizes (antialiased linear), so pixels differ
from the CPU path's by a few levels; DALI applies brightness, contrast and saturation in that fixed
order where torchvision permutes them per image. Validation batches stay on the CPU path.
DALI is optional (``pip install nvidia-dali-cuda120`` or ``-cuda130``) and imported only when asked.
"""

from __future__ import annotations

import numpy as np
import torch

from spos.data.conventions import DatasetInfo, InputConvention
from spos.data.loaders import EpochShuffle, augmentation_seed
from spos.errors import UserError

INSTALL = "pip install nvidia-dali-cuda120 (CUDA 12) or nvidia-dali-cuda130 (CUDA 13)"


def check_dali(data_name: str, device: str | None) -> None:
    """Refuse, in one line, a DALI loader that cannot run here; before any data is read."""
    if data_name != "imagefolder":
        raise UserError(f"--loader dali reads ImageFolder JPEGs; {data_name} is held in memory already, so use the "
                        "default loader")
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        raise UserError(f"--loader dali needs NVIDIA DALI, which is not installed: {INSTALL}; or leave --loader "
                        "at its default (torchvision on the CPU)") from None
    if not torch.cuda.is_available() or (device is not None and not str(device).startswith("cuda")):
        raise UserError("--loader dali decodes on the GPU, and there is no CUDA device here (or train.device is "
                        "not cuda); use the default loader")


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    return augmentation_seed(seed, epoch, index)  # the CPU path's (`spos.data.loaders.SeededSamples`): the same draws


def sample_params(size: tuple[int, int], input_size: int, seed: int, epoch: int, index: int) -> dict:
    """The crop box, flip and jitter factors of one sample: torchvision's own draws (the CPU path's
    transforms, in its order) from torch's generator seeded by (seed, epoch, index)."""
    from torchvision.transforms import v2

    width, height = size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_sample_seed(seed, epoch, index))
        box = v2.RandomResizedCrop(input_size).make_params([torch.empty(3, height, width, dtype=torch.uint8)])
        mirror = bool(torch.rand(1) < 0.5)
        jitter = v2.ColorJitter(0.4, 0.4, 0.4).make_params([])
    return {"anchor": (box["left"], box["top"]), "shape": (box["width"], box["height"]), "mirror": mirror,
            "brightness": jitter["brightness_factor"], "contrast": jitter["contrast_factor"],
            "saturation": jitter["saturation_factor"]}


def _samples(dataset) -> tuple[list[str], list[int]]:
    """(files, labels) of an ImageFolder or of a Subset of one (the hold-out split's training part)."""
    indices = getattr(dataset, "indices", None)
    base = dataset.dataset if indices is not None else dataset
    samples = [base.samples[i] for i in indices] if indices is not None else base.samples
    return [path for path, _ in samples], [label for _, label in samples]


def _pipeline(batch_size: int, device_id: int, threads: int, input_size: int, mean, std):
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=batch_size, num_threads=threads, device_id=device_id, prefetch_queue_depth=1)
    def augment():
        jpegs = fn.external_source(name="jpegs", dtype=types.UINT8)
        anchor = fn.external_source(name="anchor", dtype=types.FLOAT)
        shape = fn.external_source(name="shape", dtype=types.FLOAT)
        mirror = fn.external_source(name="mirror", dtype=types.INT32)
        brightness = fn.external_source(name="brightness", dtype=types.FLOAT)
        contrast = fn.external_source(name="contrast", dtype=types.FLOAT)
        saturation = fn.external_source(name="saturation", dtype=types.FLOAT)
        images = fn.decoders.image_slice(jpegs, anchor, shape, device="mixed", output_type=types.RGB,
                                         normalized_anchor=False, normalized_shape=False)
        images = fn.resize(images, resize_x=input_size, resize_y=input_size, interp_type=types.INTERP_LINEAR,
                           antialias=True)
        grey_mean = fn.reductions.mean(fn.color_space_conversion(images, image_type=types.RGB,
                                                                 output_type=types.GRAY))
        images = fn.brightness_contrast(images, brightness=brightness, contrast=contrast,
                                        contrast_center=grey_mean * brightness)
        images = fn.saturation(images, saturation=saturation)
        return fn.crop_mirror_normalize(images, mirror=mirror, dtype=types.FLOAT, output_layout="CHW",
                                        mean=mean, std=std)

    pipe = augment()
    pipe.build()
    return pipe


class DaliBatches:
    """(images on the GPU, labels) batches with ``sampler.set_epoch`` and ``len``, like `spos.data.loaders.build_loader`."""

    def __init__(self, dataset, *, batch_size: int, seed: int, rank: int, world: int, device: torch.device,
                 input_size: int, info: DatasetInfo, convention: InputConvention, threads: int = 4) -> None:
        self.files, self.labels = _samples(dataset)
        self.dataset, self.batch_size, self.input_size, self.device = dataset, batch_size, input_size, device
        self.sampler = EpochShuffle(len(self.files), seed, shuffle=True, rank=rank, world=world, chunk=batch_size)
        mean, std = convention.stats(info)
        self.bgr = convention.channel_order == "bgr"
        order = slice(None, None, -1) if self.bgr else slice(None)  # the mean/std are given in the network's order
        self._pipe = _pipeline(batch_size, device.index or 0, threads, input_size,
                               [m * 255 / convention.scale for m in mean][order],
                               [s * 255 / convention.scale for s in std][order])

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def _feed(self, indices: list[int]) -> None:
        from PIL import Image

        params = []
        for index in indices:
            with Image.open(self.files[index]) as image:  # the header only: the size the crop box needs
                params.append(sample_params(image.size, self.input_size, self.sampler.seed, self.sampler.epoch, index))
        columns = {"jpegs": [np.fromfile(self.files[i], dtype=np.uint8) for i in indices],
                   "anchor": [np.array(p["anchor"], np.float32) for p in params],
                   "shape": [np.array(p["shape"], np.float32) for p in params],
                   "mirror": [np.array(p["mirror"], np.int32) for p in params]}
        for key in ("brightness", "contrast", "saturation"):
            columns[key] = [np.array(p[key], np.float32) for p in params]
        for name, data in columns.items():
            self._pipe.feed_input(name, data)

    def __iter__(self):
        from nvidia.dali.plugin.pytorch import feed_ndarray

        order = self.sampler.order().tolist()
        for start in range(self.sampler.start, len(self) * self.batch_size, self.batch_size):  # resumed: from there
            indices = order[start:start + self.batch_size]
            self._feed(indices)
            (output,) = self._pipe.run()
            dense = output.as_tensor()
            images = torch.empty(dense.shape(), dtype=torch.float32, device=self.device)
            feed_ndarray(dense, images, cuda_stream=torch.cuda.current_stream(self.device))
            labels = torch.tensor([self.labels[i] for i in indices], device=self.device)
            yield (images.flip(1) if self.bgr else images), labels
