"""One schema language for everything spos reads from a file: checkpoints, model folders, latency
tables, spaces, architectures, run-folder records (job.json, settings.json, demo.json, the history and
score logs) and a training run's resume state.

A value is checked once, where it is read, so a damaged or hand-edited file is a single line naming
the file, the field, what it holds and what it must hold, never a KeyError or TypeError from deep
inside a later step. A schema is data:

- a type: ``int`` is a whole number (not a bool; numpy's and 0-d integer tensors' too), ``float`` any
  real number (ints, infinity and NaN included: a logged loss may be any of them), ``str``, ``bool``,
  ``dict``, ``list`` (a list or a tuple), and any other class an `isinstance` test (``torch.Tensor``);
- `FINITE`, a finite real number (a space's widths, a latency in milliseconds);
- ``None`` for null, and a tuple of alternatives, e.g. ``(dict, None)`` for "an object or null";
- a dict of field -> schema for an object whose fields must all be present (`MayBeMissing` marks a
  field that may be absent); fields it does not name are left to the reader;
- a one-item list ``[schema]`` for a list (or tuple) whose every item fits ``schema``;
- `NamesTo(schema)` for a mapping of names to values that fit ``schema`` (a state dict).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import operator
import reprlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spos.errors import UserError


@dataclass(frozen=True)
class MayBeMissing:
    """A field that may be absent (files written before it existed); present, it must fit ``schema``."""

    schema: Any


@dataclass(frozen=True)
class NamesTo:
    """A mapping of names (text) to values that fit ``schema``, e.g. ``NamesTo(torch.Tensor)``."""

    schema: Any


@dataclass(frozen=True)
class Kind:
    """A kind of single value: its test and how an error names it (one and several)."""

    test: Callable[[Any], bool]
    words: str
    plural: str


def _is_whole(value) -> bool:
    """An int (numpy's and 0-d integer tensors' too), never a bool nor a float that happens to be whole."""
    if isinstance(value, (bool, float)) or type(value).__name__ == "bool_":
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


FINITE = Kind(lambda v: _is_real(v) and math.isfinite(v), "a finite number", "finite numbers")

_KINDS = {
    int: Kind(_is_whole, "a whole number", "whole numbers"),
    float: Kind(_is_real, "a number", "numbers"),
    str: Kind(lambda v: isinstance(v, str), "text", "texts"),
    bool: Kind(lambda v: isinstance(v, bool), "true or false", "true/false values"),
    dict: Kind(lambda v: isinstance(v, dict), "an object", "objects"),
    list: Kind(lambda v: isinstance(v, (list, tuple)), "a list", "lists"),
    None: Kind(lambda v: v is None, "null", "nulls"),
}


def _kind(schema) -> Kind:
    if isinstance(schema, Kind):
        return schema
    if schema in _KINDS:
        return _KINDS[schema]
    if isinstance(schema, type):
        name = schema.__name__.lower()
        return Kind(lambda v: isinstance(v, schema), f"a {name}", f"{name}s")
    raise TypeError(f"{schema!r} is not a schema: write one with Python types, FINITE, None, tuples, dicts, "
                    "one-item lists and NamesTo (see spos.io.schema)")


def words(schema, plural: bool = False) -> str:
    """How an error names what fits ``schema``: "a list of whole numbers", "an object or null"."""
    if isinstance(schema, MayBeMissing):
        return words(schema.schema, plural)
    if isinstance(schema, tuple):
        return " or ".join(words(option, plural) for option in schema)
    if isinstance(schema, dict):
        return _kind(dict).plural if plural else _kind(dict).words
    if isinstance(schema, list):
        return f"{'lists' if plural else 'a list'} of {words(schema[0], True)}"
    if isinstance(schema, NamesTo):
        return f"{'mappings' if plural else 'a mapping'} of names to {words(schema.schema, True)}"
    return _kind(schema).plural if plural else _kind(schema).words


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxtuple, _SHOWN.maxdict = 2, 4, 4, 3
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 40, 40, 40


def shown(value) -> str:
    """``value`` as an error shows it: its repr, cut short (a whole state dict is never printed)."""
    return _SHOWN.repr(value)


def problem(value, schema, where: str = "") -> str | None:
    """What is wrong with ``value`` against ``schema``, or None when it fits.

    ``where`` names the value (e.g. "checkpoint x.pt"): the problem reads "checkpoint x.pt: model is
    ..."; without it the value is "the record" and its fields go by their own names ("epoch is ...")."""
    return _problem(value, schema, where or "the record", f"{where}: " if where else "")


def _problem(value, schema, name: str, prefix: str) -> str | None:
    """``name`` names ``value``; a field ``key`` of it is named ``prefix + key``."""
    if isinstance(schema, tuple):
        return _alternatives_problem(value, schema, name, prefix)
    if isinstance(schema, dict):
        return _object_problem(value, schema, name, prefix)
    if isinstance(schema, (list, NamesTo)):
        if not _kind(dict if isinstance(schema, NamesTo) else list).test(value):
            return f"{name} is {shown(value)}, not {words(schema)}"
        return _items_problem(value, schema, name)
    if not _kind(schema).test(value):
        return f"{name} is {shown(value)}, not {words(schema)}"
    return None


def _alternatives_problem(value, options: tuple, name: str, prefix: str) -> str | None:
    found = [_problem(value, option, name, prefix) for option in options]
    if None in found:
        return None
    for option, text in zip(options, found):  # an object (or list) with a wrong part: name the part
        if isinstance(option, dict) and isinstance(value, dict) or isinstance(option, list) and \
                isinstance(value, (list, tuple)):
            return text
    return f"{name} is {shown(value)}, not {words(options)}"


def _object_problem(value, schema: dict, name: str, prefix: str) -> str | None:
    if not isinstance(value, dict):
        return f"{name} is {shown(value)}, not {words(schema)}"
    missing = [prefix + key for key, field in schema.items()
               if key not in value and not isinstance(field, MayBeMissing)]
    if missing:
        return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"
    for key, field in schema.items():
        if key in value:
            inner = prefix + key
            found = _problem(value[key], field.schema if isinstance(field, MayBeMissing) else field, inner, inner + ".")
            if found:
                return found
    return None


def _items_problem(value, schema: list | NamesTo, name: str) -> str | None:
    """The first item of a list (or entry of a mapping of names) that does not fit."""
    if isinstance(schema, NamesTo):
        bad_key = next((key for key in value if not isinstance(key, str)), None)
        if bad_key is not None:
            return f"{name} has the key {shown(bad_key)}, not a name (text)"
        items, item_schema = [(f"{name}[{key!r}]", item) for key, item in value.items()], schema.schema
    else:
        items, item_schema = [(f"{name}[{index}]", item) for index, item in enumerate(value)], schema[0]
    for inner, item in items:
        found = _problem(item, item_schema, inner, inner + ".")
        if found:
            return found
    return None


def fits(value, schema) -> bool:
    return problem(value, schema) is None


def check(value, schema, where: str, remedy: str = ""):
    """``value`` when it fits ``schema``; else a UserError naming ``where`` (see `problem`), then ``remedy``."""
    found = problem(value, schema, where)
    if found:
        raise UserError(f"{found}; {remedy}" if remedy else found)
    return value


def dataclass_schema(cls) -> dict:
    """The schema of a dataclass saved as a JSON object (its fields, with their annotated types: ``int``,
    ``float``, ``str``, ``bool`` or ``X | None``); a field with a default may be missing (an older file)."""
    hints = typing.get_type_hints(cls)
    schema = {}
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
        kind = tuple(None if option is type(None) else option for option in options)
        kind = kind[0] if len(kind) == 1 else kind
        has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
        schema[field.name] = MayBeMissing(kind) if has_default else kind
    return schema


def read_json(path: str | Path, schema, remedy: str):
    """A run-folder JSON file that must fit ``schema``; unreadable, not JSON or another shape is one line
    ``PATH is damaged (WHAT); REMEDY``."""
    try:
        data = json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not valid JSON"
        raise UserError(f"{path} is damaged ({reason}); {remedy}") from None
    found = problem(data, schema)
    if found:
        raise UserError(f"{path} is damaged ({found}); {remedy}")
    return data


def read_jsonl(path: str | Path, schema) -> tuple[list, list[int], list[bytes]]:
    """The records of a JSON-lines file that fit ``schema``, the numbers of the lines that do not (cut
    by a kill, damaged, hand-edited) and the good lines as read; blank lines are neither."""
    records, damaged, good_lines = [], [], []
    try:
        with open(path, "rb") as handle:
            lines = handle.read().splitlines(keepends=True)
    except OSError as error:
        raise UserError(f"{path} cannot be read ({error.strerror}); remove it or choose another --output") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = ValueError
        if record is ValueError or problem(record, schema) is not None:
            damaged.append(number)
            continue
        records.append(record)
        good_lines.append(line if line.endswith(b"\n") else line + b"\n")
    return records, damaged, good_lines


def damaged_lines_text(path: str | Path, damaged: list[int], kept: int, what: str) -> str:
    """The warning for lines `read_jsonl` dropped: how many, which, and what happens to them."""
    shown_lines = ", ".join(map(str, damaged[:10])) + (", ..." if len(damaged) > 10 else "")
    return (f"warning: {path}: dropped {len(damaged)} damaged line{'s' if len(damaged) > 1 else ''} "
            f"(line {shown_lines}); kept {kept} records, {what}")
