"""What spos hands over is what it measured: an exported supernet path or checkpoint is the network
`spos eval` evaluated (its BN statistics, its weights), to 1e-5 in logits."""

from __future__ import annotations

import json
import random

import pytest
import torch

from spos.cli import main
from spos.data.datasets import build_datasets
from spos.data.loaders import first_batch
from spos.deploy.export import onnx_session, run_onnx
from spos.errors import UserError
from spos.nn.supernet import SuperNet
from spos.space.architecture import sample_architecture
from spos.store import checkpoint
from spos.train import load_config, run_training

TINY = ["train.log_every=1000", "validation.paths=2", "validation.bn_batches=2"]


@pytest.fixture(scope="module")
def supernet_file(tmp_path_factory):
    """A digits supernet trained (and validated) for one epoch by spos: its saved BN statistics are those
    the last validation left, right for one path only."""
    out = tmp_path_factory.mktemp("supernet")
    run_training(load_config("digits-supernet", ["train.epochs=1", *TINY]), out, progress=False)
    return out / "last.pt"


@pytest.fixture(scope="module")
def digits_val_batch():
    return first_batch(build_datasets("digits").val, 64)


def evaluated_network(monkeypatch, capsys, argv: list[str]):
    """(the network `spos eval ARGV` evaluated, the metrics it printed)."""
    import spos.train

    seen = {}
    real = spos.train.evaluate

    def capture(model, loader, **kwargs):
        seen["model"] = model
        return real(model, loader, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(spos.train, "evaluate", capture)
        capsys.readouterr()
        assert main(["eval", *argv, "--json"]) == 0
    return seen["model"].eval(), json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def exported_logits(argv: list[str], output, batch) -> torch.Tensor:
    assert main(["export", *argv, "--output", str(output)]) == 0
    return torch.from_numpy(run_onnx(onnx_session(output), batch))


def assert_same_logits(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal to 1e-5, relative to the largest logit when that exceeds 1 (float32 keeps 7 digits)."""
    assert (got - expected).abs().max().item() <= 1e-5 * max(1.0, expected.abs().max().item())


def test_an_exported_supernet_path_is_the_network_eval_measures(supernet_file, digits_val_batch, tmp_path,
                                                                monkeypatch, capsys):
    space = checkpoint.load_model(supernet_file).space
    arch = str(sample_architecture(space, random.Random(5)))  # not a validation path: its saved BN is stale
    evaluated, _ = evaluated_network(monkeypatch, capsys, [str(supernet_file), "--arch", arch])
    with torch.no_grad():
        expected = evaluated(digits_val_batch)
    got = exported_logits([str(supernet_file), "--arch", arch], tmp_path / "path.onnx", digits_val_batch)
    assert expected.abs().max() > 0.1
    assert_same_logits(got, expected)
    assert "BN recalibrated on 20 batches" in capsys.readouterr().out


def test_a_supernet_path_is_never_extracted_with_the_supernets_stale_statistics(supernet_file):
    supernet = checkpoint.load_model(supernet_file)
    with pytest.raises(UserError, match="pass calibration batches"):
        supernet.extract(sample_architecture(supernet.space, random.Random(0)))


def test_a_supernet_that_records_no_data_is_exported_only_with_data_named(tmp_path, capsys, tiny_space):
    bare = tmp_path / "official.pt"
    checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(tiny_space)), bare)  # as convert-official writes
    arch = str(sample_architecture(tiny_space, random.Random(0)))
    assert main(["export", str(bare), "--arch", arch, "--output", str(tmp_path / "a.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "pass --data and --data-root" in err and len(err.splitlines()) == 1
    assert main(["export", str(bare), "--arch", arch, "--data", "synthetic", "--bn-batches", "2",
                 "--output", str(tmp_path / "a.onnx")]) == 0
    assert (tmp_path / "a.onnx").is_file()


@pytest.fixture(scope="module")
def ema_checkpoint(tmp_path_factory):
    """A digits network trained 30 steps with EMA 0.99: its EMA weights are far from its raw ones."""
    out = tmp_path_factory.mktemp("ema")
    run_training(load_config("digits-retrain", ["train.iterations=30", "train.ema=0.99", *TINY]), out, progress=False)
    return out / "best.pt"


@pytest.mark.parametrize("choice, weights", [([], "raw"), (["--no-ema"], "raw"), (["--ema"], "ema")])
def test_export_ships_the_weights_eval_reports(ema_checkpoint, digits_val_batch, tmp_path, monkeypatch, capsys,
                                               choice, weights):
    evaluated, printed = evaluated_network(monkeypatch, capsys, [str(ema_checkpoint), *choice])
    with torch.no_grad():
        expected = evaluated(digits_val_batch)
    got = exported_logits([str(ema_checkpoint), *choice], tmp_path / "net.onnx", digits_val_batch)
    assert_same_logits(got, expected)
    assert printed["weights"] == weights
    assert f"weights: {'EMA' if weights == 'ema' else 'raw'}" in capsys.readouterr().out
    other, _ = evaluated_network(monkeypatch, capsys, [str(ema_checkpoint), "--ema" if weights == "raw" else "--no-ema"])
    with torch.no_grad():
        assert (other(digits_val_batch) - expected).abs().max() > 0.1  # the choice is a real one


def test_ema_weights_asked_of_a_checkpoint_without_them_are_refused(supernet_file, tmp_path, capsys):
    for argv in (["eval", str(supernet_file), "--arch", "0," * 19 + "0/" + "9," * 19 + "9", "--ema"],
                 ["search", "--supernet", str(supernet_file), "--ema", "--output", str(tmp_path / "s")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "holds no EMA weights" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()
