"""Search spaces and architectures in them: plain data, no torch.

A `SearchSpace` says what the network around the choice layers looks like (stem, stages of
layers with their widths and strides, head), which candidate ops each layer offers (by name,
from the block registry in `spos.space.blocks`) and which width choices every layer has. An
`Architecture` is one op choice and one width choice per choice layer (stored as ``blocks`` and
``channels``, the names of the paper's ShuffleNet space). Everything else is a function of both.

Spaces are declared in YAML (see `load_space_file` and the presets in ``spos/space/presets/``) or built
in Python from the same structure with `space_from_spec`. The ShuffleNet presets keep the
paper's choices: 0 ShuffleNetV2 3x3, 1 5x5, 2 7x7, 3 Xception-like; a width choice indexes
``channel_scales``, the block's mid width being ``int(out_channels // 2 * scale)`` as in the
official code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import yaml

from spos.errors import UserError, naming
from spos.io.schema import FINITE, check, shown
from spos.space import limits
from spos.space.layout import SHUFFLENET_OPS, LayerSpec, Layout, build_layout

CHANNEL_SCALES = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
ACTIVATIONS = ("relu", "hswish")
HEADS = ("conv-pool", "pool-conv")
#: How the ShuffleNet presets adapt to small inputs: (smallest input side, stem stride, stage
#: strides), first match wins. 224 (ImageNet) downsamples 32x as in the paper; 32 (CIFAR) 8x;
#: 8 (digits) 4x; the choice layers stay the same 20, so a small-input run exercises the code
#: ImageNet uses.
SHUFFLENET_INPUT_STRIDES = ((128, 2, (2, 2, 2, 2)), (32, 1, (1, 2, 2, 2)), (0, 1, (1, 1, 2, 2)))
#: The schema of a `SearchSpace`'s fields (see `spos.io.schema`), checked before anything is built from them.
FIELD_KINDS = {
    "name": str, "input_size": int, "in_channels": int, "num_classes": int, "stem_width": int,
    "stem_stride": int, "stem_activation": str, "stage_repeats": [int], "stage_widths": [int],
    "stage_strides": [int], "stage_activations": [str], "stage_se": [bool],
    "num_blocks": int, "channel_scales": [FINITE], "last_conv_width": int, "head": str,
    "head_activation": str, "dropout": FINITE, "classifier_bias": bool, "stage_ops": ([list], None),
    "stage_first_ops": ([list], None), "input_strides": ([list], None),
}


#: Checks every new space runs after its own. A registry at this level, so that a check needing the
#: op plans' counts (`spos.space.flops`) adds itself and this module imports nothing above it.
SPACE_CHECKS: list = []


@dataclass(frozen=True)
class SearchSpace:
    """A one-shot space. Presets come from `get_space`; your own from a YAML file (`load_space`).

    ``stage_ops`` lists each stage's candidate ops (default: the first ``num_blocks`` ShuffleNet
    choices everywhere); ``stage_first_ops`` optionally gives a stage's first layer other
    candidates (empty: the same); ``input_strides`` says how `adapt` sets the strides for another
    input size (empty: strides stay as declared). The shapes of its networks are in `layout`.
    """

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
    stage_ops: tuple[tuple[str, ...], ...] | None = None
    stage_first_ops: tuple[tuple[str, ...], ...] | None = None
    input_strides: tuple | None = None

    def __post_init__(self) -> None:
        _normalise_fields(self)
        _check_values(self)
        _check_sizes(self)
        self.layout  # noqa: B018 - built now: every candidate block checks its layer as the layout is built
        for space_check in SPACE_CHECKS:  # spos.space.flops adds the supernet-size limit
            space_check(self)

    @cached_property
    def layout(self) -> Layout:
        return build_layout(self)

    def layers(self) -> tuple[LayerSpec, ...]:
        return self.layout.layers

    @property
    def num_layers(self) -> int:
        return sum(self.stage_repeats)

    @property
    def num_channels(self) -> int:
        return len(self.channel_scales)

    @property
    def default_channel(self) -> int:
        """The width choice of scale 1.0 (the paper's block-search setting), else the widest."""
        scales = self.channel_scales
        return scales.index(1.0) if 1.0 in scales else len(scales) - 1

    @cached_property
    def op_counts(self) -> tuple[int, ...]:
        """Candidate ops of every choice layer."""
        return tuple(len(spec.ops) for spec in self.layout.layers)

    def choice_counts(self) -> list[int]:
        """Genes of an architecture: op choices of every layer, then width choices."""
        return list(self.op_counts) + [self.num_channels] * self.num_layers

    def replace(self, **changes) -> SearchSpace:
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as error:
            raise UserError(f"space {self.name!r}: {error}; fields are {[f.name for f in dataclasses.fields(self)]}") from None

    def adapt(self, *, input_size: int | None = None, num_classes: int | None = None,
              in_channels: int | None = None, width_mult: float = 1.0, **overrides) -> SearchSpace:
        """This space for other data (input size, classes, image channels), optionally narrowed.

        The one place a space meets a dataset. A new input size takes the strides of the space's
        ``input_strides`` rule; ``width_mult`` scales every width (to multiples of 4): the tests
        and the demo use narrow spaces with the same choice layers.
        """
        fields = {}
        if input_size is not None and input_size != self.input_size:
            fields["input_size"] = input_size
            fields.update(self._strides_for(input_size))
        if num_classes is not None:
            fields["num_classes"] = num_classes
        if in_channels is not None:
            fields["in_channels"] = in_channels
        if width_mult <= 0:
            raise UserError(f"width_mult must be positive, got {width_mult}")
        if width_mult != 1.0:
            fields["stem_width"] = _round4(self.stem_width * width_mult)
            fields["stage_widths"] = tuple(_round4(w * width_mult) for w in self.stage_widths)
            fields["last_conv_width"] = _round4(self.last_conv_width * width_mult)
        fields.update(overrides)
        return self.replace(**fields) if fields else self

    def _strides_for(self, input_size: int) -> dict:
        for smallest, stem, stages in self.input_strides:
            if input_size >= smallest:
                return {"stem_stride": stem, "stage_strides": stages}
        return {}

    def to_dict(self) -> dict:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict, where: str | None = None) -> SearchSpace:
        """The space `to_dict` wrote; ``where`` (e.g. "checkpoint x.pt") starts any error's line."""
        known = {f.name for f in dataclasses.fields(cls)}
        with naming(where) if where else contextlib.nullcontext():
            if not isinstance(data, dict):
                raise UserError(f"space is {shown(data)}; it must be a mapping of the fields {sorted(known)}")
            unknown = sorted(set(data) - known)
            if unknown:
                raise UserError(f"space: unknown field(s) {unknown}; known fields are {sorted(known)}")
            return cls(**data)


# ----------------------------------------------------------------------------------------------
# A space's own checks, run as it is made: a space that exists is one spos can build

def _set(space: SearchSpace, name: str, value) -> None:
    object.__setattr__(space, name, value)  # the space is frozen; these run while it is being made


def _normalise_fields(space: SearchSpace) -> None:
    """Check the field kinds, fill the defaults (what a space written before op lists existed
    means), make tuples, and check there is one entry per stage."""
    check({name: getattr(space, name) for name in FIELD_KINDS}, FIELD_KINDS, f"space {space.name!r}")
    for name in ("stage_repeats", "stage_widths", "stage_strides", "stage_activations", "stage_se", "channel_scales"):
        _set(space, name, tuple(getattr(space, name)))
    stages = len(space.stage_repeats)
    if space.stage_ops is None:
        if not 1 <= space.num_blocks <= len(SHUFFLENET_OPS):
            raise UserError(f"space {space.name!r}: num_blocks must be 1..{len(SHUFFLENET_OPS)}")
        _set(space, "stage_ops", (SHUFFLENET_OPS[:space.num_blocks],) * stages)
    ops = tuple(tuple(str(op) for op in stage) for stage in space.stage_ops)
    first = tuple(tuple(str(op) for op in stage) for stage in (space.stage_first_ops or ((),) * stages))
    _set(space, "stage_ops", ops)
    _set(space, "stage_first_ops", first)
    if any(not stage for stage in ops):
        raise UserError(f"space {space.name!r}: every stage needs at least one candidate op")
    _set(space, "num_blocks", max(len(s) for s in ops + first))
    _normalise_input_strides(space)
    for name in ("stage_widths", "stage_strides", "stage_activations", "stage_se", "stage_ops", "stage_first_ops"):
        if len(getattr(space, name)) != stages:
            raise UserError(f"space {space.name!r}: {name} has {len(getattr(space, name))} entries but "
                            f"stage_repeats has {stages}; give one per stage")


def _normalise_input_strides(space: SearchSpace) -> None:
    if space.input_strides is None:
        legacy = len(space.stage_repeats) == len(SHUFFLENET_INPUT_STRIDES[0][2])
        _set(space, "input_strides", SHUFFLENET_INPUT_STRIDES if legacy else ())
    try:
        _set(space, "input_strides", tuple(
            (int(size), int(stem), tuple(int(s) for s in strides)) for size, stem, strides in space.input_strides))
    except (TypeError, ValueError):
        raise UserError(f"space {space.name!r}: input_strides must list [min_size, stem_stride, [stage strides]] "
                        "entries (small_inputs: min_size, stem, stages in a space file)") from None


def _check_values(space: SearchSpace) -> None:
    name = space.name
    for width in (space.stem_width, *space.stage_widths, space.last_conv_width):
        if width < 1:
            raise UserError(f"space {name!r}: width {width} must be positive")
    for act in (*space.stage_activations, space.stem_activation, space.head_activation):
        if act not in ACTIVATIONS:
            raise UserError(f"space {name!r}: unknown activation {act!r}; use one of {ACTIVATIONS}")
    if space.head not in HEADS:
        raise UserError(f"space {name!r}: unknown head {space.head!r}; use one of {HEADS}")
    if space.input_size < 1 or space.num_classes < 1 or space.in_channels < 1:
        raise UserError(f"space {name!r}: input_size, num_classes and in_channels must be positive")
    if min(space.stage_repeats, default=0) < 1:
        raise UserError(f"space {name!r}: stage_repeats {list(space.stage_repeats)}: every stage needs at "
                        "least one layer (layers: 1 or more in a space file)")
    if min((space.stem_stride, *space.stage_strides)) < 1:
        raise UserError(f"space {name!r}: strides must be at least 1 (stem {space.stem_stride}, stages "
                        f"{list(space.stage_strides)})")
    if not 0 <= space.dropout < 1:
        raise UserError(f"space {name!r}: dropout {space.dropout} must be in [0, 1)")
    if not space.channel_scales or min(space.channel_scales) <= 0:
        raise UserError(f"space {name!r}: give at least one positive width choice")
    for _, _, strides in space.input_strides:
        if len(strides) != len(space.stage_repeats):
            raise UserError(f"space {name!r}: every small-input entry needs one stride per stage")


def _check_sizes(space: SearchSpace) -> None:
    """Refuse a space beyond `spos.space.limits` before any layer is listed or built."""
    beyond = [(what, value, limit) for what, value, limit in (
        ("choice layers", sum(space.stage_repeats), limits.MAX_CHOICE_LAYERS),
        ("width choices", len(space.channel_scales), limits.MAX_CHOICES),
        ("candidate ops in a stage", max(map(len, space.stage_ops + space.stage_first_ops)), limits.MAX_CHOICES),
        ("pixels of input side", space.input_size, limits.MAX_INPUT_SIZE)) if value > limit]
    if beyond:
        what, value, limit = beyond[0]
        raise UserError(f"space {space.name!r} has {value:,} {what}, beyond spos's limit of {limit:,} "
                        "(spos/limits.py); is it the space you meant?")


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, tuple) else value


def _round4(x: float) -> int:
    return max(4, int(round(x / 4)) * 4)


# ----------------------------------------------------------------------------------------------
# Space files: the YAML a user writes, and the presets shipped in spos/space/presets/

_TOP_KEYS = {"name", "input_size", "in_channels", "num_classes", "stem", "stages", "widths", "head", "small_inputs"}
_STAGE_KEYS = {"layers", "width", "stride", "ops", "first_ops", "activation", "se"}
_STEM_KEYS = {"width", "stride", "activation"}
_HEAD_KEYS = {"kind", "width", "activation", "dropout", "bias"}
_SMALL_KEYS = {"min_size", "stem", "stages"}


def _check_keys(data, known: set, where: str, required: set = frozenset()) -> dict:
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping with keys {sorted(known)}")
    unknown, missing = sorted(set(data) - known), sorted(required - set(data))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    if missing:
        raise UserError(f"{where}: missing key(s) {missing}")
    return data


def space_from_spec(spec: dict, where: str = "space") -> SearchSpace:
    """A space from its declaration (the structure of a space YAML file, as a dict)."""
    _check_keys(spec, _TOP_KEYS, where, {"name", "stages", "head"})
    stages = spec["stages"]
    if not isinstance(stages, list) or not stages:
        raise UserError(f"{where}: 'stages' must be a non-empty list")
    stages = [_check_keys(s, _STAGE_KEYS, f"{where}: stage {i}", {"layers", "width", "ops"})
              for i, s in enumerate(stages)]
    stem = _check_keys(spec.get("stem", {}), _STEM_KEYS, f"{where}: stem")
    head = _check_keys(spec["head"], _HEAD_KEYS, f"{where}: head", {"width"})
    small = [_check_keys(s, _SMALL_KEYS, f"{where}: small_inputs entry", _SMALL_KEYS)
             for s in spec.get("small_inputs", [])]
    fields = dict(
        name=str(spec["name"]), input_size=spec.get("input_size", 224), in_channels=spec.get("in_channels", 3),
        num_classes=spec.get("num_classes", 1000), stem_width=stem.get("width", 16),
        stem_stride=stem.get("stride", 2), stem_activation=stem.get("activation", "relu"),
        stage_repeats=[s["layers"] for s in stages], stage_widths=[s["width"] for s in stages],
        stage_strides=[s.get("stride", 1) for s in stages],
        stage_activations=[s.get("activation", "relu") for s in stages],
        stage_se=[bool(s.get("se", False)) for s in stages],
        stage_ops=[_op_list(s["ops"], where) for s in stages],
        stage_first_ops=[_op_list(s.get("first_ops", []), where) for s in stages],
        channel_scales=spec.get("widths", [1.0]), last_conv_width=head["width"],
        head=head.get("kind", "conv-pool"), head_activation=head.get("activation", "relu"),
        dropout=head.get("dropout", 0.0), classifier_bias=bool(head.get("bias", True)),
        input_strides=[(s["min_size"], s["stem"], s["stages"]) for s in small],
    )
    try:
        return SearchSpace(**fields)
    except (TypeError, ValueError) as error:
        raise UserError(f"{where}: {error}") from None


def _op_list(ops, where: str) -> list[str]:
    if isinstance(ops, str):
        ops = [ops]
    if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops):
        raise UserError(f"{where}: a stage's ops must be a list of op names, e.g. [identity, mbconv-e3-k3]")
    return ops


def space_to_spec(space: SearchSpace) -> dict:
    """The declaration of ``space``: what `space_from_spec` reads back to an equal space."""
    stages = []
    for i, layers in enumerate(space.stage_repeats):
        stage = dict(layers=layers, width=space.stage_widths[i], stride=space.stage_strides[i],
                     ops=list(space.stage_ops[i]), activation=space.stage_activations[i], se=space.stage_se[i])
        if space.stage_first_ops[i]:
            stage["first_ops"] = list(space.stage_first_ops[i])
        stages.append(stage)
    return dict(
        name=space.name, input_size=space.input_size, in_channels=space.in_channels, num_classes=space.num_classes,
        stem=dict(width=space.stem_width, stride=space.stem_stride, activation=space.stem_activation),
        stages=stages, widths=list(space.channel_scales),
        head=dict(kind=space.head, width=space.last_conv_width, activation=space.head_activation,
                  dropout=space.dropout, bias=space.classifier_bias),
        small_inputs=[dict(min_size=size, stem=stem, stages=list(strides))
                      for size, stem, strides in space.input_strides],
    )


def read_document(path: str | Path, what: str, language: str = "YAML"):
    """The parsed contents of a user's YAML or JSON file, or a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    try:
        return yaml.safe_load(path.read_text()) if language == "YAML" else json.loads(path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{what} {path} is not valid {language}: {str(error).splitlines()[0]}") from None
    except OSError as error:
        raise UserError(f"{what} {path} cannot be read ({error.strerror})") from None


def load_space_file(path: str | Path) -> SearchSpace:
    return space_from_spec(read_document(path, "space file"), where=f"space file {path}")


def _preset_files() -> dict[str, object]:
    folder = resources.files("spos.space") / "presets"
    return {item.name[:-5]: item for item in folder.iterdir() if item.name.endswith(".yaml")}


PRESETS = ("oneshot", "oneshot+", "shufflenetv2+", "mbv2-macro-cifar", "proxyless-mobile")


def load_space(name_or_path: str) -> SearchSpace:
    """A preset by name, or a space YAML file by path, as declared (not yet adapted to data)."""
    presets = _preset_files()
    if name_or_path in presets:
        return space_from_spec(yaml.safe_load(presets[name_or_path].read_text()), where=f"preset {name_or_path}")
    if str(name_or_path).endswith((".yaml", ".yml")) or Path(name_or_path).is_file():
        return load_space_file(name_or_path)
    raise UserError(f"unknown search space {name_or_path!r}; choose one of {', '.join(sorted(presets))} "
                    "or give a space YAML file")


def get_space(name: str = "oneshot", *, input_size: int | None = None, num_classes: int | None = None,
              in_channels: int | None = None, width_mult: float = 1.0, **overrides) -> SearchSpace:
    """A preset (or space file), adapted to the data and optionally narrowed (see `SearchSpace.adapt`)."""
    return load_space(name).adapt(input_size=input_size, num_classes=num_classes, in_channels=in_channels,
                                  width_mult=width_mult, **overrides)


# ----------------------------------------------------------------------------------------------
# Sampling, mutation and crossover: what the supernet training and the search draw from.


__all__ = ['ACTIVATIONS', 'CHANNEL_SCALES', 'FIELD_KINDS', 'HEADS', 'PRESETS', 'SHUFFLENET_INPUT_STRIDES', 'SPACE_CHECKS', 'SearchSpace', 'get_space', 'load_space', 'load_space_file', 'read_document', 'space_from_spec', 'space_to_spec']
