"""Images/s and GPU utilisation of the oneshot supernet at 224 fed by the CPU loader or by DALI (GPU only).

Writes an ImageFolder of real-sized JPEGs (benchmarks/input_pipeline.py's) when --make N is given,
then times, for the chosen --loader, the loader alone and the loader feeding supernet training
steps (random paths, SGD, bf16 autocast), sampling `nvidia-smi` utilisation while the steps run.
Usage: python benchmarks/loader_throughput.py --root DIR [--make 4096] --loader torch|dali [--workers 16]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import threading
import time
from pathlib import Path

import torch
from input_pipeline import write_jpegs


def make_folder(root: Path, count: int) -> None:
    for split, n in (("train", count), ("val", 64)):
        for cls in ("a", "b"):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            write_jpegs(folder, n // 2, seed=hash((split, cls)) % 1000)


def gpu_utilisation(samples: list, stop: threading.Event) -> None:
    while not stop.is_set():
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True)
        if out.returncode == 0:
            samples.append(float(out.stdout.split()[0]))
        time.sleep(0.5)


def build(args, splits, device):
    from spos.data.conventions import input_convention
    from spos.data.loaders import build_loader

    if args.loader == "dali":
        from spos.data.dali import DaliBatches, check_dali

        check_dali("imagefolder", str(device))
        return DaliBatches(splits.train, batch_size=args.batch_size, seed=0, rank=0, world=1, device=device,
                           input_size=224, info=splits.info, convention=input_convention(None), threads=args.workers)
    return build_loader(splits.train, batch_size=args.batch_size, train=True, workers=args.workers, device="cuda")


def timed(loader, steps: int, step=None) -> float:
    """Images/s over ``steps`` batches after 3 warm-up batches (the loader restarted as needed)."""
    done, seen, start = 0, 0, None
    while done < steps + 3:
        for x, y in loader:
            x = x.cuda(non_blocking=True)
            if step is not None:
                step(x, y.cuda(non_blocking=True))
            done += 1
            if done == 3:
                torch.cuda.synchronize()
                start = time.perf_counter()
            elif done > 3:
                seen += len(x)
            if done == steps + 3:
                break
    torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--make", type=int, default=0)
    parser.add_argument("--loader", choices=("torch", "dali"), default="torch")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    from spos.data.datasets import build_datasets
    from spos.nn.supernet import SuperNet
    from spos.space.architecture import sample_architecture
    from spos.space.searchspace import get_space

    root = Path(args.root)
    if args.make:
        make_folder(root, args.make)
    splits = build_datasets("imagefolder", root, input_size=224)
    device = torch.device("cuda")
    loader = build(args, splits, device)
    alone = timed(loader, args.steps)
    model = SuperNet(get_space("oneshot", num_classes=splits.info.num_classes)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = random.Random(0)

    def step(x, y):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x, sample_architecture(model.space, rng)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    samples, stop = [], threading.Event()
    watcher = threading.Thread(target=gpu_utilisation, args=(samples, stop), daemon=True)
    watcher.start()
    training = timed(loader, args.steps, step)
    stop.set()
    utilisation = sum(samples) / max(len(samples), 1)
    print(f"loader {args.loader} ({args.workers} workers/threads), batch {args.batch_size}: loader alone "
          f"{alone:.0f} img/s; feeding oneshot supernet steps at 224 (bf16) {training:.0f} img/s, GPU utilisation "
          f"{utilisation:.0f}% (mean of {len(samples)} samples)")


if __name__ == "__main__":
    main()
