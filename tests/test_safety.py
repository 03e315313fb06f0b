"""Safe by default: checkpoints that cannot run code, folders runs may not clobber, one run per
folder, resumes that refuse what they cannot continue, and input checked before work starts."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from spos.cli import main
from spos.errors import UserError
from spos.nn.supernet import SuperNet
from spos.space.searchspace import get_space
from spos.store import checkpoint
from spos.train import load_config, run_training

TINY = ["space.width_mult=0.25", "train.log_every=1000", "validation.paths=2", "validation.bn_batches=2"]


def tiny_config(name: str = "digits-supernet", *extra: str) -> dict:
    return load_config(name, [*TINY, *extra])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# -- 1. checkpoints that cannot run code ---------------------------------------------------------

class _RunsCode:
    """Unpickling this calls os.system: what an attacker puts in a checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def space():
    return get_space("oneshot", input_size=8, num_classes=10, in_channels=1, width_mult=0.25)


def _crafted(path, marker, space, kind="supernet"):
    """A spos-looking checkpoint with one extra pickled field that runs a command."""
    payload = checkpoint.supernet_payload(SuperNet(space), evil=_RunsCode(marker))
    if kind == "fixed":
        payload = {**payload, "kind": "fixed", "arch": {"blocks": [0] * 20, "channels": [0] * 20}}
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("command", ["eval", "export", "search", "train-resume", "train-supernet-resume"])
def test_a_crafted_checkpoint_runs_nothing_and_is_refused(tmp_path, capsys, space, command):
    marker = tmp_path / "MARKER"
    run = tmp_path / "run"
    run.mkdir()
    evil = _crafted(run / "last.pt", marker, space)
    argv = {
        "eval": ["eval", str(evil), "--arch", "0" * 20],
        "export": ["export", str(evil), "--output", str(tmp_path / "x.onnx")],
        "search": ["search", "--supernet", str(evil), "--output", str(tmp_path / "search"), "--no-progress"],
        "train-resume": ["train", "--arch", "oneshot", "--output", str(run), "--resume", "--no-progress"],
        "train-supernet-resume": ["train-supernet", "--output", str(run), "--resume", "--no-progress"],
    }[command]
    assert main(argv) == 2
    err = _one_error_line(capsys)
    assert not marker.exists()
    if not command.endswith("resume"):
        assert "holds objects spos will not load" in err and "damaged" not in err
    else:  # resume: no usable checkpoint, with the reason logged
        assert "no usable checkpoint" in err


def test_load_names_the_refused_object_and_keeps_damaged_for_cut_files(tmp_path, space):
    marker = tmp_path / "MARKER"
    evil = _crafted(tmp_path / "evil.pt", marker, space)
    with pytest.raises(UserError, match="holds objects spos will not load .*system"):
        checkpoint.load(evil)
    assert not marker.exists()
    good = checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(space)), tmp_path / "good.pt")
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="damaged or cut short"):
        checkpoint.load(good)


def test_an_old_checkpoint_with_pickled_numpy_state_is_refused_saying_so(tmp_path, space):
    old = checkpoint.supernet_payload(SuperNet(space), rng={"numpy": np.random.get_state()})
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(UserError, match="older spos .*numpy"):
        checkpoint.load(tmp_path / "old.pt")


def test_everything_a_training_run_saves_loads_weights_only(tmp_path):
    run_training(tiny_config("digits-supernet", "train.iterations=2"), tmp_path / "s", progress=False)
    run_training(tiny_config("digits-retrain", "train.iterations=2", "arch=oneshot", "train.ema=0.9"),
                 tmp_path / "f", progress=False)
    for path in (tmp_path / "s" / "last.pt", tmp_path / "f" / "last.pt", tmp_path / "f" / "best.pt"):
        torch.load(path, weights_only=True)  # raises on anything but plain data


def test_a_checkpoint_without_its_space_is_refused(tmp_path, space):
    payload = checkpoint.supernet_payload(SuperNet(space))
    del payload["space"]
    checkpoint.save_atomic(payload, tmp_path / "nospace.pt")
    with pytest.raises(UserError, match="without its space"):
        checkpoint.load(tmp_path / "nospace.pt")


def test_an_npz_with_pickled_objects_is_one_line(tmp_path, capsys):
    path = tmp_path / "cifar10_subset.npz"
    objects = np.array([{"a": 1}, None], dtype=object)
    np.savez(path, x_train=objects, y_train=np.zeros(2), x_test=objects, y_test=np.zeros(2))
    assert main(["train-supernet", "--data", "cifar10", "--data-root", str(path), "--output",
                 str(tmp_path / "out"), "--no-progress"]) == 2
    assert "holds pickled objects" in _one_error_line(capsys)


# -- 2. folder rules and unique temporary files ---------------------------------------------------

ARCH = ",".join(["0"] * 20) + "/" + ",".join(["7"] * 20)
SEARCH_SMALL = ["--population", "4", "--generations", "1", "--parents", "2", "--mutations", "2", "--crossovers", "2",
                "--bn-batches", "1", "--batch-size", "64", "--eval-batches", "1", "--no-progress"]


@pytest.fixture(scope="module")
def supernet_file(tmp_path_factory, space, digits_run):
    path = tmp_path_factory.mktemp("supernet") / "supernet.pt"
    checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(space), config=digits_run), path)
    return path


def _train_argv(out, *extra):
    return ["train", "--config", "digits-retrain", "--arch", "oneshot", "--output", str(out), "--no-progress",
            "--set", "train.iterations=1", "--set", "space.width_mult=0.25", *extra]


@pytest.mark.parametrize("command", ["train", "train-supernet", "search", "demo"])
def test_a_folder_holding_other_files_is_refused_and_left_alone(tmp_path, capsys, supernet_file, command):
    out = tmp_path / "out"
    out.mkdir()
    (out / "best.json").write_text("someone else's\n")
    argv = {"train": _train_argv(out),
            "train-supernet": ["train-supernet", "--output", str(out), "--no-progress"],
            "search": ["search", "--supernet", str(supernet_file), "--output", str(out), *SEARCH_SMALL],
            "demo": ["demo", "--output", str(out), "--budget", "0.01", "--no-progress"]}[command]
    assert main(argv) == 2
    assert "not empty" in _one_error_line(capsys)
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == ["best.json"]
    assert (out / "best.json").read_text() == "someone else's\n"


def test_a_supernet_folder_resumed_by_train_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    run_training(tiny_config("digits-supernet", "train.iterations=1"), out, progress=False)
    assert main(_train_argv(out, "--resume")) == 2
    assert "holds a supernet training run" in _one_error_line(capsys)


@pytest.mark.parametrize("argv", [
    ["export", "{ckpt}", "--arch", ARCH, "--output", "{existing}"],
    ["convert-official", "{ckpt}", "--to-official", "--output", "{existing}"],
    ["latency", "table", "--space", "oneshot", "--input-size", "8", "--width-mult", "0.25", "--output",
     "{existing}"],
], ids=["export", "convert-official", "latency-table"])
def test_an_existing_single_file_output_needs_force(tmp_path, capsys, supernet_file, argv):
    existing = tmp_path / "mine.txt"
    existing.write_text("keep me\n")
    argv = [a.format(ckpt=supernet_file, existing=existing) for a in argv]
    assert main(argv) == 2
    assert "--force" in _one_error_line(capsys)
    assert existing.read_text() == "keep me\n"


def test_write_atomic_removes_its_temp_file_on_failure_and_ignores_planted_names(tmp_path):
    from spos.io.files import write_atomic

    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    (tmp_path / "best.json.tmp").symlink_to(victim)  # the old fixed temp name
    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "best.json", lambda handle: (handle.write(b"half"), 1 / 0 if False else None,
                                                             (_ for _ in ()).throw(RuntimeError("disk full"))))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json.tmp", "victim.txt"]
    write_atomic(tmp_path / "best.json", lambda handle: handle.write(b"{}"))
    assert (tmp_path / "best.json").read_text() == "{}" and victim.read_text() == "untouched\n"


# -- 3. one run per folder ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "search", "demo"])
def test_a_second_run_in_a_locked_folder_is_refused_naming_the_holder(tmp_path, capsys, supernet_file, command):
    from spos.io.files import run_lock

    out = tmp_path / "out"
    argv = {"train": _train_argv(out),
            "search": ["search", "--supernet", str(supernet_file), "--output", str(out), *SEARCH_SMALL],
            "demo": ["demo", "--output", str(out), "--budget", "0.01", "--no-progress"]}[command]
    with run_lock(out):  # another run holds the folder (flock is per open file, so this process counts)
        assert main(argv) == 2
        err = _one_error_line(capsys)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # the second run wrote nothing
    assert f"{out} is in use by another spos run (pid {os.getpid()})" in err


def test_the_lock_is_released_when_the_run_ends(tmp_path):
    from spos.io.files import run_lock

    with run_lock(tmp_path / "a"):
        (tmp_path / "a" / "file").write_text("x")
    with run_lock(tmp_path / "a"):
        pass
    with run_lock(tmp_path / "b"):
        pass
    assert not (tmp_path / "b").exists()  # a refused or empty run leaves no folder behind


# -- 4. resume refuses what it cannot continue; a kill at any write point loses nothing ------------

@pytest.mark.parametrize("change, key", [
    (["--set", "space.width_mult=0.5"], "space.width_mult"),
    (["--arch", ARCH], "arch"),
    (["--lr", "0.1"], "optim.lr"),
])
def test_a_resume_with_other_settings_names_the_differing_keys(tmp_path, capsys, change, key):
    out = tmp_path / "run"
    assert main(_train_argv(out)) == 0
    capsys.readouterr()
    assert main([*_train_argv(out, "--resume"), *change]) == 2
    err = _one_error_line(capsys)
    assert "other settings" in err and key in err


def test_a_resume_may_change_where_it_runs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_argv(out)) == 0
    assert main([*_train_argv(out, "--resume"), "--device", "cpu", "--set", "train.log_every=5"]) == 0


@pytest.mark.parametrize("change, key", [
    (["--seed", "1"], "seed"), (["--flops-max", "2e6"], "flops_max"), ("supernet", "supernet_sha256")])
def test_a_search_resume_with_another_supernet_or_seed_is_refused(tmp_path, capsys, supernet_file, space,
                                                                  digits_run, change, key):
    out = tmp_path / "search"
    assert main(["search", "--supernet", str(supernet_file), "--output", str(out), *SEARCH_SMALL]) == 0
    supernet = supernet_file
    if change == "supernet":
        torch.manual_seed(1)
        supernet = checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(space), config=digits_run),
                                          tmp_path / "other.pt")
        change = []
    before = (out / "history.jsonl").read_text()
    capsys.readouterr()
    assert main(["search", "--supernet", str(supernet), "--output", str(out), "--resume", *SEARCH_SMALL,
                 *change]) == 2
    err = _one_error_line(capsys)
    assert "holds another search" in err and key in err
    assert (out / "history.jsonl").read_text() == before


TIMING = ("images_per_s", "train_seconds")


def _rows(folder):
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def _csv_rows(folder):
    import csv

    with open(folder / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]


class Killed(BaseException):
    """A simulated kill: like SIGKILL, no `except Exception` (the CLI's last-resort handler) catches it."""


def _kill_at(monkeypatch, name: str, occurrence: int):
    """Make the ``occurrence``-th atomic write of a file called ``name`` die before it lands."""
    from spos.io import files

    original, seen = files.write_atomic, {"n": 0}

    def write_or_die(path, write):
        if os.path.basename(path) == name:
            seen["n"] += 1
            if seen["n"] == occurrence:
                raise Killed(f"killed writing {name} #{occurrence}")
        return original(path, write)

    monkeypatch.setattr(files, "write_atomic", write_or_die)


RETRAIN = ("digits-retrain", "train.epochs=2", "arch=oneshot", "data.batch_size=512", "optim.lr=0.2",
           "data.val_batch_size=512")


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    run_training(tiny_config(*RETRAIN), out, progress=False)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name, occurrence", [
    ("config.yaml", 1), ("best.pt", 1), ("last.pt", 1), ("metrics.jsonl", 1), ("last.pt", 2), ("metrics.csv", 3)])
def test_a_kill_at_any_write_then_resume_gives_the_uninterrupted_files(tmp_path, monkeypatch, straight_run,
                                                                      name, occurrence):
    from spos.io.files import folder_contents

    config, out = tiny_config(*RETRAIN), tmp_path / "run"
    with monkeypatch.context() as patch:
        _kill_at(patch, name, occurrence)
        with pytest.raises(Killed):
            run_training(config, out, progress=False)
    run_training(config, out, resume=bool(folder_contents(out)), progress=False)
    assert _rows(out) == _rows(straight_run) and len(_rows(out)) == 2
    assert _csv_rows(out) == _csv_rows(straight_run)
    best, straight_best = checkpoint.load(out / "best.pt"), checkpoint.load(straight_run / "best.pt")
    assert (best["epoch"], best["best_top1"]) == (straight_best["epoch"], straight_best["best_top1"])
    last, straight_last = checkpoint.load(out / "last.pt"), checkpoint.load(straight_run / "last.pt")
    for key, value in straight_last["model"].items():
        assert torch.equal(value, last["model"][key]), key
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_history_damaged_in_the_middle_keeps_the_good_records_after_it(tmp_path, caplog):
    from spos.search.history import read_history

    path = tmp_path / "history.jsonl"
    records = [{"genes": [i, i], "score": i / 10} for i in range(6)]
    lines = [json.dumps(r) + "\n" for r in records]
    lines[2] = lines[2][:9] + "\x00\x00garbage\n"
    lines.insert(4, "{not json\n")
    path.write_text("".join(lines))
    with caplog.at_level("WARNING"):
        kept = read_history(path)
    assert kept == [r for i, r in enumerate(records) if i != 2]
    assert "dropped 2 damaged lines (line 3, 5)" in caplog.text
    assert read_history(path) == kept and path.read_text().count("\n") == 5  # rewritten without them


# -- 5. validation before any work ------------------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("optim.lr=fast", "optim.lr: 'fast' is not a number"),
    ("data.batch_size=big", "data.batch_size: 'big' is not a whole number"),
    ("train.epochs=[1]", "train.epochs: [1] is not a whole number"),
    ("train.deterministic=3", "train.deterministic: 3 is not true or false"),
    ("optim.lr=0", "optim.lr: 0 is out of range; it must be > 0"),
    ("optim.lr=-0.1", "optim.lr: -0.1 is out of range"),
    ("optim.weight_decay=-1e-4", "optim.weight_decay: -0.0001 is out of range; it must be >= 0"),
    ("train.epochs=0", "train.epochs: 0 is out of range"),
    ("train.iterations=0", "train.iterations: 0 is out of range"),
    ("train.iterations=-5", "train.iterations: -5 is out of range"),
    ("validation.paths=0", "validation.paths: 0 is out of range; it must be >= 1"),
    ("data.batch_size=0", "data.batch_size: 0 is out of range"),
    ("data.batch_size=-2", "data.batch_size: -2 is out of range"),
])
def test_a_bad_config_value_is_one_line_before_any_work(tmp_path, capsys, override, message):
    out = tmp_path / "out"
    assert main(["train-supernet", "--output", str(out), "--no-progress", "--set", override]) == 2
    err = _one_error_line(capsys)
    assert message in err, err
    assert not out.exists()


def test_numbers_written_as_text_are_read_as_numbers():
    config = load_config("digits-supernet", ["train.iterations=1e3", "optim.lr=5e-2"])
    assert config["train"]["iterations"] == 1000 and isinstance(config["train"]["iterations"], int)
    assert config["optim"]["lr"] == 0.05


def test_a_bad_value_in_a_config_file_is_named(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("optim: {lr: fast}\n")
    with pytest.raises(UserError, match="optim.lr: 'fast' is not a number"):
        load_config(str(path))


@pytest.mark.parametrize("extra, message", [
    (["--eval-batches", "0"], "--eval-batches 0: must be at least 1"),
    (["--parents", "0"], "--parents 0: must be at least 1"),
    (["--population", "0"], "--population 0: must be at least 1"),
])
def test_bad_search_numbers_are_refused_before_any_work(tmp_path, capsys, supernet_file, extra, message):
    out = tmp_path / "out"
    assert main(["search", "--supernet", str(supernet_file), "--output", str(out), *SEARCH_SMALL, *extra]) == 2
    assert message in _one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("command", ["train", "search", "demo"])
def test_an_output_that_is_a_file_is_refused(tmp_path, capsys, supernet_file, command):
    out = tmp_path / "file.txt"
    out.write_text("mine\n")
    argv = {"train": _train_argv(out),
            "search": ["search", "--supernet", str(supernet_file), "--output", str(out), *SEARCH_SMALL],
            "demo": ["demo", "--output", str(out), "--budget", "0.01", "--no-progress"]}[command]
    assert main(argv) == 2
    assert "is a file" in _one_error_line(capsys)
    assert out.read_text() == "mine\n"


def _image_folder(root, classes=("cat", "dog")):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def test_an_image_folder_with_one_class_is_refused(tmp_path):
    from spos.data.datasets import build_datasets

    with pytest.raises(UserError, match="a classifier needs at least two"):
        build_datasets("imagefolder", _image_folder(tmp_path, classes=("cat",)), input_size=16)


def test_a_corrupt_image_is_named_not_a_pil_traceback(tmp_path):
    from spos.data.datasets import build_datasets
    from spos.data.loaders import build_loader

    root = _image_folder(tmp_path)
    broken = root / "val" / "dog" / "1.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    val = build_datasets("imagefolder", root, input_size=16).val
    with pytest.raises(UserError, match=f"image {broken} cannot be read"):
        list(build_loader(val, batch_size=6, train=False))


def test_a_corrupt_image_read_by_a_loader_worker_is_still_one_line(tmp_path):
    from spos.cli import one_line
    from spos.data.datasets import build_datasets
    from spos.data.loaders import build_loader

    root = _image_folder(tmp_path)
    broken = root / "val" / "dog" / "1.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    val = build_datasets("imagefolder", root, input_size=16).val
    with pytest.raises(UserError) as raised:
        list(build_loader(val, batch_size=6, train=False, workers=1))
    assert "Traceback" in str(raised.value)  # torch carries the worker's traceback in the message
    message = one_line(raised.value)
    assert message.startswith(f"image {broken} cannot be read (") and "\n" not in message


def test_a_refused_run_leaves_an_existing_empty_folder_empty(tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    assert main(_train_argv(out, "--set", "optim.lr=0")) == 2
    assert main(["train", "--config", "digits-retrain", "--arch", "nonsense", "--output", str(out)]) == 2
    assert list(out.iterdir()) == []
