"""The input convention (channel order, scale, mean, std) travels with a checkpoint and its exports.

A converted official network must see what megvii's ``ToBGRTensor`` feeds it (BGR pixel values
0..255, unnormalised) through spos's own data paths, or its logits mean nothing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import spos.train
from spos.cli import main
from spos.data.conventions import CONVENTIONS, InputConvention, input_convention
from spos.data.datasets import build_datasets
from spos.deploy import export
from spos.errors import UserError
from spos.nn.fixed import FixedNet
from spos.nn.supernet import SuperNet
from spos.space.searchspace import get_space
from spos.space.zoo import resolve_architecture
from spos.store import checkpoint
from spos.store.official import to_official

SPACE_ARGS = ["--space", "oneshot", "--input-size", "32", "--num-classes", "10", "--width-mult", "0.25"]


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """(network, its converted spos checkpoint, a CIFAR-style .npz, that file's test pixels and labels)."""
    folder = tmp_path_factory.mktemp("official")
    arch, space = resolve_architecture("oneshot", input_size=32, num_classes=10, width_mult=0.25)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = _input_sensitive(FixedNet(space, arch))
    with torch.no_grad():  # BN statistics of official (BGR 0..255) inputs, as an official network has
        for _ in range(3):
            model(_official_preprocessing(_tinted_images(rng, 16)))
    model.eval()
    release = folder / "official.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in to_official(model).items()}}, release)
    converted = folder / "converted.pt"
    assert main(["convert-official", str(release), "--arch", "oneshot", *SPACE_ARGS, "--output", str(converted)]) == 0
    x_test, y_test = _tinted_images(rng, 6), rng.integers(0, 10, 6)
    npz = folder / "cifar.npz"
    np.savez(npz, x_train=_tinted_images(rng, 8), y_train=rng.integers(0, 10, 8), x_test=x_test, y_test=y_test)
    return model, converted, npz, x_test, y_test


def _input_sensitive(model: FixedNet) -> FixedNet:
    """Random BN affines and classifier, BN statistics averaged over all batches seen: a fresh
    network's zero-initialised BNs and small classifier make logits that barely depend on the input."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.momentum = None
            elif isinstance(module, torch.nn.Linear):
                module.weight.normal_(0, 0.1)
    return model.train()


def _tinted_images(rng: np.random.Generator, n: int) -> np.ndarray:
    """HWC uint8 RGB images, each a noisy random colour: the channel order changes what a network sees."""
    colour = rng.integers(0, 256, (n, 1, 1, 3))
    return np.clip(colour + rng.integers(-40, 41, (n, 32, 32, 3)), 0, 255).astype(np.uint8)


def _official_preprocessing(pixels: np.ndarray) -> torch.Tensor:
    """megvii's ToBGRTensor by hand: HWC RGB uint8 -> CHW BGR float of the raw values."""
    return torch.from_numpy(np.ascontiguousarray(pixels[..., ::-1])).permute(0, 3, 1, 2).float()


def _eval_batch(monkeypatch, argv) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, logits) of the first batch `spos eval` builds and runs its network on."""
    seen = {}

    def capture(model, loader, **kwargs):
        x, _ = next(iter(loader))
        with torch.no_grad():
            seen["x"], seen["logits"] = x, model.eval()(x)
        return {"top1": 0.0, "top5": 0.0, "loss": 0.0}

    monkeypatch.setattr(spos.train, "evaluate", capture)
    assert main(["eval", *argv, "--json"]) == 0
    return seen["x"], seen["logits"]


def test_presets_round_trip_and_unknown_names_are_refused():
    for convention in CONVENTIONS.values():
        assert InputConvention.from_dict(json.loads(json.dumps(convention.to_dict()))) == convention
    assert input_convention(None) == CONVENTIONS["spos"]
    with pytest.raises(UserError, match="unknown input convention 'yuv'"):
        input_convention("yuv")


def test_official_convention_gives_the_official_pixels():
    spos_val = build_datasets("digits").val.images
    official_val = build_datasets("digits", convention="official").val.images
    assert abs(float(spos_val.mean())) < 0.1 and float(official_val.max()) == 255.0
    assert torch.allclose(official_val, (spos_val * 0.3760 + 0.3053) * 255, atol=1e-3)


def test_converted_official_network_gives_official_logits_through_eval(official, monkeypatch):
    model, converted, npz, x_test, _ = official
    with torch.no_grad():
        expected = model(_official_preprocessing(x_test))
    x, logits = _eval_batch(monkeypatch, [str(converted), "--data", "cifar10", "--data-root", str(npz)])
    assert torch.equal(x, _official_preprocessing(x_test))  # exactly the BGR values 0..255
    assert torch.allclose(logits, expected, rtol=1e-5, atol=1e-4 * float(expected.abs().max()))
    # the spos convention (RGB, normalised) would have fed something else entirely
    x_spos, logits_spos = _eval_batch(monkeypatch, [str(converted), "--data", "cifar10", "--data-root", str(npz),
                                                    "--input", "spos"])
    assert float(x_spos.abs().max()) < 5
    assert float((logits_spos - expected).abs().max()) > 0.1 * float(expected.abs().max())


def test_checkpoints_record_their_convention_and_old_ones_mean_spos(official, tmp_path):
    _, converted, *_ = official
    assert checkpoint.load(converted)["input"] == CONVENTIONS["official"].to_dict()
    assert checkpoint.convention_of(checkpoint.load(converted)) == CONVENTIONS["official"]
    assert checkpoint.convention_of(checkpoint.load(converted), "spos") == CONVENTIONS["spos"]
    space = get_space("oneshot", input_size=8, num_classes=10, in_channels=1, width_mult=0.25)
    payload = checkpoint.supernet_payload(SuperNet(space))
    assert payload["input"]["name"] == "spos"
    del payload["input"]  # as spos wrote it before conventions were recorded
    old = checkpoint.save_atomic(payload, tmp_path / "old.pt")
    assert checkpoint.convention_of(checkpoint.load(old)) == CONVENTIONS["spos"]


def test_training_runs_record_spos_and_a_resume_keeps_what_the_checkpoint_says(tmp_path):
    from spos.train import load_config
    from spos.train.loop import Trainer

    run = tmp_path / "run"
    assert main(["train", "--config", "digits-retrain", "--output", str(run), "--no-progress",
                 "--set", "train.iterations=1"]) == 0
    last = checkpoint.load(run / "last.pt")
    assert last["input"] == CONVENTIONS["spos"].to_dict()
    last["input"] = CONVENTIONS["official"].to_dict()  # as if the run had started from official input
    checkpoint.save_atomic(last, run / "last.pt")
    resumed = Trainer(load_config("digits-retrain", ["train.iterations=1"]), run, resume=True, progress=False)
    assert resumed.convention == CONVENTIONS["official"]
    assert float(resumed.train_loader.dataset.images.max()) == 255.0
    assert resumed._payload()["input"] == CONVENTIONS["official"].to_dict()


def test_search_scores_in_the_supernets_convention_unless_told(tmp_path, monkeypatch):
    from spos.search import run as search_run

    space = get_space("oneshot", input_size=8, num_classes=10, in_channels=1, width_mult=0.25)
    path = checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(space), "official"), tmp_path / "s.pt")
    used = []

    def capture(job, space, device, convention=None):
        used.append(convention)
        raise UserError("stop here")

    monkeypatch.setattr(search_run, "load_scoring_data", capture)
    for extra in ([], ["--input", "spos"]):
        assert main(["search", "--supernet", str(path), "--output", str(tmp_path / f"out{len(used)}"),
                     "--holdout-from", "val", "--no-progress", *extra]) == 2
    assert used == [CONVENTIONS["official"], CONVENTIONS["spos"]]


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_exports_carry_the_convention_in_their_metadata(official, tmp_path, capsys, fmt):
    _, converted, npz, x_test, _ = official
    out = tmp_path / f"net.{fmt}"
    assert main(["export", str(converted), "--format", fmt, "--data", "cifar10", "--data-root", str(npz),
                 "--batch-size", "2", "--output", str(out)]) == 0
    assert "input official (BGR, pixels 0..255" in capsys.readouterr().out
    recorded = export.read_input_convention(out)  # the convention's keys, statistics as numbers per channel
    assert InputConvention.from_dict(recorded) == InputConvention("official", "bgr", 255.0, (0.0,) * 3, (1.0,) * 3)
    assert main(["export", str(converted), "--format", fmt, "--input", "spos", "--output", str(out), "--force",
                 "--batch-size", "2"]) == 0
    assert export.read_input_convention(out)["name"] == "spos"


def test_imagefolder_transforms_follow_the_convention(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.fromarray(_tinted_images(rng, 1)[0]).save(tmp_path / split / cls / "0.png")
    spos_x = build_datasets("imagefolder", tmp_path, input_size=32).val[0][0]
    official_x = build_datasets("imagefolder", tmp_path, input_size=32, convention="official").val[0][0]
    mean, std = torch.tensor((0.485, 0.456, 0.406)), torch.tensor((0.229, 0.224, 0.225))
    rgb_255 = (spos_x * std.view(3, 1, 1) + mean.view(3, 1, 1)) * 255
    assert float(official_x.max()) > 100  # raw pixel values, not normalised ones
    assert torch.allclose(official_x, rgb_255.flip(0), atol=1e-3)  # the same pixels, in BGR order


def test_to_official_says_when_the_network_expects_other_input(official, tmp_path, capsys):
    _, converted, *_ = official
    assert main(["convert-official", str(converted), "--to-official", "--output", str(tmp_path / "a.pth")]) == 0
    assert "note:" not in capsys.readouterr().out
    data = checkpoint.load(converted)
    data["input"] = CONVENTIONS["spos"].to_dict()
    spos_file = checkpoint.save_atomic(data, tmp_path / "spos.pt")
    assert main(["convert-official", str(spos_file), "--to-official", "--output", str(tmp_path / "b.pth")]) == 0
    assert "note: this network expects input spos (RGB" in capsys.readouterr().out
