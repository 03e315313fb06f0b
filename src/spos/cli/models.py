"""`spos zoo` and `spos profile`: what the named architectures cost, counted and reported."""

from __future__ import annotations

import json

from spos.cli._common import add_command, positive_int, width_mult
from spos.space.searchspace import PRESETS

ORDER = 10


def register(subparsers) -> None:
    zoo = add_command(subparsers, "zoo", help="list the named architectures with counted and reported figures",
                      description="List the model zoo: each architecture's space, the FLOPs (multiply-adds) "
                                  "and parameters spos counts, and the figures its authors reported.",
                      example="spos zoo --markdown")
    form = zoo.add_mutually_exclusive_group()  # one output form: asking for two is refused, not half-done
    form.add_argument("--markdown", action="store_true", help="print a Markdown table (as in the README)")
    form.add_argument("--json", action="store_true", help="print one JSON object")
    zoo.set_defaults(func=run_zoo)

    profile = add_command(subparsers, "profile", help="FLOPs, params and measured CPU latency of one network",
                          description="Count FLOPs (multiply-adds) and parameters of an architecture and measure "
                                      "its latency on this machine.",
                          example="spos profile oneshot --input-size 224 --json")
    profile.add_argument("arch", metavar="NAME_OR_ARCH_FILE",
                         help="a zoo name, an architecture file from `spos search`, or 'B,..,B/C,..,C'")
    add_space_arguments(profile)
    profile.add_argument("--batch-size", type=positive_int, default=1, help="batch size for the latency (default 1)")
    profile.add_argument("--repeats", type=positive_int, default=30, help="timed runs (default 30)")
    profile.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: PyTorch's)")
    profile.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    profile.add_argument("--json", action="store_true", help="print one JSON object")
    profile.set_defaults(func=run_profile)


def add_space_arguments(parser, space_default: str = "the architecture's") -> None:
    """The options that pick or adapt a search space; shared by every command that builds a network.

    ``space_default`` is what --help names as the default: a command that takes no architecture
    falls back to a preset, not to "the architecture's".
    """
    parser.add_argument("--space", default=None,
                        help=f"search space: a preset ({', '.join(PRESETS)}) or a space YAML file "
                             f"(default: {space_default})")
    parser.add_argument("--input-size", type=positive_int, default=None, help="input side in pixels (default: the space's)")
    parser.add_argument("--num-classes", type=positive_int, default=None, help="classes (default: the space's)")
    parser.add_argument("--in-channels", type=positive_int, default=None, help="image channels, 1 for grey (default 3)")
    parser.add_argument("--width-mult", type=width_mult, default=1.0, help="scale every width (default 1.0)")


def space_adaptation(args) -> dict:
    adapt = {"width_mult": args.width_mult}
    if args.input_size is not None:
        adapt["input_size"] = args.input_size
    if args.num_classes is not None:
        adapt["num_classes"] = args.num_classes
    if args.in_channels is not None:
        adapt["in_channels"] = args.in_channels
    return adapt


def resolve_from_args(args):
    from spos.space.searchspace import get_space
    from spos.space.zoo import resolve_architecture

    adapt = space_adaptation(args)
    space = get_space(args.space, **adapt) if args.space else None
    return resolve_architecture(args.arch, space=space, **adapt)


def run_zoo(args) -> int:
    from spos.space.zoo_table import zoo_rows, zoo_table

    rows = zoo_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(zoo_table(rows, markdown=args.markdown))
    return 0


def run_profile(args) -> int:
    from spos.deploy.latency import measure_model
    from spos.nn.fixed import FixedNet
    from spos.space.flops import count

    arch, space = resolve_from_args(args)
    cost = count(space, arch)
    result = {"arch": str(arch), "space": space.name, "input_size": space.input_size,
              "flops": cost.macs, "params": cost.params}
    if not args.no_latency:
        net = FixedNet(space, arch)
        stats = measure_model(net, space.layout.input_shape,
                              batch_size=args.batch_size, repeats=args.repeats, threads=args.threads)
        result["latency"] = stats.to_dict()
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"architecture  {arch}  (space {space.name}, {space.input_size}x{space.input_size})")
    print(f"FLOPs         {cost.macs / 1e6:.1f}M multiply-adds")
    print(f"params        {cost.params / 1e6:.3f}M")
    if "latency" in result:
        print(f"latency       {stats}")
    return 0
