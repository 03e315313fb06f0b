"""Tabular benchmarks read into spos's own terms: every key an `Architecture` of a shipped space.

A tabular benchmark lists architectures of one space, each trained alone, with their accuracies
(per seed), FLOPs and parameters. spos reads one into a `Benchmark` so that `spos rank` can score
a supernet against it and `spos search` can run its engine against it (queries in seconds, no
training). The tables are not shipped (their licences ask for the notice to travel with them):
`spos bench NAME --download` fetches the file, checked by its sha256, into a cache folder
(`default_path`), or a user gives the path of a copy.

NAS-Bench-Macro (Su et al., CVPR 2021, arXiv 2103.11922; Apache-2.0) is the first: 6,561 keys of
8 digits (0 identity, 1 MBConv e3 k3, 2 MBConv e6 k5) of the `mbv2-macro-cifar` preset at width
1.0, three CIFAR-10 test accuracies in % each, ``params`` and ``flops`` (multiply-adds), which
equal spos's own counts for every key. Twins (an identity moved within a stage) hold the same
figures; `Benchmark.networks` keeps one of each (`spos.space.canonical`).
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from spos.errors import UserError
from spos.io.schema import FINITE, fits
from spos.space.architecture import Architecture
from spos.space.canonical import canonicalizer
from spos.space.searchspace import SearchSpace, get_space, read_document


@dataclass(frozen=True)
class Entry:
    """One architecture's figures: accuracies of its stand-alone runs (fractions), params, FLOPs."""

    accuracies: tuple[float, ...]
    params: int
    flops: int

    @property
    def accuracy(self) -> float:
        return sum(self.accuracies) / len(self.accuracies)


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    space: str  # a preset, adapted with ``input_size`` and ``num_classes`` at width 1.0
    input_size: int
    num_classes: int
    filename: str
    url: str
    sha256: str
    citation: str
    read: Callable[[object, SearchSpace, str], dict[Architecture, Entry]]
    key: Callable[[Architecture], str]  # the table's own name of an architecture

    def search_space(self) -> SearchSpace:
        return get_space(self.space, input_size=self.input_size, num_classes=self.num_classes)


def _number(value, where: str) -> float:
    if not fits(value, FINITE):
        raise UserError(f"{where}: {value!r} is not a finite number")
    return float(value)


def read_nas_bench_macro(data, space: SearchSpace, where: str) -> dict[Architecture, Entry]:
    """``{"01201210": {"test_acc": [%, %, %], "params": int, "flops": int, ...}}`` -> Architecture -> Entry."""
    if not isinstance(data, dict) or not data:
        raise UserError(f"{where}: expected an object of 8-digit keys, as NAS-Bench-Macro's JSON file has")
    entries = {}
    counts = space.op_counts
    for key, value in data.items():
        if len(key) != len(counts) or not all(c.isdigit() and int(c) < n for c, n in zip(key, counts)):
            raise UserError(f"{where}: key {key!r} is not {len(counts)} digits of 0..2 (one op per layer)")
        if not isinstance(value, dict) or not {"test_acc", "params", "flops"} <= set(value) \
                or not isinstance(value["test_acc"], list) or not value["test_acc"]:
            raise UserError(f"{where}: entry {key} needs test_acc (a list of accuracies in %), params and flops")
        accuracies = tuple(_number(a, f"{where}: {key} test_acc") / 100 for a in value["test_acc"])
        arch = Architecture(tuple(int(c) for c in key), (space.default_channel,) * len(key))
        entries[arch] = Entry(accuracies, int(_number(value["params"], f"{where}: {key} params")),
                              int(_number(value["flops"], f"{where}: {key} flops")))
    return entries


BENCHMARKS = {
    "nas-bench-macro": BenchmarkSpec(
        name="nas-bench-macro", space="mbv2-macro-cifar", input_size=32, num_classes=10,
        filename="nas-bench-macro_cifar10.json",
        url="https://raw.githubusercontent.com/xiusu/NAS-Bench-Macro/61a2bfc2ca0dce04d0997e6cf498047c27d6acf2/"
            "data/nas-bench-macro_cifar10.json",
        sha256="686dee8363cc21cca8c1f321ad5749454f2d9b9ca5972682e137e539bc522297",
        citation="NAS-Bench-Macro: Su et al., Prioritized Architecture Sampling with Monto-Carlo Tree Search, "
                 "CVPR 2021 (arXiv 2103.11922); Apache-2.0, github.com/xiusu/NAS-Bench-Macro",
        read=read_nas_bench_macro, key=lambda arch: "".join(map(str, arch.blocks))),
}


def benchmark_spec(name: str) -> BenchmarkSpec:
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r}; spos reads {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def default_path(name: str) -> Path:
    """Where ``--download`` puts a table and ``--benchmark`` looks for it: $SPOS_BENCHMARKS, else
    $XDG_CACHE_HOME/spos/benchmarks (~/.cache/spos/benchmarks)."""
    folder = os.environ.get("SPOS_BENCHMARKS") or \
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spos" / "benchmarks"
    return Path(folder).expanduser() / benchmark_spec(name).filename


@dataclass
class Benchmark:
    """A table in spos's terms: its space (width 1.0) and every key's `Entry`."""

    spec: BenchmarkSpec
    space: SearchSpace
    entries: dict[Architecture, Entry]
    path: Path
    _canonical: Callable = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._canonical = canonicalizer(self.space)

    @cached_property
    def networks(self) -> dict[Architecture, Entry]:
        """One entry per distinct network (twins dropped), in the table's order."""
        kept: dict[Architecture, Entry] = {}
        for arch, entry in self.entries.items():
            kept.setdefault(self._canonical(arch), entry)
        return kept

    def entry(self, arch: Architecture) -> Entry:
        """The figures of ``arch`` (any twin of a listed architecture), or a one-line error."""
        found = self.networks.get(self._canonical(arch))
        if found is None:
            raise UserError(f"{self.spec.name} has no entry for {arch}")
        return found

    def accuracy(self, arch: Architecture) -> float:
        return self.entry(arch).accuracy

    def check_space(self, space: SearchSpace, what: str = "the supernet") -> None:
        """Refuse a space whose layers and choices are not the table's (any width, input and classes)."""
        mine = ([spec.ops for spec in self.space.layers()], self.space.channel_scales)
        theirs = ([spec.ops for spec in space.layers()], space.channel_scales)
        if mine != theirs:
            raise UserError(f"{what}'s space {space.name!r} has other choice layers than {self.spec.name}'s "
                            f"({self.spec.space}); rank or search it against a table of its own space")

    def count_mismatches(self) -> list[str]:
        """Keys whose listed FLOPs or params differ from spos's count of the same architecture."""
        from spos.space.flops import cost_table

        table = cost_table(self.space)
        return [str(arch) for arch, entry in self.entries.items()
                if (table.macs(arch), table.params(arch)) != (entry.flops, entry.params)]


def load_benchmark(name: str, path: str | Path | None = None) -> Benchmark:
    """Read benchmark ``name`` from ``path`` (default: `default_path`), checked against its schema."""
    spec = benchmark_spec(name)
    path = Path(path).expanduser() if path is not None else default_path(name)
    if not path.is_file():
        raise UserError(f"{spec.name} table {path} does not exist; fetch it with `spos bench {spec.name} "
                        f"--download` or give the path of a copy with --benchmark-file")
    space = spec.search_space()
    data = read_document(path, f"{spec.name} table", "JSON")
    return Benchmark(spec, space, spec.read(data, space, f"{spec.name} table {path}"), path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_benchmark(name: str, path: str | Path | None = None, *, url: str | None = None,
                       timeout: float = 60.0) -> Path:
    """Fetch the table into ``path`` (default: `default_path`) unless an identical copy is there.

    The bytes must have the published sha256; a different file already at ``path`` is left alone."""
    from spos.io.files import write_atomic

    spec = benchmark_spec(name)
    path = Path(path).expanduser() if path is not None else default_path(name)
    if path.is_file() and sha256_of(path) == spec.sha256:
        return path
    if path.exists() or path.is_symlink():
        raise UserError(f"{path} exists and is not the published {spec.name} table; move it away or give "
                        "another --benchmark-file")
    try:
        with urllib.request.urlopen(url or spec.url, timeout=timeout) as response:
            payload = response.read()
    except (OSError, ValueError) as error:  # URLError and timeouts are OSErrors
        raise UserError(f"{spec.name}: download from {url or spec.url} failed ({error}); check the connection "
                        f"or fetch the file by hand and give it with --benchmark-file") from None
    if hashlib.sha256(payload).hexdigest() != spec.sha256:
        raise UserError(f"{spec.name}: the downloaded file is not the published table (sha256 differs); "
                        "nothing was written")
    return write_atomic(path, lambda handle: handle.write(payload))


def ground_truth(benchmark: Benchmark) -> dict[str, float]:
    """``{"B,../C,..": mean accuracy}`` of every distinct network: a file `spos rank --ground-truth` reads."""
    return {str(arch): entry.accuracy for arch, entry in benchmark.networks.items()}


def summary(benchmark: Benchmark) -> dict:
    """What `spos bench` reports: sizes, ranges, the best network, how well seeds agree, the count check."""
    from spos.stats.ranking import kendall_tau

    networks = benchmark.networks
    accuracies = sorted(e.accuracy for e in networks.values())
    best = max(networks, key=lambda a: networks[a].accuracy)
    seeds = min(len(e.accuracies) for e in networks.values())
    seed_taus = [kendall_tau([e.accuracies[i] for e in networks.values()], [e.accuracies[j] for e in networks.values()])
                 for i in range(seeds) for j in range(i + 1, seeds)]
    return {
        "name": benchmark.spec.name, "file": str(benchmark.path), "space": benchmark.space.name,
        "keys": len(benchmark.entries), "networks": len(networks), "seeds": seeds,
        "flops": [min(e.flops for e in networks.values()), max(e.flops for e in networks.values())],
        "params": [min(e.params for e in networks.values()), max(e.params for e in networks.values())],
        "accuracy": [accuracies[0], accuracies[len(accuracies) // 2], accuracies[-1]],
        "best": {"arch": str(best), "key": benchmark.spec.key(best), "accuracy": networks[best].accuracy,
                 "flops": networks[best].flops},
        "seed_tau": sum(seed_taus) / len(seed_taus) if seed_taus else None,
        "count_mismatches": benchmark.count_mismatches(), "citation": benchmark.spec.citation,
    }


def write_ground_truth(benchmark: Benchmark, path: str | Path) -> Path:
    from spos.io.files import write_text_atomic

    return write_text_atomic(json.dumps(ground_truth(benchmark), indent=1) + "\n", Path(path))


__all__ = ['BENCHMARKS', 'Benchmark', 'BenchmarkSpec', 'Entry', 'benchmark_spec', 'default_path', 'download_benchmark', 'ground_truth', 'load_benchmark', 'read_nas_bench_macro', 'sha256_of', 'summary', 'write_ground_truth']
