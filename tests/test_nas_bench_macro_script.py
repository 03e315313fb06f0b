"""benchmarks/nas_bench_macro.py's pieces on tiny settings: train, search under the table's FLOPs, judge."""

from __future__ import annotations

import pytest
from conftest import load_benchmark_script

from spos.bench.tables import load_benchmark
from spos.search.engine import SearchConfig
from spos.space.architecture import Architecture


@pytest.fixture(scope="module")
def script():
    return load_benchmark_script("nas_bench_macro")


def test_train_search_and_judge_on_tiny_settings(script, tmp_path):
    from test_tabular_search import full_table

    benchmark = load_benchmark("nas-bench-macro", full_table(tmp_path / "table.json"))
    supernet = script.train_supernet(tmp_path / "supernet", config="digits-supernet", progress=False,
                                     overrides=("space.width_mult=0.125", "train.iterations=2", "train.epochs=1",
                                                "validation.paths=1", "validation.bn_batches=1"))
    assert supernet.is_file() and script.train_supernet(tmp_path / "supernet", config="digits-supernet") == supernet
    flops = sorted(e.flops for e in benchmark.networks.values())
    limit = flops[len(flops) // 2]
    arch, result = script.search_under_table_flops(supernet, benchmark, limit, config=SearchConfig(
        population=4, generations=2, parents=2), bn_batches=1, batch_size=64, device="cpu")
    assert benchmark.entry(arch).flops <= limit and result.num_scored <= 8
    verdict = script.judge(benchmark, arch, limit)
    inside = [e.accuracy for e in benchmark.networks.values() if e.flops <= limit]
    assert verdict["networks_within_limit"] == len(inside) and verdict["accuracy"] == benchmark.accuracy(arch)
    assert verdict["rank"] == 1 + sum(a > verdict["accuracy"] for a in inside) and 0 < verdict["percentile"] <= 100
    from spos.bench.engine import HEURISTICS

    assert set(verdict["heuristics"]) == set(HEURISTICS)  # the one-line rules' picks beside the search's
    assert all(benchmark.entry(Architecture.parse(pick["arch"])).flops <= limit for pick in verdict["heuristics"].values())
    assert script.heuristics_text(verdict).count("\n") == len(HEURISTICS) - 1
