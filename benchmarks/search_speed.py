"""Candidates scored per second by `spos search`, and the share of search time outside forward passes.

A search's cost should be its forward passes: BN recalibration batches and hold-out batches
through each candidate's path. Everything else (sampling, mutation, crossover, constraint
checks, the cache, history writing, BN resets) is overhead; the target is at most 10% of the
search's time. The supernet's forward is wrapped with a timer for the run.

    python benchmarks/search_speed.py [--input-size 32] [--width-mult 0.5] [--population 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from spos.nn.supernet import SuperNet
from spos.search.run import SearchJob, run_search
from spos.space.searchspace import get_space
from spos.store import checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--width-mult", type=float, default=0.5)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--bn-batches", type=int, default=5)
    parser.add_argument("--eval-batches", type=int, default=2)
    args = parser.parse_args()

    space = get_space("oneshot", input_size=args.input_size, num_classes=10, width_mult=args.width_mult)
    forward_seconds = [0.0]
    original = SuperNet.forward

    def timed_forward(self, x, arch):
        started = time.perf_counter()
        out = original(self, x, arch)
        forward_seconds[0] += time.perf_counter() - started
        return out

    with tempfile.TemporaryDirectory() as scratch:
        supernet_file = Path(scratch) / "supernet.pt"
        checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(space)), supernet_file)
        SuperNet.forward = timed_forward
        try:
            summary = run_search(SearchJob(
                supernet=str(supernet_file), output=str(Path(scratch) / "search"), data="synthetic", holdout=0.2,
                allow_trained_images=True,  # an untrained supernet, timed: which images it scores does not matter
                batch_size=args.batch_size, bn_batches=args.bn_batches, eval_batches=args.eval_batches,
                population=args.population, generations=args.generations, parents=max(2, args.population // 5),
                mutations=args.population // 2, crossovers=args.population // 2, progress=False))
        finally:
            SuperNet.forward = original
    seconds, scored = summary["seconds"], summary["scored"]
    outside = 1 - forward_seconds[0] / seconds
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.input_size}x{args.input_size} "
          f"width x{args.width_mult}, {args.bn_batches} BN + {args.eval_batches} hold-out batches of "
          f"{args.batch_size} per candidate")
    print(f"{scored} candidates in {seconds:.1f} s: {scored / seconds:.2f} candidates/s; "
          f"forward passes {forward_seconds[0]:.1f} s; outside them {100 * outside:.1f}% (target <= 10%)")


if __name__ == "__main__":
    main()
