"""A model folder anyone can load: ``model.safetensors`` + ``config.json`` (+ a model card), no pickle.

The layout of a Hugging Face model repository, so a folder pushed to the Hub (`spos.store.hub`) and
one on disk are read alike. ``config.json`` holds everything needed to rebuild the network
(kind, space, architecture or supernet options), the whole preprocessing record
(`spos.data.preprocessing`), counted FLOPs and parameters, and what was measured. Both fixed networks
and supernets are shared this way, so a user can search a supernet someone else trained:
`spos.store.checkpoint.load` reads a model folder as it reads a checkpoint.

Weights a supernet shares between choices (entangled kernels) are stored once; the other names
are listed in the safetensors metadata under ``spos.aliases`` and filled back on loading.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from spos import __version__
from spos.errors import UserError
from spos.io import files
from spos.io.schema import check
from spos.store import checkpoint

CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, PICTURE_NAME = "config.json", "model.safetensors", "README.md", "architecture.png"
FORMAT_VERSION = 1
ALIASES_KEY = "spos.aliases"
KINDS = ("fixed", "supernet")


def is_model_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


# -- writing -------------------------------------------------------------------------------------

def _unique_tensors(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors stored once, {other name: stored name}) for a state dict whose entries may share storage."""
    stored, aliases, seen = {}, {}, {}
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
        if key in seen and tensor.numel():
            aliases[name] = seen[key]
        else:
            seen[key] = name
            stored[name] = tensor.detach().cpu().contiguous()
    return stored, aliases


def weights_bytes(model: nn.Module) -> bytes:
    from safetensors.torch import save

    stored, aliases = _unique_tensors(model.state_dict())
    return save(stored, metadata={"format": "pt", ALIASES_KEY: json.dumps(aliases)})


def model_config(model: nn.Module, preprocessing: dict, *, measured: dict | None = None,
                 training: dict | None = None, weights: str = "raw") -> dict:
    """The ``config.json`` of ``model`` (a FixedNet or a SuperNet); ``weights`` says whether its weights are
    the run's raw or EMA ones (`spos.store.checkpoint.chosen_weights`), which the figures alone cannot tell."""
    from spos.nn.fixed import FixedNet
    from spos.space.flops import cost_table

    space = model.space
    config = {"spos_format": FORMAT_VERSION, "library": "spos", "spos_version": __version__,
              "kind": "fixed" if isinstance(model, FixedNet) else "supernet", "space": space.to_dict(),
              "num_classes": space.num_classes, "in_channels": space.in_channels, "input": preprocessing,
              "params": sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()), "weights": weights}
    if config["kind"] == "fixed":
        arch = model.arch
        config["arch"] = {**arch.to_dict(), "text": str(arch), "ops": arch.op_names(space)}
        config["flops"] = cost_table(space).macs(arch)
        config.update(_timm_keys(model, preprocessing))
    else:
        config.update(entangled_kernels=model.entangled_kernels, aligned_choices=model.aligned_choices)
        if getattr(model, "split_layers", None):  # a few-shot supernet (spos.nn.fewshot)
            config["few_shot_layers"] = list(model.split_layers)
    config["measured"] = measured
    config["training"] = training
    return config


def _timm_keys(model: nn.Module, preprocessing: dict) -> dict:
    """What makes config.json a timm config too: ``timm.create_model("local-dir:FOLDER")`` (or
    ``"hf-hub:USER/NAME"``) after ``import spos.deploy.timm`` builds the network through the ``spos`` entry."""
    from spos.deploy.timm import timm_pretrained_cfg

    return {"architecture": "spos", "num_features": model.space.layout.head.width,
            "pretrained_cfg": timm_pretrained_cfg(model.space, preprocessing),
            "model_args": {"space": model.space.to_dict(), "arch": model.arch.to_dict()}}


def save_pretrained(model: nn.Module, folder: str | Path, preprocessing: dict, *, measured: dict | None = None,
                    training: dict | None = None, weights: str = "raw") -> Path:
    """Write ``folder``: weights, config, the architecture picture (fixed networks) and the model card.

    The caller checks that ``folder`` may be written (`spos.io.files.check_output_folder`)."""
    from spos.store.model_card import render_model_card

    folder = Path(folder)
    config = model_config(model, preprocessing, measured=measured, training=training, weights=weights)
    files.write_atomic(folder / WEIGHTS_NAME, lambda handle: handle.write(weights_bytes(model)))
    files.write_text_atomic(json.dumps(config, indent=2) + "\n", folder / CONFIG_NAME)
    if config["kind"] == "fixed":
        from spos.plots import plot_architecture

        plot_architecture(model.arch, model.space, folder / PICTURE_NAME, title=f"{model.space.name}: {model.arch}")
    else:  # a supernet replacing a network's folder: no picture of another network stays behind
        (folder / PICTURE_NAME).unlink(missing_ok=True)
    files.write_text_atomic(render_model_card(config, picture=config["kind"] == "fixed"), folder / CARD_NAME)
    return folder


# -- reading -------------------------------------------------------------------------------------

def _check_config(config, where: Path) -> dict:
    """The one schema check of a model folder's config.json, with a one-line error naming what is wrong."""
    if not isinstance(config, dict) or config.get("library") != "spos":
        raise UserError(f"{where} is not a spos model config (no \"library\": \"spos\"); spos reads the folders "
                        "`spos export --format hf` writes")
    if config.get("spos_format") != FORMAT_VERSION:
        raise UserError(f"{where}: spos_format {config.get('spos_format')!r} is not {FORMAT_VERSION}; "
                        "use the spos that wrote it")
    if config.get("kind") not in KINDS:
        raise UserError(f"{where}: kind must be one of {KINDS}, got {config.get('kind')!r}")
    from spos.io.schema import MayBeMissing
    from spos.store.checkpoint import HELD_WEIGHTS

    needed = {"space": dict, "input": dict, "weights": MayBeMissing(HELD_WEIGHTS)} | (
        {"arch": dict} if config["kind"] == "fixed" else {})
    return check(config, needed, str(where), "export the model folder again with `spos export --format hf`")


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            state = {name: handle.get_tensor(name) for name in handle.keys()}
            aliases = json.loads((handle.metadata() or {}).get(ALIASES_KEY, "{}"))
    except (SafetensorError, OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path} is not a readable safetensors file ({str(error).splitlines()[0]}); "
                        "download it again") from None
    if not isinstance(aliases, dict) or any(target not in state for target in aliases.values()):
        raise UserError(f"{path}: its {ALIASES_KEY} metadata names tensors the file does not hold")
    state.update({name: state[target] for name, target in aliases.items()})
    return state


def load_folder(folder: str | Path) -> dict:
    """A model folder as a checkpoint dict (``kind``, ``space``, ``arch``, ``model``, ``input``...), the
    form `spos.store.checkpoint.build_model` and every command read; the config comes along as ``pretrained``."""
    from spos.data.preprocessing import convention_from_record

    folder = Path(folder)
    if not is_model_folder(folder):
        raise UserError(f"{folder} is not a spos model folder (it needs {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{folder / CONFIG_NAME} is not valid JSON ({error})") from None
    config = _check_config(config, folder / CONFIG_NAME)
    data = {"kind": config["kind"], "space": config["space"], "model": _read_weights(folder / WEIGHTS_NAME),
            "input": convention_from_record(config["input"]).to_dict(), "pretrained": config,
            "weights": config.get("weights") or "raw",  # folders written before it was recorded hold raw ones
            "config": (config.get("training") or {}).get("config")}  # its data settings, for search and export
    if config["kind"] == "fixed":
        data["arch"] = {key: config["arch"].get(key) for key in ("blocks", "channels")}
    else:
        data.update(entangled_kernels=bool(config.get("entangled_kernels")),
                    aligned_choices=bool(config.get("aligned_choices")), few_shot_layers=config.get("few_shot_layers"))
    return data


# -- what a folder says about its network ----------------------------------------------------------

def training_record(data: dict | None) -> dict | None:
    """How a checkpoint's network came to be, from its training config and history (None: not recorded).
    The data root (a path on the trainer's machine) is left out."""
    config = (data or {}).get("config")
    if not isinstance(config, dict):
        return None
    d, train, optim = config.get("data") or {}, config.get("train") or {}, config.get("optim") or {}
    schedule = (config.get("schedule") or {}).get("name")
    kind = "supernet training" if config.get("kind") == "supernet" else "trained from scratch"
    trained = (f"{kind} on {d.get('name')} for {len(data.get('history') or [])} epochs (step {data.get('step')}), "
               f"batch {d.get('batch_size')}, SGD lr {optim.get('lr')} with a {schedule} schedule, weight decay "
               f"{optim.get('weight_decay')}, label smoothing {train.get('label_smoothing')}, EMA {train.get('ema')}, "
               f"seed {train.get('seed')}")
    searched = f"the architecture given to training as `{config['arch']}`" if config.get("arch") else None
    shared = {**config, "data": {k: v for k, v in d.items() if k != "root"}}
    return {"trained": trained, "searched": searched, "config": shared}


def weights_file(path: str | Path) -> Path:
    """The file holding the weights of ``path``: itself, or a model folder's safetensors."""
    return Path(path) / WEIGHTS_NAME if is_model_folder(path) else Path(path)


def read_folder_checkpoint(path) -> dict | None:
    """A model folder as a checkpoint payload (`spos.store.checkpoint.READERS`); None for anything else."""
    return load_folder(Path(path)) if Path(path).is_dir() else None


checkpoint.READERS.append(read_folder_checkpoint)
