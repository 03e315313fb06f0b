"""Supernet training recipes: LR by the linear scaling rule, strictly fair sampling, the sandwich rule with
in-place distillation, weight-entangled kernels."""

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
        PathSampler(tiny_space, seed=0, strategy="greedy")
    with pytest.raises(UserError, match="fair"):
        PathSampler(tiny_space, seed=0, strategy="fair", flops_max=1e6)


def test_fair_training_step_runs_each_choice_once_then_one_optimizer_step(tmp_path, monkeypatch):
    from spos.nn.supernet import SuperNet
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
# Sandwich rule with in-place distillation (BigNAS)


def test_sandwich_step_is_the_widest_path_then_the_narrowest_then_random_ones(tiny_space):
    from spos.space.flops import cost_table
    from spos.train.sampler import PathSampler

    table = cost_table(tiny_space)
    widest, narrowest = table.extremes()
    sampler = PathSampler(tiny_space, seed=0, strategy="sandwich", sandwich_paths=3)
    assert sampler.distills and not PathSampler(tiny_space, seed=0, strategy="fair").distills
    steps = [sampler.sample_step() for _ in range(5)]
    for paths in steps:
        assert len(paths) == 4 and paths[:2] == [widest, narrowest]
        assert all(table.macs(narrowest) <= table.macs(p) <= table.macs(widest) for p in paths[2:])
    assert len({p for paths in steps for p in paths[2:]}) > 2  # the others are drawn anew every step


@pytest.mark.parametrize("name", ["oneshot", "proxyless-mobile", "mbv2-macro-cifar"])
def test_sandwich_extremes_are_the_cost_tables_on_every_preset(name):
    from spos.space.flops import cost_table
    from spos.space.searchspace import get_space
    from spos.train.sampler import PathSampler

    space = get_space(name, input_size=32, num_classes=10, width_mult=0.25)  # proxyless: uneven op counts
    sampler = PathSampler(space, seed=0, strategy="sandwich", progressive_epochs=1)
    sampler.set_epoch(1)  # every layer released
    assert sampler.extreme_paths() == cost_table(space).extremes()
    sampler.set_epoch(0)
    for path in (*sampler.extreme_paths(), *sampler.sample_step()):
        path.validate(space)
        assert set(path.blocks[sampler.released_layers:]) == {0}


@pytest.mark.parametrize("mode", ["block", "channel"])
def test_sandwich_extremes_stay_inside_the_sampling_mode(tiny_space, mode):
    import random

    from spos.space.architecture import sample_architecture
    from spos.space.flops import cost_table
    from spos.train.sampler import PathSampler

    table = cost_table(tiny_space)
    widest, narrowest = PathSampler(tiny_space, seed=0, mode=mode, strategy="sandwich").extreme_paths()
    rng = random.Random(0)
    drawn = [sample_architecture(tiny_space, rng, mode=mode) for _ in range(200)]
    fixed = "channels" if mode == "block" else "blocks"
    assert getattr(widest, fixed) == getattr(narrowest, fixed) == getattr(drawn[0], fixed)
    assert table.macs(widest) >= max(map(table.macs, drawn)) and table.macs(narrowest) <= min(map(table.macs, drawn))


def test_sandwich_narrowest_path_follows_the_channel_warm_up(tiny_space):
    from spos.train.sampler import PathSampler

    sampler = PathSampler(tiny_space, seed=0, strategy="sandwich", channel_warmup_epochs=1)
    assert min(sampler.extreme_paths()[1].channels) == sampler.min_channel > 0
    sampler.set_epoch(5)
    assert min(sampler.extreme_paths()[1].channels) == sampler.min_channel


def test_sandwich_refuses_a_flops_window(tiny_space):
    from spos.errors import UserError
    from spos.train.sampler import PathSampler

    with pytest.raises(UserError, match="sandwich"):
        PathSampler(tiny_space, seed=0, strategy="sandwich", flops_bins=[1e6, 2e6, 1e5])
    with pytest.raises(UserError, match="sandwich_paths"):
        load_config("digits-supernet", ["sampling.sandwich_paths=0"])


def test_a_run_saved_before_a_config_key_existed_still_resumes():
    from spos.train.config import resume_differences

    current = load_config("digits-supernet")
    saved = load_config("digits-supernet")
    del saved["sampling"]["sandwich_paths"]  # a config.yaml written before the key existed
    assert resume_differences(saved, current) == []
    changed = load_config("digits-supernet", ["sampling.sandwich_paths=3"])
    assert resume_differences(saved, changed) == ["sampling.sandwich_paths 2 -> 3"]


def test_soft_target_loss_is_cross_entropy_against_the_teacher_distribution():
    import torch

    from spos.train.recipe import soft_target_loss

    logits, teacher = torch.randn(6, 10), torch.randn(6, 10).softmax(1)
    expected = -(teacher * logits.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(soft_target_loss(logits, teacher), expected)
    kl = torch.nn.functional.kl_div(logits.log_softmax(1), teacher, reduction="batchmean")
    entropy = -(teacher * teacher.log()).sum(1).mean()
    torch.testing.assert_close(soft_target_loss(logits, teacher), kl + entropy)  # KL up to a constant


def test_sandwich_training_step_distils_the_widest_path_into_the_others(tmp_path, monkeypatch):
    import torch

    from spos.nn.supernet import SuperNet
    from spos.space.flops import cost_table
    from spos.train import loop

    forwards, distil_losses, steps = [], [], []
    original_forward, original_step = SuperNet.forward, loop.Trainer._optimizer_step
    original_loss = loop.soft_target_loss

    def recording_forward(self, x, arch):
        logits = original_forward(self, x, arch)
        if self.training and torch.is_grad_enabled():
            forwards.append((arch, logits.detach().clone()))
        return logits

    def recording_distillation(logits, teacher):
        distil_losses.append((len(forwards), teacher.clone(), teacher.requires_grad))
        return original_loss(logits, teacher)

    def recording_step(self, archs):
        steps.append(len(forwards))
        return original_step(self, archs)

    monkeypatch.setattr(SuperNet, "forward", recording_forward)
    monkeypatch.setattr(loop, "soft_target_loss", recording_distillation)
    monkeypatch.setattr(loop.Trainer, "_optimizer_step", recording_step)
    config = load_config("digits-supernet", [*TINY, "train.iterations=2", "sampling.strategy=sandwich",
                                             "sampling.sandwich_paths=2"])
    result = run_training(config, tmp_path / "run", progress=False)
    assert steps == [3, 6]  # widest + 2 paths, then one optimizer step
    widest, narrowest = cost_table(result.model.space).extremes()
    for start in (0, 3):
        step_paths = [arch for arch, _ in forwards[start:start + 3]]
        assert step_paths[:2] == [widest, narrowest]
        teacher_probs = forwards[start][1].softmax(1)
        students = [entry for entry in distil_losses if start < entry[0] <= start + 3]
        assert [entry[0] for entry in students] == [start + 2, start + 3]  # not the widest path itself
        for _, teacher, needs_grad in students:
            torch.testing.assert_close(teacher, teacher_probs)
            assert not needs_grad


# ----------------------------------------------------------------------------------------------
# Progressive training: layers released from the input on


def test_progressive_release_schedule_frees_a_share_of_layers_per_epoch(tiny_space):
    from spos.train.sampler import PathSampler

    sampler = PathSampler(tiny_space, seed=0, progressive_epochs=3)
    pinned = (0, tiny_space.default_channel)
    released = []
    for epoch in range(6):
        sampler.set_epoch(epoch)
        released.append(sampler.released_layers)
        paths = [sampler.sample() for _ in range(40)]
        for layer in range(tiny_space.num_layers):
            choices = {(p.blocks[layer], p.channels[layer]) for p in paths}
            if layer < sampler.released_layers:
                assert len(choices) > 1, (epoch, layer)
            else:
                assert choices == {pinned}, (epoch, layer)
    assert released == [5, 10, 15, 20, 20, 20]  # 20 layers over 3 + 1 stages
    assert PathSampler(tiny_space, seed=0).released_layers == tiny_space.num_layers  # off by default


def test_progressive_release_applies_to_fair_and_sandwich_steps(tiny_space):
    from spos.train.sampler import PathSampler

    fair = PathSampler(tiny_space, seed=0, strategy="fair", progressive_epochs=1)
    paths = fair.sample_step()
    for layer in range(tiny_space.num_layers):
        blocks = sorted(p.blocks[layer] for p in paths)
        assert blocks == (list(range(tiny_space.num_blocks)) if layer < 10 else [0] * tiny_space.num_blocks)
    sandwich = PathSampler(tiny_space, seed=0, strategy="sandwich", progressive_epochs=1)
    full = PathSampler(tiny_space, seed=0, strategy="sandwich").extreme_paths()
    for progressive, free in zip(sandwich.extreme_paths(), full):
        assert progressive.genes[:10] == free.genes[:10]
        assert set(progressive.blocks[10:]) == {0} and set(progressive.channels[10:]) == {tiny_space.default_channel}
    sandwich.set_epoch(1)
    assert sandwich.extreme_paths() == full


def test_progressive_training_pins_the_layers_not_yet_released(tmp_path, monkeypatch):
    import torch

    from spos.nn.supernet import SuperNet

    trained = []
    original_forward = SuperNet.forward

    def recording_forward(self, x, arch):
        if self.training and torch.is_grad_enabled():
            trained.append(arch)
        return original_forward(self, x, arch)

    monkeypatch.setattr(SuperNet, "forward", recording_forward)
    config = load_config("digits-supernet", [*TINY, "train.iterations=2", "sampling.progressive_epochs=1"])
    space = run_training(config, tmp_path / "run", progress=False).model.space
    assert len(trained) == 2
    for arch in trained:  # epoch 0 of 2 stages: the last half of the layers at the 3x3 block, scale 1.0
        assert set(arch.blocks[10:]) == {0} and set(arch.channels[10:]) == {space.default_channel}


# ----------------------------------------------------------------------------------------------
# Weight-entangled kernels


def test_entangled_choices_share_one_7x7_kernel_and_their_pointwise_convs(tiny_space):
    from spos.nn.supernet import SuperNet

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

    from spos.nn.calibration import recalibrate_bn
    from spos.nn.supernet import SuperNet
    from spos.space.architecture import sample_architecture

    supernet = SuperNet(tiny_space, entangled_kernels=True)
    with torch.no_grad():  # weights unlike the init, so a wrong crop would show
        for parameter in supernet.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    x = torch.randn(4, 3, 32, 32)
    rng = random.Random(1)
    for _ in range(4):
        arch = sample_architecture(tiny_space, rng)
        calibration = [(torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long))]
        recalibrate_bn(supernet.path(arch), calibration)
        supernet.eval()
        with torch.no_grad():
            expected = supernet(x, arch)
            got = supernet.extract(arch, calibration).eval()(x)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_entangled_flag_survives_a_checkpoint_and_training(tmp_path):
    from spos.store import checkpoint

    config = load_config("digits-supernet", [*TINY, "space.entangled_kernels=true"])
    result = run_training(config, tmp_path / "run", progress=False)
    assert result.model.entangled_kernels
    loaded = checkpoint.load_model(tmp_path / "run" / "last.pt", kind="supernet")
    assert loaded.entangled_kernels
    assert loaded.features[0][0].branch_main[3].weight is loaded.features[0][2].branch_main[3].weight


# ----------------------------------------------------------------------------------------------
# Aligned choices


def _layer_outputs(supernet, layer_index, x):
    layer = supernet.features[layer_index]
    mid = supernet.mid_widths[layer_index][0][supernet.space.default_channel]
    return [op(x, mid) for op in layer]


def test_aligned_choices_start_as_the_same_function_and_tie_xception_to_shufflenet(tiny_space):
    import torch

    from spos.nn.supernet import SuperNet

    supernet = SuperNet(tiny_space, entangled_kernels=True, aligned_choices=True).train()
    entangled = SuperNet(tiny_space, entangled_kernels=True)
    assert sum(p.numel() for p in supernet.parameters()) < sum(p.numel() for p in entangled.parameters())
    layer = supernet.features[0]  # a stage's first layer: a projection branch too
    shuffle = [m for m in layer[2].branch_main if hasattr(m, "kernel")]
    xception = [m for m in layer[3].branch_main if hasattr(m, "kernel")]
    assert xception[1].weight is shuffle[0].weight and xception[4].weight is shuffle[1].weight
    assert xception[5].weight is shuffle[2].weight
    assert all(x.weight is s.weight for x, s in zip([m for m in layer[3].branch_proj if hasattr(m, "kernel")],
                                                    [m for m in layer[2].branch_proj if hasattr(m, "kernel")]))
    identity = xception[3].weight[:, :, 0, 0]
    torch.testing.assert_close(identity, torch.eye(*identity.shape))
    assert (xception[0].weight[:, 0] == torch.tensor([[0., 0, 0], [0, 1, 0], [0, 0, 0]])).all()
    x = torch.randn(8, tiny_space.layers()[0].in_channels, 16, 16)
    three, five, seven, xcept = _layer_outputs(supernet, 0, x)
    torch.testing.assert_close(five, three)  # the 7x7 kernel starts as its 3x3 centre
    torch.testing.assert_close(seven, three)
    similarity = torch.nn.functional.cosine_similarity(xcept.flatten(), three.flatten(), 0)
    plain = _layer_outputs(entangled, 0, x)
    assert not torch.allclose(plain[2], plain[0])  # merely entangled kernels start apart
    assert similarity > 0.5 > torch.nn.functional.cosine_similarity(plain[3].flatten(), plain[0].flatten(), 0)
    from spos.store.official import to_official

    official, reference = to_official(supernet), to_official(SuperNet(tiny_space))  # the official layout still
    assert {k: v.shape for k, v in official.items()} == {k: v.shape for k, v in reference.items()}


def test_aligned_supernet_extracts_fixed_nets_equal_to_their_paths_after_training(tiny_space):
    import random

    import torch

    from spos.nn.calibration import recalibrate_bn
    from spos.nn.supernet import SuperNet
    from spos.space.architecture import sample_architecture

    supernet = SuperNet(tiny_space, entangled_kernels=True, aligned_choices=True)
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.1)
    rng = random.Random(3)
    for _ in range(3):  # a few steps move the zeroed taps and the identities off their start
        loss = supernet(torch.randn(8, 3, 32, 32), sample_architecture(tiny_space, rng)).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x = torch.randn(4, 3, 32, 32)
    for blocks in ((3,) * 20, None):
        arch = sample_architecture(tiny_space, rng)
        if blocks:
            arch = type(arch)(blocks, arch.channels)
        calibration = [(torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long))]
        recalibrate_bn(supernet.path(arch), calibration)
        supernet.eval()
        with torch.no_grad():
            torch.testing.assert_close(supernet.extract(arch, calibration).eval()(x), supernet(x, arch),
                                       atol=1e-5, rtol=1e-5)


def test_aligned_choices_need_entangled_kernels_and_survive_a_checkpoint(tmp_path):
    from spos.errors import UserError
    from spos.store import checkpoint

    with pytest.raises(UserError, match="aligned_choices needs space.entangled_kernels"):
        run_training(load_config("digits-supernet", [*TINY, "space.entangled_kernels=false",
                                                      "space.aligned_choices=true"]), tmp_path / "bad",
                     progress=False)
    config = load_config("digits-supernet", [*TINY, "space.aligned_choices=true"])
    run_training(config, tmp_path / "run", progress=False)
    loaded = checkpoint.load_model(tmp_path / "run" / "last.pt", kind="supernet")
    assert loaded.aligned_choices and loaded.entangled_kernels
    assert loaded.features[0][3].branch_main[10].weight is loaded.features[0][2].branch_main[3].weight


def test_entangled_supernet_converts_to_the_official_layout_with_centre_kernels(tiny_space):
    from spos.nn.supernet import SuperNet
    from spos.store.official import to_official

    supernet = SuperNet(tiny_space, entangled_kernels=True)
    official = to_official(supernet)
    shared = supernet.features[1][2].branch_main[3].weight  # layer 1's 7x7 depthwise kernel
    three = next(v for k, v in official.items() if k.endswith("features.1.0.branch_main.3.weight"))
    assert three.shape[-1] == 3
    assert (three == shared[: three.shape[0], :, 2:5, 2:5]).all()
