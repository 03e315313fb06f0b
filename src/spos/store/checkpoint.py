"""Checkpoints that survive a kill: written atomically, refused clearly when damaged.

A checkpoint is a dict saved with `torch.save`:
``kind`` ("fixed" or "supernet"), ``space`` (SearchSpace.to_dict()), ``arch`` (fixed only,
Architecture.to_dict()), ``model`` (state dict), and, for training runs, ``optimizer``,
``scheduler``, ``scaler``, ``ema``, ``epoch``, ``step``, ``rng``, ``config``, ``metrics``;
``input`` (InputConvention.to_dict(): how pixels become the network's input; absent in files of
older spos, which all used the ``spos`` convention); ``weights`` ("raw" or "ema": which weights
``model`` holds, "ema" in a model folder exported with ``--ema``; absent: raw).

Everything in it is plain data (tensors, numbers, strings, lists, dicts), so `load` reads it
with ``torch.load(weights_only=True)``: a file whose pickle names any other object (a function
to call, a class to build) is refused before anything in it runs.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import torch

from spos.data.conventions import InputConvention, input_convention
from spos.errors import UserError, naming
from spos.io import files
from spos.io.schema import Kind, MayBeMissing, NamesTo, check
from spos.nn.fewshot import FewShotSuperNet
from spos.nn.fixed import FixedNet
from spos.nn.supernet import SuperNet
from spos.space.architecture import Architecture
from spos.space.searchspace import SearchSpace
from spos.store import filekinds

KINDS = ("fixed", "supernet")
WEIGHTS = ("raw", "ema")
#: A file's record of which weights it holds (a checkpoint's and a model folder's ``weights``).
HELD_WEIGHTS = Kind(lambda value: value in WEIGHTS, '"raw" or "ema"', '"raw" or "ema" texts')
HUB_PREFIX = "hf://"  # a model folder on the Hugging Face Hub: hf://USER/NAME
#: What commands read from a checkpoint, by kind (a `spos.io.schema` schema); a training run's resume state
#: (optimizer, rng, ...) is checked where it is resumed.
PAYLOAD_FIELDS = {"kind": str, "model": NamesTo(torch.Tensor), "space": dict, "arch": MayBeMissing(dict),
                  "input": MayBeMissing((dict, None)), "entangled_kernels": MayBeMissing(bool),
                  "aligned_choices": MayBeMissing(bool), "ema": MayBeMissing((NamesTo(torch.Tensor), None)),
                  "config": MayBeMissing((dict, None)), "few_shot_layers": MayBeMissing(([int], None)),
                  "weights": MayBeMissing(HELD_WEIGHTS)}
#: What each kind is, and the commands that take it (said when a file of the other kind is given).
KIND_USES = {"fixed": "one trained network (`spos eval`, `spos export` and `spos latency model` take it)",
             "supernet": "a weight-sharing supernet (`spos search`, `spos rank` and `spos eval --arch` take it)"}
KIND_MAKERS = {"fixed": "`spos train`", "supernet": "`spos train-supernet`"}

#: Readers of what is not a checkpoint file (a model folder, ``hf://USER/NAME``): each returns the payload or
#: None. A registry at this level, so that `spos.store.pretrained` and `spos.store.hub` add theirs and this
#: module imports neither.
READERS: list = []


def _write_atomic(path: str | Path, write) -> Path:
    """Unique temporary file beside ``path``, fsync, rename; removed on failure (see `spos.io.files`)."""
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

    A model folder (`spos.store.pretrained`), or ``hf://USER/NAME`` for one on the Hub, reads as a checkpoint too."""
    for reader in READERS:
        data = reader(path)
        if data is not None:
            check_payload(data, path)
            return data
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    kind = filekinds.sniff(path)
    if kind is not None:
        raise UserError(filekinds.describe(path, kind))
    try:
        with warnings.catch_warnings():  # torch warns about what it then raises: the error says it once
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refused_global(error)
        if refused is None and "Unsupported operand" in str(error):
            raise UserError(f"{path} is not a PyTorch checkpoint (neither a pickle nor a zip archive); give the "
                            ".pt file a spos run wrote") from None
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
    except Exception as error:  # noqa: BLE001 - torch raises many kinds on a damaged file; all mean the same
        raise UserError(f"checkpoint {path} is damaged or cut short ({_first_line(error)}); "
                        "use an earlier one") from None
    if not isinstance(data, dict) or data.get("kind") not in KINDS or "model" not in data:
        official = filekinds.loaded_kind(data)
        if official:
            raise UserError(filekinds.describe(path, official))
        raise UserError(f"{path} is not a spos checkpoint (expected a dict with 'kind' and 'model'); "
                        "convert official weights with `spos convert-official`")
    missing = [key for key in ("space",) + (("arch",) if data["kind"] == "fixed" else ()) if not data.get(key)]
    if missing:
        raise UserError(f"{path} is a spos {data['kind']} checkpoint without its {' and '.join(missing)}; "
                        "it cannot be rebuilt: use the checkpoint a spos run wrote")
    check_payload(data, path)
    return data


def check_payload(data: dict, path: str | Path) -> None:
    """What the commands read from a loaded checkpoint, checked once (`PAYLOAD_FIELDS`, the space, the
    architecture), so that a bad value is one line naming the file and the key."""
    where = f"checkpoint {path}"
    check(data, PAYLOAD_FIELDS, where)
    space = SearchSpace.from_dict(data["space"], where=where)
    if data["kind"] == "fixed":
        with naming(where):
            Architecture.from_dict(data["arch"]).validate(space)


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


def chosen_weights(data: dict, ema: bool | None = None) -> str:
    """Which of a checkpoint's weights a command uses: ``"raw"``, or ``"ema"`` when ``ema`` (``--ema``) asks.

    Raw by default: they are the weights ``best.pt`` was chosen by and a run's val top-1 measures, so
    ``spos eval``, ``spos export``, the search and the demo's export hand over the network they report
    unless ``--ema`` picks the EMA weights in all of them. A model folder exported with ``--ema`` holds
    only its EMA weights (``weights`` "ema"), so they are the ones any command uses and reports."""
    if held_weights(data) == "ema":
        return "ema"
    if ema and not data.get("ema"):
        raise UserError("this checkpoint holds no EMA weights (its run did not set train.ema); drop --ema")
    return "ema" if ema else "raw"


def held_weights(data: dict) -> str:
    """Which weights a checkpoint's ``model`` holds: "raw", or "ema" for a model folder exported with ``--ema``."""
    return data.get("weights") or "raw"


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
        raise UserError(f"{path} is a spos {data['kind']} checkpoint, {KIND_USES[data['kind']]}; here a {kind} "
                        f"checkpoint is needed: make one with {KIND_MAKERS[kind]}")
    return data


def load_model(path: str | Path, *, kind: str | None = None, prefer_ema: bool = False) -> FixedNet | SuperNet:
    return build_model(load_kind(path, kind), prefer_ema=prefer_ema)


def training_splits(data: dict, *, name: str | None = None, root: str | None = None, download: bool = False,
                    holdout: float | int | None = None, convention: InputConvention | None = None, space=None):
    """The dataset the checkpoint ``data`` was trained on, split as its run split it: its config's data,
    root, hold-out and seed, in ``convention`` (default: the one it records). ``name``/``root`` (``--data``,
    ``--data-root``) replace what it records, ``holdout`` its hold-out; ``space`` is checked to fit.

    Its ``train`` split is what a supernet path's BN is recalibrated on (`spos.nn.calibration.calibration_batches`)."""
    from spos.data.datasets import build_datasets

    config = data.get("config") or {}
    data_cfg, train_cfg = config.get("data") or {}, config.get("train") or {}
    name = name or data_cfg.get("name")
    if not name:
        raise UserError("this checkpoint does not say which data it was trained on (a converted official one "
                        "records none); pass --data and --data-root")
    splits = build_datasets(name, root or data_cfg.get("root"), download=download,
                            holdout=data_cfg.get("holdout", 0) if holdout is None else holdout,
                            seed=train_cfg.get("seed", 0), input_size=None if space is None else space.input_size,
                            convention=convention_of(data) if convention is None else convention)
    if space is not None:
        splits.info.check_fits(space)
    return splits
