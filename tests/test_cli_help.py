"""Every option of every command says what it does, and names its default when it has one."""

from __future__ import annotations

import argparse

from spos.cli import build_parser


def _commands(parser: argparse.ArgumentParser, prefix: str = "spos"):
    """(``spos COMMAND [ACTION]``, parser) for every parser under ``parser``, itself included."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prefix} {name}")


def _option_name(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or action.dest


def _forms(default) -> set[str]:
    """The ways a help text may write a default: 0.0001 as 1e-4, 1.0 as 1."""
    forms = {str(default)}
    if isinstance(default, float):
        forms |= {f"{default:g}", f"{default:.0e}".replace("e-0", "e-").replace("e+0", "e")}
    return forms


def _missing_help(parser: argparse.ArgumentParser) -> list[str]:
    problems = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)):
            continue
        text = action.help or ""
        if not text.strip():
            problems.append(f"{_option_name(action)}: no help text")
            continue
        default = action.default
        if default is None or default is False or default == [] or default == argparse.SUPPRESS or action.required:
            continue
        if not any(form in text for form in _forms(default)):
            problems.append(f"{_option_name(action)}: help does not name its default {default!r}")
    return problems


def test_every_option_of_every_command_has_help_naming_its_default():
    problems = [f"`{command}` {problem}" for command, parser in _commands(build_parser())
                for problem in _missing_help(parser)]
    assert not problems, "options whose --help needs mending:\n  " + "\n  ".join(problems)


def test_latency_table_space_help_names_no_architecture():
    parser = dict(_commands(build_parser()))["spos latency table"]
    space = next(a for a in parser._actions if "--space" in a.option_strings)
    assert "architecture" not in space.help and "oneshot" in space.help


def test_readme_and_demo_help_give_the_same_measured_time_and_paths_a_user_can_follow():
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    demo_help = " ".join(dict(_commands(build_parser()))["spos demo"].format_help().split())
    figure = "about 2 minutes on an idle 2-core CPU machine without a GPU: 119 s measured there"
    assert figure in " ".join(readme.split()) and figure in demo_help
    assert not re.search(r"\.\./shared|shared/data", readme + demo_help)
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme
