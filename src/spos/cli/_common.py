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
