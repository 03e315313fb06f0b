"""The one-shot search space and architectures in it: plain data, no torch.

A `SearchSpace` says what the network around the choice layers looks like (stem, stage widths
and repeats, head) and which choices each layer offers. An `Architecture` is one block choice
and one channel choice per choice layer. Everything else in spos is a function of those two.

Block choices (the paper's four): 0 ShuffleNetV2 block 3x3, 1 5x5, 2 7x7, 3 Xception-like
(three depthwise 3x3 + pointwise). A channel choice indexes ``channel_scales``: the block's mid
width is ``int(out_channels // 2 * scale)``, as in the official code.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from spos.errors import UserError
from spos.files import write_text_atomic

BLOCK_NAMES = ("shufflenet-3x3", "shufflenet-5x5", "shufflenet-7x7", "xception-3x3")
BLOCK_KERNELS = (3, 5, 7, 3)
XCEPTION = 3
CHANNEL_SCALES = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
ACTIVATIONS = ("relu", "hswish")
HEADS = ("conv-pool", "pool-conv")


@dataclass(frozen=True)
class LayerSpec:
    """The fixed facts of one choice layer; its block and channel choice come from the architecture.

    The first layer of a stage takes the whole input into both branches (main and projection);
    every other layer splits its input in two halves and only transforms one.
    """

    index: int
    stage: int
    in_channels: int
    out_channels: int
    stride: int
    first: bool
    activation: str
    se: bool
    in_size: int

    @property
    def main_in(self) -> int:
        return self.in_channels if self.first else self.in_channels // 2

    @property
    def main_out(self) -> int:
        return self.out_channels - self.main_in

    @property
    def out_size(self) -> int:
        return (self.in_size - 1) // self.stride + 1

    def mid_channels(self, scale: float) -> int:
        return max(1, int(self.out_channels // 2 * scale))


@dataclass(frozen=True)
class SearchSpace:
    """A ShuffleNetV2-based one-shot space. Presets come from `get_space`."""

    name: str = "oneshot"
    input_size: int = 224
    in_channels: int = 3
    num_classes: int = 1000
    stem_width: int = 16
    stem_stride: int = 2
    stem_activation: str = "relu"
    stage_repeats: tuple[int, ...] = (4, 4, 8, 4)
    stage_widths: tuple[int, ...] = (64, 160, 320, 640)
    stage_strides: tuple[int, ...] = (2, 2, 2, 2)
    stage_activations: tuple[str, ...] = ("relu", "relu", "relu", "relu")
    stage_se: tuple[bool, ...] = (False, False, False, False)
    num_blocks: int = 4
    channel_scales: tuple[float, ...] = CHANNEL_SCALES
    last_conv_width: int = 1024
    head: str = "conv-pool"
    head_activation: str = "relu"
    dropout: float = 0.1
    classifier_bias: bool = False

    def __post_init__(self) -> None:
        for name in ("stage_repeats", "stage_widths", "stage_strides", "stage_activations", "stage_se",
                     "channel_scales"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        stages = len(self.stage_repeats)
        for name in ("stage_widths", "stage_strides", "stage_activations", "stage_se"):
            if len(getattr(self, name)) != stages:
                raise UserError(f"space {self.name!r}: {name} has {len(getattr(self, name))} entries but "
                                f"stage_repeats has {stages}; give one per stage")
        for width in (self.stem_width, *self.stage_widths):
            if width < 4 or width % 4:
                raise UserError(f"space {self.name!r}: width {width} must be a multiple of 4 (channel split)")
        for act in (*self.stage_activations, self.stem_activation, self.head_activation):
            if act not in ACTIVATIONS:
                raise UserError(f"space {self.name!r}: unknown activation {act!r}; use one of {ACTIVATIONS}")
        if self.head not in HEADS:
            raise UserError(f"space {self.name!r}: unknown head {self.head!r}; use one of {HEADS}")
        if not 1 <= self.num_blocks <= len(BLOCK_NAMES):
            raise UserError(f"space {self.name!r}: num_blocks must be 1..{len(BLOCK_NAMES)}")
        if self.input_size < 1 or self.num_classes < 1 or self.in_channels < 1:
            raise UserError(f"space {self.name!r}: input_size, num_classes and in_channels must be positive")

    @property
    def num_layers(self) -> int:
        return sum(self.stage_repeats)

    @property
    def num_channels(self) -> int:
        return len(self.channel_scales)

    @property
    def default_channel(self) -> int:
        """The channel choice of scale 1.0 (the paper's block-search setting), else the widest."""
        scales = self.channel_scales
        return scales.index(1.0) if 1.0 in scales else len(scales) - 1

    @property
    def stem_size(self) -> int:
        return (self.input_size - 1) // self.stem_stride + 1

    def choice_counts(self) -> list[int]:
        """Genes of an architecture: block choices of every layer, then channel choices."""
        return [self.num_blocks] * self.num_layers + [self.num_channels] * self.num_layers

    def layers(self) -> list[LayerSpec]:
        specs, in_channels, size = [], self.stem_width, self.stem_size
        for stage, (repeats, width) in enumerate(zip(self.stage_repeats, self.stage_widths)):
            for i in range(repeats):
                stride = self.stage_strides[stage] if i == 0 else 1
                spec = LayerSpec(len(specs), stage, in_channels, width, stride, i == 0,
                                 self.stage_activations[stage], self.stage_se[stage], size)
                specs.append(spec)
                in_channels, size = width, spec.out_size
        return specs

    @property
    def final_size(self) -> int:
        return self.layers()[-1].out_size

    def replace(self, **changes) -> "SearchSpace":
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as error:
            raise UserError(f"space {self.name!r}: {error}; fields are {[f.name for f in dataclasses.fields(self)]}") from None

    def to_dict(self) -> dict:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "SearchSpace":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"space: unknown field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data)


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def strides_for_input(input_size: int) -> tuple[int, tuple[int, ...]]:
    """Stem and stage strides that keep a final feature map of at least 2x2.

    224 (ImageNet) downsamples 32x as in the paper; 32 (CIFAR) 8x; 8 (digits) 4x. The choice
    layers stay the same 20, so a small-input run exercises exactly the code ImageNet uses.
    """
    if input_size >= 128:
        return 2, (2, 2, 2, 2)
    if input_size >= 32:
        return 1, (1, 2, 2, 2)
    return 1, (1, 1, 2, 2)


_PRESETS = {
    "oneshot": dict(),
    "oneshot+": dict(
        stem_activation="hswish",
        stage_activations=("relu", "hswish", "hswish", "hswish"),
        stage_se=(False, False, True, True),
        head="pool-conv",
        head_activation="hswish",
        dropout=0.2,
        classifier_bias=True,
    ),
}
_PRESETS["shufflenetv2+"] = dict(_PRESETS["oneshot+"], stage_widths=(48, 128, 256, 512))

PRESETS = tuple(_PRESETS)


def _round4(x: float) -> int:
    return max(4, int(round(x / 4)) * 4)


def get_space(name: str = "oneshot", *, input_size: int | None = None, num_classes: int | None = None,
              in_channels: int | None = None, width_mult: float = 1.0, **overrides) -> SearchSpace:
    """A preset space, adapted to the data (input size, classes, channels) and optionally narrowed.

    ``width_mult`` scales every width (to multiples of 4): the tests and the demo use narrow
    spaces with the same 20 choice layers.
    """
    if name not in _PRESETS:
        raise UserError(f"unknown search space {name!r}; choose one of {', '.join(PRESETS)}")
    fields = dict(_PRESETS[name], name=name)
    if input_size is not None:
        fields["input_size"] = input_size
        fields["stem_stride"], fields["stage_strides"] = strides_for_input(input_size)
    if num_classes is not None:
        fields["num_classes"] = num_classes
    if in_channels is not None:
        fields["in_channels"] = in_channels
    if width_mult <= 0:
        raise UserError(f"width_mult must be positive, got {width_mult}")
    if width_mult != 1.0:
        def base(key):
            return fields.get(key, getattr(SearchSpace, key))
        fields["stem_width"] = _round4(base("stem_width") * width_mult)
        fields["stage_widths"] = tuple(_round4(w * width_mult) for w in base("stage_widths"))
        fields["last_conv_width"] = _round4(base("last_conv_width") * width_mult)
    fields.update(overrides)
    try:
        return SearchSpace(**fields)
    except TypeError as error:
        raise UserError(f"space {name!r}: {error}") from None


@dataclass(frozen=True)
class Architecture:
    """One block choice and one channel choice per choice layer; hashable, comparable."""

    blocks: tuple[int, ...]
    channels: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        try:
            blocks = tuple(int(b) for b in self.blocks)
            channels = tuple(int(c) for c in self.channels)
        except (TypeError, ValueError):
            raise UserError("architecture: block and channel choices must be integers") from None
        if len(blocks) != len(channels):
            raise UserError(f"architecture: {len(blocks)} block choices but {len(channels)} channel choices; "
                            "give one of each per choice layer")
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "channels", channels)

    def __len__(self) -> int:
        return len(self.blocks)

    @property
    def genes(self) -> tuple[int, ...]:
        return self.blocks + self.channels

    @classmethod
    def from_genes(cls, genes: Sequence[int]) -> "Architecture":
        half = len(genes) // 2
        return cls(tuple(genes[:half]), tuple(genes[half:]))

    def validate(self, space: SearchSpace) -> "Architecture":
        """Return self, or raise a UserError naming the first position, value and allowed range."""
        if len(self) != space.num_layers:
            raise UserError(f"architecture has {len(self)} layers but space {space.name!r} has "
                            f"{space.num_layers} choice layers")
        for kind, values, count in (("block", self.blocks, space.num_blocks),
                                    ("channel", self.channels, space.num_channels)):
            for layer, value in enumerate(values):
                if not 0 <= value < count:
                    raise UserError(f"architecture: {kind} choice {value} at layer {layer} is out of range "
                                    f"0..{count - 1}")
        return self

    def __str__(self) -> str:
        return f"{','.join(map(str, self.blocks))}/{','.join(map(str, self.channels))}"

    @classmethod
    def parse(cls, text: str) -> "Architecture":
        """Read the compact form ``B,B,.../C,C,...`` or a JSON object with "blocks" and "channels"."""
        text = text.strip()
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as error:
                raise UserError(f"architecture: invalid JSON ({error.msg} at line {error.lineno})") from None
            return cls.from_dict(data)
        if text.count("/") != 1:
            raise UserError(f"architecture {text!r}: expected 'B,B,...,B/C,C,...,C' (block choices / channel "
                            "choices) or a JSON object")
        blocks, channels = text.split("/")
        try:
            block_values = tuple(int(v) for v in blocks.split(","))
            channel_values = tuple(int(v) for v in channels.split(","))
        except ValueError:
            raise UserError(f"architecture {text!r}: choices must be comma-separated integers") from None
        return cls(block_values, channel_values)

    @classmethod
    def from_dict(cls, data: dict) -> "Architecture":
        if not isinstance(data, dict) or "blocks" not in data or "channels" not in data:
            raise UserError("architecture: expected an object with 'blocks' and 'channels' lists")
        return cls(tuple(data["blocks"]), tuple(data["channels"]))

    def to_dict(self) -> dict:
        return {"blocks": list(self.blocks), "channels": list(self.channels)}

    def describe(self, space: SearchSpace) -> list[str]:
        """One line per layer in words, e.g. 'layer 3 (stage 1, stride 1): xception-3x3, mid 48 (x1.2)'."""
        lines = []
        for spec, block, channel in zip(space.layers(), self.blocks, self.channels):
            scale = space.channel_scales[channel]
            lines.append(f"layer {spec.index:2d} (stage {spec.stage}, {spec.in_channels}->{spec.out_channels}, "
                         f"stride {spec.stride}): {BLOCK_NAMES[block]}, mid {spec.mid_channels(scale)} (x{scale:g})")
        return lines


def save_architecture(path: str | Path, arch: Architecture, space: SearchSpace, **extra) -> Path:
    """Write an architecture file: the choices and the whole space, so any command can rebuild it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**arch.to_dict(), "text": str(arch), "space": space.to_dict(), **extra}
    return write_text_atomic(json.dumps(data, indent=2) + "\n", path)


def load_architecture(path: str | Path) -> tuple[Architecture, SearchSpace | None]:
    """Read an architecture file; the space is None when the file names none."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"architecture file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"architecture file {path} is not valid JSON: {error}") from None
    arch = Architecture.from_dict(data)
    space = data.get("space")
    if isinstance(space, str):
        space = get_space(space)
    elif isinstance(space, dict):
        space = SearchSpace.from_dict(space)
    if space is not None:
        arch.validate(space)
    return arch, space


# ----------------------------------------------------------------------------------------------
# Sampling, mutation and crossover: what the supernet training and the search draw from.

SEARCH_MODES = ("both", "block", "channel")


def sample_architecture(space: SearchSpace, rng: random.Random, *, mode: str = "both",
                        min_channel: int = 0, fixed: Architecture | None = None) -> Architecture:
    """A uniformly random path.

    ``mode`` 'block' keeps channels at ``fixed`` (default: scale 1.0 everywhere, the paper's
    block search); 'channel' keeps blocks at ``fixed`` (default: all 3x3). ``min_channel`` is the
    lowest channel choice allowed (the channel-search warm-up narrows from wide to all).
    """
    if mode not in SEARCH_MODES:
        raise UserError(f"unknown search mode {mode!r}; use one of {SEARCH_MODES}")
    if not 0 <= min_channel < space.num_channels:
        raise UserError(f"min_channel {min_channel} out of range 0..{space.num_channels - 1}")
    fixed = fixed or Architecture((0,) * space.num_layers, (space.default_channel,) * space.num_layers)
    layers = range(space.num_layers)
    blocks = (fixed.blocks if mode == "channel"
              else tuple(rng.randrange(space.num_blocks) for _ in layers))
    channels = (fixed.channels if mode == "block"
                else tuple(rng.randrange(min_channel, space.num_channels) for _ in layers))
    return Architecture(blocks, channels)


def mutate(arch: Architecture, space: SearchSpace, rng: random.Random, prob: float = 0.1) -> Architecture:
    """Redraw each gene with probability ``prob`` (the official search uses 0.1)."""
    counts = space.choice_counts()
    genes = [rng.randrange(n) if rng.random() < prob else g for g, n in zip(arch.genes, counts)]
    return Architecture.from_genes(genes)


def crossover(a: Architecture, b: Architecture, rng: random.Random) -> Architecture:
    """Each gene from one parent or the other, with equal probability."""
    return Architecture.from_genes([x if rng.random() < 0.5 else y for x, y in zip(a.genes, b.genes)])


def uniform_architecture(space: SearchSpace, block: int, channel: int) -> Architecture:
    return Architecture((block,) * space.num_layers, (channel,) * space.num_layers)


def iter_all_layer_choices(space: SearchSpace) -> Iterable[tuple[int, int]]:
    for block in range(space.num_blocks):
        for channel in range(space.num_channels):
            yield block, channel
