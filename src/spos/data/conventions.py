"""What a dataset is (classes, size, channels, the statistics it is normalised with) and how its pixels become a network's input: spos's convention or the official checkpoints' (BGR, 0..255). Recorded in every checkpoint, so a network is always fed the way it was trained."""

from __future__ import annotations

from dataclasses import dataclass

from spos.errors import UserError

DATASETS = ("imagefolder", "cifar10", "cifar100", "mnist", "digits", "synthetic")


IMAGENET_MEAN = (0.485, 0.456, 0.406)



IMAGENET_STD = (0.229, 0.224, 0.225)



@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    input_size: int
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def check_fits(self, space) -> None:
        """Refuse data a network cannot read: ``space`` (its `SearchSpace`) must expect these classes and channels."""
        if (self.num_classes, self.in_channels) != (space.num_classes, space.in_channels):
            raise UserError(f"{self.name} has {self.num_classes} classes and {self.in_channels} channels but the "
                            f"network expects {space.num_classes} and {space.in_channels}; use the data it was "
                            "trained on (--data)")



_INFO = {
    "imagefolder": DatasetInfo("imagefolder", 1000, 224, 3, IMAGENET_MEAN, IMAGENET_STD),
    "cifar10": DatasetInfo("cifar10", 10, 32, 3, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": DatasetInfo("cifar100", 100, 32, 3, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": DatasetInfo("mnist", 10, 32, 1, (0.1307,), (0.3081,)),
    "digits": DatasetInfo("digits", 10, 8, 1, (0.3053,), (0.3760,)),
    "synthetic": DatasetInfo("synthetic", 10, 32, 3, (0.0,), (1.0,)),
}



@dataclass(frozen=True)
class InputConvention:
    """How pixels become the network's input: a checkpoint's weights only mean something under it.

    Pixels are read as RGB in 0..1, multiplied by ``scale``, put in ``channel_order`` and then
    normalised by ``mean``/``std`` (None: the dataset's own statistics). ``spos`` is what spos's
    own runs train on; ``official`` is megvii's ``ToBGRTensor``: BGR values 0..255, unnormalised.
    """

    name: str
    channel_order: str = "rgb"
    scale: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def stats(self, info: DatasetInfo) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return (info.mean if self.mean is None else self.mean), (info.std if self.std is None else self.std)

    def to_dict(self) -> dict:
        return {"name": self.name, "channel_order": self.channel_order, "scale": self.scale,
                "mean": None if self.mean is None else list(self.mean),
                "std": None if self.std is None else list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> InputConvention:
        if data.get("channel_order", "rgb") not in ("rgb", "bgr"):
            raise UserError(f"input convention {data!r}: channel_order must be rgb or bgr")
        mean, std = data.get("mean"), data.get("std")
        return cls(str(data.get("name", "custom")), data.get("channel_order", "rgb"), float(data.get("scale", 1.0)),
                   None if mean is None else tuple(float(v) for v in mean),
                   None if std is None else tuple(float(v) for v in std))

    def describe(self, channels: int | None = None, pixel_max: float | None = None) -> str:
        """One line for a person. ``channels`` and ``pixel_max`` (a preprocessing record's, `spos.data.preprocessing`)
        say what the network is really fed: a one-channel network grey pixels, raw ones 0..``pixel_max``
        (16 for digits), so no digits export reads as RGB 0..1."""
        stats = "the dataset's mean/std" if self.mean is None else f"mean {list(self.mean)} std {list(self.std)}"
        order = "GRAY" if channels == 1 else self.channel_order.upper()
        raw = "" if pixel_max is None else f" from raw 0..{pixel_max:g}"
        return f"{self.name} ({order}, pixels 0..{self.scale:g}{raw}, {stats})"



CONVENTIONS = {
    "spos": InputConvention("spos"),
    "official": InputConvention("official", "bgr", 255.0, (0.0,), (1.0,)),
}



def input_convention(value: str | dict | InputConvention | None) -> InputConvention:
    """A convention from its preset name, its dict, or None (spos's own, the default)."""
    if value is None:
        return CONVENTIONS["spos"]
    if isinstance(value, InputConvention):
        return value
    if isinstance(value, dict):
        return InputConvention.from_dict(value)
    if value not in CONVENTIONS:
        raise UserError(f"unknown input convention {value!r}; choose one of {', '.join(CONVENTIONS)}")
    return CONVENTIONS[value]



def dataset_info(name: str) -> DatasetInfo:
    if name not in _INFO:
        raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return _INFO[name]


__all__ = ['CONVENTIONS', 'DATASETS', 'DatasetInfo', 'IMAGENET_MEAN', 'IMAGENET_STD', 'InputConvention', 'dataset_info', 'input_convention']
