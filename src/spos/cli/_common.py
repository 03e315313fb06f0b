"""Helpers shared by the subcommand modules (argument formatting only)."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

from spos.errors import UserError
from spos.space import limits


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
    """``--ema``/``--no-ema``: which of a checkpoint's weights to use (`spos.store.checkpoint.chosen_weights`)."""
    parser.add_argument("--ema", action=argparse.BooleanOptionalAction, default=False,
                        help="use the checkpoint's EMA weights; --no-ema (the default) uses the raw weights, the "
                             "ones best.pt was chosen by. eval, export and search all take the same choice")


# -- flag types: every value is checked when the command line is parsed, before any work ---------
# Each raises ArgumentTypeError("VALUE: must be ..."); the parser prints it as "--flag VALUE: must be ...".

def _number(text: str, whole: bool):
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: must be {'a whole number' if whole else 'a number'}") from None
    if not whole and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text}: must be a finite number")
    return value


def at_least(minimum: int):
    """A whole number >= ``minimum``."""
    def whole(text: str) -> int:
        value = _number(text, whole=True)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text}: must be at least {minimum}")
        return value
    return whole


positive_int, non_negative_int = at_least(1), at_least(0)


def finite_float(text: str) -> float:
    return _number(text, whole=False)


def positive_float(text: str) -> float:
    value = _number(text, whole=False)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be above 0")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, whole=False)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be 0 or more")
    return value


def probability(text: str) -> float:
    value = _number(text, whole=False)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text}: must be a probability, from 0 to 1")
    return value


def width_mult(text: str) -> float:
    value = positive_float(text)
    if value > limits.MAX_WIDTH_MULT:
        raise argparse.ArgumentTypeError(f"{text}: must be at most {limits.MAX_WIDTH_MULT:g} (spos/limits.py)")
    return value


def seed(text: str) -> int:
    value = _number(text, whole=True)
    if not 0 <= value <= limits.MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text}: must be a whole number from 0 to {limits.MAX_SEED}")
    return value


def _from_user_error(check):
    """A library check raising UserError, as a flag type (its message already names the flag)."""
    def flag_type(text: str):
        try:
            return check(text)
        except UserError as error:
            raise argparse.ArgumentTypeError(f"{text}: {str(error).split(': ', 1)[-1]}") from None
    flag_type.__name__ = check.__name__
    return flag_type


def holdout(text: str):
    from spos.data.datasets import parse_holdout

    return _from_user_error(parse_holdout)(text)


def device(text: str) -> str:
    from spos.train.distributed import check_device_name

    return _from_user_error(check_device_name)(text)


def writable_path(text: str) -> str:
    """An ``--output`` spos can create: not a dangling link, under folders (not a file), writable."""
    path = Path(text)
    if path.is_symlink() and not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: is a link to {os.readlink(path)}, which does not exist; give a "
                                         "real path")
    here = path if path.is_dir() else next(p for p in path.parents if os.path.lexists(p))
    if not here.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {here} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=here):  # unnamed where the OS allows it: nothing appears
            pass
    except OSError as error:
        raise argparse.ArgumentTypeError(f"{text}: cannot write in {here} ({error.strerror}); choose another "
                                         "--output") from None
    return text
