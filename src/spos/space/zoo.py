"""Named architectures: the paper's, the seed's and simple baselines, with their reported figures.

Reported figures are kept as metadata beside what spos counts, never in place of it: `spos zoo`
prints both, so a difference shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from spos.errors import UserError
from spos.space.architecture import Architecture, expected_form, load_architecture, uniform_architecture
from spos.space.searchspace import SearchSpace, get_space

ONESHOT_BLOCKS = (0, 0, 3, 1, 1, 1, 0, 0, 2, 0, 2, 1, 1, 0, 2, 0, 2, 1, 3, 2)
ONESHOT_CHANNELS = (6, 5, 3, 5, 2, 6, 3, 4, 2, 5, 7, 5, 4, 6, 7, 4, 4, 5, 4, 3)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    space_name: str
    description: str
    blocks: tuple[int, ...] | None = None
    channels: tuple[int, ...] | None = None
    uniform: tuple[int | None, int | None] | None = None
    extreme: str | None = None  # "widest" or "narrowest": the path with the most / fewest FLOPs
    space_overrides: dict = field(default_factory=dict)
    reported: dict = field(default_factory=dict)

    def space(self, **adapt) -> SearchSpace:
        """The entry's space, adapted to the data (input_size, num_classes, in_channels, width_mult)."""
        return get_space(self.space_name, **{**self.space_overrides, **adapt})

    def architecture(self, space: SearchSpace) -> Architecture:
        if self.uniform is not None:
            block, channel = self.uniform
            return uniform_architecture(space, block, space.default_channel if channel is None else channel)
        if self.extreme is not None:
            from spos.space.flops import cost_table  # the widest/narrowest paths depend on the space's costs

            wide, narrow = cost_table(space).extremes()
            return wide if self.extreme == "widest" else narrow
        return Architecture(self.blocks, self.channels).validate(space)


def _entries() -> list[ZooEntry]:
    scale_one = (4,) * 20
    entries = [
        ZooEntry("oneshot", "oneshot", "the paper's block+channel search result (official OneShot)",
                 ONESHOT_BLOCKS, ONESHOT_CHANNELS,
                 reported=dict(flops=328e6, params=3.4e6, top1=74.9, top1_mxnet_retrain=74.02,
                               source="paper; MXNet retrain by the seed")),
        ZooEntry("oneshot+", "oneshot+", "oneshot choices with hard-swish, SE and a MobileNetV3 head (seed)",
                 ONESHOT_BLOCKS, ONESHOT_CHANNELS,
                 reported=dict(flops=297e6, params=3.7e6, top1=75.24, source="seed (MXNet)")),
        ZooEntry("oneshot-s+", "oneshot+", "the seed's own block+channel search result in the oneshot+ space",
                 (0, 0, 0, 1, 0, 0, 1, 0, 3, 2, 0, 1, 2, 2, 1, 2, 0, 0, 2, 0),
                 (8, 7, 6, 8, 5, 7, 3, 4, 2, 4, 2, 3, 4, 5, 6, 6, 3, 3, 4, 6),
                 reported=dict(flops=291e6, params=3.5e6, top1=75.75, source="seed (MXNet)")),
        ZooEntry("oneshot-tiny", "oneshot", "oneshot choices with a 100-channel last conv (seed)",
                 ONESHOT_BLOCKS, ONESHOT_CHANNELS, space_overrides=dict(last_conv_width=100),
                 reported=dict(params=1.93e6, top1=67.02, source="seed (MXNet)")),
        ZooEntry("spos-block", "oneshot", "the official block-search result, every channel scale 1.0",
                 (2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3), scale_one,
                 reported=dict(flops=323e6, params=3.5e6, top1=74.4, source="megvii SinglePathOneShot")),
    ]
    for block, label in enumerate(("3x3", "5x5", "7x7", "xception")):
        entries.append(ZooEntry(f"all-{label}", "oneshot", f"every layer {label}, channel scale 1.0",
                                uniform=(block, None)))
    entries.append(ZooEntry("widest", "oneshot", "the path with the most FLOPs (baseline)", extreme="widest"))
    entries.append(ZooEntry("narrowest", "oneshot", "the path with the fewest FLOPs (baseline)", extreme="narrowest"))
    for op, label in enumerate(("skip", "e3k3", "e6k5")):
        entries.append(ZooEntry(f"mbv2-cifar-all-{label}", "mbv2-macro-cifar",
                                f"every layer {('identity', 'mbconv-e3-k3', 'mbconv-e6-k5')[op]} (baseline)",
                                uniform=(op, 0)))
    for extreme in ("widest", "narrowest"):
        entries.append(ZooEntry(f"proxyless-{extreme}", "proxyless-mobile",
                                f"the proxyless-mobile path with the {'most' if extreme == 'widest' else 'fewest'} "
                                "FLOPs (baseline)", extreme=extreme))
    return entries


ZOO = {entry.name: entry for entry in _entries()}


def get_entry(name: str) -> ZooEntry:
    if name not in ZOO:
        raise UserError(f"unknown zoo architecture {name!r}; choose one of {', '.join(ZOO)}")
    return ZOO[name]


def resolve_architecture(reference: str, *, space: SearchSpace | None = None, default_space: str = "oneshot",
                         **adapt) -> tuple[Architecture, SearchSpace]:
    """A zoo name, an architecture file, or the compact text ``B,..,B/C,..,C``, with its space.

    ``space`` (when given) wins over the space a zoo entry or a file names; ``adapt`` (input_size,
    num_classes, in_channels, width_mult) adapts a zoo entry's space to the data; text and files
    that name no space get ``default_space``.
    """
    if reference in ZOO:
        entry = ZOO[reference]
        space = space or entry.space(**adapt)
        return entry.architecture(space), space
    path = Path(reference)
    if path.suffix == ".json" or path.is_file():
        arch, file_space = load_architecture(path)
        space = space or file_space or get_space(default_space, **adapt)
        return arch.validate(space), space
    space = space or get_space(default_space, **adapt)
    if re.fullmatch(r"[\d\s,/]+", reference):
        return Architecture.parse(reference, space).validate(space), space
    raise UserError(f"unknown architecture {reference!r}: not a zoo name ({', '.join(ZOO)}), "
                    f"an architecture file, or {expected_form(space)}")
