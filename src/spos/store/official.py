"""megvii's official SPOS checkpoints, both ways.

The official PyTorch releases (megvii-model SinglePathOneShot and ShuffleNet-Series OneShot)
name their weights ``first_conv.*``, ``features.N.branch_main.K.*`` / ``features.N.branch_proj.K.*``
(a retrained network), ``features.N.M.*`` (the block-search supernet, one entry M per block
choice, every mid width at channel scale 1.0), ``conv_last.*`` and ``classifier.*``. spos keeps
the same module layout, so the mapping is a rename of the head plus, for the supernet, placing
each official tensor in the leading slice of the wider spos tensor (spos supernets hold mid
widths up to scale 2.0; the channels beyond the official ones keep their initial values).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from spos.errors import UserError
from spos.nn.dynamic import centre_slice
from spos.nn.fixed import FixedNet
from spos.nn.supernet import SuperNet
from spos.space.architecture import Architecture
from spos.space.searchspace import SearchSpace

_HEAD_RENAMES = (("conv_last.", "head.conv_last."), ("classifier.", "head.classifier."))
OFFICIAL_PREFIX = "module."  # nn.DataParallel's, which the official scripts save and load under


def _to_spos_key(key: str) -> str:
    for official, ours in _HEAD_RENAMES:
        if key.startswith(official):
            return ours + key[len(official):]
    return key


def _to_official_key(key: str) -> str:
    for official, ours in _HEAD_RENAMES:
        if key.startswith(ours):
            return official + key[len(ours):]
    return key


def official_kind(state: dict) -> str | None:
    """Which official layout a state dict has: "supernet" (``features.N.M.*``), "retrained"
    (``features.N.branch_main.*`` and the rest), or None when it has neither."""
    keys = [str(key).removeprefix(OFFICIAL_PREFIX) for key in state]
    if any(re.match(r"features\.\d+\.\d+\.", key) for key in keys):
        return "supernet"
    if any(key.startswith(("first_conv.", "features.", "conv_last.", "classifier.")) for key in keys):
        return "retrained"
    return None


def read_official_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an official checkpoint: ``state_dict`` unwrapped, DataParallel's ``module.`` stripped.

    Storages saved on a GPU (as the official scripts save) are mapped to the CPU, so a release
    loads on a machine without CUDA."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise UserError(f"{path} is not a readable PyTorch checkpoint ({type(error).__name__})") from None
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} holds no state_dict of tensors")
    return {key.removeprefix(OFFICIAL_PREFIX): value for key, value in state.items()}


def _fill(target: dict[str, torch.Tensor], source: dict[str, torch.Tensor], *, sliced: bool, what: str) -> None:
    """Copy ``source`` into ``target`` key for key (spos names), exactly or into leading slices.

    A BN's ``num_batches_tracked`` that the file lacks (releases written before torch kept it) is
    left at its fresh value: it only matters when BN momentum is None, and then only in training."""
    missing = [key for key in target if key not in source and not key.endswith("num_batches_tracked")]
    if missing:
        raise UserError(f"the official checkpoint has no {_to_official_key(missing[0])!r}, which the {what} needs "
                        f"({len(missing)} keys missing); is it the right file, architecture and space?")
    extra = [key for key in source if key not in target]
    if extra:
        raise UserError(f"the official checkpoint has {_to_official_key(extra[0])!r}, which the {what} does not "
                        f"({len(extra)} unexpected keys); is it the right file, architecture and space?")
    for key, ours in target.items():
        if key not in source:
            continue  # a num_batches_tracked the release predates
        theirs = source[key]
        fits = theirs.dim() == ours.dim() and all(
            t == o or (sliced and t < o) for t, o in zip(theirs.shape, ours.shape))
        if not fits:
            raise UserError(f"{_to_official_key(key)!r} has shape {tuple(theirs.shape)} in the official checkpoint "
                            f"but {tuple(ours.shape)} in the {what}; is it the right architecture and space?")
        ours[tuple(slice(0, n) for n in theirs.shape)].copy_(theirs.to(ours.dtype))


def load_official(path: str | Path, space: SearchSpace, arch: Architecture | None = None) -> FixedNet | SuperNet:
    """A FixedNet of ``arch`` (a retrained official network) or, without ``arch``, a SuperNet
    (the official block-search supernet), holding the weights of the official file at ``path``."""
    source = {_to_spos_key(key): value for key, value in read_official_state(path).items()}
    model = FixedNet(space, arch) if arch is not None else SuperNet(space)
    target = model.state_dict()
    with torch.no_grad():
        _fill(target, source, sliced=arch is None, what=f"spos {type(model).__name__}")
    model.load_state_dict(target)
    return model.eval()


def _official_supernet_shapes(model: SuperNet) -> dict[str, torch.Size]:
    """The shapes of the official layout: every block at channel scale 1.0."""
    from spos.nn.ops import static_block

    shapes = {}
    for layer, spec in enumerate(model.space.layers()):
        for block in range(len(model.features[layer])):
            reference = static_block(spec, spec.ops[block], spec.mid_channels(1.0, block), affine=False)
            shapes.update({f"features.{layer}.{block}.{k}": v.shape for k, v in reference.state_dict().items()})
    return shapes


def official_checkpoint(model: FixedNet | SuperNet) -> dict:
    """What the official train.py saves under ``nn.DataParallel``: ``{'state_dict': {'module.<key>': ...}}``.

    The official Search/search.py and train.py's auto-continue wrap the network in DataParallel
    before ``load_state_dict(checkpoint['state_dict'])``, so they need the ``module.`` prefix."""
    return {"state_dict": {OFFICIAL_PREFIX + key: value for key, value in to_official(model).items()}}


def to_official(model: FixedNet | SuperNet) -> dict[str, torch.Tensor]:
    """The model's weights under official key names (a supernet narrowed to channel scale 1.0)."""
    state = model.state_dict()
    shapes = _official_supernet_shapes(model) if isinstance(model, SuperNet) else {}
    official = {}
    for key, value in state.items():
        if key in shapes:
            value = centre_slice(value, shapes[key])  # an entangled 3x3 choice: the middle of its 7x7 kernel
        official[_to_official_key(key)] = value.detach().clone()
    return official
