"""Which architectures a rank job ranks: drawn spread evenly over the FLOPs range (or inside a window), read from a list, or the networks of a ground-truth file or table; twins (spos.space.canonical) count as one."""

from __future__ import annotations

import csv
import json
import logging
import math
import random
from pathlib import Path
from typing import TYPE_CHECKING

from spos.errors import UserError, naming
from spos.space.architecture import Architecture, sample_architecture
from spos.space.canonical import canonicalizer, distinct
from spos.space.flops import CostTable, cost_table
from spos.space.searchspace import SearchSpace

if TYPE_CHECKING:
    from spos.rank.job import RankJob

log = logging.getLogger(__name__)


STRATIFY = ("flops", "none")



POOL_PER_ARCH = 50



MAX_DRAW_ROUNDS = 200  # pools drawn for a narrow FLOPs window before giving up



def flops_spread_pool(space: SearchSpace, size: int, rng: random.Random) -> list[Architecture]:
    """Random paths whose channel choices share a random window per path, so light and heavy
    architectures both occur (uniform paths crowd around the median FLOPs)."""
    pool = []
    for _ in range(size):
        low = rng.randrange(space.num_channels)
        high = rng.randrange(low, space.num_channels)
        blocks = tuple(rng.randrange(count) for count in space.op_counts)
        channels = tuple(rng.randint(low, high) for _ in range(space.num_layers))
        pool.append(Architecture(blocks, channels))
    return pool



def spread_over_flops(candidates: list[Architecture], count: int, table: CostTable) -> list[Architecture]:
    """``count`` distinct candidates, the closest to evenly spaced FLOPs between the lightest and heaviest."""
    unique = list(dict.fromkeys(candidates))
    if count > len(unique):
        raise UserError(f"asked for {count} architectures but only {len(unique)} distinct ones are available")
    flops = [table.macs(arch) for arch in unique]
    low, high = min(flops), max(flops)
    targets = [low + (high - low) * i / max(count - 1, 1) for i in range(count)]
    available = set(range(len(unique)))
    chosen = []
    for target in targets:
        best = min(available, key=lambda j: (abs(flops[j] - target), j))
        available.remove(best)
        chosen.append(unique[best])
    return sorted(chosen, key=table.macs)



def draw_architectures(space: SearchSpace, count: int, stratify: str, seed: int,
                       flops_min: float | None = None, flops_max: float | None = None) -> list[Architecture]:
    """``count`` architectures, spread over the FLOPs range (or uniformly random paths), inside
    [flops_min, flops_max] when given: a narrow window ranks what a constrained search compares."""
    if stratify not in STRATIFY:
        raise UserError(f"--stratify {stratify!r}: use one of {', '.join(STRATIFY)}")
    rng = random.Random(seed)
    table = cost_table(space)
    inside = flops_window(flops_min, flops_max)
    wanted = count if stratify == "none" else POOL_PER_ARCH * count
    found: list[Architecture] = []
    for _ in range(MAX_DRAW_ROUNDS):  # one round when there is no window
        batch = ([sample_architecture(space, rng) for _ in range(count)] if stratify == "none"
                 else flops_spread_pool(space, wanted, rng))
        found += [arch for arch in batch if inside(table.macs(arch))]
        if len(found) >= wanted:
            break
    found = found[:wanted]
    if (flops_min is not None or flops_max is not None) and len(set(found)) < count:
        raise UserError(f"only {len(set(found))} distinct architectures with FLOPs in "
                        f"{_window_text(flops_min, flops_max)} turned up in {MAX_DRAW_ROUNDS} rounds of draws; "
                        "widen --flops-min/--flops-max or ask for fewer --archs")
    if stratify == "none":
        return sorted(dict.fromkeys(found), key=table.macs)
    return spread_over_flops(found, count, table)



def flops_window(low: float | None, high: float | None):
    """A test ``flops -> bool`` for [low, high] (either side open when None)."""
    if low is not None and high is not None and low > high:
        raise UserError(f"--flops-min {low:g} is above --flops-max {high:g}; swap them")
    return lambda flops: (low is None or flops >= low) and (high is None or flops <= high)



def _window_text(low: float | None, high: float | None) -> str:
    return f"[{'-' if low is None else f'{low / 1e6:g}M'}, {'-' if high is None else f'{high / 1e6:g}M'}]"



def read_architecture_list(path: str | Path, space: SearchSpace) -> list[Architecture]:
    """A JSON list (texts ``B,..,B/C,..,C`` or objects with blocks and channels) or one text per line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"architecture list {path} does not exist")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise UserError(f"architecture list {path} is binary; give a JSON list or one 'B,..,B/C,..,C' per "
                        "line") from None
    with naming(f"architecture list {path}"):
        if text.lstrip().startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as error:
                raise UserError(f"invalid JSON ({error.msg} at line {error.lineno})") from None
            archs = [Architecture.from_dict(i) if isinstance(i, dict) else Architecture.parse(str(i), space)
                     for i in items]
        else:
            archs = [Architecture.parse(line, space) for line in text.splitlines()
                     if line.strip() and not line.startswith("#")]
        return [arch.validate(space) for arch in archs]



def read_ground_truth(path: str | Path, space: SearchSpace) -> dict[Architecture, float]:
    """Architecture -> accuracy from JSON (``{"B,../C,..": acc}`` or a list of ``{"arch", "accuracy"}``)
    or CSV (columns ``arch`` and ``accuracy``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ground-truth file {path} does not exist")
    if path.suffix.lower() == ".csv":
        try:
            with open(path, newline="") as handle:
                rows = list(csv.DictReader(handle))
        except (UnicodeDecodeError, csv.Error) as error:
            raise UserError(f"ground-truth file {path} is not a CSV text file ({error}); give columns arch,accuracy "
                            "or a JSON file") from None
        if not rows or not {"arch", "accuracy"} <= set(rows[0]):
            raise UserError(f"ground-truth file {path}: expected a CSV header with columns arch and accuracy")
        pairs = [(row["arch"], row["accuracy"]) for row in rows]
    else:
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UserError(f"ground-truth file {path} is neither CSV (by its name) nor valid JSON: {error}") from None
        if isinstance(data, dict):
            pairs = list(data.items())
        elif isinstance(data, list) and all(isinstance(r, dict) and {"arch", "accuracy"} <= set(r) for r in data):
            pairs = [(r["arch"], r["accuracy"]) for r in data]
        else:
            raise UserError(f"ground-truth file {path}: expected {{\"ARCH\": accuracy}} or a list of "
                            "{\"arch\": ..., \"accuracy\": ...} objects")
    values: dict[Architecture, list[float]] = {}
    canonical = canonicalizer(space)
    for arch_text, accuracy in pairs:
        try:
            value = float(accuracy)
        except (TypeError, ValueError):
            raise UserError(f"ground-truth file {path}: accuracy {accuracy!r} of {arch_text} is not a number") from None
        values.setdefault(canonical(Architecture.parse(str(arch_text)).validate(space)), []).append(value)
    return as_fractions({arch: sum(v) / len(v) for arch, v in values.items()}, f"ground-truth file {path}")



def as_fractions(truth: dict[Architecture, float], where: str) -> dict[Architecture, float]:
    """Accuracies as fractions: values in percent (the largest above 1, none above 100) are divided by 100,
    and the log says so; missing values (NaN) are dropped with a warning; nothing usable is an error."""
    finite = {arch: value for arch, value in truth.items() if math.isfinite(value)}
    if len(finite) < len(truth):
        log.warning(f"warning: {where}: {len(truth) - len(finite)} of {len(truth)} accuracies are not numbers "
                    "(NaN); those architectures are left out")
    if not finite:
        raise UserError(f"{where} holds no accuracy that is a number; give accuracies as fractions (0.93) or "
                        "percent (93.1)")
    low, high = min(finite.values()), max(finite.values())
    if low < 0 or high > 100:
        raise UserError(f"{where}: accuracies must be fractions (0..1) or percent (0..100), found {low:g}..{high:g}")
    if high > 1:
        log.info(f"{where}: accuracies read as percent (largest {high:g}) and divided by 100")
        return {arch: value / 100 for arch, value in finite.items()}
    log.info(f"{where}: accuracies read as fractions (largest {high:g})")
    return finite



def choose_architectures(job: RankJob, space: SearchSpace, truth: dict[Architecture, float] | None,
                         flops_of=None) -> list[Architecture]:
    """The architectures to rank (twins as one), inside the FLOPs window; ``flops_of`` counts the FLOPs
    the window is in (default: the supernet's space, as drawn)."""
    table = cost_table(space)
    flops_of = flops_of or table.macs
    inside = flops_window(job.flops_min, job.flops_max)
    if job.arch_file:
        archs = [a for a in distinct(read_architecture_list(job.arch_file, space), space) if inside(flops_of(a))]
        missing = [str(a) for a in archs if truth is not None and a not in truth]
        if missing:
            raise UserError(f"{len(missing)} architectures of {job.arch_file} have no accuracy in "
                            f"{job.ground_truth} (first: {missing[0]})")
        return archs
    if truth is not None:
        archs = sorted((a for a in truth if inside(flops_of(a))), key=lambda a: (flops_of(a), a.genes))
        if job.archs is not None and job.archs < len(archs):
            shuffled = random.Random(job.seed).sample(archs, len(archs))  # --seed picks among equals
            if job.stratify == "none":
                return sorted(shuffled[:job.archs], key=flops_of)
            return spread_over_flops(shuffled, job.archs, table)
        return archs
    return distinct(draw_architectures(space, job.archs or 12, job.stratify, job.seed, job.flops_min,
                                       job.flops_max), space)
