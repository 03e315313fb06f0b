"""Checkpoints that survive a kill: written atomically, refused clearly when damaged.

A checkpoint is a dict saved with `torch.save`:
``kind`` ("fixed" or "supernet"), ``space`` (SearchSpace.to_dict()), ``arch`` (fixed only,
Architecture.to_dict()), ``model`` (state dict), and, for training runs, ``optimizer``,
``scheduler``, ``scaler``, ``ema``, ``epoch``, ``step``, ``rng``, ``config``, ``metrics``.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from spos.errors import UserError
from spos.fixed import FixedNet
from spos.space import Architecture, SearchSpace
from spos.supernet import SuperNet

KINDS = ("fixed", "supernet")


def _write_atomic(path: str | Path, write) -> Path:
    """Write to a temporary file, fsync it, then rename over ``path``: a kill leaves the old file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def save_atomic(obj: dict, path: str | Path) -> Path:
    return _write_atomic(path, lambda handle: torch.save(obj, handle))


def write_text_atomic(text: str, path: str | Path) -> Path:
    return _write_atomic(path, lambda handle: handle.write(text.encode()))


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint or raise a one-line UserError saying why it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"checkpoint {path} is damaged or cut short ({reason}); use an earlier one") from None
    if not isinstance(data, dict) or data.get("kind") not in KINDS or "model" not in data:
        raise UserError(f"{path} is not a spos checkpoint (expected a dict with 'kind' and 'model'); "
                        "convert official weights with `spos convert-official`")
    return data


def fixed_payload(model: FixedNet, **extra) -> dict:
    return {"kind": "fixed", "space": model.space.to_dict(), "arch": model.arch.to_dict(),
            "model": model.state_dict(), **extra}


def supernet_payload(model: SuperNet, **extra) -> dict:
    return {"kind": "supernet", "space": model.space.to_dict(), "entangled_kernels": model.entangled_kernels,
            "model": model.state_dict(), **extra}


def build_model(data: dict, *, prefer_ema: bool = False) -> FixedNet | SuperNet:
    """The network a loaded checkpoint describes, with its weights (the EMA ones if asked and present)."""
    space = SearchSpace.from_dict(data["space"])
    if data["kind"] == "fixed":
        model: FixedNet | SuperNet = FixedNet(space, Architecture.from_dict(data["arch"]))
    else:
        model = SuperNet(space, entangled_kernels=bool(data.get("entangled_kernels", False)))
    state = data["ema"] if prefer_ema and data.get("ema") else data["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise UserError(f"checkpoint weights do not fit its {data['kind']} network: {first}") from None
    return model


def load_model(path: str | Path, *, kind: str | None = None, prefer_ema: bool = False) -> FixedNet | SuperNet:
    data = load(path)
    if kind is not None and data["kind"] != kind:
        raise UserError(f"{path} holds a {data['kind']} checkpoint, but a {kind} one is needed here")
    return build_model(data, prefer_ema=prefer_ema)
