"""Run-folder records a resume reads back (job files, logs, checkpoints), each checked against one schema.

A record is checked once, where it is read, so a damaged or hand-edited one is a single line
naming the file, what is wrong in it and what to do, never a KeyError or TypeError from deep
inside a later step. A schema is data:

- a type: ``int`` is a whole number (not a bool), ``float`` any real number (ints included), and
  any other type is an `isinstance` test;
- a tuple of alternatives, e.g. ``(dict, None)`` for "a dict or null";
- a dict of field -> schema for an object whose fields must all be present (`MayBeMissing` marks a
  field that may be absent);
- a one-item list ``[schema]`` for a list whose every item fits ``schema``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spos.errors import UserError


@dataclass(frozen=True)
class MayBeMissing:
    """A field that may be absent (records written before it existed); present, it must fit ``schema``."""

    schema: Any


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


def _type_name(schema) -> str:
    if schema is None:
        return "null"
    if isinstance(schema, tuple):
        return " or ".join(_type_name(s) for s in schema)
    if isinstance(schema, dict):
        return "an object"
    if isinstance(schema, list):
        return "a list"
    return {int: "a whole number", float: "a number", str: "text", bool: "true or false", dict: "an object",
            list: "a list"}.get(schema, getattr(schema, "__name__", str(schema)))


def _fits_type(value, schema) -> bool:
    if schema is None:
        return value is None
    if schema is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if schema is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, schema)


def problem(value, schema, where: str = "") -> str | None:
    """What is wrong with ``value`` against ``schema`` (``where`` names the field), or None when it fits."""
    if isinstance(schema, tuple):
        if any(problem(value, option, where) is None for option in schema):
            return None
        return f"{where or 'the record'} is {_shown(value)}, not {_type_name(schema)}"
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return f"{where or 'the record'} is {_shown(value)}, not an object"
        for key, field in schema.items():
            inner = f"{where}.{key}" if where else key
            if key not in value:
                if isinstance(field, MayBeMissing):
                    continue
                return f"{inner} is missing"
            found = problem(value[key], field.schema if isinstance(field, MayBeMissing) else field, inner)
            if found:
                return found
        return None
    if isinstance(schema, list):
        if not isinstance(value, list):
            return f"{where or 'the record'} is {_shown(value)}, not a list"
        for index, item in enumerate(value):
            found = problem(item, schema[0], f"{where}[{index}]")
            if found:
                return found
        return None
    if not _fits_type(value, schema):
        return f"{where or 'the record'} is {_shown(value)}, not {_type_name(schema)}"
    return None


def _shown(value) -> str:
    text = repr(value) if isinstance(value, (int, float, str, bool, type(None))) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def check(value, schema, path: str | Path, remedy: str):
    """``value`` when it fits ``schema``; else a UserError naming ``path``, the problem and ``remedy``."""
    found = problem(value, schema)
    if found:
        raise UserError(f"{path} is damaged ({found}); {remedy}")
    return value


def read_json(path: str | Path, schema, remedy: str):
    """A JSON file that must fit ``schema``; unreadable, not JSON or another shape is one line (see `check`)."""
    try:
        data = json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not valid JSON"
        raise UserError(f"{path} is damaged ({reason}); {remedy}") from None
    return check(data, schema, path, remedy)


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
    shown = ", ".join(map(str, damaged[:10])) + (", ..." if len(damaged) > 10 else "")
    return (f"warning: {path}: dropped {len(damaged)} damaged line{'s' if len(damaged) > 1 else ''} "
            f"(line {shown}); kept {kept} records, {what}")
