"""Images per second per CPU core of the ImageNet recipe's input pipeline, PIL against torchvision tensors.

It writes a folder of real-sized JPEGs (about 500x375, quality 90, smooth colour fields with
texture, so the decoder does real work), then times, in this one process on one thread (one
DataLoader worker = one core), the training transform from file to normalised tensor:

- ``pil``: what spos did before (PIL decode, RandomResizedCrop, flip, ColorJitter, ToTensor,
  normalise);
- ``tensor``: ``torchvision.io.decode_jpeg`` and ``torchvision.transforms.v2`` on uint8 tensors,
  the same steps, as ``spos.data.datasets`` now builds them;
- each also without ColorJitter (decode + crop + flip + normalise, the issue's minimum), and the
  evaluation transform (resize 256, centre crop 224).

Pillow-SIMD cannot be installed beside Pillow; ``--pillow-simd DIR`` re-runs the PIL rows in a
child process with DIR (a ``pip install --target`` of pillow-simd) first on the path.
Usage: python benchmarks/input_pipeline.py [--images 48] [--repeats 3] [--pillow-simd DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SIZES = ((500, 375), (375, 500), (500, 333), (480, 360))


def write_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        w, h = SIZES[i % len(SIZES)]
        coarse = Image.fromarray(rng.integers(0, 256, (h // 25, w // 25, 3), dtype=np.uint8)).resize((w, h),
                                                                                                      Image.BICUBIC)
        pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 13, (h, w, 3))
        path = folder / f"{i:04d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def pipelines(jitter: bool) -> dict:
    from torchvision import transforms
    from torchvision.transforms import v2

    from spos.data.conventions import IMAGENET_MEAN, IMAGENET_STD
    from spos.data.datasets import _read_image, read_image_tensor

    colour = [transforms.ColorJitter(0.4, 0.4, 0.4)] if jitter else []
    pil = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), *colour,
                              transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    tensor = v2.Compose([v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip(),
                         *([v2.ColorJitter(0.4, 0.4, 0.4)] if jitter else []), v2.ToDtype(torch.float32, scale=True),
                         v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    pil_eval = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                   transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    tensor_eval = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224),
                              v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    suffix = "" if jitter else " (no ColorJitter)"
    rows = {f"pil train{suffix}": lambda p: pil(_read_image(str(p))),
            f"tensor train{suffix}": lambda p: tensor(read_image_tensor(str(p)))}
    if jitter:
        rows.update({"pil eval": lambda p: pil_eval(_read_image(str(p))),
                     "tensor eval": lambda p: tensor_eval(read_image_tensor(str(p)))})
    return rows


def time_rows(paths: list[Path], repeats: int, only_pil: bool = False) -> dict[str, float]:
    """Best-of-``repeats`` images/s of every row, rows interleaved so machine load hits them alike."""
    torch.set_num_threads(1)
    rows = {**pipelines(True), **pipelines(False)}
    if only_pil:
        rows = {name: run for name, run in rows.items() if name.startswith("pil")}
    best = {name: 0.0 for name in rows}
    for _ in range(repeats):
        for name, run in rows.items():
            run(paths[0])  # warm
            start = time.perf_counter()
            for path in paths:
                run(path)
            best[name] = max(best[name], len(paths) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pillow-simd", default=None, metavar="DIR")
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)  # the child's: reuse the parent's JPEGs
    parser.add_argument("--only-pil", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.folder or scratch)
        paths = sorted(folder.glob("*.jpg")) if args.folder else write_jpegs(folder, args.images)
        if args.only_pil:
            print(json.dumps(time_rows(paths, args.repeats, only_pil=True)))
            return
        import PIL
        import torchvision

        print(f"{len(paths)} JPEGs ~500x375 q90; 1 thread; torch {torch.__version__}, torchvision "
              f"{torchvision.__version__}, Pillow {PIL.__version__}; best of {args.repeats}")
        results = time_rows(paths, args.repeats)
        if args.pillow_simd:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([args.pillow_simd, os.environ.get("PYTHONPATH", "")])}
            child = subprocess.run([sys.executable, __file__, "--folder", str(folder), "--only-pil", "--repeats",
                                    str(args.repeats)], env=env, capture_output=True, text=True, check=True)
            results.update({name.replace("pil", "pillow-simd", 1): v
                            for name, v in json.loads(child.stdout.splitlines()[-1]).items()})
    reference = results["pil train"]
    print("| pipeline | images/s/core | x PIL | 16 cores | 64 cores |\n|---|---|---|---|---|")
    for name, rate in results.items():
        print(f"| {name} | {rate:.0f} | {rate / reference:.2f} | {16 * rate:,.0f} | {64 * rate:,.0f} |")


if __name__ == "__main__":
    main()
