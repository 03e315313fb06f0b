"""Choice blocks: what each candidate op of a layer computes, and the static modules that run it.

A block kind (ShuffleNet, Xception, MBConv, identity, or a user's own) is registered by name
with `register_block` and describes itself as named branches of `Op` records, its *op plan*,
plus the name of one of three rules that combine the branches (`RULES`). One plan serves
three users: `static_block` here (plain static modules), `spos.nn.dynamic.DynamicBlock` (the
sliced supernet twin) and `spos.space.flops` (analytic FLOPs and parameters), so the three cannot
drift apart.

Op names in a space are the block's name and its options, e.g. ``shufflenet-5x5``,
``xception-3x3``, ``mbconv-e6-k5``, ``identity``: `make_block` turns such a name into a block.
The ShuffleNet branch names (``branch_main``, ``branch_proj``) follow the official
ShuffleNet-Series code, so official checkpoints map onto these modules key for key.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import NamedTuple

from spos.errors import UserError

# ----------------------------------------------------------------------------------------------
# Op plans


class Op(NamedTuple):
    """One step of a branch. ``kind`` is "conv", "bn", "act" or "se"; for all but "conv" the
    channels in and out are equal. ``sliced`` marks a conv whose output width is the layer's
    width choice, the only widths the supernet slices (everything after follows its input)."""

    kind: str
    in_channels: int
    out_channels: int
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    sliced: bool = False


def conv(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, sliced: bool = False) -> Op:
    return Op("conv", cin, cout, kernel, stride, groups, sliced)


def depthwise(channels: int, kernel: int, stride: int = 1, sliced: bool = False) -> Op:
    return Op("conv", channels, channels, kernel, stride, channels, sliced)


def bn(channels: int) -> Op:
    return Op("bn", channels, channels)


def act(channels: int) -> Op:
    return Op("act", channels, channels)


def se(channels: int) -> Op:
    return Op("se", channels, channels)


Plan = dict[str, list[Op]]

#: How a block's branches make the layer's output; each rule is written once for the static
#: modules (TorchScript-able classes below) and once for the sliced ones (`spos.nn.dynamic`).
#: - "sequential": one branch "layers", plus the input when stride is 1 and widths match;
#: - "shuffle": ShuffleNetV2 unit, "branch_main" and (a stage's first layer) "branch_proj";
#: - "skip": the input itself, or a "proj" branch where stride or width changes.
RULES = {"sequential": ({"layers"}, set()), "shuffle": ({"branch_main"}, {"branch_proj"}), "skip": (set(), {"proj"})}


# ----------------------------------------------------------------------------------------------
# The registry


class Block:
    """A kind of candidate op. Subclasses give `branches` (the op plan) and `rule` (how the
    branches make the layer's output, one of `RULES`); everything else in spos follows.

    ``spec`` is the layer (`spos.space.searchspace.LayerSpec`: in/out channels, stride, first of its stage,
    activation, SE); ``mid`` is the width the layer's width choice gives (`mid_channels`).
    """

    name: str = ""
    rule: str = "sequential"
    kernel: int = 0
    #: Blocks of one layer with the same key may share weights in an entangled supernet (their
    #: branches must have the same layout, up to kernel size and mid width); None: never shared.
    entangle_key: tuple | None = None
    #: A block of another layout that an *aligned* entangled supernet (`SuperNet(aligned_choices=True)`)
    #: still ties to the group of this key: ``align_convs`` gives, per branch, for each of its convs
    #: in plan order, the position of the group's conv it uses, or None for a conv of its own
    #: (which starts as an identity, so the block starts computing nearly what the group does).
    align_key: tuple | None = None
    align_convs: dict[str, tuple[int | None, ...]] = {}

    def mid_channels(self, spec, scale: float) -> int:
        return 0

    def branches(self, spec, mid: int) -> Plan:
        raise NotImplementedError

    def check(self, spec) -> None:
        """Raise a UserError when this op cannot be used at ``spec`` (default: it always can)."""

    def __repr__(self) -> str:
        return self.name


def residual(spec) -> bool:
    return spec.stride == 1 and spec.in_channels == spec.out_channels


_REGISTRY: dict[str, Callable[..., Block]] = {}
_OPTION = re.compile(r"^(?:(\d+)x\1|([a-z]+)(\d+(?:\.\d+)?))$")


def register_block(name: str):
    """Class decorator: make a `Block` subclass usable as op ``name`` (with options, e.g.
    ``name-k5``) in any space file. The class takes its options as keyword arguments; a
    ``KxK`` option is ``kernel=K``, any other ``<letters><number>`` is looked up in the class's
    ``options`` mapping (letters -> keyword)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"block name {name!r}: use lower-case letters, digits and '_'")

    def decorate(cls):
        if getattr(cls, "rule", None) not in RULES:
            raise ValueError(f"block {name!r}: rule must be one of {', '.join(RULES)}")
        _REGISTRY[name] = cls
        make_block.cache_clear()
        return cls

    return decorate


def registered_blocks() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


ENTRY_POINT_GROUP = "spos.blocks"
_entry_points_loaded = False


def load_plugin(name: str) -> None:
    """Import a module that registers blocks: a module name (``mypackage.blocks``) or a ``.py`` file."""
    try:
        if name.endswith(".py"):
            path = Path(name)
            if not path.is_file():
                raise UserError(f"--plugin {name}: no such file")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(name)
    except UserError:
        raise
    except Exception as error:  # a plugin is user code: any failure is the user's to see, in one line
        raise UserError(f"--plugin {name}: cannot import it ({type(error).__name__}: {error})") from None


def _load_entry_points() -> None:
    """Installed packages may register blocks through the ``spos.space.blocks`` entry-point group."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry.load()


@cache
def make_block(op_name: str) -> Block:
    """The block an op name stands for, e.g. ``mbconv-e3-k5`` -> MBConv(expand=3, kernel=5)."""
    family, *tokens = str(op_name).split("-")
    if family not in _REGISTRY:
        _load_entry_points()
    if family not in _REGISTRY:
        raise UserError(f"unknown op {op_name!r}; registered blocks are {', '.join(registered_blocks())} "
                        "(a block from your own module needs --plugin MODULE)")
    cls = _REGISTRY[family]
    kwargs = {}
    for token in tokens:
        match = _OPTION.match(token)
        key = "kernel" if match and match.group(1) else getattr(cls, "options", {}).get(match and match.group(2))
        if not match or key is None:
            raise UserError(f"op {op_name!r}: cannot read option {token!r}; {family} takes "
                            f"{_options_help(cls)}")
        value = match.group(1) or match.group(3)
        kwargs[key] = float(value) if "." in value else int(value)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise UserError(f"op {op_name!r}: {error}") from None


def _options_help(cls) -> str:
    names = ["KxK (kernel)"] + [f"{letters}N ({key})" for letters, key in getattr(cls, "options", {}).items()]
    return ", ".join(names)


# ----------------------------------------------------------------------------------------------
# Built-in blocks


@register_block("shufflenet")
class ShuffleNetBlock(Block):
    """ShuffleNetV2 unit with a k x k depthwise conv: 1x1 -> dw kxk -> 1x1 on the main branch.

    A stage's first layer feeds its whole input to both a projection branch (dw kxk -> 1x1) and
    the main branch; the others split the input (channel shuffle) and transform one half.
    The width choice sets the main branch's mid width, ``out_channels // 2 * scale``.
    """

    options = {"k": "kernel"}
    rule = "shuffle"

    def __init__(self, kernel: int = 3) -> None:
        if kernel not in (3, 5, 7):
            raise ValueError(f"kernel {kernel} is not one of 3, 5, 7")
        self.kernel = kernel
        self.name = f"shufflenet-{kernel}x{kernel}"
        self.entangle_key = ("shufflenet",)

    def check(self, spec) -> None:
        if spec.in_channels % 4 or spec.out_channels % 4:
            raise UserError(f"{self.name} at layer {spec.index}: widths {spec.in_channels}->{spec.out_channels} "
                            "must be a multiple of 4 (ShuffleNet blocks split channels in two)")

    def mid_channels(self, spec, scale: float) -> int:
        return max(1, int(spec.out_channels // 2 * scale))

    def main_plan(self, spec, mid: int) -> list[Op]:
        i, o = main_in(spec), spec.out_channels - main_in(spec)
        return [conv(i, mid, sliced=True), bn(mid), act(mid),
                depthwise(mid, self.kernel, spec.stride, sliced=True), bn(mid),
                conv(mid, o), bn(o), act(o)]

    def branches(self, spec, mid: int) -> Plan:
        main = self.main_plan(spec, mid)
        if spec.se:
            main.append(se(main[-1].out_channels))
        plan = {"branch_main": main}
        if spec.first:
            p = main_in(spec)
            plan["branch_proj"] = [depthwise(p, self.kernel, spec.stride), bn(p), conv(p, p), bn(p), act(p)]
        return plan


@register_block("xception")
class XceptionBlock(ShuffleNetBlock):
    """The paper's Xception-like choice: three (depthwise 3x3 + pointwise) on the main branch."""

    options = {}
    # Aligned with the ShuffleNet choices: its first pointwise conv, its last depthwise (the centre
    # of theirs) and last pointwise conv, and its projection branch are theirs; the depthwise conv
    # before and the (depthwise, pointwise) pair between start as identities.
    align_key = ("shufflenet",)
    align_convs = {"branch_main": (None, 0, None, None, 1, 2), "branch_proj": (0, 1)}

    def __init__(self, kernel: int = 3) -> None:
        if kernel != 3:
            raise ValueError("the Xception block's kernel is 3")
        self.kernel, self.name, self.entangle_key = 3, "xception-3x3", None

    def main_plan(self, spec, mid: int) -> list[Op]:
        i, o = main_in(spec), spec.out_channels - main_in(spec)
        return [depthwise(i, 3, spec.stride), bn(i), conv(i, mid, sliced=True), bn(mid), act(mid),
                depthwise(mid, 3, sliced=True), bn(mid), conv(mid, mid, sliced=True), bn(mid), act(mid),
                depthwise(mid, 3, sliced=True), bn(mid), conv(mid, o), bn(o), act(o)]


def main_in(spec) -> int:
    """Channels entering a ShuffleNet main branch: all of them in a stage's first layer, else half."""
    return spec.in_channels if spec.first else spec.in_channels // 2


@register_block("mbconv")
class MBConv(Block):
    """MobileNetV2 inverted residual: 1x1 expand (ratio e) -> k x k depthwise (stride) -> 1x1
    project, BN after each conv, the stage's activation after the first two, optional SE on the
    expanded width, and a residual add when stride is 1 and widths match. The width choice
    scales the expanded width (``in_channels * e * scale``), which the supernet slices."""

    options = {"e": "expand", "k": "kernel"}

    def __init__(self, expand: float = 6, kernel: int = 3) -> None:
        if expand <= 0 or kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"expand {expand} must be positive and kernel {kernel} odd")
        self.expand, self.kernel = expand, kernel
        self.name = f"mbconv-e{expand:g}-k{kernel}"
        self.entangle_key = ("mbconv",)

    def mid_channels(self, spec, scale: float) -> int:
        return max(1, int(round(spec.in_channels * self.expand * scale)))

    def branches(self, spec, mid: int) -> Plan:
        i, o = spec.in_channels, spec.out_channels
        ops = [conv(i, mid, sliced=True), bn(mid), act(mid),
               depthwise(mid, self.kernel, spec.stride, sliced=True), bn(mid), act(mid)]
        if spec.se:
            ops.append(se(mid))
        return {"layers": ops + [conv(mid, o), bn(o)]}


@register_block("identity")
class Identity(Block):
    """Skip the layer (how a space searches depth). Where the stride or width changes, a 1x1 conv
    + BN projection makes the shapes meet."""

    options = {}
    name = "identity"
    rule = "skip"

    def branches(self, spec, mid: int) -> Plan:
        if residual(spec):
            return {}
        return {"proj": [conv(spec.in_channels, spec.out_channels, 1, spec.stride), bn(spec.out_channels)]}


# ----------------------------------------------------------------------------------------------
# Static modules


def se_mid_channels(channels: int) -> int:
    """Squeeze width: a quarter of the channels rounded up to a multiple of 8 (as in the seed)."""
    return -(-(channels // 4) // 8) * 8


def op_plan(spec, op_name: str, mid: int) -> Plan:
    """The branches of op ``op_name`` at layer ``spec`` and width ``mid``, checked against its rule."""
    block = make_block(op_name)
    plan = block.branches(spec, mid)
    required, optional = RULES[block.rule]
    if not required <= set(plan) <= required | optional:
        raise UserError(f"op {op_name!r} at layer {spec.index}: rule {block.rule!r} needs branches "
                        f"{sorted(required)} (optional {sorted(optional)}), the block gave {sorted(plan)}")
    return plan


