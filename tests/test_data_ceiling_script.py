"""benchmarks/data_ceiling.py on tiny settings: the networks `spos rank` would rank, and the ceiling figures."""

from __future__ import annotations

import json

import pytest
from conftest import load_benchmark_script

from spos.bench.tables import load_benchmark
from spos.rank.choose import choose_architectures
from spos.rank.job import RankJob
from spos.space.architecture import Architecture
from spos.space.searchspace import get_space


@pytest.fixture(scope="module")
def script():
    return load_benchmark_script("data_ceiling")


def test_the_ceiling_ranks_the_networks_rank_draws_and_reports_every_tau(script, tmp_path, monkeypatch, capsys):
    from test_tabular_search import full_table

    table = full_table(tmp_path / "table.json")
    benchmark = load_benchmark("nas-bench-macro", table)
    trained = {}

    def fake_runs(job, space, archs):  # stand-alone accuracies that agree with the table, seed 1 a shade lower
        trained[job.output] = archs
        return {str(a): [benchmark.entry(a).accuracy, benchmark.entry(a).accuracy - 0.01] for a in archs}

    monkeypatch.setattr(script, "standalone_accuracies", fake_runs)
    result = script.main(["--table", str(table), "--data-root", str(tmp_path), "--output", str(tmp_path / "out"),
                          "--quantiles", "0.3", "0.7", "--archs", "6", "--bootstrap", "20", "--choice-width", "0.5"])
    assert list(result["windows"]) == ["q30", "q70"]
    for (name, low, high), window in zip(script.windows_of(str(table), [0.3, 0.7], 0.5e6), result["windows"].values()):
        job = RankJob(supernet="", archs=6, flops_min=low, flops_max=high)
        truth = {arch: entry.accuracy for arch, entry in benchmark.networks.items()}
        same = choose_architectures(job, get_space("mbv2-macro-cifar", width_mult=0.5), truth, lambda a: benchmark.entry(a).flops)
        assert trained[str(tmp_path / "out" / name)] == same and window["n"] == len(same)
        assert window["standalone_tau"]["value"] == pytest.approx(1.0) and window["subset_seed_tau"] == pytest.approx(1.0)
        assert window["table_seed_tau"] is not None
    assert json.loads((tmp_path / "out" / "ceiling.json").read_text())["windows"].keys() == {"q30", "q70"}
    assert "stand-alone on the subset 1.00" in capsys.readouterr().out


def test_depth_counts_the_layers_that_are_not_identities(script):
    assert script.depth(Architecture((0, 1, 2, 0, 0, 1, 1, 2), (0,) * 8)) == 5
