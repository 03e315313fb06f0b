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
