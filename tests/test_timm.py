"""spos networks through timm's own API: create_model, resolve_data_config, features_only backbones."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.data import create_transform, resolve_data_config

import spos
import spos.deploy.timm  # noqa: F401 - registers the models
from spos.cli import main
from spos.data.conventions import CONVENTIONS, IMAGENET_MEAN, dataset_info
from spos.data.preprocessing import preprocessing_record
from spos.deploy.timm import timm_name, timm_pretrained_cfg
from spos.nn.fixed import FixedNet
from spos.space.architecture import save_architecture, uniform_architecture
from spos.space.searchspace import get_space
from spos.space.zoo import ZOO, resolve_architecture

SMALL = dict(num_classes=10, input_size=32, width_mult=0.25)


@pytest.mark.parametrize("name", list(ZOO))
def test_every_zoo_architecture_is_a_timm_model(name):
    model = timm.create_model(timm_name(name), pretrained=False, **SMALL)
    arch, space = resolve_architecture(name, **SMALL)
    assert model.arch == arch and model.space == space
    assert list(model.state_dict()) == list(FixedNet(space, arch).state_dict())  # spos weights load as they are
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_timm_data_config_carries_the_input_convention():
    model = timm.create_model("spos_oneshot", pretrained=False)
    config = resolve_data_config(model=model)
    assert config["input_size"] == (3, 224, 224) and config["mean"] == IMAGENET_MEAN
    assert (config["interpolation"], config["crop_pct"]) == ("bilinear", 0.875)
    transform = create_transform(**config)
    from PIL import Image

    assert transform(Image.new("RGB", (300, 200))).shape == (3, 224, 224)


def test_features_only_gives_the_stage_outputs_at_strides_4_to_32():
    backbone = timm.create_model("spos_oneshot", pretrained=False, features_only=True, out_indices=(1, 2, 3, 4))
    assert backbone.feature_info.channels() == [64, 160, 320, 640]
    assert backbone.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        maps = backbone.eval()(torch.randn(1, 3, 224, 224))
    assert [tuple(m.shape) for m in maps] == [(1, 64, 56, 56), (1, 160, 28, 28), (1, 320, 14, 14), (1, 640, 7, 7)]
    stem = timm.create_model("spos_oneshot", pretrained=False, features_only=True, out_indices=(0,))
    assert stem.feature_info.reduction() == [2]


def test_a_searched_architecture_file_is_a_timm_model(tmp_path):
    space = get_space("mbv2-macro-cifar")
    arch = uniform_architecture(space, 1, 0)
    path = save_architecture(tmp_path / "best.json", arch, space)
    model = timm.create_model("spos", arch=str(path))
    assert model.arch == arch and model.space == space
    assert resolve_data_config(model=model)["input_size"] == (3, 32, 32)


def test_a_model_folder_loads_in_timm_with_its_weights_and_convention(tmp_path):
    folder = tmp_path / "model"
    assert main(["export", "oneshot", "--width-mult", "0.25", "--num-classes", "10", "--input-size", "32",
                 "--data", "synthetic", "--format", "hf", "--output", str(folder), "--no-measure"]) == 0
    model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    reference = spos.from_pretrained(folder)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reference(x))
    tuned = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=4)  # fine-tuning: a new head
    assert tuned(x).shape == (2, 4)


def test_official_and_grey_conventions_in_timm_terms():
    space = get_space("oneshot", input_size=32, num_classes=10, width_mult=0.25)
    official = timm_pretrained_cfg(space, preprocessing_record(dataset_info("cifar10"), CONVENTIONS["official"],
                                                               32, 3))
    assert official["mean"] == (0.0, 0.0, 0.0) and official["std"] == pytest.approx((1 / 255,) * 3)
    assert "BGR" in official["notes"][0]
    grey = get_space("oneshot", input_size=32, num_classes=10, in_channels=1, width_mult=0.25)
    mnist = timm_pretrained_cfg(grey, preprocessing_record(dataset_info("mnist"), CONVENTIONS["spos"], 32, 1))
    assert mnist["input_size"] == (1, 32, 32) and mnist["mean"] == (0.1307,) and "pad raw images by 2" in mnist["notes"][0]
