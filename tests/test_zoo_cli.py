import json

import pytest

from spos.cli import main
from spos.errors import UserError
from spos.space.flops import count
from spos.space.zoo import ZOO, resolve_architecture


def test_counted_figures_match_reported_ones():
    """The zoo's counted FLOPs/params agree with what the authors reported (to their rounding)."""
    for name, entry in ZOO.items():
        space = entry.space()
        cost = count(space, entry.architecture(space))
        if "flops" in entry.reported:
            assert abs(cost.macs - entry.reported["flops"]) / entry.reported["flops"] < 0.005, name
        if "params" in entry.reported:
            assert abs(cost.params - entry.reported["params"]) / entry.reported["params"] < 0.02, name


def test_named_entries():
    arch, space = resolve_architecture("oneshot")
    assert arch.blocks == (0, 0, 3, 1, 1, 1, 0, 0, 2, 0, 2, 1, 1, 0, 2, 0, 2, 1, 3, 2)
    assert space.name == "oneshot"
    arch, space = resolve_architecture("oneshot-tiny")
    assert space.last_conv_width == 100
    arch, space = resolve_architecture("all-xception", input_size=32, num_classes=10)
    assert set(arch.blocks) == {3} and set(arch.channels) == {4} and space.input_size == 32
    wide, _ = resolve_architecture("widest")
    narrow, _ = resolve_architecture("narrowest")
    assert set(wide.channels) == {9} and set(narrow.channels) == {0}


def test_resolve_text_file_and_errors(tmp_path):
    from spos.space.architecture import save_architecture

    arch, space = resolve_architecture("oneshot")
    assert resolve_architecture(str(arch))[0] == arch
    path = save_architecture(tmp_path / "a.json", arch, space)
    assert resolve_architecture(str(path)) == (arch, space)
    with pytest.raises(UserError, match="not a zoo name"):
        resolve_architecture("resnet50")
    with pytest.raises(UserError, match="does not exist"):
        resolve_architecture(str(tmp_path / "missing.json"))


def test_zoo_command(capsys):
    assert main(["zoo", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| name |") and "| oneshot | oneshot | 327.9M | 328M |" in out
    assert main(["zoo", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in rows} == set(ZOO)


def test_profile_command_json(capsys):
    assert main(["profile", "oneshot", "--input-size", "32", "--num-classes", "10", "--width-mult", "0.25",
                 "--repeats", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["input_size"] == 32 and result["flops"] > 0 and result["params"] > 0
    assert result["latency"]["median_ms"] > 0 and result["latency"]["batch_size"] == 1


@pytest.mark.parametrize("argv,message", [
    (["profile", "nope"], "unknown architecture 'nope'"),
    (["profile", "0,1/1,1"], "2 layers but space"),
    (["profile", "oneshot", "--space", "mobilenet"], "unknown search space"),
    (["profile", "oneshot", "--batch-size", "0"], "must be at least 1"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_every_command_has_help_with_an_example(capsys):
    from spos.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"zoo", "profile"} <= set(commands)
    for name, sub in commands.items():
        text = sub.format_help()
        assert "example" in text and f"spos {name}" in text, name


def test_zoo_refuses_two_output_forms_in_one_line(capsys):
    assert main(["zoo", "--json", "--markdown"]) == 2
    err = capsys.readouterr().err
    assert "not allowed with" in err and err.count("\n") == 1
