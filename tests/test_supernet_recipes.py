"""Supernet training recipes: LR by the linear scaling rule, strictly fair sampling, weight-entangled kernels."""

from __future__ import annotations

import logging

import pytest

from spos.train.config import load_config
from spos.train.loop import run_training
from spos.train.recipe import hot_lr_warning, linear_scaled_lr

TINY = ["train.iterations=1", "validation.paths=1", "validation.bn_batches=1", "data.val_batch_size=512"]


def test_shipped_supernet_configs_follow_the_linear_scaling_rule():
    for name, processes in (("digits-supernet", 1), ("cifar10-supernet", 1), ("imagenet-supernet", 8)):
        config = load_config(name)
        assert config["optim"]["lr"] == pytest.approx(linear_scaled_lr(config["data"]["batch_size"] * processes))
    assert linear_scaled_lr(1024) == 0.5


def test_lr_far_above_the_rule_is_warned_about():
    assert hot_lr_warning(0.03125, 64) is None
    assert hot_lr_warning(0.12, 64) is None  # 3.8x: within the margin
    message = hot_lr_warning(0.2, 64)
    assert message and "6.4x" in message and "optim.lr=0.03125" in message


@pytest.mark.parametrize("lr, warned", [(0.2, True), (0.03125, False)])
def test_supernet_training_warns_at_start_when_lr_is_hot(tmp_path, caplog, lr, warned):
    config = load_config("digits-supernet", [*TINY, f"optim.lr={lr}"])
    with caplog.at_level(logging.WARNING, logger="spos.train.loop"):
        run_training(config, tmp_path / "run", progress=False)
    assert any("linear" in r.getMessage() or "official supernet LR" in r.getMessage()
               for r in caplog.records) == warned


# ----------------------------------------------------------------------------------------------
# Strictly fair sampling (FairNAS)


def test_fair_sampler_uses_every_block_choice_of_every_layer_once_per_step(tiny_space):
    from spos.train.sampler import PathSampler

    sampler = PathSampler(tiny_space, seed=0, strategy="fair")
    for _ in range(10):
        paths = sampler.sample_step()
        assert len(paths) == tiny_space.num_blocks
        for layer in range(tiny_space.num_layers):
            assert sorted(p.blocks[layer] for p in paths) == list(range(tiny_space.num_blocks))
        for path in paths:
            path.validate(tiny_space)
    assert len(PathSampler(tiny_space, seed=0).sample_step()) == 1  # uniform: one path per step


def test_fair_sampling_refuses_settings_it_cannot_honour(tiny_space):
    from spos.errors import UserError
    from spos.train.sampler import PathSampler

    with pytest.raises(UserError, match="strategy"):
        PathSampler(tiny_space, seed=0, strategy="sandwich")
    with pytest.raises(UserError, match="fair"):
        PathSampler(tiny_space, seed=0, strategy="fair", flops_max=1e6)


def test_fair_training_step_runs_each_choice_once_then_one_optimizer_step(tmp_path, monkeypatch):
    from spos.supernet import SuperNet
    from spos.train import loop

    forwards, steps = [], []
    original_forward, original_step = SuperNet.forward, loop.Trainer._optimizer_step

    def recording_forward(self, x, arch):
        if self.training:
            forwards.append(arch)
        return original_forward(self, x, arch)

    def recording_step(self, archs):
        steps.append(len(forwards))
        return original_step(self, archs)

    monkeypatch.setattr(SuperNet, "forward", recording_forward)
    monkeypatch.setattr(loop.Trainer, "_optimizer_step", recording_step)
    config = load_config("digits-supernet", [*TINY, "train.iterations=2", "sampling.strategy=fair"])
    result = run_training(config, tmp_path / "run", progress=False)
    blocks = result.model.space.num_blocks
    assert steps == [blocks, 2 * blocks]  # m paths, then one optimizer step (later forwards: BN recalibration)
    for start in (0, blocks):
        group = forwards[start:start + blocks]
        for layer in range(result.model.space.num_layers):
            assert sorted(arch.blocks[layer] for arch in group) == list(range(blocks))


# ----------------------------------------------------------------------------------------------
# Weight-entangled kernels


def test_entangled_choices_share_one_7x7_kernel_and_their_pointwise_convs(tiny_space):
    from spos.supernet import SuperNet

    plain, entangled = SuperNet(tiny_space), SuperNet(tiny_space, entangled_kernels=True)
    assert sum(p.numel() for p in entangled.parameters()) < sum(p.numel() for p in plain.parameters())
    layer = entangled.features[0]
    for block in (0, 1):  # 3x3 and 5x5 use the 7x7 choice's weights, centre-cropped
        for mine, theirs in zip(layer[block].branch_main, layer[2].branch_main):
            if hasattr(mine, "weight") and isinstance(mine, type(theirs)) and mine.weight is not None:
                assert mine.weight is theirs.weight
    assert layer[0].branch_main[3].kernel().shape[-1] == 3 and layer[1].branch_main[3].kernel().shape[-1] == 5
    assert layer[3].branch_main[0].weight is not layer[2].branch_main[0].weight  # Xception keeps its own


def test_entangled_supernet_extracts_fixed_nets_equal_to_their_paths(tiny_space):
    import random

    import torch

    from spos.space import sample_architecture
    from spos.supernet import SuperNet
    from spos.train.bn import recalibrate_bn

    supernet = SuperNet(tiny_space, entangled_kernels=True)
    with torch.no_grad():  # weights unlike the init, so a wrong crop would show
        for parameter in supernet.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    x = torch.randn(4, 3, 32, 32)
    rng = random.Random(1)
    for _ in range(4):
        arch = sample_architecture(tiny_space, rng)
        recalibrate_bn(supernet.path(arch), [(torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long))])
        supernet.eval()
        with torch.no_grad():
            expected = supernet(x, arch)
            got = supernet.extract(arch).eval()(x)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_entangled_flag_survives_a_checkpoint_and_training(tmp_path):
    from spos import checkpoint

    config = load_config("digits-supernet", [*TINY, "space.entangled_kernels=true"])
    result = run_training(config, tmp_path / "run", progress=False)
    assert result.model.entangled_kernels
    loaded = checkpoint.load_model(tmp_path / "run" / "last.pt", kind="supernet")
    assert loaded.entangled_kernels
    assert loaded.features[0][0].branch_main[3].weight is loaded.features[0][2].branch_main[3].weight


def test_entangled_supernet_converts_to_the_official_layout_with_centre_kernels(tiny_space):
    from spos.official import to_official
    from spos.supernet import SuperNet

    supernet = SuperNet(tiny_space, entangled_kernels=True)
    official = to_official(supernet)
    shared = supernet.features[1][2].branch_main[3].weight  # layer 1's 7x7 depthwise kernel
    three = next(v for k, v in official.items() if k.endswith("features.1.0.branch_main.3.weight"))
    assert three.shape[-1] == 3
    assert (three == shared[: three.shape[0], :, 2:5, 2:5]).all()
