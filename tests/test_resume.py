"""Resumes that are exact and never mix two runs: a resume that cannot read its checkpoint stops and
touches nothing, jobs are fingerprinted by what their inputs are (not how their paths were written),
a kill mid-epoch or mid-generation resumes to the files of an uninterrupted run, and every run-folder
record a resume reads is checked where it is read (one line naming the file, never a traceback)."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_safety import Killed, _kill_at, _RunsCode  # kills at write points, a checkpoint that runs code

from spos.cli import main
from spos.nn.supernet import SuperNet
from spos.rank import choose as rank_choose
from spos.rank import folder as rank_folder
from spos.rank import job as rank_job
from spos.space.searchspace import get_space
from spos.store import checkpoint
from spos.train import load_config, run_training

TINY = ["space.width_mult=0.25", "train.log_every=1000", "validation.paths=2", "validation.bn_batches=2"]
RETRAIN = ["train.epochs=2", "arch=oneshot", "data.batch_size=512", "data.val_batch_size=512"]
SEARCH_SMALL = ["--population", "4", "--parents", "2", "--mutations", "2", "--crossovers", "2", "--bn-batches", "1",
                "--batch-size", "64", "--eval-batches", "1", "--no-progress"]
RANK_FAST = ["--bn-batches", "1", "--eval-batches", "1", "--batch-size", "64", "--bootstrap", "20", "--no-progress"]
TIMING = ("images_per_s", "train_seconds")


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (the run lock aside) with its bytes: what "touches nothing" compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


# -- a resume that cannot read its checkpoint stops, exit 2, and touches nothing ------------------------

def _train_argv(out, resume: bool = True):
    return ["train", "--config", "digits-retrain", "--output", str(out), "--no-progress",
            *(["--resume"] if resume else []), *[arg for override in [*TINY, *RETRAIN] for arg in ("--set", override)]]


@pytest.fixture(scope="module")
def finished_training(tmp_path_factory):
    out = tmp_path_factory.mktemp("training") / "run"
    assert main(_train_argv(out, resume=False)) == 0
    return out


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _edit_state(path: Path, edit) -> None:
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)


DAMAGES = {
    "cut, no previous.pt": (lambda out: ((out / "previous.pt").unlink(), _cut(out / "last.pt")),
                            "damaged or cut short"),
    "cut, previous.pt kept": (lambda out: _cut(out / "last.pt"), "move"),
    "crafted to run code": (lambda out: torch.save({**torch.load(out / "last.pt", weights_only=True),
                                                     "evil": _RunsCode(out.parent / "MARKER")}, out / "last.pt"),
                            "holds objects spos will not load"),
    "without rng": (lambda out: _edit_state(out / "last.pt", lambda s: s.pop("rng")), "rng is missing"),
    "epoch as text": (lambda out: _edit_state(out / "last.pt", lambda s: s.update(epoch="2")),
                      "epoch is '2', not a whole number"),
    "optimizer of another network": (lambda out: _edit_state(out / "last.pt", lambda s: s["optimizer"].update(
        param_groups=[{**s["optimizer"]["param_groups"][0], "params": [0]}])), "cannot be restored"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_resume_that_cannot_use_its_checkpoint_stops_and_touches_nothing(tmp_path, capsys, finished_training,
                                                                           damage):
    out = tmp_path / "run"
    shutil.copytree(finished_training, out)
    spoil, message = DAMAGES[damage]
    spoil(out)
    before = _snapshot(out)
    assert main(_train_argv(out)) == 2
    err = _one_error_line(capsys)
    assert "no usable checkpoint" in err and message in err and "nothing was changed" in err
    assert _snapshot(out) == before  # best.pt of the finished run included: no silent start from scratch
    assert not (tmp_path / "MARKER").exists()
    if (out / "previous.pt").exists():  # the advice works: the checkpoint before it resumes
        assert f"move {out / 'previous.pt'} to {out / 'last.pt'}" in err
        (out / "previous.pt").replace(out / "last.pt")
        assert main(_train_argv(out)) == 0
    else:
        assert "start a new run in another --output" in err


def test_a_supernet_resume_of_a_crafted_last_pt_stops(tmp_path, capsys):
    out = tmp_path / "run"
    run_training(load_config("digits-supernet", [*TINY, "train.iterations=1"]), out, progress=False)
    torch.save({**torch.load(out / "last.pt", weights_only=True), "evil": _RunsCode(tmp_path / "MARKER")},
               out / "last.pt")
    before = _snapshot(out)
    assert main(["train-supernet", "--output", str(out), "--resume", "--no-progress",
                 *[arg for override in [*TINY, "train.iterations=1"] for arg in ("--set", override)]]) == 2
    assert "no usable checkpoint" in _one_error_line(capsys)
    assert _snapshot(out) == before and not (tmp_path / "MARKER").exists()


def test_a_demo_resume_stops_at_a_damaged_supernet_checkpoint(tmp_path, capsys):
    from dataclasses import asdict

    from spos.demo.pipeline import demo_settings

    out = tmp_path / "demo"
    run_training(load_config("digits-supernet", [*TINY, "train.iterations=1"]), out / "supernet", progress=False)
    (out / "demo.json").write_text(json.dumps(asdict(demo_settings(budget=0.01))))
    _cut(out / "supernet" / "last.pt")
    before = _snapshot(out)
    assert main(["demo", "--output", str(out), "--resume", "--no-progress"]) == 2
    assert "no usable checkpoint" in _one_error_line(capsys)
    assert _snapshot(out) == before  # the supernet is not trained again over its own folder


# -- a kill mid-epoch resumes to the metrics of an uninterrupted run --------------------------------------

MID_EPOCH = ("digits-retrain", [*TINY, "train.epochs=1", "arch=oneshot", "data.batch_size=256",
                                "train.checkpoint_every_steps=2"])


def _rows(folder: Path, keep: tuple = ()) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING or k in keep} for row in rows]


@contextmanager
def _steps_as_seconds():
    """The training loop's clock reads the optimizer steps taken so far (in any run): an epoch's train_seconds
    is then the steps it took, the same in an uninterrupted run and in one cut in two by a kill and a resume."""
    import spos.train.loop as loop
    import spos.train.setup as setup

    steps, real_step = [0], loop.Trainer._optimizer_step

    def counted_step(self, archs):
        real_step(self, archs)
        steps[0] += 1

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop.Trainer, "_optimizer_step", counted_step)
        patch.setattr(setup, "time", SimpleNamespace(perf_counter=lambda: float(steps[0])))
        yield


@pytest.fixture(scope="module")
def straight_mid_epoch(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    with _steps_as_seconds():
        run_training(load_config(*MID_EPOCH), out, progress=False)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("occurrence", [2, 3])  # killed at a mid-epoch save, or at the epoch's end after one
def test_a_kill_mid_epoch_then_resume_reports_the_whole_epoch(tmp_path, monkeypatch, straight_mid_epoch,
                                                               occurrence):
    out = tmp_path / "run"
    with _steps_as_seconds():
        with monkeypatch.context() as patch:
            _kill_at(patch, "last.pt", occurrence)
            with pytest.raises(Killed):
                run_training(load_config(*MID_EPOCH), out, progress=False)
        assert checkpoint.load(out / "previous.pt")["batches_done"] > 0  # the resume starts mid-epoch
        run_training(load_config(*MID_EPOCH), out, resume=True, progress=False)
    assert _rows(out) == _rows(straight_mid_epoch)
    # its time and images/s too: the steps before the resume and after it (#34 item 7)
    steps = _rows(straight_mid_epoch)[-1]["step"]
    assert [row["train_seconds"] for row in _rows(straight_mid_epoch, TIMING)] == [steps]
    assert _rows(out, TIMING) == _rows(straight_mid_epoch, TIMING)
    last, straight = checkpoint.load(out / "last.pt"), checkpoint.load(straight_mid_epoch / "last.pt")
    assert all(torch.equal(value, last["model"][key]) for key, value in straight["model"].items())


# -- runs that mix: inputs are fingerprinted by what they are ------------------------------------------------

def _ground_truth(folder: Path, space) -> Path:
    archs = rank_choose.draw_architectures(space, 4, "none", seed=5)
    truth = folder / "truth.json"
    truth.write_text(json.dumps({str(a): 0.5 + i / 20 for i, a in enumerate(archs)}))
    return truth


def test_a_rank_resume_against_a_replaced_supernet_is_refused(tmp_path, capsys, digits_space, digits_run):
    supernet = checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(digits_space), config=digits_run),
                                      tmp_path / "net.pt")
    truth, out = _ground_truth(tmp_path, digits_space), tmp_path / "rank"
    command = ["rank", "--supernet", str(supernet), "--ground-truth", str(truth), "--output", str(out), *RANK_FAST]
    assert main(command) == 0
    before = _snapshot(out)
    torch.manual_seed(1)
    checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(digits_space), config=digits_run),
                           supernet)  # same path, new weights
    capsys.readouterr()
    assert main([*command, "--resume"]) == 2
    err = _one_error_line(capsys)
    assert "other settings (supernet)" in err
    assert _snapshot(out) == before


def test_a_rank_resume_from_another_working_directory_continues(tmp_path, monkeypatch, digits_supernet_file,
                                                                digits_space):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    shutil.copy(digits_supernet_file, first / "supernet.pt")
    _ground_truth(first, digits_space)
    monkeypatch.chdir(first)
    assert main(["rank", "--supernet", "supernet.pt", "--ground-truth", "truth.json", "--output", "rank",
                 *RANK_FAST]) == 0
    monkeypatch.chdir(second)
    assert main(["rank", "--supernet", "../a/supernet.pt", "--ground-truth", "../a/truth.json", "--output", "../a/rank",
                 "--resume", *RANK_FAST]) == 0


def test_a_training_resume_names_its_architecture_file_by_any_path_but_not_another_architecture(
        tmp_path, monkeypatch, capsys, digits_space):
    from spos.space.architecture import Architecture, save_architecture

    first, second = tmp_path / "a", tmp_path / "b"
    second.mkdir()
    save_architecture(first / "arch.json", Architecture((0,) * 20, (7,) * 20), digits_space)
    save_architecture(second / "other.json", Architecture((1,) * 20, (7,) * 20), digits_space)
    settings = [arg for override in [*TINY, "train.iterations=1"] for arg in ("--set", override)]
    monkeypatch.chdir(first)
    assert main(["train", "--config", "digits-retrain", "--arch", "arch.json", "--output", "run", "--no-progress",
                 *settings]) == 0
    monkeypatch.chdir(second)
    resume = ["train", "--config", "digits-retrain", "--output", "../a/run", "--no-progress", "--resume", *settings]
    assert main([*resume, "--arch", "../a/arch.json"]) == 0
    before = _snapshot(first / "run")
    capsys.readouterr()
    assert main([*resume, "--arch", "other.json"]) == 2
    assert "started with other settings (arch 0,0," in _one_error_line(capsys)
    assert _snapshot(first / "run") == before


def _tiny_cifar_npz(path: Path, seed: int) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    np.savez(path, x_train=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), y_train=np.arange(20) % 10,
             x_test=rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8), y_test=np.arange(10) % 10)
    return path


def test_a_search_resume_on_other_data_is_refused_and_on_the_same_data_by_another_path_continues(tmp_path, capsys,
                                                                                                  monkeypatch):
    cifar_space = get_space("oneshot", input_size=32, num_classes=10, in_channels=3, width_mult=0.25)
    supernet = checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(cifar_space)), tmp_path / "supernet.pt")
    first = _tiny_cifar_npz(tmp_path / "a.npz", seed=0)
    _tiny_cifar_npz(tmp_path / "b.npz", seed=1)
    out = tmp_path / "search"

    def search(root: str, *extra):
        return main(["search", "--supernet", str(supernet), "--data", "cifar10", "--data-root", root, "--output",
                     str(out), "--generations", "1", *SEARCH_SMALL, "--batch-size", "8",
                     "--allow-trained-images", *extra])  # a bare supernet records no hold-out

    assert search(str(first)) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert search(str(tmp_path / "b.npz"), "--resume") == 2
    err = _one_error_line(capsys)
    assert "holds another search" in err and "data_root" in err
    assert _snapshot(out) == before
    monkeypatch.chdir(out)
    assert search("../a.npz", "--resume") == 0


def test_a_search_resume_with_fewer_generations_is_refused(tmp_path, capsys, digits_supernet_file):
    out = tmp_path / "search"
    command = ["search", "--supernet", str(digits_supernet_file), "--output", str(out), *SEARCH_SMALL]
    assert main([*command, "--generations", "2"]) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert main([*command, "--generations", "1", "--resume"]) == 2
    err = _one_error_line(capsys)
    assert "already holds 2 generations" in err and "--generations 2 or more" in err
    assert _snapshot(out) == before


def test_a_demo_resume_from_another_working_directory_finds_its_data(tmp_path, monkeypatch):
    import spos.train.loop

    def stop(*args, **kwargs):
        raise KeyboardInterrupt  # the demo got past its settings and data to its first stage

    monkeypatch.setattr(spos.train.loop, "run_training", stop)
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    _tiny_cifar_npz(first / "cifar10_subset.npz", seed=0)
    monkeypatch.chdir(first)
    assert main(["demo", "--data", "cifar10", "--data-root", "cifar10_subset.npz", "--output", "demo",
                 "--no-progress"]) == 130
    monkeypatch.chdir(second)
    assert main(["demo", "--output", "../a/demo", "--resume", "--no-progress"]) == 130


# -- a kill mid-generation: every scored candidate is in the history, the summary counts them all -----------

def _search(digits_supernet_file, out, *extra):
    return main(["search", "--supernet", str(digits_supernet_file), "--output", str(out), "--generations", "2",
                 *SEARCH_SMALL, *extra])


@pytest.fixture(scope="module")
def straight_search(tmp_path_factory, digits_supernet_file):
    out = tmp_path_factory.mktemp("straight-search") / "search"
    assert _search(digits_supernet_file, out) == 0
    return out


def _count_scoring(monkeypatch, kill_at: int | None = None) -> list:
    """Count the candidates scored; with ``kill_at``, die when about to score that one (1-based)."""
    from spos.search.scoring import SupernetScorer

    calls, real = [], SupernetScorer.measure

    def measure(self, arch):
        calls.append(str(arch))
        if kill_at is not None and len(calls) == kill_at:
            raise Killed(f"killed scoring candidate {kill_at}")
        return real(self, arch)

    monkeypatch.setattr(SupernetScorer, "measure", measure)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [3, 6])  # in the first generation, in the second
def test_a_search_killed_mid_generation_scores_nothing_twice_and_counts_everything(
        tmp_path, monkeypatch, digits_supernet_file, straight_search, kill_at):
    out = tmp_path / "search"
    with monkeypatch.context() as patch:
        _count_scoring(patch, kill_at)
        with pytest.raises(Killed):
            _search(digits_supernet_file, out)
    assert len((out / "history.jsonl").read_text().splitlines()) == kill_at - 1  # written as scored
    calls = _count_scoring(monkeypatch)
    assert _search(digits_supernet_file, out, "--resume") == 0
    straight = json.loads((straight_search / "summary.json").read_text())
    resumed = json.loads((out / "summary.json").read_text())
    assert len(calls) == straight["scored"] - (kill_at - 1)
    assert resumed["scored"] == straight["scored"] and resumed["best"] == straight["best"]
    lines = sorted((out / "history.jsonl").read_text().splitlines())
    assert lines == sorted((straight_search / "history.jsonl").read_text().splitlines())


def _timed(monkeypatch, slower: float = 1.0) -> list:
    """Stand in for `spos.deploy.latency.measure_model`: 4-10 ms by architecture (a crc32 of its genes), ``slower``
    times that (a machine busier than before); returns the (architecture, ms) pairs it timed."""
    import zlib
    from types import SimpleNamespace

    import spos.deploy.latency

    timed = []

    def measure_model(net, shape, **kwargs):
        timed.append((str(net.arch), slower * (4 + zlib.crc32(repr(net.arch.genes).encode()) % 600 / 100)))
        return SimpleNamespace(median_ms=timed[-1][1])

    monkeypatch.setattr(spos.deploy.latency, "measure_model", measure_model)
    return timed


def test_a_latency_limited_search_resumed_on_a_slower_machine_ends_as_the_uninterrupted_one(
        tmp_path, monkeypatch, digits_supernet_file):
    """A resume reuses every latency the killed run measured, those of candidates it refused for latency
    included, so it draws what that run drew; timing them again (3x slower here) would refuse to start
    or search other candidates, and mix two sessions' timings in one history (#34 item 6)."""
    straight, out, limit = tmp_path / "straight", tmp_path / "search", ("--latency-max", "8")
    with monkeypatch.context() as patch:
        timed_straight = _timed(patch)
        assert _search(digits_supernet_file, straight, *limit) == 0
    assert any(ms > 8 for _, ms in timed_straight)  # some draws were refused for their latency
    with monkeypatch.context() as patch:
        _timed(patch)
        _count_scoring(patch, kill_at=6)  # in the last generation: every candidate of the run has been drawn
        with pytest.raises(Killed):
            _search(digits_supernet_file, out, *limit)
    timed_again = _timed(monkeypatch, slower=3)
    assert _search(digits_supernet_file, out, *limit, "--resume") == 0
    assert timed_again == []
    assert (out / "history.jsonl").read_text() == (straight / "history.jsonl").read_text()
    resumed, uninterrupted = (json.loads((run / "summary.json").read_text()) for run in (out, straight))
    assert resumed["best"] == uninterrupted["best"] and resumed["scored"] == uninterrupted["scored"]


# -- damaged run-folder records: one line naming the file, or dropped and measured again ----------------------

def test_history_records_of_the_wrong_shape_are_dropped_and_scored_again(tmp_path, caplog, digits_supernet_file,
                                                                         straight_search):
    out = tmp_path / "search"
    shutil.copytree(straight_search, out)
    lines = (out / "history.jsonl").read_text().splitlines()
    lines[1] = json.dumps({"genes": [[1, 2]], "score": 0.5})
    lines[2] = json.dumps({**json.loads(lines[2]), "score": "high"})
    (out / "history.jsonl").write_text("\n".join(lines) + "\n")
    with caplog.at_level("WARNING"):
        assert _search(digits_supernet_file, out, "--resume") == 0
    assert "dropped 2 damaged lines (line 2, 3)" in caplog.text
    assert sorted((out / "history.jsonl").read_text().splitlines()) == \
        sorted((straight_search / "history.jsonl").read_text().splitlines())


def test_damaged_latency_lines_are_dropped_and_timed_again(tmp_path, caplog):
    from spos.search.constraints import LATENCY_LOG, recorded_latencies

    good = [{"arch": "0,1/2,3", "latency": 7.5}, {"arch": "1,1/0,0", "latency": 9.25}]
    lines = [json.dumps(good[0]), json.dumps({"arch": "1,0/0,0", "latency": "slow"}), json.dumps(good[1]), '{"arch"']
    (tmp_path / LATENCY_LOG).write_text("\n".join(lines))
    history = [{"genes": [0], "score": 0.5, "arch": "2,2/1,1", "latency": 6.0},
               {"genes": [1], "score": 0.5, "arch": "2,0/1,1", "latency": None}]  # not a latency: timed again
    with caplog.at_level("WARNING"):
        assert recorded_latencies(tmp_path, history) == {"2,2/1,1": 6.0, "0,1/2,3": 7.5, "1,1/0,0": 9.25}
    assert "dropped 2 damaged lines (line 2, 4)" in caplog.text and "timed again" in caplog.text
    assert (tmp_path / LATENCY_LOG).read_text().splitlines() == [json.dumps(record) for record in good]


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "job.json is damaged (the record is [1, 2], not an object)"),
    ('{"population": "4"}', "job.json is damaged (population is '4', not a whole number)"),
    ("{not json", "job.json is damaged (not valid JSON)"),
])
def test_a_damaged_job_json_is_one_line(tmp_path, capsys, digits_supernet_file, straight_search, content, message):
    out = tmp_path / "search"
    shutil.copytree(straight_search, out)
    (out / "job.json").write_text(content)
    before = _snapshot(out)
    assert _search(digits_supernet_file, out, "--resume") == 2
    err = _one_error_line(capsys)
    assert message in err and "start a new search in another --output" in err
    assert _snapshot(out) == before


@pytest.fixture(scope="module")
def finished_rank(tmp_path_factory, digits_supernet_file, digits_space):
    folder = tmp_path_factory.mktemp("rank")
    truth = _ground_truth(folder, digits_space)
    command = ["rank", "--supernet", str(digits_supernet_file), "--ground-truth", str(truth), "--output",
               str(folder / "rank"), *RANK_FAST]
    assert main(command) == 0
    return folder / "rank", command


@pytest.mark.parametrize("content, message", [
    ('{"job": 1, "architectures": []}', "settings.json is damaged (job is 1, not an object)"),
    ("[]", "settings.json is damaged (the record is [], not an object)"),
    ('{"job": {}, "architectures": [3]}', "settings.json is damaged (architectures[0] is 3, not text)"),
])
def test_a_damaged_rank_settings_json_is_one_line(tmp_path, capsys, finished_rank, content, message):
    finished, command = finished_rank
    out = tmp_path / "rank"
    shutil.copytree(finished, out)
    (out / rank_folder.SETTINGS).write_text(content)
    assert main([*[str(out) if part == str(finished) else part for part in command], "--resume"]) == 2
    assert message in _one_error_line(capsys)


def test_damaged_supernet_score_rows_are_dropped_and_measured_again(tmp_path, caplog, finished_rank):
    finished, command = finished_rank
    out = tmp_path / "rank"
    shutil.copytree(finished, out)
    log = out / rank_folder.SCORES_LOG
    rows = log.read_text().splitlines()
    log.write_text("\n".join(["5", json.dumps({**json.loads(rows[0]), "supernet_top1": "x"}), *rows[1:]]) + "\n")
    with caplog.at_level("WARNING"):
        assert main([*[str(out) if part == str(finished) else part for part in command], "--resume"]) == 0
    assert "dropped 2 damaged lines (line 1, 2)" in caplog.text
    rows = json.loads((out / "rank.json").read_text())["rows"]
    assert rows == json.loads((finished / "rank.json").read_text())["rows"]


@pytest.mark.parametrize("content, message", [
    ('{"population": "many"}', "demo.json is damaged (population is 'many', not a whole number)"),
    ('{"seed": -1}', "demo.json holds settings the demo cannot run (config key train.seed: -1"),
    ("42", "demo.json is damaged (the record is 42, not an object)"),
])
def test_a_damaged_demo_json_is_one_line(tmp_path, capsys, content, message):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "demo.json").write_text(content)
    assert main(["demo", "--output", str(out), "--resume", "--no-progress"]) == 2
    err = _one_error_line(capsys)
    assert message in err and "start a new demo in another --output" in err


def test_a_demo_with_a_bad_seed_writes_nothing(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--seed", "-1", "--output", str(out), "--budget", "0.01", "--no-progress"]) == 2
    assert "train.seed: -1" in _one_error_line(capsys)
    assert not out.exists()


def test_damaged_standalone_log_rows_are_dropped_and_trained_again(tmp_path, caplog):
    good = {"index": 1, "seed": 0, "arch": "x", "top1": 0.5, "best_top1": 0.5, "steps": 2}
    (tmp_path / rank_folder.STANDALONE_LOG).write_text("\n".join([
        "5", json.dumps({"seed": 0, "top1": 0.4}), json.dumps({**good, "index": "0"}), json.dumps(good),
        '{"index": 2, "se']) + "\n")
    with caplog.at_level("WARNING"):
        assert rank_job._standalone_logs(tmp_path) == {(1, 0): good}
    assert "dropped 4 damaged lines (line 1, 2, 3, 5)" in caplog.text
