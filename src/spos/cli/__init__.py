"""The `spos` command line: argument parsing only, the work is done by the library modules.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed namespace. Modules are discovered, so adding a command touches no other file.
``ORDER`` (an int, default 100) sets the order in ``spos --help``.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import pkgutil
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

from spos import __version__
from spos.cli._preemptible import lost_rank_line, run_preemptible
from spos.errors import UserError

EXAMPLES = """\
examples:
  spos demo                                   # the whole pipeline on the embedded digits data
  spos zoo                                    # named architectures, counted vs reported figures
  spos profile oneshot --input-size 224       # FLOPs, params and CPU latency of one network
  spos train-supernet --config imagenet-supernet --data-root /data/imagenet
  spos search --supernet runs/supernet/last.pt --flops-max 330e6
  spos train --arch runs/search/best.json --config imagenet-retrain --data-root /data/imagenet
  spos export runs/train/best.pt --format onnx
"""


class _Parser(argparse.ArgumentParser):
    """argparse with exit status 2 and one line for every usage error, with a "did you mean" for a
    mistyped command or option (Python 3.11's argparse has no ``suggest_on_error``)."""

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)  # to find the command an option belongs to
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        message = message + _suggestion(message, self)
        flag = re.match(r"argument (-[^:]+): ", message)  # "argument --seed: x: must be" -> "--seed x: must be"
        if flag:
            message = f"{flag.group(1)} {message[flag.end():]}"
        self.exit(2, f"{self.prog}: error: {message}\n")


def _options_for(parser: argparse.ArgumentParser, given: list[str]) -> list[str]:
    """The option strings of ``parser`` and of the (nested) command ``given`` names."""
    options = list(parser._option_string_actions)
    for token in given:
        commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if commands and token in commands[0].choices:
            parser = commands[0].choices[token]
            options += parser._option_string_actions
    return options


def _suggestion(message: str, parser: argparse.ArgumentParser) -> str:
    """"; did you mean ...?" for the closest command or option to a mistyped one, else ""."""
    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        close = difflib.get_close_matches(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)), n=1)
        return f"; did you mean '{close[0]}'?" if close else ""
    unknown = re.match(r"unrecognized arguments: (.*)", message)
    if not unknown:
        return ""
    options = _options_for(parser, getattr(parser, "_given", []))
    close = [match for token in unknown.group(1).split() if token.startswith("--")
             for match in difflib.get_close_matches(token.split("=")[0], options, n=1)]
    return f"; did you mean {' '.join(close)}?" if close else ""


def _command_modules():
    modules = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            modules.append(module)
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="spos",
        description="Single Path One-Shot NAS: train a supernet, search it, retrain and export the winner.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"spos {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _command_modules():
        module.register(subparsers)
    return parser


def one_line(error: UserError) -> str:
    """The error's message, also when a DataLoader worker raised it: torch re-raises it in the main
    process with the worker's traceback in the text, whose last line is the message itself."""
    text = str(error).strip()
    if "Original Traceback" not in text:
        return text
    last = text.splitlines()[-1]
    return last.split(": ", 1)[1] if last.split(": ", 1)[0].endswith("UserError") else last


def main(argv: list[str] | None = None) -> int:
    """Run ``spos ARGV``; returns the exit status (2 for a usage error, as argparse gives it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.command_line = list(sys.argv[1:] if argv is None else argv)  # what a stopped run says to type again
    except SystemExit as stop:  # --help, --version and usage errors: their status, returned like any other
        return 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if getattr(args, "plugin", None):
            from spos.space.blocks import load_plugin

            for name in args.plugin:
                load_plugin(name)
        result = run_preemptible(args) if getattr(args, "preemptible", False) else args.func(args)
    except UserError as error:
        print(f"spos {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spos {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the last resort: one line and a log, never a bare traceback
        return last_resort(args.command, error, verbose=args.verbose)
    return int(result or 0)


def _log_name(command: str) -> str:
    return f"spos-{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def last_resort(command: str, error: Exception, *, verbose: bool) -> int:
    """What spos did not foresee: one line naming the error and a log with its full traceback, written
    through the atomic helper into the system's temp folder (exit 1); with ``-v`` the traceback itself.
    A torchvision that cannot run with the installed torch is told as such (exit 2), with what to reinstall."""
    from spos.cli.environment import torchvision_failure

    broken = torchvision_failure(error)
    if broken:
        print(f"spos {command}: error: {broken}", file=sys.stderr)
        return 2
    lost = lost_rank_line(command, error)
    if lost:
        print(lost, file=sys.stderr)
        return 1
    if verbose:
        traceback.print_exception(error, file=sys.stderr)
        return 1
    from spos.io.files import write_text_atomic

    text = f"spos {__version__}, command line: {' '.join(sys.argv)}\n\n" + "".join(traceback.format_exception(error))
    try:
        where = f"please report it with the full log: {write_text_atomic(text, Path(tempfile.gettempdir()) / _log_name(command))}"
    except OSError:
        where = "run again with -v to see the full traceback"
    summary = (str(error).strip().splitlines() or [""])[0][:200]
    print(f"spos {command}: internal error ({type(error).__name__}: {summary}); {where}", file=sys.stderr)
    return 1
