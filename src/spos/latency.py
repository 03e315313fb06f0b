"""Honest latency measurement on this device: warm-up, repeats, median and spread.

CUDA timings synchronise before every clock read; CPU timings pin the thread count so two
runs are comparable. Always report the batch size, threads and device with the numbers.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    stdev_ms: float
    repeats: int
    batch_size: int
    threads: int
    device: str

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.median_ms:.3f} ms median (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}; "
                f"batch {self.batch_size}, {self.repeats} runs, {self.threads} threads, {self.device})")


@contextmanager
def torch_threads(threads: int | None):
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def time_callable(fn: Callable[[], object], *, warmup: int = 10, repeats: int = 50, device: str = "cpu",
                  batch_size: int = 1, threads: int | None = None) -> LatencyStats:
    """Median and spread of ``fn()`` wall-clock time in milliseconds."""
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with torch_threads(threads) as used_threads:
        for _ in range(warmup):
            fn()
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return LatencyStats(
        median_ms=statistics.median(times),
        p10_ms=times[int(0.1 * (len(times) - 1))],
        p90_ms=times[int(0.9 * (len(times) - 1))],
        mean_ms=statistics.fmean(times),
        stdev_ms=statistics.stdev(times) if len(times) > 1 else 0.0,
        repeats=repeats, batch_size=batch_size, threads=used_threads, device=device,
    )


@torch.inference_mode()
def measure_model(model: torch.nn.Module, input_shape: tuple[int, ...], *, batch_size: int = 1,
                  warmup: int = 10, repeats: int = 50, threads: int | None = None, device: str = "cpu"
                  ) -> LatencyStats:
    """Latency of one eval-mode forward pass of ``model`` on a random batch."""
    model = model.eval().to(device)
    x = torch.randn(batch_size, *input_shape, device=device)
    return time_callable(lambda: model(x), warmup=warmup, repeats=repeats, device=device,
                         batch_size=batch_size, threads=threads)
