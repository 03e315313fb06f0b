"""One check for the JSON-like data spos reads from files (checkpoints, architecture files, spaces,
latency tables): each field has a kind, and a value of another kind is one `UserError` naming the
file, the field, what it holds and what it must hold, before anything is built from it.

Kinds: ``int`` (a whole number, not a bool), ``number`` (finite), ``bool``, ``str``, ``list``,
``dict``, ``tensors`` (a dict of named tensors), ``list of K`` for any of the first four; a
trailing ``?`` allows null.
"""

from __future__ import annotations

import math
import numbers
import operator

from spos.errors import UserError


def is_whole(value) -> bool:
    """An int (numpy's and 0-d integer tensors' too), never a bool nor a float that happens to be whole."""
    if isinstance(value, bool) or type(value).__name__ == "bool_" or isinstance(value, float):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def _is_tensors(value) -> bool:
    import torch

    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                           for k, v in value.items())


_SINGLE = {
    "int": (is_whole, "a whole number"),
    "number": (lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v),
               "a finite number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "list": (lambda v: isinstance(v, (list, tuple)), "a list"),
    "dict": (lambda v: isinstance(v, dict), "a mapping"),
    "tensors": (_is_tensors, "a mapping of names to tensors"),
}


_PLURAL = {"int": "whole numbers", "number": "finite numbers", "bool": "true/false values", "str": "strings",
           "list": "lists", "dict": "mappings"}


def _test(kind: str):
    """(test, words) of ``kind``."""
    nullable, kind = kind.endswith("?"), kind.rstrip("?")
    if kind.startswith("list of "):
        item = _SINGLE[kind[len("list of "):]][0]
        test = lambda v: isinstance(v, (list, tuple)) and all(item(x) for x in v)  # noqa: E731
        words = f"a list of {_PLURAL[kind[len('list of '):]]}"
    else:
        test, words = _SINGLE[kind]
    if nullable:
        return (lambda v: v is None or test(v)), words + " or null"
    return test, words


def shown(value, width: int = 40) -> str:
    """``value`` as the error shows it: its repr, cut to ``width`` characters."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def check(value, kind: str, where: str):
    """``value`` when it is of ``kind``, else a UserError ``WHERE is VALUE; it must be WORDS``."""
    test, words = _test(kind)
    if not test(value):
        raise UserError(f"{where} is {shown(value)}; it must be {words}")
    return value


def check_fields(data, fields: dict[str, str], where: str, *, optional: tuple[str, ...] = ()) -> dict:
    """``data`` when it is a mapping whose ``fields`` (name -> kind) are all present (``optional`` ones
    may be absent) and of their kind; keys not named are left to the reader."""
    if not isinstance(data, dict):
        raise UserError(f"{where} is {shown(data)}; it must be a mapping with {', '.join(fields)}")
    missing = [name for name in fields if name not in data and name not in optional]
    if missing:
        raise UserError(f"{where} has no {', '.join(missing)}")
    for name, kind in fields.items():
        if name in data:
            check(data[name], kind, f"{where}: {name}")
    return data
