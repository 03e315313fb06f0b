"""Training-step time of the sliced supernet on a sampled path against the FixedNet of that path.

For each random architecture, one SGD step (forward, backward, update) of the supernet on that
path and of the FixedNet of the same architecture are timed alternately, so drift in the
machine's speed hits both. Prints the median ratio supernet / fixed (target <= 1.15), and for
reference the ratio a masking supernet would pay: the widest path's step against the sampled one.

    python benchmarks/supernet_step.py [--archs 20] [--repeats 3] [--space NAME [--input-size N]]
                                       [--device cuda] [--batch-size B]

On a GPU every timed step ends with a device synchronisation.

Also prints the analytic counter's speed (architectures per second, one at a time) for the space.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from spos.nn.fixed import FixedNet
from spos.nn.supernet import SuperNet
from spos.space.architecture import sample_architecture
from spos.space.flops import cost_table
from spos.space.searchspace import get_space


def step_timer(model, forward, batch, labels):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    loss_fn = torch.nn.CrossEntropyLoss()
    cuda = batch.device.type == "cuda"

    def step() -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(forward(batch), labels).backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return step


def median_step(step, repeats: int) -> float:
    step()  # warm-up
    return statistics.median(step() for _ in range(repeats))


def run(input_size: int, batch_size: int, archs: int, repeats: int, seed: int = 0, space_name: str = "oneshot",
        device: str = "cpu") -> dict:
    space = get_space(space_name, input_size=input_size, num_classes=10 if input_size < 224 else 1000)
    supernet = SuperNet(space).train().to(device)
    rng = random.Random(seed)
    x = torch.randn(batch_size, 3, input_size, input_size, device=device)
    y = torch.randint(0, space.num_classes, (batch_size,), device=device)
    ratios = []
    for _ in range(archs):
        arch = sample_architecture(space, rng)
        fixed = supernet.extract(arch, [(x, y)]).train().to(device)  # BN calibrated on the timed batch
        super_step = step_timer(supernet, lambda b, a=arch: supernet(b, a), x, y)
        fixed_step = step_timer(fixed, fixed, x, y)
        times_super, times_fixed = [], []
        super_step(), fixed_step()
        for _ in range(repeats):
            times_super.append(super_step())
            times_fixed.append(fixed_step())
        ratios.append(statistics.median(times_super) / statistics.median(times_fixed))
    wide = FixedNet(space, cost_table(space).extremes()[0]).train().to(device)
    wide_time = median_step(step_timer(wide, wide, x, y), repeats)
    typical = statistics.median(
        median_step(step_timer(f, f, x, y), repeats)
        for f in (FixedNet(space, sample_architecture(space, rng)).train().to(device) for _ in range(3)))
    return {"input": f"{batch_size}x3x{input_size}x{input_size}", "archs": archs,
            "median_ratio": statistics.median(ratios), "max_ratio": max(ratios),
            "widest_over_typical": wide_time / typical}


def counter_speed(space, count: int = 20000) -> float:
    """Architectures per second through `CostTable.cost`, one at a time (as a search filters them)."""
    table, rng = cost_table(space), random.Random(0)
    archs = [sample_architecture(space, rng) for _ in range(count)]
    start = time.perf_counter()
    for arch in archs:
        table.cost(arch)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--space", default="oneshot", help="a preset or space file (default oneshot)")
    parser.add_argument("--input-size", type=int, default=None, help="one input size (default: 32 and 224)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 64 at 32x32, 16 at 224x224")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, space {args.space}")
    print(f"analytic counter: {counter_speed(get_space(args.space)):,.0f} architectures/s (target >= 10,000)")
    sizes = ((32, 64), (224, 16)) if args.input_size is None else ((args.input_size, 64 if args.input_size < 224 else 16),)
    for input_size, batch_size in sizes:
        r = run(input_size, args.batch_size or batch_size, args.archs, args.repeats, space_name=args.space,
                device=args.device)
        print(f"{r['input']:>16}: supernet/fixed step time median {r['median_ratio']:.3f} "
              f"(max {r['max_ratio']:.3f}) over {r['archs']} archs; target <= 1.15")
        print(f"{'':>16}  widest path / typical sampled path {r['widest_over_typical']:.2f}x "
              "(what a masking supernet pays every step)")


if __name__ == "__main__":
    main()
