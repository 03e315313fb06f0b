"""benchmarks/equal_flops_ranking.py on tiny settings: the same windows and networks for every supernet."""

from __future__ import annotations

import json

import pytest
from conftest import load_benchmark_script

from spos.nn.fewshot import FewShotSuperNet
from spos.nn.supernet import SuperNet
from spos.space.searchspace import get_space
from spos.store import checkpoint


@pytest.fixture(scope="module")
def script():
    return load_benchmark_script("equal_flops_ranking")


def test_two_supernets_are_ranked_on_the_same_networks_of_each_window(script, tmp_path, capsys):
    from test_tabular_search import full_table

    table = full_table(tmp_path / "table.json")
    space = get_space("mbv2-macro-cifar", input_size=8, num_classes=10, in_channels=1, width_mult=0.125)
    one, few = tmp_path / "one.pt", tmp_path / "few.pt"
    checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(space)), one)
    checkpoint.save_atomic(checkpoint.supernet_payload(FewShotSuperNet(space, [0])), few)
    argv = ["--table", str(table), "--supernet", f"one={one}", "--supernet", f"few={few}", "--output",
            str(tmp_path / "out"), "--quantiles", "0.3", "0.7", "--archs", "5", "--bn-batches", "1", "--bootstrap", "20",
            "--allow-trained-images"]  # untrained supernets with no recorded hold-out
    result = script.main(argv)
    printed = capsys.readouterr().out
    assert len(result["windows"]) == 2 and set(result["supernets"]) == {"one", "few"}
    for name in ("one", "few"):
        for score in ("loss", "top1"):
            summary = result["supernets"][name][score]
            assert [w["n"] for w in summary["windows"]] == [5, 5] and summary["mean"]["windows"] == 2
            assert {"kendall_tau", "baseline_tau", "lead"} <= set(summary["mean"])
    picked = {name: [sorted(r["arch"] for r in json.loads((tmp_path / "out" / name / w[0] / "rank.json").read_text())
                            ["rows"]) for w in result["windows"]] for name in ("one", "few")}
    assert picked["one"] == picked["few"]
    assert script.main(argv) == result  # read back from the finished jobs, nothing scored again
    assert "mean of 2 windows: tau" in printed and "lead over fewer params" in printed
    assert (tmp_path / "out" / "summary.json").is_file()


def test_the_script_reports_every_baseline_and_adds_proxies_to_finished_jobs(script, tmp_path, capsys):
    from test_tabular_search import full_table

    table = full_table(tmp_path / "table.json")
    space = get_space("mbv2-macro-cifar", input_size=8, num_classes=10, in_channels=1, width_mult=0.125)
    one = tmp_path / "one.pt"
    checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(space)), one)
    argv = ["--table", str(table), "--supernet", f"one={one}", "--output", str(tmp_path / "out"), "--quantiles",
            "0.3", "0.7", "--archs", "5", "--bn-batches", "1", "--bootstrap", "20", "--allow-trained-images"]
    script.main(argv)
    scores = (tmp_path / "out" / "one" / "q30" / "supernet_scores.jsonl").read_text()
    result = script.main([*argv, "--proxies", "synflow,naswot"])  # the finished jobs gain the proxies only
    assert (tmp_path / "out" / "one" / "q30" / "supernet_scores.jsonl").read_text() == scores
    summary = result["supernets"]["one"]["loss"]
    expected = ["flops", "fewer_params", "more_params", "depth", "synflow", "naswot"]
    assert list(summary["baselines_mean"]) == expected and all(list(w["baselines"]) == expected
                                                               for w in summary["windows"])
    assert summary["baselines_mean"]["fewer_params"]["lead"] == summary["mean"]["lead"]
    printed = capsys.readouterr().out
    assert "| Kendall tau [95% CI] |" in printed and "| naswot |" in printed and "| depth |" in printed
    assert "| the supernet's lead [95% CI] |" in printed and "mean of 2 |" in printed
