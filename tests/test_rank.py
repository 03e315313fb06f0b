"""Ranking: the statistics against scipy, and `spos rank` end to end (ground truth, stand-alone runs, resume)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from spos.errors import UserError
from spos.stats import ranking as rank_statistics

# Fixed inputs: no ties, ties in one list, ties in both, a reversed order.
CASES = [
    ([0.1, 0.4, 0.35, 0.8, 0.6, 0.2, 0.9, 0.55], [0.91, 0.95, 0.93, 0.97, 0.94, 0.90, 0.96, 0.98]),
    ([1, 2, 2, 3, 4, 4, 4, 5, 6], [3, 1, 2, 5, 4, 6, 7, 9, 8]),
    ([0.5, 0.5, 0.7, 0.1, 0.1, 0.9, 0.3], [0.2, 0.2, 0.9, 0.3, 0.1, 0.9, 0.4]),
    (list(range(10)), list(range(10, 0, -1))),
]


@pytest.mark.parametrize("x, y", CASES)
def test_kendall_and_spearman_match_scipy(x, y):
    assert rank_statistics.kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert rank_statistics.spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


@pytest.mark.parametrize("x, _", CASES)
def test_average_ranks_match_scipy(x, _):
    np.testing.assert_allclose(rank_statistics.average_ranks(x), stats.rankdata(x, method="average"))


def test_undefined_statistics_are_nan():
    assert math.isnan(rank_statistics.kendall_tau([1, 1, 1], [1, 2, 3]))
    assert math.isnan(rank_statistics.spearman_rho([1, 2, 3], [4, 4, 4]))


def test_top_k_overlap_counts_shared_best_items():
    truth = [0.9, 0.8, 0.7, 0.6, 0.5]
    assert rank_statistics.top_k_overlap([5, 4, 3, 2, 1], truth, 3) == 1.0
    assert rank_statistics.top_k_overlap([1, 2, 3, 4, 5], truth, 3) == pytest.approx(1 / 3)  # only item 2 is shared
    assert rank_statistics.top_k_overlap([1, 2, 3, 4, 5], truth, 1) == 0.0
    with pytest.raises(UserError):
        rank_statistics.top_k_overlap([1, 2], [1, 2], 3)


def test_top_k_overlap_with_ties_is_the_expected_overlap_and_ignores_order():
    truth = [0.9, 0.8, 0.8, 0.8, 0.5]  # the 2nd best is any of three tied items
    assert rank_statistics.top_k_overlap([5, 4, 3, 2, 1], truth, 2) == pytest.approx((1 + 1 / 3) / 2)
    # order does not matter
    assert rank_statistics.top_k_overlap([5, 2, 3, 4, 1], truth, 2) == pytest.approx((1 + 1 / 3) / 2)
    assert rank_statistics.top_k_overlap([1, 1, 1, 1, 1], truth, 1) == pytest.approx(1 / 5)  # a tied guess: chance
    assert rank_statistics.top_k_overlap(truth, truth, 4) == 1.0


def test_kendall_tau_is_fast_on_a_whole_table():
    rng = np.random.default_rng(0)
    x = rng.random(4000)
    y = x + rng.normal(0, 0.3, 4000)
    assert rank_statistics.kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)


def test_bootstrap_interval_is_seeded_and_brackets_a_perfect_ranking():
    x, y = CASES[0]
    first = rank_statistics.bootstrap(rank_statistics.kendall_tau, x, y, samples=200, seed=3)
    again = rank_statistics.bootstrap(rank_statistics.kendall_tau, x, y, samples=200, seed=3)
    other = rank_statistics.bootstrap(rank_statistics.kendall_tau, x, y, samples=200, seed=4)
    assert first == again and first != other
    assert first.low <= first.value <= first.high
    perfect = rank_statistics.bootstrap(rank_statistics.spearman_rho, list(range(8)), list(range(8)), samples=100)
    assert (perfect.value, perfect.low, perfect.high) == (1.0, 1.0, 1.0)


def test_rank_statistics_reports_every_statistic_with_an_interval():
    x, y = CASES[0]
    result = rank_statistics.rank_statistics(x, y, samples=100, seed=0)
    assert result["n"] == 8
    assert result["kendall_tau"]["value"] == pytest.approx(stats.kendalltau(x, y).statistic)
    assert result["spearman_rho"]["value"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert set(result["top_k"]) == {"1", "3"}  # k = 3 and N/5
    for estimate in (result["kendall_tau"], result["spearman_rho"], *result["top_k"].values()):
        assert estimate["low"] <= estimate["value"] <= estimate["high"]
    assert rank_statistics.top_k_sizes(12) == [2, 3] and rank_statistics.top_k_sizes(15) == [3]
    with pytest.raises(UserError):
        rank_statistics.rank_statistics([1, 2], [1, 2])
    with pytest.raises(UserError):
        rank_statistics.rank_statistics([1, 2, 3], [1, 2])


# ----------------------------------------------------------------------------------------------
# `spos rank` end to end on a tiny untrained supernet

import json  # noqa: E402

from spos.cli import main  # noqa: E402
from spos.nn.supernet import SuperNet  # noqa: E402
from spos.rank import choose as rank_choose  # noqa: E402
from spos.rank import folder as rank_folder  # noqa: E402
from spos.rank import job as rank_job  # noqa: E402
from spos.space.flops import cost_table  # noqa: E402
from spos.space.searchspace import get_space  # noqa: E402
from spos.store import checkpoint  # noqa: E402

FAST = ["--bn-batches", "1", "--eval-batches", "1", "--batch-size", "64", "--bootstrap", "50", "--no-progress"]


@pytest.fixture(scope="module")
def digits_space():
    return get_space("oneshot", input_size=8, num_classes=10, in_channels=1, width_mult=0.25)


@pytest.fixture(scope="module")
def supernet_file(tmp_path_factory, digits_space, digits_run):
    path = tmp_path_factory.mktemp("supernet") / "supernet.pt"
    checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(digits_space), config=digits_run), path)
    return path


def test_drawn_architectures_spread_over_the_flops_range(digits_space):
    table = cost_table(digits_space)
    archs = rank_choose.draw_architectures(digits_space, 8, "flops", seed=0)
    flops = [table.macs(a) for a in archs]
    assert len(set(archs)) == 8 and flops == sorted(flops)
    uniform = sorted(table.macs(a) for a in rank_choose.draw_architectures(digits_space, 200, "none", seed=1))
    middle = uniform[20:-20]  # the FLOPs range 80% of uniform paths fall in
    assert flops[0] < middle[0] and flops[-1] > middle[-1]
    assert rank_choose.draw_architectures(digits_space, 8, "flops", seed=0) == archs  # seeded


def test_drawn_architectures_stay_inside_a_flops_window(digits_space):
    table = cost_table(digits_space)
    spread = [table.macs(a) for a in rank_choose.draw_architectures(digits_space, 8, "flops", seed=0)]
    low, high = spread[3], spread[4]  # a window an eighth of the range wide
    for stratify in ("flops", "none"):
        archs = rank_choose.draw_architectures(digits_space, 6, stratify, seed=0, flops_min=low, flops_max=high)
        assert len(set(archs)) == 6 and all(low <= table.macs(a) <= high for a in archs)
    with pytest.raises(UserError, match="distinct architectures with FLOPs in .* widen --flops-min"):
        rank_choose.draw_architectures(digits_space, 6, "flops", seed=0, flops_min=low, flops_max=low)
    with pytest.raises(UserError, match="swap them"):
        rank_choose.draw_architectures(digits_space, 6, "flops", seed=0, flops_min=high, flops_max=low)


def test_rank_keeps_the_ground_truth_inside_its_flops_window(supernet_file, digits_space, tmp_path, capsys):
    table = cost_table(digits_space)
    archs = rank_choose.draw_architectures(digits_space, 6, "flops", seed=5)
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({str(a): 0.5 + i / 20 for i, a in enumerate(archs)}))
    low, high = table.macs(archs[1]), table.macs(archs[4])
    out = tmp_path / "rank"
    assert main(["rank", "--supernet", str(supernet_file), "--ground-truth", str(truth), "--output", str(out),
                 "--flops-min", str(low), "--flops-max", str(high), *FAST]) == 0
    result = json.loads((out / "rank.json").read_text())
    assert [r["arch"] for r in result["rows"]] == [str(a) for a in archs[1:5]]
    assert result["statistics"]["n"] == 4
    assert main(["rank", "--supernet", str(supernet_file), "--ground-truth", str(truth), "--output",
                 str(tmp_path / "few"), "--flops-min", str(table.macs(archs[4])), *FAST]) == 2
    assert "at least 3 architectures, got 2 with FLOPs in" in capsys.readouterr().err


def test_rank_with_a_ground_truth_file(supernet_file, digits_space, tmp_path, capsys):
    archs = rank_choose.draw_architectures(digits_space, 4, "none", seed=5)
    truth = tmp_path / "truth.csv"
    truth.write_text("arch,accuracy\n" + "".join(f"\"{a}\",{0.9 + i / 100}\n" for i, a in enumerate(archs)))
    out = tmp_path / "rank"
    assert main(["rank", "--supernet", str(supernet_file), "--ground-truth", str(truth), "--output", str(out),
                 *FAST]) == 0
    assert "Kendall tau" in capsys.readouterr().out
    result = json.loads((out / "rank.json").read_text())
    assert sorted(r["arch"] for r in result["rows"]) == sorted(map(str, archs))
    assert all(0 <= r["supernet_top1"] <= 1 for r in result["rows"])
    assert {"kendall_tau", "spearman_rho", "top_k"} <= set(result["statistics"])
    assert (out / "rank_scatter.png").stat().st_size > 0 and not (out / "standalone").exists()
    # the same accuracies as JSON give the same rows
    as_json = tmp_path / "truth.json"
    as_json.write_text(json.dumps({str(a): 0.9 + i / 100 for i, a in enumerate(archs)}))
    assert main(["rank", "--supernet", str(supernet_file), "--ground-truth", str(as_json), "--output",
                 str(tmp_path / "again"), *FAST]) == 0
    assert json.loads((tmp_path / "again" / "rank.json").read_text())["rows"] == result["rows"]


def test_rank_by_loss_ranks_on_the_hold_out_cross_entropy_already_measured(supernet_file, digits_space, tmp_path,
                                                                          capsys):
    archs = rank_choose.draw_architectures(digits_space, 5, "none", seed=7)
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({str(a): 0.5 + i / 20 for i, a in enumerate(archs)}))
    out = tmp_path / "rank"
    command = ["rank", "--supernet", str(supernet_file), "--ground-truth", str(truth), "--output", str(out), *FAST]
    assert main(command) == 0
    by_top1 = json.loads((out / "rank.json").read_text())
    assert by_top1["score"] == "top1" and all(r["supernet_loss"] > 0 for r in by_top1["rows"])
    log = out / rank_folder.SCORES_LOG
    measured = log.read_text()
    assert main([*command, "--resume", "--score", "loss"]) == 0  # the statistics again, nothing scored again
    assert "ranked by the supernet's hold-out cross-entropy" in capsys.readouterr().out
    assert log.read_text() == measured
    by_loss = json.loads((out / "rank.json").read_text())
    assert by_loss["score"] == "loss" and by_loss["rows"] == by_top1["rows"]
    expected = rank_statistics.rank_statistics([-r["supernet_loss"] for r in by_loss["rows"]],
                                    [r["standalone_top1"] for r in by_loss["rows"]], samples=50)
    assert by_loss["statistics"] == expected
    # a log from before the loss was measured: those paths are scored again, once
    log.write_text("".join(json.dumps({"arch": r["arch"], "supernet_top1": r["supernet_top1"]}) + "\n"
                           for r in by_top1["rows"]))
    assert main([*command, "--resume"]) == 0
    assert json.loads((out / "rank.json").read_text())["rows"] == by_top1["rows"]
    with pytest.raises(UserError, match="--score accuracy: choose one of top1, loss"):
        rank_job.run_rank(rank_job.RankJob(supernet=str(supernet_file), ground_truth=str(truth), output=str(out),
                                         resume=True, score="accuracy"))


@pytest.mark.slow
def test_rank_trains_each_architecture_alone_and_resumes_without_training_again(supernet_file, tmp_path,
                                                                                monkeypatch):
    from spos.train import loop

    calls = []
    real = loop.run_training

    def counting(config, output, *, resume=False, progress=True):
        calls.append((str(output), resume))
        return real(config, output, resume=resume, progress=progress)

    monkeypatch.setattr(loop, "run_training", counting)
    out = tmp_path / "rank"
    command = ["rank", "--supernet", str(supernet_file), "--archs", "4", "--standalone", "digits-retrain",
               "--set", "train.iterations=2", "--seeds", "1", "--output", str(out), *FAST]
    assert main(command) == 0
    assert len(calls) == 4 and not any(resume for _, resume in calls)
    first = json.loads((out / "rank.json").read_text())
    assert len(first["rows"]) == 4 and all(len(r["standalone_runs"]) == 1 for r in first["rows"])
    assert sorted(p.name for p in (out / "standalone").iterdir()) == [f"{i}-seed0" for i in range(4)]

    assert main(command) == 2  # the folder holds a job: refused without --resume
    calls.clear()
    assert main([*command, "--resume"]) == 0
    assert calls == []  # every run was finished: nothing trained again
    assert json.loads((out / "rank.json").read_text())["rows"] == first["rows"]

    # a run cut short (its result never logged) is resumed from its checkpoint, the others are read back
    lines = (out / rank_folder.STANDALONE_LOG).read_text().splitlines()
    (out / rank_folder.STANDALONE_LOG).write_text("\n".join(lines[:-1]) + "\n")
    assert main([*command, "--resume"]) == 0
    assert calls == [(str(out / "standalone" / "3-seed0"), True)]
    assert main([*command[:-len(FAST)], "--seeds", "2", "--resume", *FAST]) == 2  # other settings: refused


def _spos_process(args: list[str]):
    """``python -m spos ARGS`` in a new process, on the sources under test, at one thread."""
    import os
    import subprocess
    import sys

    import spos

    env = {**os.environ, "PYTHONPATH": str(Path(spos.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "spos", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _run_files(folder: Path) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file under ``folder``: a training run that ran again rewrites them."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_rank_killed_in_its_process_then_resumed_trains_nothing_finished_again(supernet_file, tmp_path,
                                                                               monkeypatch):
    """The first invocation runs in a process of its own and is SIGKILLed; the resumed one (here)
    knows only the files it left."""
    import signal
    import time

    from spos.train import loop

    out = tmp_path / "rank"
    command = ["rank", "--supernet", str(supernet_file), "--archs", "3", "--standalone", "digits-retrain",
               "--set", "train.iterations=2", "--seeds", "1", "--output", str(out), *FAST]
    first = _spos_process(command)
    log = out / rank_folder.STANDALONE_LOG
    while first.poll() is None and not (log.is_file() and log.read_text().count("\n") >= 1):
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)  # wherever it is now: a later run half trained, or all done
    output, _ = first.communicate()
    assert log.is_file(), output
    finished = {f"{r['index']}-seed{r['seed']}" for r in map(json.loads, log.read_text().splitlines())}
    before = {name: _run_files(out / "standalone" / name) for name in finished}

    calls = []
    real = loop.run_training
    monkeypatch.setattr(loop, "run_training", lambda config, output, **kw: calls.append(Path(output).name)
                        or real(config, output, **kw))
    assert main([*command, "--resume"]) == 0
    assert sorted(calls) == sorted({"0-seed0", "1-seed0", "2-seed0"} - finished)  # only what was not finished
    for name, files in before.items():
        assert _run_files(out / "standalone" / name) == files, name  # untouched
    rows = json.loads((out / "rank.json").read_text())["rows"]
    assert len(rows) == 3 and all(len(r["standalone_runs"]) == 1 for r in rows)
    assert len(log.read_text().splitlines()) == 3  # each run logged once


def test_rank_refuses_bad_requests(supernet_file, tmp_path, capsys):
    base = ["rank", "--supernet", str(supernet_file), "--output", str(tmp_path / "r"), *FAST]
    assert main(base) == 2  # neither stand-alone training nor ground truth
    assert "--standalone" in capsys.readouterr().err
    assert main([*base, "--standalone", "digits-supernet", "--archs", "3"]) == 2
    assert "retraining" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"0,1/2": 0.5}')
    assert main([*base, "--ground-truth", str(bad)]) == 2
    assert main([*base, "--ground-truth", str(tmp_path / "missing.csv")]) == 2


def test_rank_scores_paths_in_the_input_convention_the_supernet_records(digits_space, tmp_path, monkeypatch):
    from spos.search import holdout as search_holdout

    path = tmp_path / "official.pt"
    checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(digits_space), "official"), path)
    seen = []
    load = search_holdout.load_scoring_data

    def recording(job, space, device, convention=None):
        seen.append(convention)
        return load(job, space, device, convention)

    monkeypatch.setattr(search_holdout, "load_scoring_data", recording)
    archs = rank_choose.draw_architectures(digits_space, 3, "none", seed=2)
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({str(a): 0.5 + i / 10 for i, a in enumerate(archs)}))
    assert main(["rank", "--supernet", str(path), "--ground-truth", str(truth), "--output", str(tmp_path / "r"),
                 "--holdout-from", "val", *FAST]) == 0  # it records no hold-out: scored on part of val
    assert [c.name for c in seen] == ["official"]


@pytest.mark.slow
def test_rank_shares_its_standalone_runs_over_torchrun_ranks(supernet_file, tmp_path, monkeypatch):
    """Rank 1 runs in a process of its own (as torchrun starts it), rank 0 here: each trains its share,
    alone (no process group), and rank 0 waits for rank 1's result before it writes rank.json."""
    import os

    import torch.distributed as dist

    from spos.train import loop

    out = tmp_path / "rank"
    command = ["rank", "--supernet", str(supernet_file), "--archs", "3", "--standalone", "digits-retrain",
               "--set", "train.iterations=2", "--seeds", "1", "--output", str(out), *FAST]
    launch = {"WORLD_SIZE": "2", "LOCAL_RANK": "1", "RANK": "1"}
    monkeypatch.setattr(os, "environ", {**os.environ, **launch})
    other = _spos_process(command)
    monkeypatch.setattr(os, "environ", {**os.environ, "RANK": "0", "LOCAL_RANK": "0"})
    calls = []
    real = loop.run_training

    def counting(config, output, **kw):
        calls.append((Path(output).name, os.environ["RANK"], os.environ["WORLD_SIZE"]))
        return real(config, output, **kw)

    monkeypatch.setattr(loop, "run_training", counting)
    assert main(command) == 0
    output, _ = other.communicate(timeout=120)
    assert other.returncode == 0, output
    assert calls == [("0-seed0", "0", "1"), ("2-seed0", "0", "1")]  # its share, each run a world of one
    assert os.environ["WORLD_SIZE"] == "2" and not dist.is_initialized()
    assert [json.loads(line)["index"] for line in (out / "standalone.rank1.jsonl").read_text().splitlines()] == [1]
    rows = json.loads((out / "rank.json").read_text())["rows"]
    assert len(rows) == 3 and all(len(r["standalone_runs"]) == 1 for r in rows)


def test_holdout_measure_is_top1_and_mean_cross_entropy_over_every_image():
    import torch
    from torch import nn

    from spos.search.scoring import HoldoutMeasure, holdout_measure, score_of

    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    batches = [(torch.randn(5, 4), torch.randint(0, 3, (5,))), (torch.randn(2, 4), torch.randint(0, 3, (2,)))]
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    measure = holdout_measure(model, batches)
    with torch.no_grad():
        logits = model(x)
    assert measure.top1 == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert measure.loss == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    assert score_of(HoldoutMeasure(0.9, 0.3), "top1") == 0.9 and score_of(HoldoutMeasure(0.9, 0.3), "loss") == -0.3


# ----------------------------------------------------------------------------------------------
# Windows, benchmarks and the ground truth as users give it

from spos.stats import windows as rank_window_statistics  # noqa: E402


def test_window_statistics_on_a_made_up_table():
    truth = [0.90, 0.92, 0.91, 0.95, 0.93, 0.94]
    scores = [1, 2, 3, 6, 4, 5]  # orders the truth but for one swap
    seeds = [[t - 0.01, t + 0.01] for t in truth]
    flops = [10, 11, 12, 13, 14, 15]
    result = rank_window_statistics.window_statistics(scores, truth, flops, [6, 5, 4, 3, 2, 1], seeds, samples=50)
    assert result["kendall_tau"]["value"] == pytest.approx(rank_statistics.kendall_tau(scores, truth))
    assert result["ceiling_tau"] == pytest.approx(1.0)  # the seeds are the truth shifted: they agree perfectly
    assert result["flops_tau"]["value"] == pytest.approx(rank_statistics.kendall_tau(flops, truth))
    assert result["params_tau"]["value"] == pytest.approx(-result["flops_tau"]["value"])
    assert result["pick"] == {"index": 3, "rank": 1, "percentile": 100.0, "accuracy": 0.95}
    assert result["random_pick"] == {"rank": 3.5, "percentile": pytest.approx(100 * 3.5 / 6)}
    # ties share the better rank
    assert rank_window_statistics.pick_percentile(np.array([0.5, 0.7, 0.7, 0.9]), 1) == (2, 75.0)
    assert rank_window_statistics.seed_ceiling(None) is None


def test_windows_hold_every_item_once_where_flops_tie():
    """Windows are cut by position: a value tied across an edge no longer puts an item in two windows."""
    flops = [1, 2, 2, 2, 3, 4]
    windows = rank_window_statistics.equal_count_windows(flops, 2)
    assert sorted(i for w in windows for i in w.tolist()) == list(range(6)) and [len(w) for w in windows] == [3, 3]
    rows = [{"arch": str(i), "flops": f, "params": -i, "standalone_top1": i / 10, "standalone_runs": []}
            for i, f in enumerate(flops)]
    report = rank_window_statistics.window_report(rows, [r["standalone_top1"] for r in rows], 2, samples=10)
    assert [w["n"] for w in report] == [6, 3, 3]
    assert sorted(report[1]["members"] + report[2]["members"]) == list(range(6))


def test_equal_count_windows_split_the_flops_range_into_equal_parts():
    flops = list(range(100, 0, -1))
    windows = rank_window_statistics.equal_count_windows(flops, 4)
    assert [(min(flops[i] for i in w), max(flops[i] for i in w)) for w in windows] == [(1, 25), (26, 50), (51, 75),
                                                                                       (76, 100)]
    rows = [{"arch": str(i), "flops": i, "params": i, "standalone_top1": (i * 7 % 10) / 10,
             "standalone_runs": [(i * 7 % 10) / 10] * 2} for i in range(1, 13)]
    report = rank_window_statistics.window_report(rows, [r["standalone_top1"] for r in rows], 3, samples=20)
    assert [w["window"] for w in report] == ["whole", 1, 2, 3] and [w["n"] for w in report] == [12, 4, 4, 4]
    assert all(w["kendall_tau"]["value"] == pytest.approx(1.0) and w["pick"]["percentile"] == 100 for w in report)


@pytest.fixture(scope="module")
def mbv2_supernet(tmp_path_factory, digits_run):
    space = get_space("mbv2-macro-cifar", input_size=8, num_classes=10, in_channels=1, width_mult=0.125)
    path = tmp_path_factory.mktemp("mbv2") / "supernet.pt"
    checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(space), config=digits_run), path)
    return path


def test_rank_against_a_benchmark_in_windows_of_its_own_flops(mbv2_supernet, tmp_path, capsys):
    from test_bench import made_up_table

    keys = ("00000000", "10000000", "01000000", "11000000", "20000000", "02000000", "21000000", "12000000",
            "22000000", "22100000", "22200000", "22210000", "00010000", "00001000")  # the last two: twins
    table = made_up_table(tmp_path / "table.json", keys)
    out = tmp_path / "rank"
    assert main(["rank", "--supernet", str(mbv2_supernet), "--benchmark", "nas-bench-macro", "--benchmark-file",
                 str(table), "--flops-windows", "2", "--output", str(out), *FAST]) == 0
    printed = capsys.readouterr()
    result = json.loads((out / "rank.json").read_text())
    assert result["statistics"]["n"] == 13 and result["truth"] == {"benchmark": "nas-bench-macro"}
    assert [w["window"] for w in result["windows"]] == ["whole", 1, 2]
    assert all(len(r["standalone_runs"]) == 3 for r in result["rows"])  # the table's seeds: a ceiling per window
    assert result["windows"][1]["ceiling_tau"] is not None
    assert result["rows"][0]["benchmark_flops"] > result["rows"][0]["flops"]  # the table counts at width 1.0
    assert "nas-bench-macro's FLOPs (mbv2-macro-cifar at width 1.0" in printed.out
    assert "window 2: FLOPs" in printed.out and "first pick" in printed.out and "FLOPs' own Kendall tau" in printed.out
    assert (out / "rank_window1.png").is_file() and (out / "rank_window2.png").is_file()
    assert set(result["by_score"]) == {"top1", "loss"}
    # a window in the table's FLOPs keeps what the table counts inside it
    low = sorted(r["benchmark_flops"] for r in result["rows"])[5]
    assert main(["rank", "--supernet", str(mbv2_supernet), "--benchmark", "nas-bench-macro", "--benchmark-file",
                 str(table), "--flops-min", str(low), "--output", str(tmp_path / "w"), *FAST]) == 0
    rows = json.loads((tmp_path / "w" / "rank.json").read_text())["rows"]
    assert rows and all(r["benchmark_flops"] >= low for r in rows) and len(rows) == 8


def test_a_benchmark_of_another_space_is_refused(supernet_file, tmp_path, capsys):
    from test_bench import made_up_table

    table = made_up_table(tmp_path / "table.json")
    assert main(["rank", "--supernet", str(supernet_file), "--benchmark", "nas-bench-macro", "--benchmark-file",
                 str(table), "--output", str(tmp_path / "r"), *FAST]) == 2
    assert "has other choice layers than nas-bench-macro's" in capsys.readouterr().err


def _truth_file(path, archs, values):
    path.write_text(json.dumps({str(a): v for a, v in zip(archs, values)}))
    return path


def test_ground_truth_in_percent_is_read_and_said_so(supernet_file, digits_space, tmp_path, caplog):
    archs = rank_choose.draw_architectures(digits_space, 4, "none", seed=5)
    percent = _truth_file(tmp_path / "p.json", archs, [91.0, 92.5, 93.0, 90.0])
    truth = rank_choose.read_ground_truth(percent, digits_space)
    assert sorted(truth.values()) == pytest.approx([0.90, 0.91, 0.925, 0.93])
    caplog.set_level("INFO")
    assert main(["rank", "--supernet", str(supernet_file), "--ground-truth", str(percent), "--output",
                 str(tmp_path / "r"), *FAST]) == 0
    assert "accuracies read as percent (largest 93)" in caplog.text
    with pytest.raises(UserError, match=r"fractions \(0..1\) or percent \(0..100\), found 90..930"):
        rank_choose.read_ground_truth(_truth_file(tmp_path / "b.json", archs, [91, 92, 930, 90]), digits_space)


def test_ground_truth_of_nan_or_binary_is_one_line(supernet_file, digits_space, tmp_path, capsys):
    archs = rank_choose.draw_architectures(digits_space, 4, "none", seed=5)
    nan = tmp_path / "nan.json"
    nan.write_text("{" + ", ".join(f'"{a}": NaN' for a in archs) + "}")
    base = ["rank", "--supernet", str(supernet_file), "--output", str(tmp_path / "r"), *FAST]
    assert main([*base, "--ground-truth", str(nan)]) == 2
    assert "holds no accuracy that is a number" in capsys.readouterr().err
    some = _truth_file(tmp_path / "some.json", archs, [0.9, float("nan"), 0.8, 0.7])
    assert len(rank_choose.read_ground_truth(some, digits_space)) == 3
    for name in ("bin.csv", "bin.json"):
        (tmp_path / name).write_bytes(bytes(range(256)) * 8)
        assert main([*base, "--ground-truth", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "ground-truth file" in err


def test_ground_truth_picks_honour_stratify_and_seed(digits_space):
    archs = rank_choose.draw_architectures(digits_space, 30, "none", seed=1)
    truth = {a: 0.5 + i / 100 for i, a in enumerate(archs)}
    pick = lambda **kw: rank_choose.choose_architectures(rank_job.RankJob(supernet="x", archs=5, **kw),  # noqa: E731
                                                     digits_space, truth)
    table = cost_table(digits_space)
    spread, uniform = pick(stratify="flops"), pick(stratify="none")
    assert len(spread) == len(uniform) == 5 and spread != uniform
    assert table.macs(spread[0]) == min(map(table.macs, archs))
    assert table.macs(spread[-1]) == max(map(table.macs, archs))
    assert pick(stratify="none", seed=1) != uniform and pick(stratify="none") == uniform


def test_rank_prints_the_expected_time_and_keeps_each_scores_outputs(supernet_file, digits_space, tmp_path, capsys,
                                                                    caplog):
    archs = rank_choose.draw_architectures(digits_space, 5, "none", seed=7)
    truth = _truth_file(tmp_path / "t.json", archs, [0.5 + i / 20 for i in range(5)])
    out = tmp_path / "rank"
    command = ["rank", "--supernet", str(supernet_file), "--ground-truth", str(truth), "--output", str(out), *FAST]
    caplog.set_level("INFO")
    assert main([*command, "--score", "loss"]) == 0
    err = caplog.text
    assert "scoring 5 supernet paths" in err and "the first 3 paths took" in err and "for all 5" in err
    assert main([*command, "--resume"]) == 0
    result = json.loads((out / "rank.json").read_text())
    assert (out / "rank_scatter.png").is_file() and (out / "rank_scatter_loss.png").is_file()
    assert result["score"] == "top1" and set(result["by_score"]) == {"top1", "loss"}
    assert "top-k overlap (k=3)" in capsys.readouterr().out


def test_pairs_in_order_counts_agreeing_pairs_and_leaves_ties_out():
    from spos.stats.ranking import kendall_tau, pairs_in_order

    assert pairs_in_order([1, 2, 3, 4], [10, 20, 40, 30]) == (5, 6)
    assert pairs_in_order([1, 1, 2], [1, 2, 3]) == (2, 2)  # the tied pair is neither right nor wrong
    right, pairs = pairs_in_order([3, 1, 2, 5, 4], [1, 2, 3, 4, 5])
    assert (right - (pairs - right)) / pairs == pytest.approx(kendall_tau([3, 1, 2, 5, 4], [1, 2, 3, 4, 5]))


def test_lead_over_fewer_params_is_the_difference_of_taus_with_a_paired_interval():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=40)
    params = -truth + rng.normal(scale=1.0, size=40)  # fewer params: better, noisily
    scores = truth + rng.normal(scale=0.3, size=40)  # a better predictor than params
    lead = rank_window_statistics.lead_over(scores, -params, truth, samples=200)
    expected = rank_statistics.kendall_tau(scores, truth) - rank_statistics.kendall_tau(-params, truth)
    assert lead["value"] == pytest.approx(expected) and lead["low"] < expected < lead["high"] and lead["low"] > 0
    same = rank_window_statistics.lead_over(scores, scores, truth, samples=50)  # paired: a predictor leads itself by exactly 0
    assert same == {"value": 0.0, "low": 0.0, "high": 0.0}
    window = rank_window_statistics.window_statistics(scores, truth, np.ones(40), params, samples=50)
    assert window["lead_over_fewer_params"]["value"] == pytest.approx(expected)


def test_mean_over_windows_averages_each_windows_tau_and_lead():
    rng = np.random.default_rng(1)
    windows = []
    for noise in (0.2, 0.6, 1.0):
        truth = rng.normal(size=30)
        windows.append((truth + rng.normal(scale=noise, size=30), rng.normal(size=30), truth))
    mean = rank_window_statistics.mean_over_windows(windows, samples=200)
    taus = [rank_statistics.kendall_tau(s, t) for s, _, t in windows]
    leads = [rank_statistics.kendall_tau(s, t) - rank_statistics.kendall_tau(b, t) for s, b, t in windows]
    assert mean["windows"] == 3 and mean["kendall_tau"]["value"] == pytest.approx(np.mean(taus))
    assert mean["lead"]["value"] == pytest.approx(np.mean(leads))
    assert mean["kendall_tau"]["low"] < np.mean(taus) < mean["kendall_tau"]["high"]
    singles = [rank_window_statistics.lead_over(*window, samples=200) for window in windows]
    widths = [single["high"] - single["low"] for single in singles]  # the windows' errors partly cancel in the mean
    assert mean["lead"]["high"] - mean["lead"]["low"] < np.mean(widths)


# ----------------------------------------------------------------------------------------------
# Baselines and zero-cost proxies (#33 part 2)

BASELINES = ["flops", "fewer_params", "more_params", "depth", "grad_norm", "synflow", "naswot"]
TABLE_KEYS = ("00000000", "10000000", "01000000", "11000000", "20000000", "02000000", "21000000", "12000000",
              "22000000", "22100000", "22200000", "22210000")


def test_each_baseline_gets_bootstraps_interval_and_the_paired_lead():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=30)
    scores = truth + rng.normal(scale=0.5, size=30)
    baselines = {"depth": rng.integers(0, 4, size=30), "noise": rng.normal(size=30)}
    report = rank_window_statistics.baseline_report(scores, truth, baselines, samples=100, seed=3)
    for name, values in baselines.items():
        own = rank_statistics.bootstrap(rank_statistics.kendall_tau, values, truth, samples=100, seed=3)
        assert report[name]["kendall_tau"] == pytest.approx({"value": own.value, "low": own.low, "high": own.high})
        assert report[name]["lead"] == pytest.approx(rank_window_statistics.lead_over(scores, values, truth,
                                                                                     samples=100, seed=3))
    rows = [{"flops": 1, "params": 5, "depth": 2, "proxies": {"naswot": 3.0}},
            {"flops": 2, "params": 4, "depth": 1, "proxies": {"naswot": None}}]  # null in rank.json: ranks last
    values = rank_window_statistics.baseline_values(rows)
    assert list(values) == ["flops", "fewer_params", "more_params", "depth", "naswot"]
    assert values["fewer_params"].tolist() == [-5, -4] and values["naswot"].tolist() == [3.0, -np.inf]
    assert "depth" not in rank_window_statistics.baseline_values([{"flops": 1, "params": 1}])


def _rank_with_proxies(supernet, table, out, proxies="all", *extra):
    return main(["rank", "--supernet", str(supernet), "--benchmark", "nas-bench-macro", "--benchmark-file", str(table),
                 "--output", str(out), "--proxies", proxies, *extra, *FAST])


def test_rank_json_carries_every_baseline_with_interval_and_lead(mbv2_supernet, tmp_path, capsys):
    from test_bench import made_up_table

    table = made_up_table(tmp_path / "table.json", TABLE_KEYS)
    out = tmp_path / "rank"
    assert _rank_with_proxies(mbv2_supernet, table, out, "all", "--flops-windows", "2") == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "rank.json").read_text())
    assert [w["window"] for w in result["windows"]] == ["whole", 1, 2]
    for window in result["windows"]:
        assert list(window["baselines"]) == BASELINES
        for entry in window["baselines"].values():
            for estimate in (entry["kendall_tau"], entry["lead"]):
                assert set(estimate) == {"value", "low", "high"}
                assert estimate["value"] is None or estimate["low"] <= estimate["high"]
        assert window["flops_tau"] == window["baselines"]["flops"]["kendall_tau"]  # the old names, the same numbers
        assert window["lead_over_fewer_params"] == window["baselines"]["fewer_params"]["lead"]
    rows = result["rows"]
    assert [r["depth"] for r in rows] == [sum(b != 0 for b in rank_job.Architecture.parse(r["arch"]).blocks)
                                          for r in rows]
    truth = [r["standalone_top1"] for r in rows]
    whole = result["windows"][0]["baselines"]
    assert whole["depth"]["kendall_tau"]["value"] == pytest.approx(
        rank_statistics.kendall_tau([r["depth"] for r in rows], truth))
    for name in ("grad_norm", "synflow", "naswot"):
        values = [r["proxies"][name] for r in rows]
        assert all(isinstance(v, float) for v in values) and len(set(values)) > 1
        assert whole[name]["kendall_tau"]["value"] == pytest.approx(rank_statistics.kendall_tau(values, truth))
        supernet_tau = result["windows"][0]["kendall_tau"]["value"]
        assert whole[name]["lead"]["value"] == pytest.approx(supernet_tau - whole[name]["kendall_tau"]["value"])
    assert "naswot's own Kendall tau" in printed and "depth's own Kendall tau" in printed
    assert "the supernet's lead over it" in printed
    logged = (out / rank_folder.PROXIES_LOG).read_text().splitlines()
    assert len(logged) == 3 * len(rows)


def test_a_resumed_rank_job_computes_only_the_proxies_it_has_not_recorded(mbv2_supernet, tmp_path, monkeypatch):
    from test_bench import made_up_table

    from spos.rank import proxies

    calls = []
    for name, proxy in list(proxies.PROXIES.items()):
        monkeypatch.setitem(proxies.PROXIES, name, lambda *a, _n=name, _p=proxy: calls.append(_n) or _p(*a))
    table = made_up_table(tmp_path / "table.json", TABLE_KEYS)
    out = tmp_path / "rank"
    assert _rank_with_proxies(mbv2_supernet, table, out, "grad_norm") == 0
    first = json.loads((out / "rank.json").read_text())
    count = len(first["rows"])
    assert calls == ["grad_norm"] * count and set(first["rows"][0]["proxies"]) == {"grad_norm"}
    calls.clear()
    assert _rank_with_proxies(mbv2_supernet, table, out, "all", "--resume") == 0  # grad_norm is read back
    assert sorted(calls) == ["naswot"] * count + ["synflow"] * count
    again = json.loads((out / "rank.json").read_text())
    assert [r["proxies"]["grad_norm"] for r in again["rows"]] == [r["proxies"]["grad_norm"] for r in first["rows"]]
    calls.clear()
    log = out / rank_folder.PROXIES_LOG
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:10])  # the last record cut by a kill
    assert _rank_with_proxies(mbv2_supernet, table, out, "all", "--resume") == 0
    assert calls == [json.loads(lines[-1])["proxy"]]  # only the lost one again
    assert json.loads((out / "rank.json").read_text())["rows"] == again["rows"]


def test_proxies_do_not_change_the_supernets_weights(tmp_path):
    space = get_space("mbv2-macro-cifar", input_size=8, num_classes=10, in_channels=1, width_mult=0.125)
    supernet = SuperNet(space)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    archs = [rank_job.Architecture(tuple(map(int, key)), (0,) * 8) for key in TABLE_KEYS[:3]]
    batches = [(torch.randn(6, 1, 8, 8), torch.arange(6))]
    job = rank_job.RankJob(supernet="x", output=str(tmp_path), proxies=["grad_norm", "synflow", "naswot"],
                           batch_size=4)
    values = rank_job.proxy_measures(job, supernet, archs, lambda: (batches, batches))
    assert set(values) == {str(a) for a in archs} and all(len(v) == 3 for v in values.values())
    after = supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and all(p.grad is None for p in supernet.parameters())


def test_rank_refuses_an_unknown_proxy(mbv2_supernet, tmp_path, capsys):
    assert _rank_with_proxies(mbv2_supernet, tmp_path / "t.json", tmp_path / "r", "snip") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown proxy 'snip'" in err
