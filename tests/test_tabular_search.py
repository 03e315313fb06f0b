"""The engine against a made-up table: queries to the optimum (twins as one), curves, `spos search --benchmark`."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from spos.bench.tables import benchmark_spec, load_benchmark
from spos.space.canonical import canonicalizer
from spos.cli import main
from spos.space.flops import cost_table
from spos.search.engine import SearchConfig
from spos.bench.engine import Limits, TableObjective, engine_curves, median_or_none, plot_engine_curves, run_engine
from spos.space.architecture import Architecture


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    return full_table(tmp_path_factory.mktemp("table") / "table.json")


def full_table(path):
    """Every key of the NAS-Bench-Macro space, scored by an additive + pairwise function of its canonical
    network (so twins agree, as in the real table), with spos's own FLOPs and params."""
    space = benchmark_spec("nas-bench-macro").search_space()
    table, canonical, rng = cost_table(space), canonicalizer(space), random.Random(3)
    additive = [[rng.gauss(0, 1) for _ in range(3)] for _ in range(8)]
    pairwise = {(i, j): [[rng.gauss(0, 0.3) for _ in range(3)] for _ in range(3)] for i in range(8) for j in range(i)}
    data = {}
    for blocks in itertools.product(range(3), repeat=8):
        b = canonical(Architecture(blocks, (0,) * 8)).blocks
        value = sum(additive[i][b[i]] for i in range(8)) + sum(w[b[i]][b[j]] for (i, j), w in pairwise.items())
        arch = Architecture(blocks, (0,) * 8)
        data["".join(map(str, blocks))] = {"test_acc": [80 + value] * 3, "params": table.params(arch),
                                           "flops": table.macs(arch)}
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def objective(table_file):
    return TableObjective(load_benchmark("nas-bench-macro", table_file))


def test_queries_count_distinct_networks_and_reach_the_optimum(objective):
    run = run_engine(objective, "evolution", SearchConfig(seed=0), budget=3969)
    assert len(run.queried) == len(set(run.queried))  # twins are one network: never scored twice
    assert all(objective.canonical(g) == g for g in run.queried)
    assert run.queries_to_optimum is not None and run.queried[run.queries_to_optimum - 1] == run.optimum
    assert run.curve(2000)[-1] == pytest.approx(max(e.accuracy for e in objective.inside.values()))


def test_evolution_needs_fewer_queries_than_random_search(objective):
    curves = engine_curves(objective, ("evolution", "random"), seeds=4, budget=3969)
    evolution, rnd = curves["algorithms"]["evolution"], curves["algorithms"]["random"]
    assert evolution["found"] == rnd["found"] == 4  # random search scores every network within this budget
    assert evolution["median_queries"] * 4 < rnd["median_queries"]
    assert all(len(c) == 3969 and c == sorted(c) for c in evolution["curves"])


def test_limits_are_the_tables_and_are_never_broken(objective, table_file):
    flops = sorted(e.flops for e in objective.inside.values())
    limited = TableObjective(objective.benchmark, Limits(flops_max=flops[len(flops) // 3]))
    assert len(limited.inside) < len(objective.inside)
    run = run_engine(limited, "evolution", SearchConfig(seed=1, generations=4), budget=None)
    assert all(objective.benchmark.entry(Architecture.from_genes(g)).flops <= flops[len(flops) // 3]
               for g in run.queried)
    assert limited.percentile(limited.inside[limited.optimum].accuracy) == 100.0


def test_median_counts_a_search_that_never_got_there_as_the_worst():
    assert median_or_none([3, 1, None]) == 3 and median_or_none([1, None, None]) is None
    assert median_or_none([4, 2, 6, 8]) == 5


def test_spos_search_against_the_table(table_file, tmp_path, capsys):
    out = tmp_path / "engine"
    assert main(["search", "--benchmark", "nas-bench-macro", "--benchmark-file", str(table_file), "--seeds", "3",
                 "--generations", "6", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "evolution: median" in printed and "random: " in printed
    result = json.loads((out / "engine.json").read_text())
    assert result["budget"] == 300 and set(result["algorithms"]) == {"evolution", "random"}
    assert (out / "engine_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["search", "--benchmark", "nas-bench-macro", "--benchmark-file", str(table_file),
                 "--output", str(out)]) == 2  # a finished folder is not written over
    assert main(["search", "--output", str(tmp_path / "x")]) == 2
    assert "give --supernet CKPT" in capsys.readouterr().err


def test_plot_engine_curves_writes_a_png(objective, tmp_path):
    curves = engine_curves(objective, ("evolution",), seeds=2, budget=200)
    assert plot_engine_curves(curves, tmp_path / "c.png").stat().st_size > 2000
