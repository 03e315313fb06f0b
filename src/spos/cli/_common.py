"""Helpers shared by the subcommand modules (argument formatting only)."""

from __future__ import annotations

import argparse


def add_command(subparsers, name: str, *, help: str, description: str, example: str) -> argparse.ArgumentParser:
    """Add a subcommand whose --help says what it does and shows an example.

    Every command takes ``--plugin``: a module that registers blocks of your own, imported before
    the command runs, so a space that uses them works everywhere."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_plugin_argument(parser)
    return parser


def add_plugin_argument(parser) -> None:
    """``--plugin MODULE`` (repeatable). Absent unless given, so a nested command's parser cannot
    reset what its parent parsed."""
    parser.add_argument("--plugin", action="append", default=argparse.SUPPRESS, metavar="MODULE",
                        help="import MODULE (a module name or a .py file) first, to register your own blocks "
                             "(repeatable)")


def add_input_argument(parser) -> None:
    """``--input``: the input convention, overriding the one the checkpoint records."""
    parser.add_argument("--input", choices=("spos", "official"), default=None,
                        help="input convention: spos (RGB 0..1 normalised by the dataset's mean/std) or official "
                             "(megvii's BGR 0..255, unnormalised) (default: what the checkpoint records, spos "
                             "when it records none)")


def add_benchmark_arguments(group, purpose: str) -> None:
    """``--benchmark NAME`` (a tabular benchmark, for ``purpose``) and ``--benchmark-file FILE``."""
    group.add_argument("--benchmark", default=None, metavar="NAME",
                       help=f"a tabular benchmark (nas-bench-macro; see `spos bench`): {purpose}")
    group.add_argument("--benchmark-file", default=None, metavar="FILE",
                       help="the table (default: where `spos bench NAME --download` put it)")


def add_weights_argument(parser) -> None:
    """``--ema``/``--no-ema``: which of a checkpoint's weights to use (`spos.checkpoint.chosen_weights`)."""
    parser.add_argument("--ema", action=argparse.BooleanOptionalAction, default=False,
                        help="use the checkpoint's EMA weights; --no-ema (the default) uses the raw weights, the "
                             "ones best.pt was chosen by. eval, export and search all take the same choice")
