"""`spos demo` end to end with a reduced budget: every file of the report exists and parses."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from dataclasses import replace
from pathlib import Path

import matplotlib.image
import onnx
import pytest
import yaml

from spos.cli import main
from spos.demo.pipeline import default_output, demo_settings, scaled_schedule, stage_overrides
from spos.demo.report import ENGINE_COMMANDS
from spos.deploy import export
from spos.space.architecture import load_architecture
from spos.store import checkpoint


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    """One demo at --budget 0.1 (one epoch per training stage), shared: its folder and what it printed."""
    out = tmp_path_factory.mktemp("small") / "demo"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["demo", "--budget", "0.1", "--no-progress", "--output", str(out)]) == 0
    return out, printed.getvalue()


@pytest.mark.slow
def test_demo_writes_a_complete_report(small_demo):
    out, printed = small_demo
    assert f"{out}/report.md" in printed and "ONNX" in printed
    assert "ranking: this supernet ranks 12 reference architectures at Kendall tau" in printed

    summary = json.loads((out / "summary.json").read_text())
    assert f"supernet: {summary['supernet']['checkpoint']}\n" in printed  # the path, not the code that names it
    assert summary["search"]["scored"] > 0 and summary["best"]["flops"] <= summary["search"]["flops_max"]
    report = (out / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert {"training_curves.png", "best_architecture.png", "search/search_scatter.png",
            "rank/rank_scatter_loss.png"} <= set(images)
    for image in images:
        assert matplotlib.image.imread(out / image).ndim == 3
    assert summary["best"]["arch"] in report
    assert "Kendall tau 0.58, 0.30" in report  # the measured ranking of the recipe it ran, cited
    ranking = summary["ranking"]  # the headline: this run's own ranking check, with FLOPs' beside it
    assert ranking["n"] == 12 and -1 <= ranking["kendall_tau"]["value"] <= 1 and "flops_kendall_tau" in ranking
    assert f"Kendall tau {ranking['kendall_tau']['value']:.2f} [" in report
    right, pairs = ranking["pairs_in_order"]
    assert f"in {right} of {pairs} pairs" in report and pairs <= 66
    assert "What it cannot: that its search picks a better network than a random one of the same FLOPs" in report
    assert not (out / "retrain-random").exists() and "random baseline" not in report
    assert "by cross-entropy" in report and json.loads((out / "search" / "summary.json").read_text())["score"] == "loss"
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert all(command in report and command in readme for command in ENGINE_COMMANDS)  # the engine, next

    onnx.checker.check_model(onnx.load(str(out / "best.onnx")))
    recorded = export.read_input_convention(out / "best.onnx")  # the whole preprocessing (#27)
    assert (recorded["dataset"], recorded["mean"], recorded["pixel_max"]) == ("digits", [0.3053], 16)
    assert checkpoint.load(out / "supernet" / "last.pt")["kind"] == "supernet"
    assert checkpoint.load(out / "retrain-best" / "best.pt")["kind"] == "fixed"
    arch, space = load_architecture(out / "search" / "best.json")
    assert str(arch) == summary["best"]["arch"] and space is not None
    assert len((out / "search" / "history.jsonl").read_text().splitlines()) == summary["search"]["scored"]


@pytest.mark.slow
def test_the_reports_commands_redo_the_demo(small_demo, tmp_path, monkeypatch):
    """The commands in the report are built from the settings the demo ran with: each training
    command resolves to the config the demo's stage saved, and the search and rank commands, run on
    the demo's supernet in an empty folder, score the same candidates, find the same best and rank
    the reference architectures alike."""
    import shutil

    import spos.train

    out, _ = small_demo
    summary = json.loads((out / "summary.json").read_text())
    commands = [shlex.split(line) for line in summary["commands"]]
    assert "\n".join(summary["commands"]) in (out / "report.md").read_text()
    assert [c[1] for c in commands] == ["train-supernet", "search", "rank", "train", "export"]
    search, rank = commands[1:3]
    assert "--score" in search and "--bn-batches" in search and "--parents" in search and "--mutations" in search

    class Captured(BaseException):  # not an Exception: the CLI's last-resort handler turns those into exit 1
        pass

    configs = {}

    def capture(config, output, **kwargs):
        configs[output] = config
        raise Captured

    monkeypatch.setattr(spos.train, "run_training", capture)
    monkeypatch.chdir(out)
    for command in (commands[0], commands[3]):
        with pytest.raises(Captured):
            main(command[1:] + ["--no-progress"])
    for folder, config in configs.items():
        saved = yaml.safe_load((out / folder / "config.yaml").read_text())
        if config["kind"] == "fixed":  # the same file, relative to the report folder in the command
            assert (out / config["arch"]).resolve() == Path(saved["arch"]).resolve()
            config, saved = {**config, "arch": None}, {**saved, "arch": None}
        assert config == saved, folder
    assert len(configs) == 2

    (tmp_path / "supernet").mkdir()
    shutil.copy(out / "supernet" / "last.pt", tmp_path / "supernet" / "last.pt")
    monkeypatch.chdir(tmp_path)
    assert main(search[1:] + ["--no-progress"]) == 0
    for name in ("history.jsonl", "best.json"):
        assert (tmp_path / "search" / name).read_text() == (out / "search" / name).read_text()
    assert main(rank[1:] + ["--no-progress"]) == 0
    again, demo = (json.loads((folder / "rank" / "rank.json").read_text()) for folder in (tmp_path, out))
    assert again["rows"] == demo["rows"] and again["statistics"] == demo["statistics"]


def test_second_demo_gets_its_own_folder_and_a_full_one_is_refused(tmp_path, capsys):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "keep.txt").write_text("mine")
    assert default_output(tmp_path) == tmp_path / "demo-2"
    assert main(["demo", "--output", str(tmp_path / "demo"), "--budget", "0.1"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "demo").iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("kwargs, message", [
    ({"data": "imagenet"}, "the demo runs on"),
    ({"data": "cifar10"}, "needs --data-root"),
    ({"budget": 0}, "positive factor"),
])
def test_demo_bad_settings(kwargs, message):
    from spos.errors import UserError

    with pytest.raises(UserError, match=message):
        demo_settings(**kwargs)


def test_the_shipped_reference_ranks_in_the_demos_supernet_space():
    """The digits reference is read as `spos rank --ground-truth` reads it, in the space the demo's
    supernet config builds; another space or dataset has none, and its report says so."""
    from spos.data.conventions import dataset_info
    from spos.demo.pipeline import _config, reference_for
    from spos.rank.choose import read_ground_truth
    from spos.train import load_config
    from spos.train.setup import build_model

    settings = demo_settings()
    config = _config(settings, "supernet")
    reference = reference_for(settings, config)
    truth = read_ground_truth(reference.path, build_model(config, dataset_info("digits")).space)
    assert len(truth) == 12 and all(0.5 < accuracy <= 1 for accuracy in truth.values())
    rows = json.loads(reference.path.read_text())
    assert all(len(row["runs"]) == 3 for row in rows) and "3 seeds" in reference.measured
    assert reference.epochs == load_config(settings.retrain_config)["train"]["epochs"] == settings.retrain_epochs
    other = replace(settings, space="mbv2-macro-cifar")
    assert reference_for(other, _config(other, "supernet")) is None


@pytest.mark.slow
def test_killed_demo_resumes_without_redoing_finished_stages(tmp_path, monkeypatch, caplog):
    import spos.demo.pipeline

    out = tmp_path / "demo"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(spos.demo.pipeline, "export_best", killed)
        assert main(["demo", "--output", str(out), "--budget", "0.1", "--no-progress"]) == 130
    assert not (out / "report.md").exists()
    supernet_mtime = (out / "supernet" / "last.pt").stat().st_mtime_ns
    history = (out / "search" / "history.jsonl").read_text()
    before = json.loads((out / "times.json").read_text())
    assert before["supernet"] > 0 and before["retrain"] > 0  # the killed run's times are kept
    assert main(["demo", "--output", str(out), "--no-progress"]) == 2  # not without --resume
    assert main(["demo", "--output", str(out), "--resume", "--no-progress"]) == 0
    assert (out / "report.md").is_file() and (out / "best.onnx").is_file()
    assert (out / "supernet" / "last.pt").stat().st_mtime_ns == supernet_mtime
    assert (out / "search" / "history.jsonl").read_text() == history
    seconds = json.loads((out / "summary.json").read_text())["seconds"]
    assert all(seconds[stage] >= before[stage] for stage in before)  # times add up over both runs

    report = (out / "report.md").read_text()
    report_mtime = (out / "report.md").stat().st_mtime_ns
    with caplog.at_level("INFO"):
        assert main(["demo", "--output", str(out), "--resume", "--no-progress"]) == 0
    assert "finished before; it is left as it is" in caplog.text
    assert (out / "report.md").stat().st_mtime_ns == report_mtime and (out / "report.md").read_text() == report


def test_demo_with_a_wrong_data_root_leaves_nothing_that_blocks_the_rerun(tmp_path, monkeypatch, capsys):
    import spos.train.loop

    out = tmp_path / "demo"
    wrong = ["demo", "--data", "cifar10", "--data-root", str(tmp_path / "nowhere"), "--output", str(out)]
    assert main(wrong + ["--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err and not out.exists()

    def stop(*args, **kwargs):
        raise KeyboardInterrupt  # the corrected command got past the data: enough to know it was not blocked

    monkeypatch.setattr(spos.train.loop, "run_training", stop)
    root = tmp_path / "cifar10"
    root.mkdir()
    _tiny_cifar_npz(root / "cifar10_subset.npz")
    assert main(["demo", "--data", "cifar10", "--data-root", str(root), "--output", str(out), "--no-progress"]) == 130
    assert json.loads((out / "demo.json").read_text())["data_root"] == str(root)


def _tiny_cifar_npz(path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), y_train=np.arange(20) % 10,
             x_test=rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8), y_test=np.arange(10) % 10)


def test_demo_runs_on_another_space(tmp_path, capsys):
    """`spos demo --space mbv2-macro-cifar` on CIFAR-shaped data: the whole pipeline on MBConv/identity."""
    root = tmp_path / "cifar10"
    root.mkdir()
    _tiny_cifar_npz(root / "cifar10_subset.npz")
    out = tmp_path / "demo"
    assert main(["demo", "--space", "mbv2-macro-cifar", "--data", "cifar10", "--data-root", str(root),
                 "--output", str(out), "--budget", "0.034", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["space"]["name"] == "mbv2-macro-cifar"
    report = (out / "report.md").read_text()
    assert "Kendall tau 0.79" in report  # the ranking measured for this data and space (benchmarks/README.md)
    assert summary["ranking"] is None and "does not check its supernet's ranking" in report
    assert "--set space.name=mbv2-macro-cifar" in report
    best = json.loads((out / "search" / "best.json").read_text())
    assert len(best["ops"]) == 8 and set(best["ops"]) <= {"identity", "mbconv-e3-k3", "mbconv-e6-k5"}
    assert main(["demo", "--space", "nope", "--output", str(tmp_path / "other")]) == 2
    assert "unknown search space 'nope'" in capsys.readouterr().err


def test_demo_cites_the_ranking_measured_for_its_data_and_space():
    from spos.demo.report import measured_ranking

    assert "0.88" in measured_ranking("cifar10", "mbv2-macro-cifar")
    assert "CIFAR-10 subset" in measured_ranking("cifar10", "mbv2-macro-cifar")
    assert "has not been measured" in measured_ranking("mnist", "oneshot")


@pytest.mark.slow
def test_a_budget_scales_every_schedule_length_so_a_short_run_ends_its_schedule(tmp_path):
    """At --budget 0.05 a digits retraining is one epoch of the ten planned: its one-epoch warm-up
    becomes a tenth of an epoch, and the LR has decayed to its end by the last step."""
    from spos.train import load_config, run_training

    settings = demo_settings(budget=0.05)
    overrides = stage_overrides(settings, "retrain", ["arch=all-3x3"])
    assert "train.epochs=1" in overrides and "schedule.warmup_epochs=0.1" in overrides
    config = load_config(settings.retrain_config, overrides)
    result = run_training(config, tmp_path / "run", progress=False)
    assert result.last["lr"] < 0.01 * config["optim"]["lr"]  # unscaled: still warming up, at 44/45 of the peak
    assert not [o for o in stage_overrides(demo_settings(), "retrain") if o.startswith("schedule.")]  # budget 1


def test_whole_epoch_schedule_lengths_round_down_and_keep_their_least():
    config = {"schedule": {"warmup_epochs": 2}, "sampling": {"channel_warmup_epochs": 5, "progressive_epochs": 6,
                                                             "channel_warmup_step_epochs": 2}}
    assert scaled_schedule(config, 0.25) == ["schedule.warmup_epochs=0.5", "sampling.channel_warmup_epochs=1",
                                             "sampling.progressive_epochs=1", "sampling.channel_warmup_step_epochs=1"]
    config["sampling"]["channel_warmup_step_epochs"] = 1
    assert "sampling.channel_warmup_step_epochs=1" not in scaled_schedule(config, 0.25)  # unchanged: not repeated
    assert scaled_schedule(config, 1.0) == []
