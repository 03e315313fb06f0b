"""Run configurations: shipped YAML recipes (or a user's file) plus ``key.sub=value`` overrides.

Every key has a default here, so a recipe names only what it changes, and a key that does not
exist is refused with the list of valid ones. The resolved config is saved beside every run.
"""

from __future__ import annotations

import copy
import math
from importlib import resources
from pathlib import Path

import yaml

from spos.errors import UserError
from spos.space import limits
from spos.space.searchspace import PRESETS

DEFAULTS: dict = {
    "kind": "supernet",             # supernet | fixed
    "arch": None,                   # fixed: zoo name, architecture file or 'B,..,B/C,..,C'
    "space": {"name": "oneshot", "width_mult": 1.0, "input_size": None, "dropout": None,
              "entangled_kernels": False,   # supernet only: ops of one layout share the largest one's weights
              "aligned_choices": False},    # supernet only, entangled: Xception tied in, choices start alike
    "data": {"name": "digits", "root": None, "download": False, "holdout": 0, "batch_size": 64,
             "workers": 0, "val_batch_size": 256,
             "loader": "torch"},            # torch (CPU workers) | dali (ImageFolder decoded on the GPU)
    "optim": {"lr": 0.5, "momentum": 0.9, "nesterov": True, "weight_decay": 4e-5, "no_wd_bn_bias": True},
    "schedule": {"name": "linear", "warmup_epochs": 0.0, "min_lr": 0.0},
    "train": {"epochs": 10, "iterations": None, "label_smoothing": 0.1, "mixup": 0.0, "cutmix": 0.0,
              "ema": None, "amp": None, "channels_last": False, "clip_grad": None, "accumulate": 1,
              "seed": 0, "checkpoint_every_steps": None, "log_every": 20, "device": None,
              "deterministic": False},
    "sampling": {"mode": "both", "flops_min": None, "flops_max": None, "flops_bins": None,
                 "channel_warmup_epochs": 0, "channel_warmup_step_epochs": 1,
                 "strategy": "uniform",     # uniform | fair (FairNAS) | sandwich (BigNAS, in-place distillation)
                 "sandwich_paths": 2,       # sandwich: paths beside the widest (the narrowest + random ones)
                 "progressive_epochs": 0,   # >0: layers released from the input on over these epochs
                 "few_shot_layers": None,   # e.g. [0]: split into sub-supernets on these layers' blocks (spos.nn.fewshot)
                 "few_shot_split_epoch": None},  # the epoch the split happens at (null: half the run)
    "validation": {"paths": 3, "bn_batches": 20, "every": 1},  # every: epochs between validations (and the last)
}


# The schema: per key its type ("int", "number", "bool", "str", "list"), whether null is allowed, and
# the range a value must lie in (a test and the words that say it). Checked by `load_config`,
# before any work starts, so a bad value is one line naming the key, not an error deep in a loop.
POSITIVE, NON_NEGATIVE = (lambda v: v > 0, "> 0"), (lambda v: v >= 0, ">= 0")
AT_LEAST_ONE, FRACTION = (lambda v: v >= 1, ">= 1"), (lambda v: 0 <= v < 1, "in [0, 1)")
ANY = (lambda v: True, "")
WIDTH_MULT = (lambda v: 0 < v <= limits.MAX_WIDTH_MULT, f"> 0 and at most {limits.MAX_WIDTH_MULT:g} (spos/limits.py)")
SEED = (lambda v: 0 <= v <= limits.MAX_SEED, f"from 0 to {limits.MAX_SEED}")
NUMBERS = (lambda v: all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v),
           "a list of numbers, e.g. [100e6, 200e6, 300e6]")


def _known_space(name: str) -> bool:
    return name in PRESETS or Path(name).is_file()


def _known_device(name: str) -> bool:
    from spos.train.distributed import check_device_name

    try:
        return bool(check_device_name(name))
    except UserError:
        return False


SPACE_NAME = (_known_space, f"a preset ({', '.join(PRESETS)}) or a space YAML file that exists")
DEVICE = (_known_device, "cpu, cuda or cuda:N")
SCHEMA: dict[str, tuple[str, bool, tuple]] = {
    "kind": ("str", False, ANY), "arch": ("str", True, ANY),
    "space.name": ("str", False, SPACE_NAME), "space.width_mult": ("number", False, WIDTH_MULT),
    "space.input_size": ("int", True, POSITIVE), "space.dropout": ("number", True, FRACTION),
    "space.entangled_kernels": ("bool", False, ANY), "space.aligned_choices": ("bool", False, ANY),
    "data.name": ("str", False, ANY), "data.root": ("str", True, ANY), "data.download": ("bool", False, ANY),
    "data.holdout": ("number", False, NON_NEGATIVE), "data.batch_size": ("int", False, POSITIVE),
    "data.workers": ("int", False, NON_NEGATIVE), "data.val_batch_size": ("int", False, POSITIVE),
    "data.loader": ("str", False, (lambda v: v in ("torch", "dali"), "torch or dali")),
    "optim.lr": ("number", False, POSITIVE), "optim.momentum": ("number", False, NON_NEGATIVE),
    "optim.nesterov": ("bool", False, ANY), "optim.weight_decay": ("number", False, NON_NEGATIVE),
    "optim.no_wd_bn_bias": ("bool", False, ANY),
    "schedule.name": ("str", False, ANY), "schedule.warmup_epochs": ("number", False, NON_NEGATIVE),
    "schedule.min_lr": ("number", False, NON_NEGATIVE),
    "train.epochs": ("int", False, POSITIVE), "train.iterations": ("int", True, POSITIVE),
    "train.label_smoothing": ("number", False, FRACTION), "train.mixup": ("number", False, NON_NEGATIVE),
    "train.cutmix": ("number", False, NON_NEGATIVE), "train.ema": ("number", True, (lambda v: 0 < v < 1, "in (0, 1)")),
    "train.amp": ("str", True, ANY), "train.channels_last": ("bool", False, ANY),
    "train.clip_grad": ("number", True, POSITIVE), "train.accumulate": ("int", False, AT_LEAST_ONE),
    "train.seed": ("int", False, SEED), "train.checkpoint_every_steps": ("int", True, POSITIVE),
    "train.log_every": ("int", False, POSITIVE), "train.device": ("str", True, DEVICE),
    "train.deterministic": ("bool", False, ANY),
    "sampling.mode": ("str", False, ANY), "sampling.strategy": ("str", False, ANY), "sampling.flops_min": ("number", True, NON_NEGATIVE),
    "sampling.flops_max": ("number", True, POSITIVE), "sampling.flops_bins": ("list", True, NUMBERS),
    "sampling.channel_warmup_epochs": ("int", False, NON_NEGATIVE),
    "sampling.channel_warmup_step_epochs": ("int", False, AT_LEAST_ONE),
    "sampling.sandwich_paths": ("int", False, AT_LEAST_ONE),
    "sampling.progressive_epochs": ("int", False, NON_NEGATIVE),
    "sampling.few_shot_layers": ("list", True, ANY), "sampling.few_shot_split_epoch": ("int", True, NON_NEGATIVE),
    "validation.paths": ("int", False, AT_LEAST_ONE), "validation.bn_batches": ("int", False, AT_LEAST_ONE),
    "validation.every": ("int", False, AT_LEAST_ONE),
}
_TYPE_WORDS = {"int": "a whole number", "number": "a number", "bool": "true or false", "str": "a string",
               "list": "a list"}


def _typed(key: str, value, kind: str, nullable: bool):
    """``value`` as ``kind`` ("1e-4" and 3.0 are read as the numbers they spell), or a UserError."""
    if value is None and nullable:
        return None
    if kind in ("int", "number") and isinstance(value, str):
        value = _number_if_numeric(value)
    if kind == "list" and isinstance(value, list):
        value = [_number_if_numeric(item) for item in value]
    if kind == "int" and isinstance(value, float) and value.is_integer():
        value = int(value)
    fits = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
            "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str),
            "list": lambda v: isinstance(v, list)}[kind](value)
    if not fits:
        expected = _TYPE_WORDS[kind] + (" or null" if nullable else "")
        raise UserError(f"config key {key}: {value!r} is not {expected}; fix it in the config file or with "
                        f"--set {key}=VALUE")
    return value


def validate_config(config: dict) -> dict:
    """Check every key against SCHEMA (type, then range); numbers written as text become numbers."""
    for key, (kind, nullable, (in_range, words)) in SCHEMA.items():
        section, _, name = key.rpartition(".")
        node = config[section] if section else config
        value = _typed(key, node[name], kind, nullable)
        if value is not None and not in_range(value):
            wrong = "is out of range" if kind in ("int", "number") else "is not allowed"
            raise UserError(f"config key {key}: {value!r} {wrong}; it must be {words}")
        node[name] = value
    return config


def available_configs() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("spos.train.configs").iterdir() if p.name.endswith(".yaml"))


def _read(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserError(f"config file {path} does not exist")
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError) as error:
            reason = "binary, not YAML text" if isinstance(error, UnicodeDecodeError) else error.strerror
            raise UserError(f"config file {path} cannot be read ({reason}); give a YAML recipe") from None
    else:
        resource = resources.files("spos.train.configs") / f"{name_or_path}.yaml"
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
    return validate_config(config)


# Keys a resumed run may change: where it runs and how it reports, never what it computes.
RESUMABLE_KEYS = ("train.device", "data.workers", "data.root", "data.download", "train.log_every",
                  "train.checkpoint_every_steps")


def flatten(config: dict, prefix: str = "") -> dict:
    """{"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resume_differences(saved: dict, current: dict) -> list[str]:
    """``key saved -> current`` for every key that defines the run and differs (see RESUMABLE_KEYS).

    A key the saved config lacks (a run started before the key existed) reads as its default:
    new keys default to what spos did before them."""
    old, new = flatten(DEFAULTS) | flatten(saved), flatten(current)
    keys = [k for k in dict.fromkeys([*old, *new]) if k not in RESUMABLE_KEYS]
    return [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)
