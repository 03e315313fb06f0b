"""Helpers shared by the subcommand modules (argument formatting only)."""

from __future__ import annotations

import argparse


def add_command(subparsers, name: str, *, help: str, description: str, example: str) -> argparse.ArgumentParser:
    """Add a subcommand whose --help says what it does and shows an example."""
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_input_argument(parser) -> None:
    """``--input``: the input convention, overriding the one the checkpoint records."""
    parser.add_argument("--input", choices=("spos", "official"), default=None,
                        help="input convention: spos (RGB 0..1 normalised by the dataset's mean/std) or official "
                             "(megvii's BGR 0..255, unnormalised) (default: what the checkpoint records, spos "
                             "when it records none)")
