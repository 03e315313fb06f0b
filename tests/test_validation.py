"""Bad input is one line naming the file or flag, before any work or write; nothing bad is accepted
silently; whatever spos did not foresee is one line and the path of a full log, never a traceback.

Every case runs the command line in-process on files crafted here; none of them trains anything.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from spos.cli import main
from spos.nn.fixed import FixedNet
from spos.nn.supernet import SuperNet
from spos.space.architecture import uniform_architecture
from spos.store import checkpoint

SEARCH_SMALL = ["--population", "4", "--generations", "1", "--parents", "2", "--bn-batches", "1",
                "--eval-batches", "1", "--no-progress"]
TRAIN_SMALL = ["--no-progress", "--set", "space.width_mult=0.25", "--set", "train.iterations=1",
               "--set", "validation.paths=1", "--set", "validation.bn_batches=1"]


@pytest.fixture(scope="module")
def made(tmp_path_factory, digits_space, digits_run):
    """Valid files of a tiny digits network (recording a digits run, so search and rank may score it), and
    payloads to spoil: built once for the whole table."""
    folder = tmp_path_factory.mktemp("made")
    space = digits_space
    supernet = checkpoint.supernet_payload(SuperNet(space), config=digits_run)
    fixed = checkpoint.fixed_payload(FixedNet(space, uniform_architecture(space, 0, 0)))
    return {"folder": folder, "space": space, "supernet_payload": supernet, "fixed_payload": fixed,
            "supernet": str(checkpoint.save_atomic(supernet, folder / "supernet.pt")),
            "fixed": str(checkpoint.save_atomic(fixed, folder / "fixed.pt"))}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _binary(path: Path) -> str:
    path.write_bytes(bytes(range(256)) * 8)
    return str(path)


def _text(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _checkpoint(path: Path, payload: dict, **changes) -> str:
    torch.save({**payload, **changes}, path)
    return str(path)


def _space_changed(made, **changes) -> dict:
    return {**made["supernet_payload"]["space"], **changes}


def _npz(path: Path, x_train=None, y_train=None, x_test=None, y_test=None) -> str:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 20).astype(np.int64)
    arrays = {"x_train": images, "y_train": labels, "x_test": images[:8], "y_test": labels[:8]}
    given = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    np.savez(path, **{**arrays, **{k: v for k, v in given.items() if v is not None}})
    return str(path)


def _cifar(out: Path, root: str) -> list[str]:
    return ["train-supernet", "--data", "cifar10", "--data-root", root, "--output", str(out), *TRAIN_SMALL]


def _mnist(out: Path, folder: Path, spoil) -> list[str]:
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, dims in (("train-images-idx3-ubyte", (20, 28, 28)), ("train-labels-idx1-ubyte", (20,)),
                       ("t10k-images-idx3-ubyte", (8, 28, 28)), ("t10k-labels-idx1-ubyte", (8,))):
        header = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
        body = bytes(math.prod(dims)) if len(dims) > 1 else bytes(i % 10 for i in range(dims[0]))
        (raw / f"{stem}.gz").write_bytes(spoil(stem, gzip.compress(header + body)))
    return ["train-supernet", "--data", "mnist", "--data-root", str(folder), "--output", str(out), *TRAIN_SMALL]


def _arch_file(path: Path, blocks, channels, space=None) -> str:
    data = {"blocks": blocks, "channels": channels}
    if space is not None:
        data["space"] = space
    path.write_text(json.dumps(data))
    return str(path)


LAYERS_ZERO = """name: mine
stages: [{layers: 0, width: 16, ops: [shufflenet-3x3]}]
head: {width: 32}
"""
DROPOUT_LOTS = """name: mine
stages: [{layers: 2, width: 16, ops: [shufflenet-3x3]}]
head: {width: 32, dropout: lots}
"""
STRIDE_ZERO = """name: mine
stages: [{layers: 2, width: 16, stride: 0, ops: [shufflenet-3x3]}]
head: {width: 32}
"""

# (case id, argv builder, what the one line must name). Builders get (tmp_path, made).
FILE_CASES = [
    ("binary-config", lambda t, m: ["train-supernet", "--config", _binary(t / "recipe.yaml"),
                                    "--output", str(t / "out")], "recipe.yaml"),
    ("binary-arch-file", lambda t, m: ["rank", "--supernet", m["supernet"], "--arch-file", _binary(t / "archs.txt"),
                                       "--standalone", "digits-retrain", "--output", str(t / "out")], "archs.txt"),
    ("binary-latency-model", lambda t, m: ["latency", "model", _binary(t / "net.bin")], "net.bin"),
    ("garbage-onnx", lambda t, m: ["latency", "model", _text(t / "net.onnx", "not an onnx model\n" * 9)],
     "net.onnx"),
    ("checkpoint-space-not-a-list", lambda t, m: [
        "export", _checkpoint(t / "c.pt", m["supernet_payload"], space=_space_changed(m, stage_repeats=5)),
        "--arch", "oneshot", "--output", str(t / "x.onnx")], "stage_repeats"),
    ("checkpoint-input-size-text", lambda t, m: [
        "search", "--supernet", _checkpoint(t / "c.pt", m["supernet_payload"],
                                            space=_space_changed(m, input_size="big")),
        "--output", str(t / "out")], "input_size"),
    ("checkpoint-space-a-list", lambda t, m: [
        "search", "--supernet", _checkpoint(t / "c.pt", m["supernet_payload"], space=[1, 2]),
        "--output", str(t / "out")], "c.pt"),
    ("checkpoint-arch-blocks-int", lambda t, m: [
        "eval", _checkpoint(t / "c.pt", m["fixed_payload"], arch={"blocks": 7, "channels": [0] * 20}),
        "--data", "digits"], "c.pt"),
    ("checkpoint-model-a-list", lambda t, m: [
        "search", "--supernet", _checkpoint(t / "c.pt", m["supernet_payload"], model=[1, 2]),
        "--output", str(t / "out")], "c.pt"),
    ("checkpoint-huge-stage-repeats", lambda t, m: [
        "search", "--supernet", _checkpoint(t / "c.pt", m["supernet_payload"],
                                            space=_space_changed(m, stage_repeats=[10_000_000, 4, 8, 4])),
        "--output", str(t / "out")], "c.pt"),
    ("arch-blocks-int", lambda t, m: ["profile", _arch_file(t / "a.json", 3, [0] * 20), "--no-latency"], "a.json"),
    ("arch-infinity", lambda t, m: ["profile", _text(t / "a.json", '{"blocks": [Infinity' + ", 0" * 19 +
                                                     '], "channels": [' + ", ".join(["0"] * 20) + "]}"),
                                    "--no-latency"], "a.json"),
    ("arch-choice-fraction", lambda t, m: ["profile", _arch_file(t / "a.json", [1.7] + [0] * 19, [0] * 20),
                                           "--no-latency"], "a.json"),
    ("arch-choice-bool", lambda t, m: ["profile", _arch_file(t / "a.json", [True] + [0] * 19, [0] * 20),
                                       "--no-latency"], "a.json"),
    ("arch-file-huge-space", lambda t, m: [
        "profile", _arch_file(t / "a.json", [0] * 20, [0] * 20, _space_changed(m, stage_repeats=[10_000_000, 4, 8, 4])),
        "--no-latency"], "a.json"),
    ("space-layers-zero", lambda t, m: ["latency", "table", "--space", _text(t / "s.yaml", LAYERS_ZERO),
                                        "--output", str(t / "t.json")], "s.yaml"),
    ("space-dropout-text", lambda t, m: ["latency", "table", "--space", _text(t / "s.yaml", DROPOUT_LOTS),
                                         "--output", str(t / "t.json")], "s.yaml"),
    ("space-stride-zero", lambda t, m: ["latency", "table", "--space", _text(t / "s.yaml", STRIDE_ZERO),
                                        "--output", str(t / "t.json")], "s.yaml"),
    ("latency-table-text", lambda t, m: ["search", "--supernet", m["supernet"], "--latency-max", "5",
                                         "--latency-table", _text(t / "table.json", '"hello"'),
                                         "--output", str(t / "out")], "table.json"),
    ("latency-table-number", lambda t, m: ["search", "--supernet", m["supernet"], "--latency-max", "5",
                                           "--latency-table", _text(t / "table.json", "5"),
                                           "--output", str(t / "out")], "table.json"),
    ("npz-not-a-zip", lambda t, m: _cifar(t / "out", _text(t / "d.npz", "PK\x03\x04 not a zip")), "d.npz"),
    ("npz-labels-out-of-range", lambda t, m: _cifar(t / "out", _npz(t / "d.npz", y_train=np.full(20, 12))),
     "y_train"),
    ("npz-float-pixels", lambda t, m: _cifar(t / "out", _npz(t / "d.npz", x_train=np.zeros((20, 32, 32, 3),
                                                                                          np.float32))), "x_train"),
    ("npz-length-mismatch", lambda t, m: _cifar(t / "out", _npz(t / "d.npz", y_train=np.zeros(5, np.int64))),
     "y_train"),
    ("npz-empty", lambda t, m: _cifar(t / "out", _npz(t / "d.npz", x_train=np.zeros((0, 32, 32, 3), np.uint8),
                                                      y_train=np.zeros(0, np.int64))), "x_train"),
    ("npz-grey", lambda t, m: _cifar(t / "out", _npz(t / "d.npz", x_train=np.zeros((20, 32, 32), np.uint8))),
     "x_train"),
    ("npz-3x3-images", lambda t, m: _cifar(t / "out", _npz(t / "d.npz", x_train=np.zeros((20, 3, 3, 3), np.uint8))),
     "x_train"),
    ("mnist-short", lambda t, m: _mnist(t / "out", t / "mnist",
                                        lambda stem, data: gzip.compress(gzip.decompress(data)[:100])
                                        if stem.startswith("train-images") else data), "train-images"),
    ("mnist-not-gzip", lambda t, m: _mnist(t / "out", t / "mnist",
                                           lambda stem, data: b"plain bytes" if stem.startswith("t10k-labels")
                                           else data), "t10k-labels"),
]


@pytest.mark.parametrize("build, names", [pytest.param(b, n, id=i) for i, b, n in FILE_CASES])
def test_a_bad_file_is_one_line_naming_it(tmp_path, capsys, made, build, names):
    argv = build(tmp_path, made)
    assert main(argv) == 2
    err = _one_line(capsys)
    assert names in err
    assert "do not trust" not in err  # a file that is merely wrong is not called malicious
    assert not (tmp_path / "out").exists() and not (tmp_path / "t.json").exists()


FLAG_CASES = [
    ("holdout-nan", lambda t, m: ["search", "--supernet", m["supernet"], "--holdout", "nan"], "--holdout"),
    ("holdout-inf", lambda t, m: ["search", "--supernet", m["supernet"], "--holdout", "inf"], "--holdout"),
    ("holdout-negative", lambda t, m: ["eval", m["fixed"], "--holdout", "-3", "--split", "holdout"], "--holdout"),
    ("seed-huge", lambda t, m: ["search", "--supernet", m["supernet"], "--seed", str(2 ** 70)], "--seed"),
    ("device-bogus", lambda t, m: ["search", "--supernet", m["supernet"], "--device", "bogus"], "--device"),
    ("device-meta", lambda t, m: ["eval", m["fixed"], "--device", "meta"], "--device"),
    ("flops-bins-text", lambda t, m: ["train-supernet", "--set", "sampling.flops_bins=[1,a,3]"],
     "sampling.flops_bins"),
    ("width-mult-config", lambda t, m: ["train-supernet", "--set", "space.width_mult=1000"], "space.width_mult"),
    ("space-name-ignored", lambda t, m: ["train", "--arch", "oneshot", "--set", "space.name=nosuch"], "nosuch"),
    ("rank-eval-batches-zero", lambda t, m: ["rank", "--supernet", m["supernet"], "--eval-batches", "0",
                                             "--standalone", "digits-retrain"], "--eval-batches"),
    ("profile-threads-negative", lambda t, m: ["profile", "oneshot", "--threads", "-1"], "--threads"),
    ("profile-width-mult-nan", lambda t, m: ["profile", "oneshot", "--width-mult", "nan"], "--width-mult"),
    ("profile-width-mult-huge", lambda t, m: ["profile", "oneshot", "--width-mult", "1000"], "--width-mult"),
    ("latency-check-negative", lambda t, m: ["latency", "table", "--check", "-1"], "--check"),
    ("mutation-prob-negative", lambda t, m: ["search", "--supernet", m["supernet"], "--mutation-prob", "-1"],
     "--mutation-prob"),
    ("mutations-negative", lambda t, m: ["search", "--supernet", m["supernet"], "--mutations", "-5"], "--mutations"),
    ("latency-max-zero", lambda t, m: ["search", "--supernet", m["supernet"], "--latency-max", "0"], "--latency-max"),
    ("bn-batches-negative", lambda t, m: ["eval", m["supernet"], "--arch", "0," * 19 + "0/" + "0," * 19 + "0",
                                          "--data", "digits", "--bn-batches", "-1"], "--bn-batches"),
    ("calibration-batches-zero", lambda t, m: ["export", "oneshot", "--int8", "--calibration-batches", "0"],
     "--calibration-batches"),
]


@pytest.mark.parametrize("build, names", [pytest.param(b, n, id=i) for i, b, n in FLAG_CASES])
def test_a_bad_flag_is_one_line_naming_it_before_any_write(tmp_path, capsys, made, build, names, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where default outputs (runs/..., latency.json) would go
    argv = build(tmp_path, made)
    if "--output" not in argv and argv[0] not in ("profile", "eval", "export"):
        argv += ["--output", str(tmp_path / "out")]
    assert main(argv) == 2
    assert names in _one_line(capsys)
    assert sorted(os.listdir(tmp_path)) == []


def _under_a_file(tmp_path: Path) -> str:
    (tmp_path / "file").write_text("mine\n")
    return str(tmp_path / "file" / "out")


def _dangling(tmp_path: Path) -> str:
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    return str(tmp_path / "link")


@pytest.mark.parametrize("output", [_under_a_file, _dangling, lambda t: "/proc/spos-x/out"],
                         ids=["under-a-file", "dangling-link", "proc"])
@pytest.mark.parametrize("command", ["search", "export", "latency-table"])
def test_an_output_that_cannot_be_written_is_one_line_before_any_work(tmp_path, capsys, made, output, command):
    path = output(tmp_path)
    argv = {"search": ["search", "--supernet", made["supernet"], "--output", path],
            "export": ["export", made["fixed"], "--output", path],
            "latency-table": ["latency", "table", "--output", path]}[command]
    assert main(argv) == 2
    assert "--output" in _one_line(capsys)
    assert not os.path.lexists(tmp_path / "nowhere")


# -- limits on time: an impossible measured-latency limit is timed a bounded number of times ------

def test_an_impossible_measured_latency_limit_gives_up_after_a_few_timings(tmp_path, capsys, made, monkeypatch):
    import spos.deploy.latency
    from spos.space.limits import MEASURED_DRAWS

    timed = []

    def fake_measure(model, shape, **kwargs):
        timed.append(1)
        return spos.deploy.latency.LatencyStats(3.0, 3.0, 3.0, 3.0, 0.0, 1, 1, 1, "cpu")

    monkeypatch.setattr(spos.deploy.latency, "measure_model", fake_measure)
    assert main(["search", "--supernet", made["supernet"], "--latency-max", "1e-6", "--output", str(tmp_path / "out"),
                 *SEARCH_SMALL]) == 2
    err = _one_line(capsys)
    assert "latency" in err and "--latency-table" in err
    assert 0 < len(timed) <= MEASURED_DRAWS
    assert not (tmp_path / "out").exists()


# -- issue #27 frictions ------------------------------------------------------------------------

def test_a_space_with_one_width_takes_block_only_text(capsys):
    assert main(["profile", "0,1,2,0,1,2,0,1", "--space", "mbv2-macro-cifar", "--no-latency", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["arch"] == "0,1,2,0,1,2,0,1/0,0,0,0,0,0,0,0"


@pytest.mark.parametrize("space, text, expected", [
    ("mbv2-macro-cifar", "0,1,2", "8 block choices"),
    ("oneshot", "0,1,2,0", "'B,..,B/C,..,C' with 20 block choices"),
])
def test_an_unreadable_architecture_says_the_form_this_space_takes(capsys, space, text, expected):
    assert main(["profile", text, "--space", space, "--no-latency"]) == 2
    assert expected in _one_line(capsys)


def _onnx_file(path: Path) -> str:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    onnx.save(helper.make_model(graph), str(path))
    return str(path)


def _torchscript_file(path: Path) -> str:
    torch.jit.script(torch.nn.ReLU()).save(str(path))
    return str(path)


def _safetensors_file(path: Path) -> str:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(path))
    return str(path)


def _official_file(path: Path, key: str) -> str:
    torch.save({"state_dict": {key: torch.zeros(1)}}, path)
    return str(path)


@pytest.mark.parametrize("make, said", [
    (lambda t, m: _onnx_file(t / "best.onnx"), ["ONNX model", "spos latency model"]),
    (lambda t, m: _onnx_file(t / "best.bin"), ["ONNX model", "spos latency model"]),
    (lambda t, m: _torchscript_file(t / "best.ts"), ["TorchScript", "torch.jit.load"]),
    (lambda t, m: _safetensors_file(t / "w.safetensors"), ["safetensors file", "model folder"]),
    (lambda t, m: _official_file(t / "o.pth.tar", "module.features.0.1.branch_main.0.weight"),
     ["official", "spos convert-official", "--supernet"]),
    (lambda t, m: _official_file(t / "o.pth.tar", "module.features.0.branch_main.0.weight"),
     ["official", "spos convert-official", "--arch"]),
    (lambda t, m: m["fixed"], ["fixed", "spos train-supernet", "spos eval"]),
], ids=["onnx", "onnx-by-content", "torchscript", "safetensors", "official-supernet", "official-retrained", "fixed"])
def test_a_file_that_is_not_a_supernet_checkpoint_is_named_for_what_it_is(tmp_path, capsys, made, make, said):
    assert main(["search", "--supernet", make(tmp_path, made), "--output", str(tmp_path / "out")]) == 2
    err = _one_line(capsys)
    assert all(words in err for words in said), err
    assert "do not trust" not in err and "damaged" not in err


def test_a_supernet_where_a_fixed_network_is_needed_says_which_commands_take_it(made):
    from spos.errors import UserError
    from spos.store.checkpoint import load_kind

    with pytest.raises(UserError, match="supernet checkpoint.*spos search"):
        load_kind(made["supernet"], "fixed")


@pytest.mark.parametrize("argv, suggestion", [
    (["serach"], "did you mean 'search'?"),
    (["search", "--supernet", "x.pt", "--flops-mx", "3e8"], "did you mean --flops-max?"),
    (["latency", "tabel"], "did you mean 'table'?"),
    (["latency", "table", "--output", "t.json", "--chek", "3"], "did you mean --check?"),
])
def test_a_typo_gets_a_suggestion(capsys, argv, suggestion):
    assert main(argv) == 2
    assert suggestion in _one_line(capsys)


def test_a_torchvision_that_does_not_fit_torch_says_what_to_reinstall(capsys, monkeypatch):
    import spos.cli.models

    def broken(args):
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(spos.cli.models, "run_zoo", broken)
    assert main(["zoo"]) == 2
    err = _one_line(capsys)
    assert "torchvision" in err and "pip install" in err and f"torch=={torch.__version__.split('+')[0]}" in err


@pytest.mark.parametrize("torch_version, vision_version, fits", [
    ("2.4.1+cpu", "0.19.1+cpu", True), ("2.4.1+cpu", "0.19.1+cu121", False), ("2.5.0", "0.19.0", False),
    ("2.14.1+cu130", "0.29.1+cu130", True),
])
def test_the_torch_pair_rule(torch_version, vision_version, fits):
    from spos.cli.environment import torchvision_mismatch

    assert (torchvision_mismatch(torch_version, vision_version) is None) == fits


# -- the last resort ----------------------------------------------------------------------------

def _crash(args):
    raise ZeroDivisionError("deep inside")


def test_an_unforeseen_error_is_one_line_and_a_full_log(tmp_path, capsys, monkeypatch):
    import tempfile

    import spos.cli.models

    monkeypatch.setattr(spos.cli.models, "run_zoo", _crash)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["zoo"]) == 1
    err = _one_line(capsys)
    assert "ZeroDivisionError: deep inside" in err
    log = Path(err.rsplit(" ", 1)[-1].rstrip(")"))
    assert log.parent == tmp_path and "Traceback" in log.read_text() and "_crash" in log.read_text()


def test_with_verbose_an_unforeseen_error_shows_its_traceback(capsys, monkeypatch):
    import spos.cli.models

    monkeypatch.setattr(spos.cli.models, "run_zoo", _crash)
    assert main(["-v", "zoo"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: deep inside" in err


def test_the_log_is_not_written_through_a_planted_link(tmp_path, capsys, monkeypatch):
    import tempfile

    import spos.cli
    import spos.cli.models

    target = tmp_path / "victim"
    target.write_text("keep me\n")
    monkeypatch.setattr(spos.cli.models, "run_zoo", _crash)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(spos.cli, "_log_name", lambda command: "planted.log")
    (tmp_path / "planted.log").symlink_to(target)
    assert main(["zoo"]) == 1
    _one_line(capsys)
    assert target.read_text() == "keep me\n"
