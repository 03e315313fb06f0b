"""The one schema language every reader checks its file with (`spos.io.schema`): what fits, and the one
line that names the field, what it holds and what it must hold when something does not."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from spos.errors import UserError
from spos.io.schema import (
    FINITE,
    MayBeMissing,
    NamesTo,
    check,
    damaged_lines_text,
    dataclass_schema,
    fits,
    problem,
    read_json,
    read_jsonl,
    shown,
    words,
)


@pytest.mark.parametrize("value, schema", [
    (3, int), (np.int64(3), int), (torch.tensor(3), int), (2.5, float), (3, float), (float("inf"), float),
    (1e300, FINITE), ("x", str), (True, bool), ({}, dict), ([1], list), ((1, 2), list), (None, None),
    (None, (dict, None)), ([1, 2], [int]), ((0.5, 1.0), [FINITE]), ({"a": torch.zeros(1)}, NamesTo(torch.Tensor)),
    ({"a": 1}, {"a": int, "b": MayBeMissing(str)}), ({"a": 1, "other": "left to the reader"}, {"a": int}),
])
def test_what_fits(value, schema):
    assert fits(value, schema)


@pytest.mark.parametrize("value, schema, where, expected", [
    (True, int, "", "the record is True, not a whole number"),
    (2.0, int, "", "the record is 2.0, not a whole number"),
    (float("nan"), FINITE, "x", "x is nan, not a finite number"),
    (False, float, "", "the record is False, not a number"),
    ([1, 2], {"a": int}, "", "the record is [1, 2], not an object"),
    ({}, {"a": int, "b": str, "c": MayBeMissing(int)}, "", "a, b are missing"),
    ({"a": {}}, {"a": {"b": int}}, "checkpoint c.pt", "checkpoint c.pt: a.b is missing"),
    ({"a": [1, "2"]}, {"a": [int]}, "", "a[1] is '2', not a whole number"),
    ([[1.0], [2.0, "x"]], [[FINITE]], "layer 3: timings", "layer 3: timings[1][1] is 'x', not a finite number"),
    ({"w": 3}, NamesTo(torch.Tensor), "checkpoint c.pt: model", "checkpoint c.pt: model['w'] is 3, not a tensor"),
    ({1: torch.zeros(1)}, NamesTo(torch.Tensor), "m", "m has the key 1, not a name (text)"),
    ("x", (dict, None), "", "the record is 'x', not an object or null"),
    ({"s": {"a": 1}}, {"s": ({"a": str}, None)}, "", "s.a is 1, not text"),  # the part of an object that is wrong
    ({"c": 5}, {"c": MayBeMissing(({"n": int}, None))}, "t", "t: c is 5, not an object or null"),
])
def test_a_problem_names_the_field_what_it_holds_and_what_it_must_be(value, schema, where, expected):
    assert problem(value, schema, where) == expected


def test_check_returns_the_value_or_raises_one_line_with_the_remedy():
    assert check({"a": 1}, {"a": int}, "f") == {"a": 1}
    with pytest.raises(UserError, match=r"^f: a is 'x', not a whole number; rebuild it$"):
        check({"a": "x"}, {"a": int}, "f", "rebuild it")


def test_words_name_nested_schemas():
    assert words([[FINITE]]) == "a list of lists of finite numbers"
    assert words(MayBeMissing((NamesTo(torch.Tensor), None))) == "a mapping of names to tensors or null"


def test_a_schema_in_another_language_is_refused():
    with pytest.raises(TypeError, match="not a schema"):
        fits(3, "int")


def test_shown_is_short_whatever_the_value():
    assert len(shown("x" * 10_000)) <= 40
    assert shown(list(range(1000))) == "[0, 1, 2, 3, ...]"
    assert len(shown({str(i): torch.zeros(10_000) for i in range(1000)})) < 300


def test_a_dataclass_schema_lets_fields_with_defaults_be_missing():
    @dataclass
    class Settings:
        name: str
        count: int = 1
        limit: float | None = None

    schema = dataclass_schema(Settings)
    assert fits({"name": "a"}, schema) and fits({"name": "a", "count": 2, "limit": None}, schema)
    assert problem({"count": 2}, schema) == "name is missing"
    assert problem({"name": "a", "limit": "x"}, schema) == "limit is 'x', not a number or null"


def test_read_json_says_the_file_is_damaged_what_is_wrong_and_what_to_do(tmp_path):
    path = tmp_path / "job.json"
    path.write_text('{"population": 4}')
    assert read_json(path, {"population": int}, "start again") == {"population": 4}
    for text, reason in (("{not json", "not valid JSON"), ('{"population": 4.5}', "population is 4.5, not a whole "
                                                                                   "number")):
        path.write_text(text)
        with pytest.raises(UserError) as error:
            read_json(path, {"population": int}, "start again")
        assert str(error.value) == f"{path} is damaged ({reason}); start again"


def test_read_jsonl_keeps_the_lines_that_fit_and_numbers_the_others(tmp_path):
    path = tmp_path / "log.jsonl"
    good = json.dumps({"score": 0.5})
    path.write_text("\n".join([good, '{"score": "x"}', "", '{"sco', good]))
    records, damaged, lines = read_jsonl(path, {"score": float})
    assert records == [{"score": 0.5}] * 2 and damaged == [2, 4] and lines == [good.encode() + b"\n"] * 2
    assert damaged_lines_text(path, damaged, 2, "scored again") == \
        f"warning: {path}: dropped 2 damaged lines (line 2, 4); kept 2 records, scored again"
