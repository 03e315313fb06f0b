"""Deployment: exports equal PyTorch, fusion, int8, latency tables, official checkpoints, and their commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spos.cli import main
from spos.data.datasets import build_datasets
from spos.data.loaders import build_loader, recalibration_batches
from spos.deploy import export
from spos.deploy.export import export_model, onnx_session, run_onnx
from spos.deploy.fuse import count_batchnorms, fuse_conv_bn
from spos.deploy.latency import build_latency_table, load_latency_table
from spos.deploy.quantize import onnx_top1, quantize_onnx
from spos.errors import UserError
from spos.nn.fixed import FixedNet
from spos.nn.supernet import SuperNet
from spos.space.architecture import Architecture, sample_architecture
from spos.space.searchspace import get_space
from spos.space.zoo import resolve_architecture
from spos.store import checkpoint
from spos.store.official import load_official, to_official
from spos.train.config import load_config
from spos.train.loop import run_training


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small oneshot-family net trained a few epochs on digits: (checkpoint path, model, splits)."""
    out = tmp_path_factory.mktemp("trained")
    result = run_training(load_config("digits-retrain", ["train.epochs=4"]), out, progress=False)
    return out / "last.pt", result.model.eval(), build_datasets("digits")


def _net(input_size=32, width_mult=0.25, name="oneshot"):
    arch, space = resolve_architecture(name, input_size=input_size, num_classes=10, width_mult=width_mult)
    model = FixedNet(space, arch)
    model.train()
    with torch.no_grad():  # non-trivial BN statistics, so fusion and export have something to fold
        for _ in range(3):
            model(torch.randn(16, 3, input_size, input_size))
    return model.eval()


# -- export ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", export.FORMATS)
def test_export_equals_pytorch_at_any_batch_size(tmp_path, fmt):
    model = _net()
    result = export_model(model, tmp_path / f"net.{fmt}", torch.randn(4, 3, 32, 32), fmt=fmt)
    assert result.path.is_file() and result.max_abs_diff <= 1e-4
    x = torch.randn(7, 3, 32, 32)  # traced at batch 1, checked at 4, run here at 7
    got = export.exported_output(result.path, fmt, x)
    with torch.no_grad():
        assert np.abs(got - model(x).numpy()).max() <= 1e-4


def test_export_that_drifts_is_refused_and_writes_nothing(tmp_path, monkeypatch):
    real = export.exported_output
    monkeypatch.setattr(export, "exported_output", lambda *a: real(*a) + 0.01)
    with pytest.raises(UserError, match=r"differs from PyTorch by 0\.01"):
        export_model(_net(), tmp_path / "net.onnx", torch.randn(2, 3, 32, 32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"opset": 13}, "use 17 or newer"),
    ({"fmt": "tflite"}, "unknown export format"),
])
def test_export_bad_options(tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        export_model(_net(), tmp_path / "net.onnx", torch.randn(2, 3, 32, 32), **kwargs)


# -- fusion and int8 ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_fusion_removes_every_bn_and_keeps_the_output(trained):
    _, model, splits = trained
    fused = fuse_conv_bn(model)
    assert count_batchnorms(model) > 0 and count_batchnorms(fused) == 0
    x = next(iter(build_loader(splits.val, batch_size=64, train=False)))[0]
    with torch.no_grad():
        assert (fused(x) - model(x)).abs().max() <= 1e-5
    assert count_batchnorms(model) > 0  # the original is untouched


@pytest.mark.slow
def test_int8_model_keeps_accuracy_within_three_points(trained, tmp_path):
    _, model, splits = trained
    fp32 = export_model(fuse_conv_bn(model), tmp_path / "net.onnx",
                        next(iter(build_loader(splits.val, batch_size=8, train=False)))[0]).path
    calibration = [x for x, _ in recalibration_batches(splits.train, batch_size=64, num_batches=4, seed=0)]
    int8 = quantize_onnx(fp32, calibration, tmp_path / "net.int8.onnx")
    loader = build_loader(splits.val, batch_size=128, train=False)
    fp32_top1, int8_top1 = onnx_top1(fp32, loader), onnx_top1(int8, loader)
    # learned (chance is 0.1): after 4 epochs seeds 0-2 measured 0.79, 0.77, 0.78 (0.85, 0.77, 0.74 with the
    # augmentation stream before #23), so the bar sits below the seed spread
    assert fp32_top1 > 0.7, fp32_top1
    assert fp32_top1 - int8_top1 <= 0.03, (fp32_top1, int8_top1)
    assert any(node.op_type == "QuantizeLinear" for node in __import__("onnx").load(str(int8)).graph.node)


# -- latency tables -------------------------------------------------------------------------------------

def test_latency_table_round_trip_and_prediction(tmp_path):
    space = get_space("oneshot", input_size=8, num_classes=10, width_mult=0.25)
    table = build_latency_table(space, warmup=1, repeats=2, calibration_archs=2)
    assert len(table.layers) == 20 and all(len(row) == 10 for layer in table.layers for row in layer)
    loaded = load_latency_table(table.save(tmp_path / "table.json"))
    assert loaded == table
    arch = sample_architecture(space, __import__("random").Random(1))
    parts = sum(table.layers[i][b][c] for i, (b, c) in enumerate(zip(arch.blocks, arch.channels)))
    assert loaded.predict(arch) == pytest.approx(table.stem_ms + parts + table.head_ms + table.offset_ms)


def test_latency_table_refuses_missing_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_latency_table(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"hello": 1}')
    with pytest.raises(UserError, match="not a spos latency table"):
        load_latency_table(tmp_path / "bad.json")


# -- official checkpoints -----------------------------------------------------------------------------

def _official_file(tmp_path, state, name="official.pth.tar"):
    """Saved the way megvii's training scripts save: DataParallel prefixes inside ``state_dict``."""
    path = tmp_path / name
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "iters": 150000}, path)
    return path


def test_official_fixed_network_converts_both_ways(tmp_path):
    model = _net()
    official = to_official(model)
    assert {k.split(".")[0] for k in official} == {"first_conv", "features", "conv_last", "classifier"}
    assert "features.4.branch_proj.0.weight" in official
    loaded = load_official(_official_file(tmp_path, official), model.space, model.arch)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert all(torch.equal(official[k], v) for k, v in to_official(loaded).items())


def test_official_supernet_fills_leading_slices_and_converts_back(tmp_path):
    space = get_space("oneshot", input_size=32, num_classes=10, width_mult=0.25)
    official = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in to_official(SuperNet(space)).items()}
    mid = space.layers()[0].mid_channels(1.0)
    assert official["features.0.2.branch_main.0.weight"].shape[0] == mid  # the official scale-1.0 layout
    supernet = load_official(_official_file(tmp_path, official), space)
    assert isinstance(supernet, SuperNet)
    assert supernet.features[0][2].branch_main[0].weight.shape[0] > mid
    back = to_official(supernet)
    assert back.keys() == official.keys() and all(torch.equal(back[k], official[k]) for k in official)


def test_official_mismatch_names_the_first_key_or_shape(tmp_path):
    model = _net()
    official = to_official(model)
    missing = dict(official)
    del missing["features.3.branch_main.3.weight"]
    with pytest.raises(UserError, match=r"no 'features\.3\.branch_main\.3\.weight'"):
        load_official(_official_file(tmp_path, missing), model.space, model.arch)
    other = Architecture((2, *model.arch.blocks[1:]), model.arch.channels)  # layer 0: 3x3 -> 7x7
    with pytest.raises(UserError, match=r"'features\.0\.branch_main\.3\.weight' has shape .*3, 3.* but .*7, 7"):
        load_official(_official_file(tmp_path, official), model.space, other)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        load_official(tmp_path / "junk.pth", model.space, model.arch)


# -- the commands ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_export_fuse_int8_on_a_checkpoint(trained, tmp_path, capsys):
    ckpt, _, _ = trained
    out = tmp_path / "net.onnx"
    assert main(["export", str(ckpt), "--output", str(out), "--fuse", "--int8", "--calibration-batches", "2"]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and (tmp_path / "net.int8.onnx").is_file()
    assert "conv-BN fusion" in text and "int8" in text and "max |difference|" in text
    session = onnx_session(out)
    assert run_onnx(session, torch.randn(5, 1, 8, 8)).shape == (5, 10)


def test_cli_export_zoo_name_to_torchscript(tmp_path, capsys):
    out = tmp_path / "net.ts"
    assert main(["export", "oneshot", "--input-size", "32", "--width-mult", "0.25", "--format", "torchscript",
                 "--output", str(out)]) == 0
    assert out.is_file() and "torchscript export" in capsys.readouterr().out


def test_cli_latency_model_and_table(tmp_path, capsys):
    assert main(["latency", "model", "oneshot", "--input-size", "32", "--width-mult", "0.25", "--repeats", "3",
                 "--json"]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["median_ms"] > 0 and stats["batch_size"] == 1 and stats["device"] == "cpu"
    table = tmp_path / "table.json"
    assert main(["latency", "table", "--input-size", "8", "--width-mult", "0.25", "--repeats", "2",
                 "--output", str(table), "--check", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert load_latency_table(table).batch_size == 1 and result["mean_abs_error_pct"] >= 0


@pytest.mark.slow
def test_cli_convert_official_round_trip(trained, tmp_path, capsys):
    ckpt, model, _ = trained
    official = tmp_path / "official.pth"
    assert main(["convert-official", str(ckpt), "--to-official", "--output", str(official)]) == 0
    back = tmp_path / "back.pt"
    assert main(["convert-official", str(official), "--arch", "oneshot", "--space", "oneshot", "--input-size", "8",
                 "--num-classes", "10", "--in-channels", "1", "--width-mult", "0.25", "--output", str(back)]) == 0
    restored = checkpoint.load(back)["model"]
    assert all(torch.equal(restored[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("argv, message", [
    (["export", "nonsense"], "unknown architecture 'nonsense'"),
    (["export", "oneshot", "--opset", "11"], "use 17 or newer"),
    (["export", "oneshot", "--format", "torchscript", "--int8"], "--int8 needs --format onnx"),
    (["latency", "table", "--batch-size", "0"], "must be at least 1"),
    (["latency", "model", "missing.onnx"], "does not exist"),
    (["convert-official", "missing.pth", "--supernet"], "does not exist"),
    (["convert-official", "missing.pth"], "say what the file holds"),
])
def test_cli_bad_input_is_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    extra = ["--output", "out"] if argv[0] in ("export", "convert-official") or argv[1] == "table" else []
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


# -- files the official scripts write and read ------------------------------------------------------

OFFICIAL_KEY = (r"module\.(first_conv\.\d+|features\.\d+\.(branch_main|branch_proj)\.\d+|features\.\d+\.\d+\.branch_"
                r"(main|proj)\.\d+|conv_last\.\d+|classifier\.0)\.(weight|bias|running_mean|running_var|"
                r"num_batches_tracked)")


@pytest.mark.parametrize("kind", ["fixed", "supernet"])
def test_to_official_writes_what_the_official_scripts_load(tmp_path, kind):
    import re

    model = _net() if kind == "fixed" else SuperNet(get_space("oneshot", input_size=32, num_classes=10,
                                                                  width_mult=0.25))
    source = tmp_path / "spos.pt"
    payload = checkpoint.fixed_payload(model) if kind == "fixed" else checkpoint.supernet_payload(model)
    checkpoint.save_atomic(payload, source)
    out = tmp_path / "official.pth.tar"
    assert main(["convert-official", str(source), "--to-official", "--output", str(out)]) == 0
    saved = torch.load(out, map_location="cpu", weights_only=True)
    assert list(saved) == ["state_dict"]
    keys = list(saved["state_dict"])
    assert all(re.fullmatch(OFFICIAL_KEY, k) for k in keys), [k for k in keys if not re.fullmatch(OFFICIAL_KEY, k)]
    assert {"module.first_conv.0.weight", "module.conv_last.0.weight", "module.classifier.0.weight"} <= set(keys)
    layer = "module.features.0.0.branch_main.0.weight" if kind == "supernet" else "module.features.0.branch_main.0.weight"
    assert layer in keys
    # and it comes back whole
    arch = model.arch if kind == "fixed" else None
    expected = to_official(model)
    assert all(torch.equal(v, expected[k]) for k, v in to_official(load_official(out, model.space, arch)).items())


def test_old_releases_without_num_batches_tracked_load(tmp_path):
    model = _net()
    official = {k: v for k, v in to_official(model).items() if not k.endswith("num_batches_tracked")}
    loaded = load_official(_official_file(tmp_path, official), model.space, model.arch)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def _retag_storages(path, device: str) -> None:
    """Rewrite a torch.save zip so every storage says it was saved on ``device`` (as a GPU run writes it)."""
    import zipfile

    with zipfile.ZipFile(path) as source:
        entries = [(info, source.read(info.filename)) for info in source.infolist()]
    old = b"X" + (3).to_bytes(4, "little") + b"cpu"  # pickle protocol 2's BINUNICODE, as torch.save writes it
    new = b"X" + len(device).to_bytes(4, "little") + device.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for info, data in entries:
            if info.filename.endswith("data.pkl"):
                assert old in data
                data = data.replace(old, new)
            target.writestr(info, data)


def test_releases_saved_on_a_gpu_load_without_one(tmp_path):
    model = _net()
    path = _official_file(tmp_path, to_official(model))
    _retag_storages(path, "cuda:0")
    if not torch.cuda.is_available():  # the tag is real: a plain load asks for CUDA
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    loaded = load_official(path, model.space, model.arch)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_int8_slower_than_fp32_says_why_and_suggests_fp32(tmp_path):
    from pathlib import Path

    from spos.cli.deploy import cpu_has_vnni, int8_advice

    assert cpu_has_vnni("processor : 0\nflags : fpu sse avx2 avx512f\n") is False
    assert cpu_has_vnni("flags : fpu avx2 avx512_vnni\n") is True
    assert cpu_has_vnni("") is None
    fp32 = Path("model.onnx")
    assert int8_advice(1.0, 0.5, 8, False, fp32) is None  # faster: nothing to say
    slow = int8_advice(1.04, 14.52, 8, False, fp32)
    assert "14.0x slower" in slow and "no VNNI" in slow and "model.onnx" in slow and slow.count("\n") == 0
    assert "batch 8" in int8_advice(1.0, 2.0, 8, True, fp32)
