"""`spos bench`: read (or fetch) a tabular benchmark and say what it holds in spos's terms."""

from __future__ import annotations

from spos.cli._common import add_command

ORDER = 36


def register(subparsers) -> None:
    from spos.bench.tables import BENCHMARKS

    parser = add_command(
        subparsers, "bench",
        help="read a tabular NAS benchmark (NAS-Bench-Macro) into spos's terms, or --download it",
        description="Read a table of architectures trained alone (NAS-Bench-Macro: all 6,561 architectures of "
                    "the mbv2-macro-cifar space on CIFAR-10, 3 seeds each) and report it in spos's terms: its "
                    "space, distinct networks (twins, an identity moved within a stage, are one), FLOPs, "
                    "accuracies, the best network, how well its seeds agree, and whether spos's own FLOPs and "
                    "params counts equal the table's. `spos rank --benchmark NAME` then ranks a supernet "
                    "against it and `spos search --benchmark NAME` runs the search engine against it.",
        example="spos bench nas-bench-macro --download   # once; then: spos search --benchmark nas-bench-macro")
    parser.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark")
    parser.add_argument("--benchmark-file", default=None, metavar="FILE",
                        help="the table (default: where --download puts it, $SPOS_BENCHMARKS or "
                             "~/.cache/spos/benchmarks/)")
    parser.add_argument("--download", action="store_true",
                        help="fetch the table from its authors' repository (checked by sha256) unless it is there")
    parser.add_argument("--ground-truth", default=None, metavar="FILE",
                        help="also write a ground-truth file for `spos rank --ground-truth` (one line per network, "
                             "mean accuracy as a fraction)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from spos.bench.tables import download_benchmark, load_benchmark, summary, write_ground_truth
    from spos.io.files import check_output_file

    if args.ground_truth:
        check_output_file(args.ground_truth, force=False)
    if args.download:
        print(f"{args.name}: {download_benchmark(args.name, args.benchmark_file)}")
    benchmark = load_benchmark(args.name, args.benchmark_file)
    facts = summary(benchmark)
    low, median, high = facts["accuracy"]
    print(f"{facts['name']}: {facts['keys']:,} architectures, {facts['networks']:,} distinct networks (twins: an "
          f"identity moved within a stage), space {facts['space']} at width 1.0, "
          f"{benchmark.space.input_size}x{benchmark.space.input_size} input")
    mismatches = facts["count_mismatches"]
    check = (f"spos's counts equal the table's for all {facts['keys']:,}" if not mismatches else
             f"spos's counts differ from the table's for {len(mismatches)} (first: {mismatches[0]})")
    print(f"  FLOPs {facts['flops'][0] / 1e6:.1f}M-{facts['flops'][1] / 1e6:.1f}M multiply-adds, params "
          f"{facts['params'][0] / 1e6:.2f}M-{facts['params'][1] / 1e6:.2f}M: {check}")
    print(f"  accuracy (mean of {facts['seeds']} stand-alone runs): {100 * low:.2f}%-{100 * high:.2f}%, median "
          f"{100 * median:.2f}%; best {facts['best']['key']} = {facts['best']['arch']} "
          f"({100 * facts['best']['accuracy']:.2f}%, {facts['best']['flops'] / 1e6:.1f}M FLOPs)")
    if facts["seed_tau"] is not None:
        print(f"  seeds agree at Kendall tau {facts['seed_tau']:.3f} (mean over seed pairs, every network)")
    print(f"  file: {facts['file']}\n  cite: {facts['citation']}")
    if args.ground_truth:
        print(f"ground truth: {write_ground_truth(benchmark, args.ground_truth)}")
    return 0
