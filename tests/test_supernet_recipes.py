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
