"""Images/s of `spos train` (and `spos train-supernet`) against a minimal hand-written loop.

Both train the same network on the same in-memory batches with the same optimizer; the
hand-written loop is what a user would write in ten lines (forward, loss, backward, step), so
the ratio is spos's overhead: its scheduler, sampler, metrics, progress and checkpoint
bookkeeping. Runs alternate (hand, spos, hand, spos, ...) so drift hits both. spos's figure is
its own images/s over the training epochs after the first (validation and checkpoint writing
happen between epochs and are not in it; neither is the hand loop's first epoch).

    python benchmarks/train_throughput.py [--input-size 32] [--width-mult 0.5] [--rounds 3]
                                          [--device cuda] [--amp bf16]

On a GPU both loops run there (``--amp bf16``: both under the same autocast), and each epoch's
time ends with a device synchronisation.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from spos.data.datasets import build_datasets
from spos.data.loaders import build_loader
from spos.train.config import load_config
from spos.train.loop import Trainer
from spos.train.sampler import PathSampler
from spos.train.setup import build_model


def spos_images_per_s(config: dict) -> float:
    with tempfile.TemporaryDirectory() as out:
        history = Trainer(config, out, progress=True).run().history[1:]
    return sum(r["images_per_s"] * r["train_seconds"] for r in history) / sum(r["train_seconds"] for r in history)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hand_images_per_s(config: dict, epochs: int) -> float:
    """The ten-line loop: same model, data order, optimizer and loss as the spos run."""
    torch.manual_seed(config["train"]["seed"])
    device = torch.device(config["train"]["device"] or "cpu")
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config["train"]["amp"])
    splits = build_datasets("synthetic", input_size=config["space"]["input_size"])
    model = build_model(config, splits.info).to(device)
    supernet = config["kind"] == "supernet"
    optimizer = torch.optim.SGD(model.parameters(), lr=config["optim"]["lr"], momentum=0.9, nesterov=True,
                                weight_decay=config["optim"]["weight_decay"])
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config["train"]["label_smoothing"])
    loader = build_loader(splits.train, batch_size=config["data"]["batch_size"], train=True)
    # the same paths as the spos run: a path's cost depends on its widths, so other paths would be noise
    sampler = PathSampler(model.space, config["train"]["seed"]) if supernet else None
    model.train()
    seen, elapsed = 0, 0.0
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        started = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                out = model(x, sampler.sample()) if supernet else model(x)
                loss = loss_fn(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if epoch > 0:
                seen += len(y)
        synchronize(device)
        if epoch > 0:
            elapsed += time.perf_counter() - started
    return seen / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--width-mult", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4, help="epochs of 512 synthetic images per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--amp", choices=("bf16", "fp16"), default=None, help="autocast both loops (CUDA only)")
    args = parser.parse_args()
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, batch {args.batch_size} x {args.input_size}x{args.input_size}, "
          f"width x{args.width_mult}, amp {args.amp or 'off'}")
    for kind, name in (("fixed", "digits-retrain"), ("supernet", "digits-supernet")):
        overrides = ["data.name=synthetic", f"space.input_size={args.input_size}",
                     f"space.width_mult={args.width_mult}", f"data.batch_size={args.batch_size}",
                     f"train.epochs={args.epochs}", "data.holdout=0", "train.label_smoothing=0.1",
                     "schedule.warmup_epochs=0", "validation.paths=1", "validation.bn_batches=1",
                     f"train.device={args.device}", *([f"train.amp={args.amp}"] if args.amp else [])]
        config = load_config(name, overrides)
        ratios, spos_rates, hand_rates = [], [], []
        for _ in range(args.rounds):
            hand = hand_images_per_s(config, args.epochs)
            ours = spos_images_per_s(config)
            hand_rates.append(hand)
            spos_rates.append(ours)
            ratios.append(hand / ours)
        overhead = 100 * (statistics.median(ratios) - 1)
        print(f"{kind:>8}: hand loop {statistics.median(hand_rates):7.1f} img/s, spos {statistics.median(spos_rates):7.1f}"
              f" img/s; spos overhead {overhead:+.1f}% (median of {args.rounds} rounds: "
              f"{', '.join(f'{100 * (r - 1):+.1f}%' for r in ratios)}; target <= 5%)")


if __name__ == "__main__":
    main()
