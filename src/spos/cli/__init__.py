"""The `spos` command line: argument parsing only, the work is done by the library modules.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed namespace. Modules are discovered, so adding a command touches no other file.
``ORDER`` (an int, default 100) sets the order in ``spos --help``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from spos import __version__
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
    """argparse with exit status 2 and one line for every usage error."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


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
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if getattr(args, "plugin", None):
            from spos.blocks import load_plugin

            for name in args.plugin:
                load_plugin(name)
        result = args.func(args)
    except UserError as error:
        print(f"spos {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spos {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
