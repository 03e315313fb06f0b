"""`spos demo`: the whole pipeline on the embedded digits (or a real dataset), with a report."""

from __future__ import annotations

from spos.cli._common import add_command

ORDER = 0


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "demo", help="run the whole pipeline on small data in minutes and write a report",
        description="Train a small supernet, search it under a FLOPs limit, check the supernet's ranking against "
                    "stand-alone accuracies measured beforehand (shipped for the digits default), retrain the "
                    "searched architecture from scratch, export it to ONNX, and write a report folder (report.md, "
                    "PNG plots, checkpoints, the ONNX file). With no arguments it runs on the embedded digits data "
                    "in about 2 minutes on an idle 2-core CPU machine without a GPU: 119 s measured there.",
        example="spos demo                      # digits, needs nothing but the install\n"
                "  spos demo --data cifar10 --data-root /data/cifar10 --download --output runs/cifar-demo\n"
                "  spos demo --space mbv2-macro-cifar --data cifar10 --data-root /data/cifar10 --output runs/mbv2-demo")
    parser.add_argument("--data", default="digits", help="digits (default, embedded), mnist, cifar10, cifar100, "
                                                         "synthetic")
    parser.add_argument("--data-root", default=None, help="dataset folder for mnist / cifar10 / cifar100, e.g. ~/data/mnist "
                                                            "(layouts: the README's Datasets section)")
    parser.add_argument("--download", action="store_true",
                        help="fetch mnist / cifar10 / cifar100 into --data-root first if missing (needs internet)")
    parser.add_argument("--space", default=None,
                        help="search space: a preset (e.g. mbv2-macro-cifar) or a space YAML file "
                             "(default: the config's, oneshot)")
    parser.add_argument("--output", default=None, help="report folder, must be empty or new "
                                                       "(default: runs/demo, runs/demo-2, ...)")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="scale every epoch and generation count (0.5 = half as long; default 1)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for training, the search and the ranking check's BN batches (default 0)")
    parser.add_argument("--resume", action="store_true",
                        help="continue a killed demo in --output with its saved settings")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args) -> int:
    from spos.demo.pipeline import default_output, demo_settings, run_demo
    from spos.demo.report import ranking_line
    from spos.errors import UserError
    from spos.space.flops import readable

    settings = demo_settings(args.data, data_root=args.data_root, download=args.download, budget=args.budget,
                             seed=args.seed, progress=not args.no_progress, space=args.space)
    if args.resume and not args.output:
        raise UserError("--resume needs --output: the folder of the demo to continue")
    output = args.output or default_output()
    summary = run_demo(settings, output, resume=args.resume)
    best = summary["best"]
    print(f"\nsearched {best['arch']}: {readable(best['flops'])} FLOPs, retrained val top-1 "
          f"{100 * best['best_val_top1']:.1f}%"
          f"\nranking: {ranking_line(summary)}"
          f"\n\nreport:   {output}/report.md\nplots:    {output}/*.png, {output}/search/*.png"
          f"\nONNX:     {summary['onnx']['path']} ({summary['onnx']['weights']} weights, those its val top-1 "
          f"measured)\nsupernet: {summary['supernet']['checkpoint']}"
          f"\nretrained: {best['checkpoint']}\ntotal {summary['seconds']['total']:.0f} s")
    return 0
