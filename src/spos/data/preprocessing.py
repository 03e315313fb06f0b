"""The whole preprocessing of a network's input, written down as data a deployer can follow without spos.

An `InputConvention` says how RGB pixels in 0..1 become input; a deployed model also needs what
comes before and around that: what the raw pixels are (uint8 0..255; scikit-learn's digits hold
0..16), how many channels, how an image is brought to the input size (MNIST's 28x28 padded to
32x32; an ImageFolder image resized and centre-cropped) and the dataset's mean/std as numbers.
Without them a digits model fed raw pixels scores chance. `preprocessing_record` writes it all
down; every export (ONNX metadata, TorchScript extra file, a model folder's config.json) carries
it, and `tests/test_preprocessing.py` runs exported models on raw pixels using only the record.

The recipe, for raw pixels ``p`` shaped H,W (one channel) or H,W,3 (RGB):
1. bring the image to ``input_size`` by ``resize`` (``none``; ``pad``: ``pad`` pixels of value
   ``value`` on every side; ``resize-centre-crop``: shorter side to ``resize`` with antialiased
   bilinear interpolation (PIL's ``Image.BILINEAR``), then the centre ``crop`` x ``crop``);
2. ``x = p / pixel_max * scale`` as float32; put the channels in ``channel_order``;
3. ``x = (x - mean[c]) / std[c]`` per channel; lay out as N,C,H,W (``layout``).
"""

from __future__ import annotations

from spos.data.conventions import DatasetInfo, InputConvention
from spos.data.datasets import EVAL_CROP_FRACTION, MNIST_PAD

RECORD_VERSION = 1
#: What each dataset's raw pixels are, as a user holds them: (largest pixel value, side of a raw image).
RAW_PIXELS = {"digits": (16, 8), "mnist": (255, 28), "cifar10": (255, 32), "cifar100": (255, 32),
              "imagefolder": (255, None), "synthetic": (None, None)}


def _per_channel(values, channels: int) -> list[float] | None:
    if values is None:
        return None
    values = [float(v) for v in values]
    return values * channels if len(values) == 1 else values


def resize_rule(dataset: str | None, input_size: int) -> dict:
    """How spos's evaluation brings an image of ``dataset`` to ``input_size`` (see the module docstring)."""
    if dataset == "imagefolder":
        return {"rule": "resize-centre-crop", "resize": int(input_size / EVAL_CROP_FRACTION), "crop": input_size,
                "interpolation": "bilinear", "antialias": True}
    if dataset == "mnist":
        return {"rule": "pad", "pad": MNIST_PAD, "value": 0}
    return {"rule": "none"}


def preprocessing_record(info: DatasetInfo | None, convention: InputConvention, input_size: int,
                         in_channels: int) -> dict:
    """The preprocessing of a network trained on ``info``'s data (None: unknown) in ``convention``.

    A superset of ``convention.to_dict()``: the same keys, with ``mean``/``std`` as the numbers
    used (the dataset's own where the convention says so; null only when no dataset is known).
    """
    mean, std = (convention.stats(info) if info is not None else (convention.mean, convention.std))
    dataset = info.name if info is not None else None
    pixel_max, source_size = RAW_PIXELS.get(dataset, (255, None))
    order = "gray" if in_channels == 1 else convention.channel_order
    return {
        "name": convention.name, "version": RECORD_VERSION, "dataset": dataset, "channels": in_channels,
        "channel_order": order, "pixel_max": pixel_max, "scale": convention.scale,
        "mean": _per_channel(mean, in_channels), "std": _per_channel(std, in_channels),
        "source_size": source_size, "input_size": [input_size, input_size],
        "resize": resize_rule(dataset, input_size), "layout": "NCHW", "dtype": "float32",
    }


def describe_record(record: dict) -> str:
    """One line for a person: what to feed the exported model."""
    stats = ("mean/std unknown (no dataset named: pass --data)" if record["mean"] is None
             else f"mean {record['mean']} std {record['std']}")
    resize = record["resize"]
    how = {"none": "as they are", "pad": f"padded by {resize.get('pad')} (value {resize.get('value')})",
           "resize-centre-crop": f"shorter side resized to {resize.get('resize')} (bilinear), centre crop "
                                 f"{resize.get('crop')}"}[resize["rule"]]
    size = "x".join(map(str, record["input_size"]))
    return (f"{record['dataset'] or 'unknown data'} images {how} to {size}, {record['channels']} channel(s) "
            f"{record['channel_order'].upper()}, pixels / {record['pixel_max']} * {record['scale']:g}, {stats}")


def convention_from_record(record: dict) -> InputConvention:
    """The input convention a preprocessing record (or a plain convention dict) describes."""
    order = record.get("channel_order", "rgb")
    return InputConvention.from_dict({**record, "channel_order": "rgb" if order == "gray" else order})
