"""Architectures: one block choice and one width choice per choice layer; their files, the search modes, sampling."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from spos.errors import UserError, naming
from spos.io.files import write_text_atomic
from spos.io.schema import fits, shown
from spos.space.searchspace import SearchSpace, load_space, read_document


@dataclass(frozen=True)
class Architecture:
    """One block choice and one channel choice per choice layer; hashable, comparable."""

    blocks: tuple[int, ...]
    channels: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        for kind, values in (("block", self.blocks), ("channel", self.channels)):
            if not fits(values, list):
                raise UserError(f"architecture: {kind} choices must be a list of whole numbers, not {shown(values)}")
            if not fits(values, [int]):
                layer, wrong = next((i, v) for i, v in enumerate(values) if not fits(v, int))
                raise UserError(f"architecture: {kind} choice {shown(wrong)} at layer {layer} is not a whole number; "
                                "choices are 0, 1, 2, ...")
        blocks = tuple(int(b) for b in self.blocks)
        channels = tuple(int(c) for c in self.channels)
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
    def from_genes(cls, genes: Sequence[int]) -> Architecture:
        half = len(genes) // 2
        return cls(tuple(genes[:half]), tuple(genes[half:]))

    def validate(self, space: SearchSpace) -> Architecture:
        """Return self, or raise a UserError naming the first position, value and allowed range."""
        if len(self) != space.num_layers:
            raise UserError(f"architecture has {len(self)} layers but space {space.name!r} has "
                            f"{space.num_layers} choice layers: give {expected_form(space)}")
        for kind, values, counts in (("block", self.blocks, space.op_counts),
                                     ("channel", self.channels, (space.num_channels,) * len(self))):
            for layer, (value, count) in enumerate(zip(values, counts)):
                if not 0 <= value < count:
                    raise UserError(f"architecture: {kind} choice {value} at layer {layer} is out of range "
                                    f"0..{count - 1}")
        return self

    def __str__(self) -> str:
        return f"{','.join(map(str, self.blocks))}/{','.join(map(str, self.channels))}"

    @classmethod
    def parse(cls, text: str, space: SearchSpace | None = None) -> Architecture:
        """Read the compact form ``B,B,.../C,C,...`` or a JSON object with "blocks" and "channels".

        In a ``space`` with one width choice the block choices alone (``B,B,...``) are enough."""
        text = text.strip()
        if space is not None and space.num_channels == 1 and "/" not in text and not text.startswith("{"):
            text = f"{text}/{','.join(['0'] * len(text.split(',')))}"
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as error:
                raise UserError(f"architecture: invalid JSON ({error.msg} at line {error.lineno})") from None
            return cls.from_dict(data)
        form = expected_form(space) if space is not None else "'B,B,...,B/C,C,...,C' (block choices / channel choices)"
        if text.count("/") != 1:
            raise UserError(f"architecture {text!r}: expected {form} or a JSON object")
        blocks, channels = text.split("/")
        try:
            block_values = tuple(int(v) for v in blocks.split(","))
            channel_values = tuple(int(v) for v in channels.split(","))
        except ValueError:
            raise UserError(f"architecture {text!r}: choices must be comma-separated integers; expected {form}") from None
        return cls(block_values, channel_values)

    @classmethod
    def from_dict(cls, data: dict) -> Architecture:
        if not isinstance(data, dict) or "blocks" not in data or "channels" not in data:
            raise UserError("architecture: expected an object with 'blocks' and 'channels' lists")
        return cls(data["blocks"], data["channels"])

    def to_dict(self) -> dict:
        return {"blocks": list(self.blocks), "channels": list(self.channels)}

    def op_names(self, space: SearchSpace) -> list[str]:
        """The op every layer runs, e.g. ['shufflenet-3x3', 'xception-3x3', ...]."""
        return [spec.ops[block] for spec, block in zip(space.layers(), self.blocks)]

    def describe(self, space: SearchSpace) -> list[str]:
        """One line per layer in words, e.g. 'layer 3 (stage 1, stride 1): xception-3x3, mid 48 (x1.2)'."""
        lines = []
        for spec, block, channel in zip(space.layers(), self.blocks, self.channels):
            scale, mid = space.channel_scales[channel], spec.mid_widths[block][channel]
            width = f", mid {mid} (x{scale:g})" if mid else ""
            lines.append(f"layer {spec.index:2d} (stage {spec.stage}, {spec.in_channels}->{spec.out_channels}, "
                         f"stride {spec.stride}): {spec.ops[block]}{width}")
        return lines



def expected_form(space: SearchSpace) -> str:
    """How an architecture of ``space`` is written as text, for the error that got something else."""
    ops = max(space.op_counts)
    blocks = f"{space.num_layers} block choices 0..{ops - 1}"
    if space.num_channels == 1:
        return f"{blocks} separated by commas (one width in space {space.name!r}: no '/C,..,C' part needed)"
    return (f"'B,..,B/C,..,C' with {blocks} and {space.num_layers} channel choices 0..{space.num_channels - 1} "
            f"(space {space.name!r})")



def save_architecture(path: str | Path, arch: Architecture, space: SearchSpace, **extra) -> Path:
    """Write an architecture file: the choices, the op of every layer by name (readable without
    the code) and the whole space, so any command can rebuild it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**arch.to_dict(), "text": str(arch), "space_name": space.name, "ops": arch.op_names(space),
            "space": space.to_dict(), **extra}
    return write_text_atomic(json.dumps(data, indent=2) + "\n", path)



def load_architecture(path: str | Path) -> tuple[Architecture, SearchSpace | None]:
    """Read an architecture file; the space is None when the file names none."""
    data = read_document(path, "architecture file", "JSON")
    with naming(f"architecture file {path}"):
        arch = Architecture.from_dict(data)
        space = data.get("space")
        if isinstance(space, str):
            space = load_space(space)
        elif space is not None:
            space = SearchSpace.from_dict(space)
        if space is not None:
            arch.validate(space)
    return arch, space



SEARCH_MODES = ("both", "block", "channel", "op", "width")



_MODE_ALIASES = {"op": "block", "width": "channel"}



def canonical_mode(mode: str) -> str:
    """'op' and 'width' (any space) are the paper's 'block' and 'channel' (its ShuffleNet space)."""
    if mode not in SEARCH_MODES:
        raise UserError(f"unknown search mode {mode!r}; use one of {SEARCH_MODES}")
    return _MODE_ALIASES.get(mode, mode)



def sample_architecture(space: SearchSpace, rng: random.Random, *, mode: str = "both",
                        min_channel: int = 0, fixed: Architecture | None = None) -> Architecture:
    """A uniformly random path.

    ``mode`` 'block' (or 'op') keeps widths at ``fixed`` (default: scale 1.0 everywhere, the
    paper's block search); 'channel' (or 'width') keeps ops at ``fixed`` (default: each layer's
    first op). ``min_channel`` is the lowest width choice allowed (the channel-search warm-up
    narrows from wide to all).
    """
    mode = canonical_mode(mode)
    if not 0 <= min_channel < space.num_channels:
        raise UserError(f"min_channel {min_channel} out of range 0..{space.num_channels - 1}")
    fixed = fixed or Architecture((0,) * space.num_layers, (space.default_channel,) * space.num_layers)
    blocks = (fixed.blocks if mode == "channel" else tuple(rng.randrange(n) for n in space.op_counts))
    channels = (fixed.channels if mode == "block"
                else tuple(rng.randrange(min_channel, space.num_channels) for _ in range(space.num_layers)))
    return Architecture(blocks, channels)



def uniform_architecture(space: SearchSpace, block: int, channel: int) -> Architecture:
    return Architecture((block,) * space.num_layers, (channel,) * space.num_layers)


__all__ = ['Architecture', 'SEARCH_MODES', 'canonical_mode', 'expected_form', 'load_architecture', 'sample_architecture', 'save_architecture', 'uniform_architecture']
