"""Every export records the whole preprocessing, and a deployer who follows only that record gets
spos's own predictions from raw pixels (uint8 images as a user holds them), image for image (#27)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spos.cli import main
from spos.data.datasets import build_datasets
from spos.deploy import export
from spos.train.config import load_config
from spos.train.loop import run_training

MNIST_ROOT = Path("/work/shared/data")
SMALL = ["--width-mult", "0.25", "--num-classes", "10"]


def deploy_preprocess(raw: list[np.ndarray], record: dict) -> np.ndarray:
    """What a deployer writes from the record alone (numpy and PIL, no spos): raw pixels to N,C,H,W."""
    from PIL import Image

    out = []
    for pixels in raw:
        rule = record["resize"]
        if rule["rule"] == "pad":
            pad = [(rule["pad"], rule["pad"])] * 2 + [(0, 0)] * (pixels.ndim - 2)
            pixels = np.pad(pixels, pad, constant_values=rule["value"])
        elif rule["rule"] == "resize-centre-crop":
            image = Image.fromarray(pixels)
            w, h = image.size
            short = rule["resize"]
            size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
            image = image.resize(size, Image.BILINEAR)
            left, top = int(round((size[0] - rule["crop"]) / 2)), int(round((size[1] - rule["crop"]) / 2))
            pixels = np.asarray(image.crop((left, top, left + rule["crop"], top + rule["crop"])))
        x = pixels.astype(np.float32) / record["pixel_max"] * record["scale"]
        x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
        if record["channel_order"] == "bgr":
            x = x[::-1]
        mean, std = np.array(record["mean"], np.float32), np.array(record["std"], np.float32)
        out.append((x - mean[:, None, None]) / std[:, None, None])
    batch = np.stack(out).astype(np.float32)
    assert list(batch.shape[1:]) == [record["channels"], *record["input_size"]]
    return batch


def _exported_logits(path: Path, fmt: str, x: np.ndarray) -> np.ndarray:
    return export.exported_output(path, fmt, torch.from_numpy(np.ascontiguousarray(x)))


def _spos_logits(model, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(images).numpy()


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    run_training(load_config("digits-retrain", ["train.epochs=4"]), out, progress=False)
    return out / "best.pt"


def _raw_digits_val() -> tuple[list[np.ndarray], np.ndarray]:
    """The val images as scikit-learn hands them over (0..16), split as data.py splits them."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    _, val = train_test_split(np.arange(len(digits.target)), test_size=0.2, random_state=0, stratify=digits.target)
    return [digits.images[i] for i in val], digits.target[val]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", export.FORMATS)
def test_digits_export_on_raw_pixels_gets_spos_accuracy_to_the_image(digits_run, tmp_path, fmt):
    from argparse import Namespace

    from spos.cli.deploy import load_network

    ckpt = digits_run
    model, _ = load_network(str(ckpt), None, Namespace())  # the network `spos export` exports
    out = tmp_path / f"net.{fmt}"
    assert main(["export", str(ckpt), "--format", fmt, "--output", str(out), "--batch-size", "2"]) == 0
    record = export.read_input_convention(out)
    assert record["dataset"] == "digits" and record["channel_order"] == "gray" and record["pixel_max"] == 16
    assert record["mean"] == [0.3053] and record["std"] == [0.3760] and record["input_size"] == [8, 8]
    raw, labels = _raw_digits_val()
    got = _exported_logits(out, fmt, deploy_preprocess(raw, record))
    expected = _spos_logits(model, build_datasets("digits").val.images)
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))
    assert (got.argmax(1) == expected.argmax(1)).all()
    top1 = float((got.argmax(1) == labels).mean())
    assert top1 > 0.5  # a trained network; without the normalisation it would be another number
    unnormalised = _exported_logits(out, fmt, deploy_preprocess(raw, {**record, "mean": [0.0], "std": [1.0]}))
    assert float((unnormalised.argmax(1) == labels).mean()) != top1


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_the_export_line_describes_a_digits_networks_real_input(tmp_path, capsys, digits_space, fmt):
    import random

    from spos.nn.fixed import FixedNet
    from spos.space.architecture import sample_architecture
    from spos.store import checkpoint

    net = FixedNet(digits_space, sample_architecture(digits_space, random.Random(0)))
    source = checkpoint.save_atomic(checkpoint.fixed_payload(net, config={"data": {"name": "digits"}}),
                                    tmp_path / "net.pt")
    assert main(["export", str(source), "--format", fmt, "--output", str(tmp_path / f"net.{fmt}"),
                 "--batch-size", "2"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(f"{fmt} export"))
    assert "input spos (GRAY, pixels 0..1 from raw 0..16, mean [0.3053] std [0.376])" in line and "RGB" not in line


@pytest.mark.skipif(not (MNIST_ROOT / "MNIST" / "raw").is_dir(), reason="the real MNIST files are not here")
def test_mnist_export_records_the_padding_and_statistics(tmp_path):
    from spos.data.datasets import MNIST_FILES, _idx_file, _mnist_raw, _read_idx

    out = tmp_path / "mnist.onnx"
    assert main(["export", "oneshot", *SMALL, "--input-size", "32", "--in-channels", "1", "--data", "mnist",
                 "--data-root", str(MNIST_ROOT), "--batch-size", "2", "--output", str(out)]) == 0
    record = export.read_input_convention(out)
    assert record["resize"] == {"rule": "pad", "pad": 2, "value": 0} and record["source_size"] == 28
    assert record["mean"] == [0.1307] and record["std"] == [0.3081] and record["pixel_max"] == 255
    raw = _read_idx(_idx_file(_mnist_raw(MNIST_ROOT), MNIST_FILES[2]))[:64]
    x = torch.from_numpy(deploy_preprocess(list(raw), record))
    assert torch.allclose(x, build_datasets("mnist", MNIST_ROOT).val.images[:64], atol=1e-5)


def _tinted_jpegs(root: Path, rng) -> None:
    from PIL import Image

    for split in ("train", "val"):
        for cls, size in (("cat", (50, 37)), ("dog", (30, 45))):
            (root / split / cls).mkdir(parents=True)
            pixels = np.clip(rng.integers(0, 256, 3) + rng.integers(-60, 61, (size[1], size[0], 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / split / cls / "0.png")


def test_imagefolder_export_records_resize_and_crop(tmp_path):
    from PIL import Image

    _tinted_jpegs(tmp_path / "data", np.random.default_rng(0))
    out = tmp_path / "net.onnx"
    assert main(["export", "oneshot", *SMALL, "--num-classes", "2", "--input-size", "32", "--data", "imagefolder",
                 "--data-root", str(tmp_path / "data"), "--batch-size", "2", "--output", str(out)]) == 0
    record = export.read_input_convention(out)
    assert record["resize"]["rule"] == "resize-centre-crop" and record["resize"]["resize"] == 36
    assert record["mean"] == [0.485, 0.456, 0.406] and record["channel_order"] == "rgb"
    val = build_datasets("imagefolder", tmp_path / "data", input_size=32).val
    raw = [np.asarray(Image.open(path).convert("RGB")) for path, _ in val.samples]
    x = torch.from_numpy(deploy_preprocess(raw, record))
    assert torch.allclose(x, torch.stack([val[i][0] for i in range(len(val))]), atol=0.05)


def test_official_convention_is_recorded_as_bgr_unnormalised(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    np.savez(tmp_path / "c.npz", x_train=pixels, y_train=np.arange(4), x_test=pixels, y_test=np.arange(4))
    out = tmp_path / "net.ts"
    assert main(["export", "oneshot", *SMALL, "--input-size", "32", "--data", "cifar10", "--data-root",
                 str(tmp_path / "c.npz"), "--input", "official", "--format", "torchscript", "--batch-size", "2",
                 "--output", str(out)]) == 0
    record = export.read_input_convention(out)
    assert (record["channel_order"], record["scale"], record["mean"], record["std"]) == ("bgr", 255.0, [0.0] * 3,
                                                                                        [1.0] * 3)
    x = torch.from_numpy(deploy_preprocess(list(pixels), record))
    expected = build_datasets("cifar10", tmp_path / "c.npz", convention="official").val.images
    assert torch.equal(x, expected)


def test_a_record_without_data_says_the_statistics_are_unknown():
    from spos.data.conventions import CONVENTIONS
    from spos.data.preprocessing import describe_record, preprocessing_record

    unknown = preprocessing_record(None, CONVENTIONS["spos"], 32, 3)
    assert unknown["mean"] is None and unknown["dataset"] is None
    assert "mean/std unknown" in describe_record(unknown)
