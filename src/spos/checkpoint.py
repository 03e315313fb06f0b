"""Checkpoints that survive a kill: written atomically, refused clearly when damaged.

A checkpoint is a dict saved with `torch.save`:
``kind`` ("fixed" or "supernet"), ``space`` (SearchSpace.to_dict()), ``arch`` (fixed only,
Architecture.to_dict()), ``model`` (state dict), and, for training runs, ``optimizer``,
``scheduler``, ``scaler``, ``ema``, ``epoch``, ``step``, ``rng``, ``config``, ``metrics``;
``input`` (InputConvention.to_dict(): how pixels become the network's input; absent in files of
older spos, which all used the ``spos`` convention).

Everything in it is plain data (tensors, numbers, strings, lists, dicts), so `load` reads it
with ``torch.load(weights_only=True)``: a file whose pickle names any other object (a function
to call, a class to build) is refused before anything in it runs.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch

from spos import files
from spos.data import InputConvention, input_convention
from spos.errors import UserError
from spos.fewshot import FewShotSuperNet
from spos.fixed import FixedNet
from spos.space import Architecture, SearchSpace
from spos.supernet import SuperNet

KINDS = ("fixed", "supernet")
HUB_PREFIX = "hf://"  # a model folder on the Hugging Face Hub: hf://USER/NAME


def _write_atomic(path: str | Path, write) -> Path:
    """Unique temporary file beside ``path``, fsync, rename; removed on failure (see `spos.files`)."""
    return files.write_atomic(path, write)


def save_atomic(obj: dict, path: str | Path) -> Path:
    return _write_atomic(path, lambda handle: torch.save(obj, handle))


write_text_atomic = files.write_text_atomic


def _refused_global(error: Exception) -> str | None:
    """The global a weights-only load refused (``posix.system``), or None for other failures."""
    match = re.search(r"GLOBAL ([\w.]+)", str(error))
    return match.group(1) if match else None


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint or raise a one-line UserError saying why it cannot be used.

    A model folder (`spos.pretrained`), or ``hf://USER/NAME`` for one on the Hub, reads as a checkpoint too."""
    if str(path).startswith(HUB_PREFIX):
        from spos.hub import download

        path = download(str(path)[len(HUB_PREFIX):])
    path = Path(path)
    if path.is_dir():
        from spos.pretrained import load_folder

        return load_folder(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refused_global(error)
        if refused is None and "weights only" in str(error).lower():
            refused = "content a weights-only load refuses"
        if refused is None:
            raise UserError(f"checkpoint {path} is damaged or cut short ({_first_line(error)}); "
                            "use an earlier one") from None
        if refused.startswith("numpy."):
            raise UserError(f"checkpoint {path} was written by an older spos and holds pickled numpy objects, "
                            "which spos no longer loads (unpickling can run code); retrain it, or re-save its "
                            "weights with the spos that wrote it") from None
        raise UserError(f"checkpoint {path} holds objects spos will not load ({refused}): spos loads only "
                        "tensors, numbers, strings, lists and dicts; do not trust this file") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise UserError(f"checkpoint {path} is damaged or cut short ({_first_line(error)}); "
                        "use an earlier one") from None
    if not isinstance(data, dict) or data.get("kind") not in KINDS or "model" not in data:
        raise UserError(f"{path} is not a spos checkpoint (expected a dict with 'kind' and 'model'); "
                        "convert official weights with `spos convert-official`")
    missing = [key for key in ("space",) + (("arch",) if data["kind"] == "fixed" else ()) if not data.get(key)]
    if missing:
        raise UserError(f"{path} is a spos {data['kind']} checkpoint without its {' and '.join(missing)}; "
                        "it cannot be rebuilt: use the checkpoint a spos run wrote")
    return data


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def fixed_payload(model: FixedNet, convention: InputConvention | str | None = None, **extra) -> dict:
    return {"kind": "fixed", "space": model.space.to_dict(), "arch": model.arch.to_dict(),
            "model": model.state_dict(), "input": input_convention(convention).to_dict(), **extra}


def supernet_payload(model: SuperNet | FewShotSuperNet, convention: InputConvention | str | None = None,
                     **extra) -> dict:
    return {"kind": "supernet", "space": model.space.to_dict(), "entangled_kernels": model.entangled_kernels,
            "aligned_choices": model.aligned_choices,
            **({"few_shot_layers": list(model.split_layers)} if isinstance(model, FewShotSuperNet) else {}),
            "model": model.state_dict(), "input": input_convention(convention).to_dict(), **extra}


def convention_of(data: dict | None, override: str | None = None) -> InputConvention:
    """The input convention to feed a checkpoint's network: ``override`` (a ``--input`` preset) when
    given, else the one the checkpoint records, else spos's (files written before it was recorded)."""
    if override is not None:
        return input_convention(override)
    recorded = (data or {}).get("input")
    if recorded is not None and not isinstance(recorded, dict):
        raise UserError(f"checkpoint input convention {recorded!r} is not a dict; pass --input spos or official")
    return input_convention(recorded)


def build_model(data: dict, *, prefer_ema: bool = False) -> FixedNet | SuperNet | FewShotSuperNet:
    """The network a loaded checkpoint describes, with its weights (the EMA ones if asked and present)."""
    space = SearchSpace.from_dict(data["space"])
    if data["kind"] == "fixed":
        model: FixedNet | SuperNet | FewShotSuperNet = FixedNet(space, Architecture.from_dict(data["arch"]))
    else:
        model = build_supernet(space, entangled_kernels=bool(data.get("entangled_kernels", False)),
                               aligned_choices=bool(data.get("aligned_choices", False)),
                               few_shot_layers=data.get("few_shot_layers"))
    state = data["ema"] if prefer_ema and data.get("ema") else data["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise UserError(f"checkpoint weights do not fit its {data['kind']} network: {first}") from None
    return model


def build_supernet(space: SearchSpace, *, entangled_kernels: bool, aligned_choices: bool,
                   few_shot_layers: list | None = None) -> SuperNet | FewShotSuperNet:
    """A `SuperNet`, or a `FewShotSuperNet` split on ``few_shot_layers`` when any are given."""
    if few_shot_layers:
        return FewShotSuperNet(space, few_shot_layers, entangled_kernels=entangled_kernels,
                               aligned_choices=aligned_choices)
    return SuperNet(space, entangled_kernels=entangled_kernels, aligned_choices=aligned_choices)


def load_kind(path: str | Path, kind: str | None) -> dict:
    """`load`, refusing a checkpoint of another kind (a fixed network where a supernet is needed)."""
    data = load(path)
    if kind is not None and data["kind"] != kind:
        raise UserError(f"{path} holds a {data['kind']} checkpoint, but a {kind} one is needed here")
    return data


def load_model(path: str | Path, *, kind: str | None = None, prefer_ema: bool = False) -> FixedNet | SuperNet:
    return build_model(load_kind(path, kind), prefer_ema=prefer_ema)
