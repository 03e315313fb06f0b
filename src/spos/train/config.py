"""Run configurations: shipped YAML recipes (or a user's file) plus ``key.sub=value`` overrides.

Every key has a default here, so a recipe names only what it changes, and a key that does not
exist is refused with the list of valid ones. The resolved config is saved beside every run.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import yaml

from spos.errors import UserError

DEFAULTS: dict = {
    "kind": "supernet",             # supernet | fixed
    "arch": None,                   # fixed: zoo name, architecture file or 'B,..,B/C,..,C'
    "space": {"name": "oneshot", "width_mult": 1.0, "input_size": None, "dropout": None,
              "entangled_kernels": False},  # supernet only: ShuffleNet choices share one 7x7 kernel
    "data": {"name": "digits", "root": None, "download": False, "holdout": 0, "batch_size": 64,
             "workers": 0, "val_batch_size": 256},
    "optim": {"lr": 0.5, "momentum": 0.9, "nesterov": True, "weight_decay": 4e-5, "no_wd_bn_bias": True},
    "schedule": {"name": "linear", "warmup_epochs": 0.0, "min_lr": 0.0},
    "train": {"epochs": 10, "iterations": None, "label_smoothing": 0.1, "mixup": 0.0, "cutmix": 0.0,
              "ema": None, "amp": None, "channels_last": False, "clip_grad": None, "accumulate": 1,
              "seed": 0, "checkpoint_every_steps": None, "log_every": 20, "device": None,
              "deterministic": False},
    "sampling": {"mode": "both", "flops_min": None, "flops_max": None, "flops_bins": None,
                 "channel_warmup_epochs": 0, "channel_warmup_step_epochs": 1, "strategy": "uniform"},
    "validation": {"paths": 3, "bn_batches": 20, "every": 1},
}


def available_configs() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("spos.configs").iterdir() if p.name.endswith(".yaml"))


def _read(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserError(f"config file {path} does not exist")
        text = path.read_text()
    else:
        resource = resources.files("spos.configs") / f"{name_or_path}.yaml"
        if not resource.is_file():
            raise UserError(f"unknown config {name_or_path!r}; use a YAML file or one of {', '.join(available_configs())}")
        text = resource.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise UserError(f"config {name_or_path}: invalid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"config {name_or_path}: expected a mapping of keys to values")
    return data


def _merge(base: dict, update: dict, prefix: str = "") -> dict:
    for key, value in update.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise UserError(f"unknown config key {name!r}; valid keys here: {', '.join(sorted(base))}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise UserError(f"config key {name!r} is a section; set its keys, e.g. {name}.{next(iter(base[key]))}=...")
            _merge(base[key], value, f"{name}.")
        else:
            base[key] = value
    return base


def _number_if_numeric(value):
    """YAML 1.1 reads ``330e6`` (no dot, no sign) as a string; a person means the number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_override(text: str) -> dict:
    """``optim.lr=0.1`` -> {"optim": {"lr": 0.1}}; values are read as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected KEY=VALUE, e.g. optim.lr=0.1")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    value = _number_if_numeric(value)
    result: dict = {}
    node = result
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return result


def load_config(name_or_path: str | None = None, overrides: list[str] | tuple[str, ...] = (), **sections) -> dict:
    """DEFAULTS, then the recipe, then ``sections`` (dicts from dedicated flags), then ``--set`` overrides."""
    config = copy.deepcopy(DEFAULTS)
    if name_or_path:
        _merge(config, _read(name_or_path))
    for key, value in sections.items():
        _merge(config, {key: value})
    for text in overrides:
        _merge(config, parse_override(text))
    if config["kind"] not in ("supernet", "fixed"):
        raise UserError(f"config kind {config['kind']!r}: use supernet or fixed")
    return config


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)
