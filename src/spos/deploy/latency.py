"""Honest latency measurement on this device: warm-up, repeats, median and spread.

CUDA timings synchronise before every clock read; CPU timings pin the thread count so two
runs are comparable. Always report the batch size, threads and device with the numbers.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import torch

from spos.io.schema import FINITE, MayBeMissing


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


# -- per-layer lookup table ------------------------------------------------------------------------

LATENCY_TABLE_VERSION = 1
#: Above this mean error of the predictor against measured networks a table is reported with a warning.
ERROR_WARN_PCT = 15.0


@dataclass
class LatencyTable:
    """Milliseconds of every (layer, block, channel) choice on one device, plus stem and head.

    ``predict(arch)`` sums one entry per layer and the fixed parts, plus ``offset_ms``: what a
    whole network costs beyond its layers timed one by one (framework overhead, cache effects),
    fitted on a few measured networks when the table is built. ``check`` is the predictor's error
    against other random networks measured when it was built (`check_table`): the same device can
    give a table within 6% or beyond 40% of the truth (a machine busy with other work), and only a
    measurement tells which.
    """

    space: dict
    layers: list[list[list[float]]]
    stem_ms: float
    head_ms: float
    offset_ms: float
    batch_size: int
    threads: int
    device: str
    check: dict | None = None  # {"archs": N, "mean_error_pct": ..., "max_error_pct": ...}; None: not checked

    @cached_property
    def search_space(self):
        """The space the table was built for (parsed once: `predict` runs for every search candidate)."""
        from spos.space.searchspace import SearchSpace

        return SearchSpace.from_dict(self.space)

    def predict(self, arch) -> float:
        arch.validate(self.search_space)
        body = sum(self.layers[i][b][c] for i, (b, c) in enumerate(zip(arch.blocks, arch.channels)))
        return self.stem_ms + body + self.head_ms + self.offset_ms

    def differences(self, space) -> list[str]:
        """``key: table's value (here: space's)`` for every field of the space that differs from the table's."""
        here = space.to_dict()
        return [f"{key} {self.space.get(key)!r} (here {here.get(key)!r})" for key in dict.fromkeys([*self.space, *here])
                if self.space.get(key) != here.get(key)]

    def error_text(self) -> str:
        """The predictor's measured error in words, with a warning when it is above `ERROR_WARN_PCT`."""
        if not self.check:
            return "predictor error not measured (built without a check); rebuild it with `spos latency table`"
        text = (f"predictor error on {self.check['archs']} random architectures measured when it was built: mean "
                f"{self.check['mean_error_pct']:.1f}%, max {self.check['max_error_pct']:.1f}%")
        if self.check["mean_error_pct"] > ERROR_WARN_PCT:
            text = (f"warning: {text}, above {ERROR_WARN_PCT:g}%: rebuild it with the thread count the device will "
                    "use, on an otherwise idle device")
        return text

    def save(self, path) -> Path:
        from spos.io.files import write_text_atomic

        data = {"version": LATENCY_TABLE_VERSION, **asdict(self)}
        return write_text_atomic(json.dumps(data), path)


#: The fields of a latency table file (a `spos.io.schema` schema); ``layers`` is checked against the space.
#: ``check`` (the predictor's measured error) is absent from tables built before it was recorded.
TABLE_FIELDS = {"version": int, "space": dict, "layers": list, "stem_ms": FINITE, "head_ms": FINITE,
                "offset_ms": FINITE, "batch_size": int, "threads": int, "device": str,
                "check": MayBeMissing(({"archs": int, "mean_error_pct": FINITE, "max_error_pct": FINITE}, None))}


def load_latency_table(path) -> LatencyTable:
    from spos.errors import UserError, naming
    from spos.io.schema import check, shown

    path = Path(path)
    if not path.is_file():
        raise UserError(f"latency table {path} does not exist; build one with `spos latency table`")
    rebuild = "rebuild it with `spos latency table`"
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError) as error:
        raise UserError(f"{path} is not a spos latency table ({error}); {rebuild}") from None
    if (not isinstance(data, dict) or data.get("version") != LATENCY_TABLE_VERSION
            or not set(TABLE_FIELDS) - {"check"} <= set(data) <= set(TABLE_FIELDS)):
        raise UserError(f"{path} is not a spos latency table of version {LATENCY_TABLE_VERSION} (it holds "
                        f"{shown(data)}); {rebuild}")
    where = f"latency table {path}"
    check(data, TABLE_FIELDS, where, rebuild)
    table = LatencyTable(**{key: data[key] for key in TABLE_FIELDS if key in data and key != "version"})
    with naming(where):
        _check_timings(table.layers, table.search_space, rebuild)
    return table


def _check_timings(layers, space, rebuild: str) -> None:
    """One row of milliseconds per candidate op of every layer, one entry per width choice."""
    from spos.errors import UserError
    from spos.io.schema import check

    if len(layers) != space.num_layers:
        raise UserError(f"{len(layers)} layers, but its space has {space.num_layers}; {rebuild}")
    for spec, rows in zip(space.layers(), layers):
        check(rows, [[FINITE]], f"layer {spec.index}: timings", rebuild)
        if len(rows) != len(spec.ops) or any(len(row) != space.num_channels for row in rows):
            raise UserError(f"layer {spec.index} needs {len(spec.ops)} rows of {space.num_channels} timings; {rebuild}")
        if min((ms for row in rows for ms in row), default=0) < 0:
            raise UserError(f"layer {spec.index} has a negative timing; {rebuild}")


@torch.inference_mode()
def build_latency_table(space, *, batch_size: int = 1, threads: int | None = None, device: str = "cpu",
                        warmup: int = 5, repeats: int = 20, calibration_archs: int = 5, seed: int = 0,
                        check_archs: int = 5, progress: bool = False) -> LatencyTable:
    """Time every choice of every distinct layer shape alone, fit the whole-network offset, then measure
    the predictor's error on ``check_archs`` other random networks (0: none) and record it in the table."""
    import random

    from tqdm import tqdm

    from spos.nn.fixed import FixedNet, Head, build_stem
    from spos.nn.ops import static_block
    from spos.space.architecture import sample_architecture

    def timed(module, shape) -> float:
        return measure_model(module, shape, batch_size=batch_size, warmup=warmup, repeats=repeats,
                             threads=threads, device=device).median_ms

    layout = space.layout
    specs = layout.layers
    distinct = {spec.shape: spec for spec in specs}  # time each distinct layer once
    cells = sum(len(spec.ops) for spec in distinct.values()) * space.num_channels
    bar = tqdm(total=cells, desc="latency table", disable=not progress, leave=False)
    timings: dict = {}
    for key, spec in distinct.items():
        shape = (spec.in_channels, spec.in_size, spec.in_size)
        rows = []
        for op, name in enumerate(spec.ops):
            row = []
            for mid in spec.mid_widths[op]:
                row.append(timed(static_block(spec, name, mid), shape))
                bar.update(1)
            rows.append(row)
        timings[key] = rows
    bar.close()
    stem_ms = timed(build_stem(layout.stem), layout.input_shape)
    head = layout.head
    head_ms = timed(Head(head), (head.in_channels, head.in_size, head.in_size))
    table = LatencyTable(space.to_dict(), [timings[spec.shape] for spec in specs], stem_ms, head_ms, 0.0,
                         batch_size, torch_threads_in_use(threads), device)
    rng = random.Random(seed)
    residuals = []
    for _ in range(calibration_archs):
        arch = sample_architecture(space, rng)
        measured = timed(FixedNet(space, arch), layout.input_shape)
        residuals.append(measured - table.predict(arch))
    table.offset_ms = statistics.median(residuals) if residuals else 0.0
    if check_archs:
        errors = predictor_errors(table, space, check_archs, timed)
        table.check = {"archs": check_archs, "mean_error_pct": 100 * statistics.fmean(errors),
                       "max_error_pct": 100 * max(errors)}
    return table


def predictor_errors(table: LatencyTable, space, archs: int, timed: Callable, seed: int = 12345) -> list[float]:
    """|predicted - measured| / measured for ``archs`` random architectures drawn from their own seed
    (not the offset's networks), each measured whole with ``timed(module, input_shape)``."""
    import random

    from spos.nn.fixed import FixedNet
    from spos.space.architecture import sample_architecture

    rng, shape = random.Random(seed), space.layout.input_shape
    errors = []
    for _ in range(archs):
        arch = sample_architecture(space, rng)
        measured = timed(FixedNet(space, arch), shape)
        errors.append(abs(table.predict(arch) - measured) / measured)
    return errors


def torch_threads_in_use(threads: int | None) -> int:
    with torch_threads(threads) as used:
        return used
