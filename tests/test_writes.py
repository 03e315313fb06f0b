"""Nothing lost, nothing followed: every file spos writes (exports, plots, appended logs, the run lock)
goes through a unique temporary file or an O_NOFOLLOW append, never through a link planted in its
place, never over a file spos did not make; and a killed run's stale temporary files are cleaned up
by the next run in the folder, and only those."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from spos.cli import main
from spos.io import files
from spos.nn.fixed import FixedNet
from spos.rank import choose as rank_choose
from spos.rank import folder as rank_folder
from spos.space.architecture import Architecture
from spos.store import checkpoint
from spos.train import load_config, run_training

ARCH = Architecture((0,) * 20, (7,) * 20)
SEARCH_SMALL = ["--population", "4", "--generations", "1", "--parents", "2", "--mutations", "2", "--crossovers", "2",
                "--bn-batches", "1", "--batch-size", "64", "--eval-batches", "1", "--no-progress"]
RANK_FAST = ["--bn-batches", "1", "--eval-batches", "1", "--batch-size", "64", "--bootstrap", "20", "--no-progress"]
VICTIM = "someone's file\n"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def fixed_file(tmp_path_factory, digits_space):
    """A digits-sized FixedNet checkpoint whose config names digits: export checks and calibrates on it."""
    path = tmp_path_factory.mktemp("fixed") / "net.pt"
    payload = checkpoint.fixed_payload(FixedNet(digits_space, ARCH).eval(), config={"data": {"name": "digits"}})
    return checkpoint.save_atomic(payload, path)


def _victim(tmp_path, name="victim.txt"):
    victim = tmp_path / name
    victim.write_text(VICTIM)
    return victim


# -- exports: a private scratch folder, then write_atomic ---------------------------------------------

@pytest.mark.parametrize("fmt, extra, planted", [
    ("onnx", [], "model.onnx.partial"),
    ("torchscript", [], "model.ts.partial"),
    ("onnx", ["--int8", "--calibration-batches", "1"], "model.int8.onnx.partial"),
], ids=["onnx", "torchscript", "int8"])
def test_export_never_writes_through_a_link_planted_at_its_old_temp_name(tmp_path, fixed_file, fmt, extra,
                                                                         planted):
    out = tmp_path / "e"
    out.mkdir()
    victim = _victim(tmp_path)
    (out / planted).symlink_to(victim)
    output = out / ("model.onnx" if fmt == "onnx" else "model.ts")
    assert main(["export", str(fixed_file), "--format", fmt, "--output", str(output), *extra]) == 0
    assert victim.read_text() == VICTIM
    written = [output] + ([out / "model.int8.onnx"] if extra else [])
    assert all(path.is_file() and not path.is_symlink() and path.stat().st_size > 1000 for path in written)
    assert os.readlink(out / planted) == str(victim)  # the user's own file (a link here) is left as it was
    assert sorted(p.name for p in out.iterdir()) == sorted([planted, *(p.name for p in written)])


def test_export_leaves_a_users_own_partial_file_alone(tmp_path, fixed_file):
    mine = tmp_path / "model.onnx.partial"
    mine.write_text("my half-finished notes\n")
    assert main(["export", str(fixed_file), "--output", str(tmp_path / "model.onnx")]) == 0
    assert mine.read_text() == "my half-finished notes\n"


def test_int8_does_not_overwrite_an_existing_int8_model_without_force(tmp_path, fixed_file, capsys):
    existing = tmp_path / "model.int8.onnx"
    existing.write_text("an int8 model I keep\n")
    command = ["export", str(fixed_file), "--output", str(tmp_path / "model.onnx"), "--int8",
               "--calibration-batches", "1"]
    assert main(command) == 2
    err = _one_error_line(capsys)
    assert "model.int8.onnx exists" in err and "--force" in err
    assert existing.read_text() == "an int8 model I keep\n"
    assert not (tmp_path / "model.onnx").exists()  # refused before any work
    assert main([*command, "--force"]) == 0
    assert existing.stat().st_size > 1000


# -- plots and appended logs never follow a link -----------------------------------------------------

def test_save_figure_replaces_a_planted_link_and_leaves_its_target(tmp_path):
    import matplotlib.pyplot as plt

    from spos.plots import save_figure

    victim = _victim(tmp_path)
    (tmp_path / "plot.png").symlink_to(victim)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "plot.png")
    assert victim.read_text() == VICTIM
    assert not (tmp_path / "plot.png").is_symlink() and (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_an_append_log_refuses_a_planted_link(tmp_path, link):
    from spos.errors import UserError

    victim = _victim(tmp_path)
    log = tmp_path / "history.jsonl"
    (log.symlink_to if link == "symlink" else log.hardlink_to)(victim)
    with pytest.raises(UserError, match=f"cannot append to {log}"):
        files.AppendLog(log)
    assert victim.read_text() == VICTIM


def test_an_append_after_a_line_cut_by_a_kill_starts_a_line_of_its_own(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"a": 1}\n{"b": ')
    with files.AppendLog(log) as appended:
        appended.write_line('{"c": 3}')
    assert log.read_text().splitlines() == ['{"a": 1}', '{"b": ', '{"c": 3}']


def _search_argv(digits_supernet_file, out, *extra):
    return ["search", "--supernet", str(digits_supernet_file), "--output", str(out), *SEARCH_SMALL, *extra]


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory, digits_supernet_file):
    out = tmp_path_factory.mktemp("search") / "search"
    assert main(_search_argv(digits_supernet_file, out)) == 0
    return out


@pytest.mark.parametrize("name", ["search_scatter.png", "best_per_generation.png", "best.json", "front/arch-00.json",
                                  "summary.json"])
def test_a_resumed_search_replaces_links_planted_in_its_folder(tmp_path, digits_supernet_file, finished_search, name):
    out = tmp_path / "search"
    shutil.copytree(finished_search, out)
    victim = _victim(tmp_path)
    (out / name).unlink()
    (out / name).symlink_to(victim)
    assert main(_search_argv(digits_supernet_file, out, "--resume")) == 0
    assert victim.read_text() == VICTIM
    assert (out / name).is_file() and not (out / name).is_symlink()


def test_a_resumed_search_refuses_to_append_to_a_linked_history(tmp_path, capsys, digits_supernet_file,
                                                                finished_search):
    out = tmp_path / "search"
    shutil.copytree(finished_search, out)
    victim = tmp_path / "victim.jsonl"
    victim.write_bytes((out / "history.jsonl").read_bytes())  # a file that reads as a good history
    (out / "history.jsonl").unlink()
    (out / "history.jsonl").symlink_to(victim)
    before = victim.read_bytes()
    assert main(_search_argv(digits_supernet_file, out, "--resume")) == 2
    assert "cannot append to" in _one_error_line(capsys)
    assert victim.read_bytes() == before


def _rank_argv(digits_supernet_file, truth, out, *extra):
    return ["rank", "--supernet", str(digits_supernet_file), "--ground-truth", str(truth), "--output", str(out),
            *RANK_FAST, *extra]


@pytest.fixture(scope="module")
def finished_rank(tmp_path_factory, digits_supernet_file, digits_space):
    """(rank folder, ground-truth file) of a finished rank job against a ground truth."""
    folder = tmp_path_factory.mktemp("rank")
    archs = rank_choose.draw_architectures(digits_space, 4, "none", seed=5)
    truth = folder / "truth.json"
    truth.write_text(json.dumps({str(a): 0.5 + i / 20 for i, a in enumerate(archs)}))
    assert main(_rank_argv(digits_supernet_file, truth, folder / "rank")) == 0
    return folder / "rank", truth


def test_a_resumed_rank_replaces_a_linked_plot_and_never_appends_to_a_linked_log(tmp_path, capsys, digits_supernet_file,
                                                                                 finished_rank):
    finished, truth = finished_rank
    out = tmp_path / "rank"
    shutil.copytree(finished, out)
    plot_victim, log_victim = _victim(tmp_path, "plot-victim"), _victim(tmp_path, "log-victim")
    (out / "rank_scatter.png").unlink()
    (out / "rank_scatter.png").symlink_to(plot_victim)
    assert main(_rank_argv(digits_supernet_file, truth, out, "--resume")) == 0
    assert plot_victim.read_text() == VICTIM and not (out / "rank_scatter.png").is_symlink()
    (out / rank_folder.SCORES_LOG).unlink()
    (out / rank_folder.SCORES_LOG).symlink_to(log_victim)  # reads as no scores: every path is measured again
    capsys.readouterr()
    assert main(_rank_argv(digits_supernet_file, truth, out, "--resume")) == 2
    assert "cannot append to" in _one_error_line(capsys)
    assert log_victim.read_text() == VICTIM


# -- the run lock: a .lock spos did not write is someone's file --------------------------------------

def _refused_argv(command, out, digits_supernet_file):
    return {"train": ["train", "--config", "digits-retrain", "--arch", "oneshot", "--output", str(out),
                      "--no-progress", "--set", "train.iterations=1", "--set", "space.width_mult=0.25"],
            "search": _search_argv(digits_supernet_file, out),
            "demo": ["demo", "--output", str(out), "--budget", "0.01", "--no-progress"],
            "rank": ["rank", "--supernet", str(digits_supernet_file), "--output", str(out), "--standalone",
                     "digits-retrain", "--archs", "3", *RANK_FAST]}[command]


@pytest.mark.parametrize("command", ["train", "search", "demo", "rank"])
def test_a_folder_holding_only_someones_lock_file_is_not_empty(tmp_path, capsys, digits_supernet_file, command):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").write_text("my lock notes\n")
    assert main(_refused_argv(command, out, digits_supernet_file)) == 2
    assert "not empty" in _one_error_line(capsys)
    assert (out / ".lock").read_text() == "my lock notes\n" and os.listdir(out) == [".lock"]


def test_a_resume_stops_at_someones_lock_file_in_its_folder(tmp_path, capsys, digits_supernet_file, finished_search):
    out = tmp_path / "search"
    shutil.copytree(finished_search, out)
    (out / ".lock").write_text("not a pid\n")
    assert main(_search_argv(digits_supernet_file, out, "--resume")) == 2
    assert "is not a spos lock" in _one_error_line(capsys)
    assert (out / ".lock").read_text() == "not a pid\n"


def test_a_lock_left_by_a_killed_run_still_counts_as_the_runs_own(tmp_path):
    (tmp_path / ".lock").write_text("12345\n")
    assert files.folder_contents(tmp_path) == []
    with files.run_lock(tmp_path):
        assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"


# -- a kill mid-write leaves a temporary file; the next run removes its own, and nothing else ------------

STALE = ".{}.k1ll3d_x.tmp"


def test_a_resumed_training_run_removes_its_stale_temporary_files_only(tmp_path):
    config = load_config("digits-retrain", ["space.width_mult=0.25", "train.iterations=1", "arch=oneshot"])
    out = tmp_path / "run"
    run_training(config, out, progress=False)
    own = [out / STALE.format(name) for name in ("last.pt", "metrics.csv", "config.yaml", "best.pt")]
    others = [out / STALE.format("notes.txt"), out / ".last.pt.tmp", out / "last.pt.abcdefgh.tmp"]
    for path in own + others:
        path.write_text("left behind\n")
    run_training(config, out, resume=True, progress=False)
    assert not any(path.exists() for path in own)
    assert all(path.read_text() == "left behind\n" for path in others)


def test_a_resumed_search_removes_its_stale_temporary_files_only(tmp_path, digits_supernet_file, finished_search):
    out = tmp_path / "search"
    shutil.copytree(finished_search, out)
    own = [out / STALE.format("history.jsonl"), out / "front" / STALE.format("arch-00.json"),
           out / STALE.format("search_scatter.png")]
    others = [out / STALE.format("mine.json"), out / "front" / STALE.format("notes")]
    for path in own + others:
        path.write_text("left behind\n")
    assert main(_search_argv(digits_supernet_file, out, "--resume")) == 0
    assert not any(path.exists() for path in own)
    assert all(path.read_text() == "left behind\n" for path in others)


def test_remove_stale_temps_matches_only_write_atomics_names_and_plain_files(tmp_path):
    (tmp_path / "front").mkdir()
    kept = [tmp_path / ".best.json.abc.tmp", tmp_path / ".best.jsonx.abcdefgh.tmp", tmp_path / "best.json"]
    for path in kept:
        path.write_text("x")
    (tmp_path / STALE.format("best.json")).mkdir()  # a folder of that name is not a temporary file
    target = tmp_path / "target"
    target.write_text("x")
    (tmp_path / STALE.format("history.jsonl")).symlink_to(target)
    removed = tmp_path / "front" / STALE.format("arch-12.json")
    removed.write_text("x")
    assert files.remove_stale_temps(tmp_path, ("best.json", "history.jsonl", "front/arch-*.json")) == [removed]
    assert all(path.exists() for path in kept) and target.exists()
