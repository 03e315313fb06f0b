"""`spos search` end to end on a tiny supernet: outputs, limits, resume, multi-objective, errors."""

from __future__ import annotations

import json
import random
import statistics

import pytest
import torch

from spos.cli import main
from spos.deploy.latency import build_latency_table
from spos.nn.supernet import SuperNet
from spos.space.architecture import load_architecture, sample_architecture
from spos.space.searchspace import get_space
from spos.store import checkpoint

SMALL = ["--population", "6", "--generations", "2", "--parents", "2", "--mutations", "3", "--crossovers", "3",
         "--bn-batches", "2", "--batch-size", "64", "--no-progress"]


@pytest.fixture(scope="module")
def space():
    return get_space("oneshot", input_size=8, num_classes=10, in_channels=1, width_mult=0.25)


@pytest.fixture(scope="module")
def supernet_file(tmp_path_factory, space, digits_run):
    path = tmp_path_factory.mktemp("supernet") / "supernet.pt"
    checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(space), config=digits_run), path)
    return path


def _history(out):
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def test_search_writes_history_best_front_and_plots(supernet_file, tmp_path, capsys):
    out = tmp_path / "search"
    assert main(["search", "--supernet", str(supernet_file), "--flops-max", "1.6e6", "--output", str(out),
                 *SMALL]) == 0
    assert "best:" in capsys.readouterr().out
    history = _history(out)
    assert len(history) == len({tuple(r["genes"]) for r in history}) >= 6  # scored once each
    assert all(r["flops"] <= 1.6e6 and 0 <= r["score"] <= 1 for r in history)
    arch, space = load_architecture(out / "best.json")
    summary = json.loads((out / "summary.json").read_text())
    assert str(arch) == summary["best"]["arch"] and summary["best"]["flops"] <= 1.6e6
    assert list((out / "front").glob("arch-*.json"))
    assert (out / "search_scatter.png").stat().st_size > 0 and (out / "best_per_generation.png").is_file()
    # the best architecture file is what `spos train --arch` takes
    assert main(["train", "--config", "digits-retrain", "--arch", str(out / "best.json"), "--output",
                 str(tmp_path / "retrain"), "--no-progress", "--set", "train.iterations=2"]) == 0


def test_search_by_loss_keeps_the_lowest_cross_entropy_and_reports_its_top1(supernet_file, tmp_path, capsys):
    out = tmp_path / "search"
    command = ["search", "--supernet", str(supernet_file), "--flops-max", "1.6e6", "--output", str(out),
               "--score", "loss", *SMALL]
    assert main(command) == 0
    history = _history(out)
    assert all(r["score"] < 0 for r in history)  # minus the cross-entropy: higher is better
    best_record = max(history, key=lambda r: r["score"])
    best = json.loads((out / "best.json").read_text())
    assert best["text"] == best_record["arch"] and best["score"] == "loss"
    assert best["holdout_loss"] == pytest.approx(-best_record["score"], rel=1e-5)
    assert 0 <= best["accuracy"] <= 1
    assert json.loads((out / "summary.json").read_text())["best"]["accuracy"] == best["accuracy"]
    assert (out / "best_per_generation.png").stat().st_size > 0
    capsys.readouterr()
    # a resume must score the way the search began
    assert main([*command[:-len(SMALL) - 2], *SMALL, "--resume"]) == 2
    assert "score 'loss' -> None" in capsys.readouterr().err
    assert main([*command, "--resume"]) == 0


@pytest.mark.parametrize("mode", ["block", "channel"])
def test_the_path_scored_is_the_architecture_recorded(supernet_file, space, tmp_path, monkeypatch, mode):
    from spos.search import scoring

    scored = []
    recalibrate = scoring.recalibrate_bn

    def recording(path, batches, **kwargs):
        scored.append(path.arch)
        return recalibrate(path, batches, **kwargs)

    monkeypatch.setattr(scoring, "recalibrate_bn", recording)
    out = tmp_path / "search"
    assert main(["search", "--supernet", str(supernet_file), "--mode", mode, "--output", str(out), "--population",
                 "4", "--generations", "1", "--parents", "2", "--mutations", "2", "--crossovers", "2",
                 "--bn-batches", "1", "--eval-batches", "1", "--batch-size", "32", "--no-progress"]) == 0
    history = _history(out)
    assert [r["arch"] for r in history] == [str(arch) for arch in scored]
    best, _ = load_architecture(out / "best.json")
    assert best in scored
    if mode == "block":  # channels fixed at scale 1.0, blocks searched
        assert all(arch.channels == (space.default_channel,) * space.num_layers for arch in scored)
        assert len({arch.blocks for arch in scored}) > 1
    else:  # blocks fixed at the first choice, channels searched
        assert all(arch.blocks == (0,) * space.num_layers for arch in scored)
        assert len({arch.channels for arch in scored}) > 1


def test_children_scale_with_the_population_unless_given(supernet_file, tmp_path):
    """--population 8 --generations 2 scores about 16 candidates, not 8 + 25 + 25."""
    out = tmp_path / "search"
    assert main(["search", "--supernet", str(supernet_file), "--output", str(out), "--population", "8",
                 "--generations", "2", "--bn-batches", "1", "--batch-size", "64", "--no-progress"]) == 0
    assert 8 < len(_history(out)) <= 8 * 2
    assert json.loads((out / "summary.json").read_text())["scored"] <= 16


def test_a_job_saved_with_default_children_as_null_still_resumes(supernet_file, tmp_path):
    """job.json records the children counts that ran; one from before, with null for "half the
    population", is the same search as the same command today, and a different count is not."""
    quick = ["--population", "4", "--generations", "1", "--parents", "2", "--bn-batches", "1", "--eval-batches", "1",
             "--batch-size", "64", "--no-progress"]
    out = tmp_path / "search"
    assert main(["search", "--supernet", str(supernet_file), "--output", str(out), *quick]) == 0
    job = json.loads((out / "job.json").read_text())
    assert (job["mutations"], job["crossovers"]) == (2, 2)
    (out / "job.json").write_text(json.dumps({**job, "mutations": None, "crossovers": None}))
    assert main(["search", "--supernet", str(supernet_file), "--output", str(out), "--resume", *quick]) == 0
    assert main(["search", "--supernet", str(supernet_file), "--output", str(out), "--resume", *quick,
                 "--mutations", "3"]) == 2


def test_resume_scores_no_candidate_twice(supernet_file, tmp_path):
    out = tmp_path / "search"
    assert main(["search", "--supernet", str(supernet_file), "--output", str(out), *SMALL]) == 0
    first = _history(out)
    assert main(["search", "--supernet", str(supernet_file), "--output", str(out), "--resume",
                 *SMALL[:2], "--generations", "4", *SMALL[4:]]) == 0
    after = _history(out)
    assert after[:len(first)] == first and len(after) > len(first)
    assert len({tuple(r["genes"]) for r in after}) == len(after)
    # and a search that would overwrite a history is refused
    assert main(["search", "--supernet", str(supernet_file), "--output", str(out), *SMALL]) == 2


def test_latency_table_limit_and_pareto_front(supernet_file, space, tmp_path, capsys):
    table = build_latency_table(space, warmup=1, repeats=2, calibration_archs=1)
    table_file = table.save(tmp_path / "latency.json")
    rng = random.Random(0)
    limit = statistics.median(table.predict(sample_architecture(space, rng)) for _ in range(200))
    out = tmp_path / "search"
    assert main(["search", "--supernet", str(supernet_file), "--latency-table", str(table_file),
                 "--latency-max", str(limit), "--objectives", "acc,latency", "--output", str(out), *SMALL]) == 0
    best = json.loads((out / "summary.json").read_text())["best"]
    assert f"{best['latency']:.3g} ms" in capsys.readouterr().out  # the best line says its latency
    history = _history(out)
    assert all(r["latency"] <= limit for r in history)
    front = [json.loads(p.read_text()) for p in sorted((out / "front").glob("arch-*.json"))]
    assert front
    points = [(f["accuracy"], f["latency"]) for f in front]
    for acc, lat in points:  # nothing on the front is dominated by another front member
        assert not any(a >= acc and t <= lat and (a, t) != (acc, lat) for a, t in points)


def test_foreign_latency_table_is_refused_naming_what_differs(supernet_file, tmp_path, capsys):
    """Same name and input size, other widths and channels: the error names those keys and the command
    that builds a matching table."""
    other = get_space("oneshot", input_size=8, num_classes=10, in_channels=3, width_mult=0.5)
    table_file = build_latency_table(other, warmup=1, repeats=1, calibration_archs=0,
                                     check_archs=0).save(tmp_path / "t.json")
    assert main(["search", "--supernet", str(supernet_file), "--latency-table", str(table_file),
                 "--latency-max", "5", "--output", str(tmp_path / "s"), *SMALL]) == 2
    error = capsys.readouterr().err
    assert "built for another space" in error and "stage_widths" in error and "in_channels 3 (here 1)" in error
    assert "input_size" not in error and "num_classes" not in error
    assert f"spos latency table --supernet {supernet_file}" in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_a_table_built_for_the_supernet_is_used_and_its_error_reported(supernet_file, tmp_path, capsys, caplog):
    table_file = tmp_path / "t.json"
    assert main(["latency", "table", "--supernet", str(supernet_file), "--repeats", "1", "--check", "2",
                 "--no-progress", "--output", str(table_file)]) == 0
    assert "predictor error on 2 random architectures measured when it was built: mean" in capsys.readouterr().out
    data = json.loads(table_file.read_text())
    assert data["check"]["archs"] == 2 and data["check"]["max_error_pct"] >= data["check"]["mean_error_pct"] >= 0
    data["check"] = {"archs": 2, "mean_error_pct": 44.0, "max_error_pct": 60.0}  # as a busy machine measured one
    table_file.write_text(json.dumps(data))
    with caplog.at_level("INFO"):
        assert main(["search", "--supernet", str(supernet_file), "--latency-table", str(table_file),
                     "--objectives", "acc,latency", "--output", str(tmp_path / "s"), *SMALL]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("mean 44.0%, max 60.0%, above 15%" in w for w in warnings)
    assert main(["latency", "table", "--supernet", str(supernet_file), "--space", "oneshot",
                 "--output", str(tmp_path / "u.json")]) == 2
    assert "leave out --space" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--flops-max", "1"], "no"),
    (["--objectives", "flops"], "start with acc"),
    (["--population", "0"], "at least 1"),
    (["--data", "cifar10", "--data-root", "/no/such/folder", "--holdout-from", "val"], "does not exist"),
    (["--data", "synthetic", "--holdout-from", "val"], "3 channels but the network expects 10 and 1"),
    (["--data", "mnist"], "was trained on digits, so nothing says which mnist images it saw"),
    pytest.param(["--device", "cuda"], "CUDA is not available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_bad_search_input_is_one_line(supernet_file, tmp_path, capsys, extra, message):
    out = tmp_path / "s"
    assert main(["search", "--supernet", str(supernet_file), "--output", str(out), *SMALL, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (out / "history.jsonl").exists()


def _search_rank(rank: int, world: int, port: int, job, threads: int) -> None:
    import os

    import torch

    from spos.search.run import run_search

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(threads)
    run_search(job)
    torch.distributed.destroy_process_group()


class _Timing:
    def __init__(self, median_ms: float) -> None:
        self.median_ms = median_ms


def _timings_of_rank(rank: int):
    """A stand-in for `spos.deploy.latency.measure_model` whose latency of an architecture depends on the rank
    measuring it (0-10 ms): timing noise, made large and reproducible."""
    import zlib

    def measure_model(net, shape, **kwargs):
        return _Timing(zlib.crc32(repr((net.arch.genes, rank)).encode()) % 1000 / 100)

    return measure_model


def _search_rank_timed_apart(rank: int, world: int, port: int, job, threads: int) -> None:
    import spos.deploy.latency

    spos.deploy.latency.measure_model = _timings_of_rank(rank)
    _search_rank(rank, world, port, job, threads)


@pytest.mark.slow
def test_two_processes_score_a_generation_between_them_with_the_same_result(supernet_file, tmp_path, monkeypatch):
    """Even when the ranks time candidates differently (--latency-max without a table): each rank deciding
    for itself would draw other candidate lists; rank 0 decides, the others score what it sends, and the
    scores are merged by architecture, so two ranks give what one process gives."""
    import socket

    import torch.multiprocessing as mp

    import spos.deploy.latency
    from spos.search.run import SearchJob, run_search

    def job(out):
        return SearchJob(supernet=str(supernet_file), output=str(out), population=6, generations=2, parents=2,
                         mutations=3, crossovers=3, bn_batches=2, batch_size=64, latency_max=5.0, progress=False)

    monkeypatch.setattr(spos.deploy.latency, "measure_model", _timings_of_rank(0))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread per process: two ranks on a 2-core machine must not oversubscribe it
    try:
        run_search(job(tmp_path / "one"))
    finally:
        torch.set_num_threads(threads)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_search_rank_timed_apart, args=(2, port, job(tmp_path / "two"), 1), nprocs=2,
                       start_method="spawn")
    one, two = _history(tmp_path / "one"), _history(tmp_path / "two")
    assert len(two) > 6 and all(r["latency"] <= 5.0 for r in two)
    assert [(r["arch"], r["latency"]) for r in one] == [(r["arch"], r["latency"]) for r in two]
    assert [r["score"] for r in one] == pytest.approx([r["score"] for r in two], abs=1e-6)
    best = [json.loads((tmp_path / run / "summary.json").read_text())["best"]["arch"] for run in ("one", "two")]
    assert best[0] == best[1]


def test_each_measure_runs_once_per_candidate():
    from spos.search.constraints import measure_once

    calls = []
    measured = measure_once({"flops": lambda genes: calls.append(tuple(genes)) or float(sum(genes))})
    assert measured([1, 2]) == measured((1, 2)) == {"flops": 3.0}
    assert calls == [(1, 2)]


def test_one_cost_axis_for_the_front_and_the_scatter():
    from spos.search.run import SearchJob

    assert SearchJob(supernet="s.pt").cost_axis == "flops"
    assert SearchJob(supernet="s.pt", latency_max=5.0).cost_axis == "latency"
    assert SearchJob(supernet="s.pt", objectives=["acc", "latency"], algorithm="nsga2").cost_axis == "latency"
    assert SearchJob(supernet="s.pt", objectives=["acc", "flops"], latency_table="t.json").cost_axis == "flops"


def test_search_scores_on_the_supernets_own_data_and_holdout_split():
    """Without --data/--holdout a search scores on the images its supernet held out (its data, hold-out
    fraction and training seed); data on which the supernet records no hold-out is refused unless the
    hold-out comes from val or trained images are allowed (tests/test_holdout_rule.py has every case)."""
    from spos.errors import UserError
    from spos.search.holdout import with_supernet_data
    from spos.search.run import SearchJob

    saved = {"data": {"name": "cifar10", "root": "/d/cifar", "holdout": 0.1}, "train": {"seed": 3}}
    job = with_supernet_data(SearchJob(supernet="s.pt"), saved)
    assert (job.data, job.data_root, job.holdout, job.split_seed, job.seed) == ("cifar10", "/d/cifar", 0.1, 3, 0)
    with pytest.raises(UserError, match="was trained on cifar10, so nothing says which mnist images it saw"):
        with_supernet_data(SearchJob(supernet="s.pt", data="mnist"), saved)
    other = with_supernet_data(SearchJob(supernet="s.pt", data="mnist", holdout_from="val"), saved)
    assert (other.data, other.data_root, other.holdout, other.split_seed) == ("mnist", None, 0.2, None)
    told = with_supernet_data(SearchJob(supernet="s.pt", holdout=500, allow_trained_images=True), {})
    assert (told.data, told.holdout, told.split_seed) == ("digits", 500, None)
